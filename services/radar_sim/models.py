"""Pydantic models of what the radar simulator sends (the ``data`` of its CloudEvents).

The simulator builds every payload through these models, so an out-of-range value is a bug
caught before it reaches the bus, not a surprise for the consumer.  The same models serve
consumers and checks that want to validate frames they receive (``RadarFrame.model_validate``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

RangeBand = Literal["LR", "SR"]
SensorStatus = Literal["ok", "degraded", "failed"]
EnergyLevel = Literal["ok", "low", "critical"]

#: Boundary between the short-range and long-range band, metres.
SR_MAX_RANGE_M = 5_000.0


class _Strict(BaseModel):
    # Unknown keys are a contract violation, and finite floats only: NaN/inf would pass the
    # range checks below (every comparison with NaN is False) and break JSON consumers.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Detection(_Strict):
    """One radar detection (a single return, not a track)."""

    range_m: float = Field(ge=0.0, description="slant range, metres")
    bearing_deg: float = Field(ge=0.0, lt=360.0, description="azimuth, degrees in [0, 360)")
    elev_deg: float = Field(ge=-90.0, le=90.0, description="elevation, degrees in [-90, 90]")
    vr_mps: float = Field(description="radial velocity, m/s (negative = closing)")
    snr_db: float = Field(ge=0.0, description="signal-to-noise ratio, dB (>= 0)")
    rcs_dbsm: float = Field(description="radar cross-section, dBsm")
    range_band: RangeBand = Field(description="LR (long range) or SR (short range)")


class RadarFrame(_Strict):
    """A radar frame: every detection of one sensor sweep."""

    frame_id: int = Field(ge=0, description="monotonic frame counter per sensor")
    sensor_id: str = Field(min_length=1, max_length=128)
    timestamp: AwareDatetime = Field(description="sweep time, timezone-aware (UTC)")
    detections: list[Detection] = Field(default_factory=list)


class SensorIoStatus(_Strict):
    """I/O status of one sensor (registrar: ok -> 201, degraded/failed -> 202)."""

    sensor_id: str = Field(min_length=1, max_length=128)
    status: SensorStatus
    timestamp: AwareDatetime
    frames_sent: int = Field(ge=0)
    detail: str | None = Field(default=None, max_length=512)


class EnergyStatus(_Strict):
    """Energy status of the power system (registrar: ok -> 601, low -> 602, critical -> 603)."""

    level: EnergyLevel
    soc_pct: float = Field(ge=0.0, le=100.0, description="state of charge, percent")
    power_w: float = Field(description="net power, W (negative = discharging)")
    timestamp: AwareDatetime

    @staticmethod
    def level_for(
        soc_pct: float, *, low_pct: float = 30.0, critical_pct: float = 10.0
    ) -> EnergyLevel:
        """The level a state of charge maps to (``< critical_pct`` critical, ``< low_pct`` low)."""
        if soc_pct < critical_pct:
            return "critical"
        if soc_pct < low_pct:
            return "low"
        return "ok"
