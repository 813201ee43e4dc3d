"""The scene generator: deterministic from a seed, always within the models' contract."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.radar_sim import events
from services.radar_sim.models import RadarFrame
from services.radar_sim.simulation import Scene, split_by_band

T = datetime(2026, 1, 1, tzinfo=UTC)


def frames(seed: int, n: int, dt: float = 0.05) -> list[RadarFrame]:
    scene = Scene(seed=seed)
    return [scene.next_frame(dt, now=T) for _ in range(n)]


def test_same_seed_same_payloads_other_seed_differs() -> None:
    assert frames(7, 20) == frames(7, 20)
    assert frames(7, 20) != frames(8, 20)


def test_frame_ids_count_up() -> None:
    assert [f.frame_id for f in frames(1, 5)] == [0, 1, 2, 3, 4]


def test_long_run_stays_in_contract() -> None:
    # Large dt makes targets leave coverage and respawn; every frame is re-validated.
    scene = Scene(seed=3, targets=20, max_range_m=8_000.0)
    bands = set()
    for _ in range(400):
        frame = scene.next_frame(1.0, now=T)
        RadarFrame.model_validate(frame.model_dump())
        for d in frame.detections:
            assert 0.0 <= d.bearing_deg < 360.0
            assert -90.0 <= d.elev_deg <= 90.0
            assert d.snr_db >= 0.0
            bands.add(d.range_band)
    assert bands == {"LR", "SR"}


def test_split_by_band_partitions_detections() -> None:
    frame = Scene(seed=5, targets=30).next_frame(0.1, now=T)
    parts = split_by_band(frame)
    assert all(d.range_band == "LR" for d in parts["LR"].detections)
    assert all(d.range_band == "SR" for d in parts["SR"].detections)
    assert len(parts["LR"].detections) + len(parts["SR"].detections) == len(frame.detections)
    assert parts["LR"].frame_id == parts["SR"].frame_id == frame.frame_id


def test_energy_cycles_through_every_level() -> None:
    scene = Scene(seed=0)
    levels = [scene.energy_status(1.0, now=T).level for _ in range(200)]
    assert {"ok", "low", "critical"} <= set(levels)
    assert levels[0] == "ok"


def test_bad_scene_arguments() -> None:
    with pytest.raises(ValueError, match="targets"):
        Scene(targets=-1)
    with pytest.raises(ValueError, match="max_range_m"):
        Scene(max_range_m=0)


def test_type_names_follow_the_subject_versioning() -> None:
    assert events.FRAME_TYPE == "qiki.radar.v1.Frame"
    assert {events.FRAME_LR_TYPE, events.FRAME_SR_TYPE} == {
        "qiki.radar.v1.FrameLR",
        "qiki.radar.v1.FrameSR",
    }
    assert events.RADAR_SOURCE == "urn:qiki:q-sim-service:radar"
    assert len(set(events.ALL_TYPES)) == len(events.ALL_TYPES)
