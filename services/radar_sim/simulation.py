"""Deterministic scene generator: radar frames, sensor and energy status from a seed.

No I/O here: the service publishes what this produces.  Given the same seed and the same
sequence of calls, the payloads are identical (event ids and wall-clock timestamps are not:
ids must stay unique across runs or JetStream's duplicate window would drop a rerun).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.radar_sim.models import (
    SR_MAX_RANGE_M,
    Detection,
    EnergyStatus,
    RadarFrame,
    SensorIoStatus,
)


@dataclass
class _Target:
    range_m: float
    bearing_deg: float
    elev_deg: float
    vr_mps: float
    rcs_dbsm: float


@dataclass
class Scene:
    """A handful of targets moving radially, seen by one radar.

    Args:
        seed: seeds every random draw (``random.Random``), so runs are reproducible.
        sensor_id: the radar's id in frames and status events.
        targets: number of targets in the scene.
        max_range_m: targets beyond this range wrap back to the near field.
    """

    seed: int = 0
    sensor_id: str = "radar-1"
    targets: int = 8
    max_range_m: float = 20_000.0
    _rng: random.Random = field(init=False, repr=False)
    _targets: list[_Target] = field(init=False, repr=False)
    _frame_id: int = field(init=False, default=0)
    _soc_pct: float = field(init=False, default=100.0)

    def __post_init__(self) -> None:
        if self.targets < 0:
            raise ValueError(f"targets must be >= 0, got {self.targets}")
        if self.max_range_m <= 0:
            raise ValueError(f"max_range_m must be > 0, got {self.max_range_m}")
        self._rng = random.Random(self.seed)
        self._targets = [self._new_target() for _ in range(self.targets)]

    def _new_target(self) -> _Target:
        rng = self._rng
        return _Target(
            range_m=rng.uniform(100.0, self.max_range_m),
            bearing_deg=rng.uniform(0.0, 360.0) % 360.0,
            elev_deg=rng.uniform(-10.0, 45.0),
            vr_mps=rng.uniform(-300.0, 300.0),
            rcs_dbsm=rng.uniform(-20.0, 30.0),
        )

    @property
    def frames_generated(self) -> int:
        """Number of frames produced so far."""
        return self._frame_id

    def next_frame(self, dt_s: float, *, now: datetime | None = None) -> RadarFrame:
        """Advance the scene by ``dt_s`` seconds and return the sweep's frame."""
        rng = self._rng
        detections: list[Detection] = []
        for target in self._targets:
            target.range_m += target.vr_mps * dt_s
            if not 0.0 <= target.range_m <= self.max_range_m:
                # Left the coverage: a new target appears instead (keeps the scene populated).
                target.__dict__.update(self._new_target().__dict__)
            target.bearing_deg = (target.bearing_deg + rng.gauss(0.0, 0.05)) % 360.0
            # Received power falls with R^4: SNR from a reference of 40 dB at 1 km, floored at 0.
            snr = 40.0 + target.rcs_dbsm - 40.0 * math.log10(max(target.range_m, 1.0) / 1_000.0)
            detections.append(
                Detection(
                    range_m=round(target.range_m, 2),
                    # round() can yield 360.0 from 359.999...; keep the [0, 360) contract.
                    bearing_deg=round(target.bearing_deg, 3) % 360.0,
                    elev_deg=round(max(-90.0, min(90.0, target.elev_deg)), 3),
                    vr_mps=round(target.vr_mps + rng.gauss(0.0, 0.5), 2),
                    snr_db=round(max(0.0, snr + rng.gauss(0.0, 1.0)), 2),
                    rcs_dbsm=round(target.rcs_dbsm, 2),
                    range_band="SR" if target.range_m <= SR_MAX_RANGE_M else "LR",
                )
            )
        frame = RadarFrame(
            frame_id=self._frame_id,
            sensor_id=self.sensor_id,
            timestamp=now or datetime.now(UTC),
            detections=detections,
        )
        self._frame_id += 1
        return frame

    def sensor_status(self, *, now: datetime | None = None) -> SensorIoStatus:
        """The radar's I/O status (mostly ok, sometimes degraded: about 5 % of reports)."""
        status = "degraded" if self._rng.random() < 0.05 else "ok"
        return SensorIoStatus(
            sensor_id=self.sensor_id,
            status=status,
            timestamp=now or datetime.now(UTC),
            frames_sent=self._frame_id,
        )

    def energy_status(self, dt_s: float, *, now: datetime | None = None) -> EnergyStatus:
        """Advance the battery by ``dt_s`` seconds: it drains to critical, then recharges."""
        power_w = -50.0 + self._rng.gauss(0.0, 2.0)
        # One percent per simulated second keeps every level reachable in a short run.
        self._soc_pct -= 1.0 * dt_s
        if self._soc_pct < 5.0:
            self._soc_pct = 100.0
            power_w = 500.0
        soc = round(max(0.0, min(100.0, self._soc_pct)), 2)
        return EnergyStatus(
            level=EnergyStatus.level_for(soc),
            soc_pct=soc,
            power_w=round(power_w, 2),
            timestamp=now or datetime.now(UTC),
        )


def split_by_band(frame: RadarFrame) -> dict[str, RadarFrame]:
    """The frame's detections split into an ``"LR"`` and an ``"SR"`` frame (same id and time)."""
    out: dict[str, RadarFrame] = {}
    for band in ("LR", "SR"):
        out[band] = frame.model_copy(
            update={"detections": [d for d in frame.detections if d.range_band == band]}
        )
    return out
