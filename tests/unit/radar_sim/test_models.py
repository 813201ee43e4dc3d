"""Payload models: what the simulator sends is validated; out-of-range values are rejected."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from services.radar_sim.models import Detection, EnergyStatus, RadarFrame, SensorIoStatus

GOOD: dict[str, Any] = {
    "range_m": 1200.0,
    "bearing_deg": 359.9,
    "elev_deg": -90.0,
    "vr_mps": -12.5,
    "snr_db": 0.0,
    "rcs_dbsm": -15.0,
    "range_band": "SR",
}


def test_valid_detection_at_the_edges() -> None:
    d = Detection(**GOOD)
    assert d.bearing_deg == 359.9 and d.elev_deg == -90.0 and d.snr_db == 0.0
    assert Detection(**{**GOOD, "bearing_deg": 0.0, "elev_deg": 90.0}).elev_deg == 90.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bearing_deg", 360.0),  # [0, 360): 360 is 0
        ("bearing_deg", -0.1),
        ("elev_deg", 90.01),
        ("elev_deg", -90.5),
        ("snr_db", -0.1),
        ("range_m", -1.0),
        ("range_band", "MR"),
        ("range_m", math.nan),  # NaN would slip through every range comparison
        ("vr_mps", math.inf),
        ("rcs_dbsm", "loud"),
    ],
)
def test_detection_rejects_out_of_range(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        Detection(**{**GOOD, field: value})
    assert info.value.errors()[0]["loc"] == (field,)


def test_detection_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Detection(**GOOD, doppler=1.0)  # type: ignore[call-arg]


def test_frame_requires_timezone_aware_timestamp_and_sensor() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        RadarFrame(frame_id=0, sensor_id="r", timestamp=datetime(2026, 1, 1), detections=[])
    with pytest.raises(ValidationError):
        RadarFrame(frame_id=0, sensor_id="", timestamp=datetime.now(UTC), detections=[])
    with pytest.raises(ValidationError):
        RadarFrame(frame_id=-1, sensor_id="r", timestamp=datetime.now(UTC), detections=[])


def test_frame_json_round_trip_validates_nested() -> None:
    frame = RadarFrame(
        frame_id=3, sensor_id="radar-1", timestamp=datetime.now(UTC), detections=[Detection(**GOOD)]
    )
    data = json.loads(frame.model_dump_json())
    assert set(data) == {"frame_id", "sensor_id", "timestamp", "detections"}
    assert RadarFrame.model_validate(data) == frame
    data["detections"][0]["snr_db"] = -3
    with pytest.raises(ValidationError) as info:
        RadarFrame.model_validate(data)
    assert info.value.errors()[0]["loc"] == ("detections", 0, "snr_db")


@pytest.mark.parametrize(
    ("soc", "level"), [(100, "ok"), (30, "ok"), (29.9, "low"), (10, "low"), (9.99, "critical")]
)
def test_energy_level_mapping(soc: float, level: str) -> None:
    assert EnergyStatus.level_for(soc) == level


def test_status_models_reject_bad_values() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValidationError):
        EnergyStatus(level="empty", soc_pct=1, power_w=0, timestamp=now)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        EnergyStatus(level="ok", soc_pct=101, power_w=0, timestamp=now)
    with pytest.raises(ValidationError):
        SensorIoStatus(sensor_id="r", status="meh", timestamp=now, frames_sent=0)  # type: ignore[arg-type]
