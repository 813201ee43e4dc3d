"""Event type -> registrar code."""

from __future__ import annotations

import json

import pytest

from services.common.codes import RegistrarCode as C
from services.registrar.codemap import EXACT_TYPES, LIFECYCLE_TYPES, CodeMapper


@pytest.mark.parametrize(
    ("type_", "subject", "data", "code"),
    [
        ("qiki.radar.v1.Frame", "qiki.radar.v1.frames", None, C.RADAR_FRAME_RECEIVED),
        ("qiki.radar.v1.frame.lr", "qiki.radar.v1.frames.lr", None, C.RADAR_FRAME_RECEIVED),
        ("qiki.radar.v1.TrackSet", "qiki.radar.v1.tracks", None, C.RADAR_TRACK_GENERATED),
        ("anything", "qiki.radar.v1.tracks", None, C.RADAR_TRACK_GENERATED),
        ("qiki.lagmon.v1.threshold_crossed", "qiki.events.v1.health", None,
         C.HEALTH_CHECK_FAILED),
        ("qiki.lagmon.v1.threshold_cleared", "qiki.events.v1.health", None, C.HEALTH_CHECK_OK),
        ("qiki.sensor.v1.io_ok", "qiki.events.v1.sensor", None, C.SENSOR_IO_OK),
        ("qiki.sensor.v1.io_failed", "qiki.events.v1.sensor", None, C.SENSOR_IO_FAILED),
        ("qiki.sensor.v1.io_start", "qiki.events.v1.sensor", None, C.SENSOR_IO_START),
        ("qiki.power.v1.status", "qiki.events.v1.power", {"level": "low"}, C.POWER_LOW),
        ("qiki.power.v1.status", "qiki.events.v1.power", {"level": "critical"},
         C.POWER_CRITICAL),
        ("qiki.power.v1.status", "qiki.events.v1.power", {"level": "ok"}, C.POWER_OK),
        ("qiki.power.v1.low", "qiki.events.v1.power", None, C.POWER_LOW),
        ("com.example.energy.critical", "qiki.events.v1.power", None, C.POWER_CRITICAL),
        ("qiki.nav.v1.init_failed", "qiki.events.v1.nav", None, 512),
        ("qiki.security.v1.violation", "qiki.events.v1.x", None, C.SECURITY_VIOLATION),
    ],
)
def test_codes(type_: str, subject: str, data: object, code: int) -> None:
    raw = json.dumps(data).encode() if data is not None else b""
    got = CodeMapper().classify(type_, subject, raw, "application/json")
    assert got.code == code
    assert got.reason is None


def test_lifecycle_types_round_trip() -> None:
    for code, type_ in LIFECYCLE_TYPES.items():
        assert EXACT_TYPES[type_] == code


def test_unknown_type_is_flagged_not_guessed() -> None:
    got = CodeMapper().classify("com.example.thing", "qiki.events.v1.other")
    assert got.code == C.CRITICAL_ERROR
    assert "unclassified" in (got.reason or "")


def test_known_domain_without_outcome_says_so() -> None:
    got = CodeMapper().classify("qiki.power.v1.status", "qiki.events.v1.power", b"not json")
    assert got.code == C.POWER_OK
    assert "unclassified outcome" in (got.reason or "")


def test_data_dependent_codes_are_not_cached_per_type() -> None:
    m = CodeMapper()
    low = m.classify("qiki.power.v1.status", "s", b'{"level": "low"}', "application/json")
    crit = m.classify("qiki.power.v1.status", "s", b'{"level": "critical"}', None)
    assert (low.code, crit.code) == (C.POWER_LOW, C.POWER_CRITICAL)
