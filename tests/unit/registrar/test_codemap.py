"""Event type -> registrar code."""

from __future__ import annotations

import json

import pytest

from services.common.botspec import Codes, parse_botspec
from services.common.codes import RegistrarCode as C
from services.registrar.codemap import CodeMapper


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


_LIFECYCLE = (C.BOOT_START, C.BOOT_OK, C.BOOT_FAILED, C.NATS_CONNECTED, C.NATS_DISCONNECTED,
              C.RECOVERY_START, C.RECOVERY_OK)


def test_lifecycle_types_round_trip() -> None:
    # The type the registrar publishes a lifecycle event with is stored under that same code.
    m = CodeMapper()
    for code in _LIFECYCLE:
        type_ = m.lifecycle_type(code)
        assert type_.startswith("qiki.registrar.v1.")
        assert m.classify(type_, "qiki.events.v1.registrar").code == code


def _codes(rules_yaml: str) -> Codes:
    text = f"""
version: "2.0"
kind: BotSpec
metadata: {{id: T}}
codes:
  outcome_words: {{ok: [ok], failed: [failed, error]}}
  rules:
{rules_yaml}
  default: {{code: 999, name: OTHER}}
"""
    return parse_botspec(text).codes


def test_rules_first_match_wins_and_default() -> None:
    m = CodeMapper(_codes("""
    - {type: "acme.climate.v1.Alarm", code: 710}
    - {type: "acme.climate.*", code: 200}
"""))
    assert m.classify("acme.climate.v1.Alarm", "x").code == 710
    assert m.classify("ACME.climate.v1.reading", "x").code == 200  # case-insensitive
    other = m.classify("other.type", "x")
    assert (other.code, "unclassified" in (other.reason or "")) == (999, True)


def test_subject_and_where_conditions() -> None:
    m = CodeMapper(_codes("""
    - {type: "acme.*", where: {severity: [high, critical]}, code: 902}
    - {subject: "acme.climate.v1.>", code: 201}
"""))
    assert m.classify("acme.x", "acme.climate.v1.a", b'{"severity": "high"}').code == 902
    assert m.classify("acme.x", "acme.climate.v1.a", b'{"severity": "low"}').code == 201
    assert m.classify("acme.x", "acme.climate.v1.a", b"not json").code == 201
    assert m.classify("acme.x", "elsewhere").code == 999


def test_outcome_rules_read_type_then_data_then_fallback() -> None:
    m = CodeMapper(_codes("""
    - {type: "acme.pump.*", outcomes: {ok: 301, failed: 302}}
"""))
    assert m.classify("acme.pump.v1.start_failed", "s").code == 302
    assert m.classify("acme.pump.v1.status", "s", b'{"status": "ok"}').code == 301
    fb = m.classify("acme.pump.v1.status", "s", b'{"status": "??"}')
    assert fb.code == 301 and "unclassified outcome" in (fb.reason or "")


def test_lifecycle_type_without_a_rule_still_has_a_type() -> None:
    m = CodeMapper(_codes("""    - {type: "acme.*", code: 200}"""))
    assert m.lifecycle_type(C.BOOT_OK) == "registrar.v1.boot_ok"


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
