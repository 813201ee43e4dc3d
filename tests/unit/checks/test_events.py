"""The events check: each condition (subject, type, where, window, min, max) can fail it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.checks.events import (
    check_events,
    decode_event,
    failed_condition,
    subject_matches,
    validate_condition,
)
from harness.checks.observations import TappedMessage


def msg(t: float, subject: str = "acme.climate.v1.alarms", ce_type: str = "acme.climate.v1.Alarm",
        data: Any = None, structured: bool = False) -> TappedMessage:
    data = {"severity": "high", "zone": {"id": 3}, "temp_c": 41.5} if data is None else data
    if structured:
        doc = {"specversion": "1.0", "id": "x", "source": "urn:t", "type": ce_type, "data": data}
        return TappedMessage(subject, {"Content-Type": "application/cloudevents+json"},
                             json.dumps(doc).encode(), t)
    return TappedMessage(subject, {"ce-type": ce_type, "ce-specversion": "1.0"},
                         json.dumps(data).encode(), t)


ALARM: dict[str, Any] = dict(subject="acme.climate.v1.>", type="acme.climate.v1.Alarm",
                             where={"severity": "high"})


def test_passes_and_says_what_matched_how_many_and_when() -> None:
    r = check_events([msg(1.0), msg(2.5)], **ALARM, min=1, max=2,
                     window_start_s=0.5, window_end_s=5.5, anchor="after step 'kill'")
    assert r.passed and r.kind == "events"
    assert r.observed["matched"] == 2
    assert (r.observed["first_s"], r.observed["last_s"]) == (1.0, 2.5)
    assert r.expected["window_s"] == [0.5, 5.5] and r.expected["when"] == "after step 'kill'"
    assert any(d.startswith("matched t=1.000s acme.climate.v1.alarms") for d in r.details)


def test_too_few_fails_naming_the_window() -> None:
    r = check_events([msg(1.0)], **ALARM, min=2, anchor="after step 'kill' (t=0.500s) within 5s")
    assert not r.passed
    assert r.details[0] == ("1 acme.climate.v1.Alarm on acme.climate.v1.> matched after step "
                            "'kill' (t=0.500s) within 5s, expected at least 2")


def test_too_many_fails() -> None:
    r = check_events([msg(1.0), msg(1.1), msg(1.2)], **ALARM, min=0, max=2)
    assert not r.passed
    assert "3 acme.climate.v1.Alarm on acme.climate.v1.> matched over the run, expected at most 2" \
        in r.details


def test_wrong_subject_does_not_count() -> None:
    r = check_events([msg(1.0, subject="acme.power.v1.alarms")], **ALARM)
    assert not r.passed and r.observed["subject_and_type_matched"] == 0


def test_wrong_type_does_not_count() -> None:
    r = check_events([msg(1.0, ce_type="acme.climate.v1.Reading")], **ALARM)
    assert not r.passed and r.observed["subject_and_type_matched"] == 0


def test_type_wildcard_as_in_code_rules() -> None:
    r = check_events([msg(1.0, ce_type="acme.climate.v1.AlarmRaised")],
                     subject=">", type="acme.climate.v1.Alarm*")
    assert r.passed


def test_where_failure_says_which_condition_and_the_value_seen() -> None:
    low = msg(1.0, data={"severity": "low", "zone": {"id": 3}})
    r = check_events([low, low], **ALARM)
    assert not r.passed
    assert r.observed["where_failed"] == 2
    assert "2 acme.climate.v1.Alarm on acme.climate.v1.> failed where: severity eq 'high': " \
        "got 'low'" in r.details


def test_before_and_after_the_window_do_not_count() -> None:
    r = check_events([msg(0.2), msg(9.0)], **ALARM, window_start_s=1.0, window_end_s=6.0)
    assert not r.passed
    assert r.observed["before_window"] == 1 and r.observed["after_window"] == 1
    assert any("arrived after the window (t>6.000s)" in d for d in r.details)


def test_structured_mode_events_are_read_too() -> None:
    assert check_events([msg(1.0, structured=True)], **ALARM).passed


def test_undecodable_data_fails_where_instead_of_crashing() -> None:
    bad = TappedMessage("acme.climate.v1.alarms", {"ce-type": "acme.climate.v1.Alarm"},
                        b"{not json", 1.0)
    r = check_events([bad], **ALARM)
    assert not r.passed and r.observed["where_failed"] == 1
    assert "data not JSON" in r.details[1]
    assert decode_event(bad).ce_type == "acme.climate.v1.Alarm"


def test_min_zero_max_zero_expects_absence() -> None:
    assert check_events([], **ALARM, min=0, max=0).passed
    assert not check_events([msg(1.0)], **ALARM, min=0, max=0).passed


@pytest.mark.parametrize(
    ("where", "failure"),
    [
        ({"zone.id": 3}, None),
        ({"zone.id": 4}, "zone.id eq 4: got 3"),
        ({"zone.id": {"ne": 3}}, "zone.id ne 3: got 3"),
        ({"temp_c": {"gt": 40, "lt": 42}}, None),
        ({"temp_c": {"gt": 42}}, "temp_c gt 42: got 41.5"),
        ({"temp_c": {"ge": 41.5, "le": 41.5}}, None),
        ({"temp_c": {"lt": 41}}, "temp_c lt 41: got 41.5"),
        ({"temp_c": {"le": 41}}, "temp_c le 41: got 41.5"),
        ({"temp_c": {"ge": 50}}, "temp_c ge 50: got 41.5"),
        ({"severity": {"in": ["high", "critical"]}}, None),
        ({"severity": {"in": ["critical"]}}, "severity in ['critical']: got 'high'"),
        ({"zone.name": {"exists": False}}, None),
        ({"zone.name": {"exists": True}}, "zone.name exists True: got missing"),
        ({"zone.name": "north"}, "zone.name eq 'north': got missing"),
        ({"zone.name": {"ne": "north"}}, None),
        ({"severity": {"gt": 3}}, "severity gt 3: got 'high'"),
        ({"sensors.1.id": "b"}, None),
        ({"sensors.5.id": "b"}, "sensors.5.id eq 'b': got missing"),
        ({"zone": {"eq": {"id": 3}}}, None),
    ],
)
def test_where_operators(where: dict[str, Any], failure: str | None) -> None:
    data = {"severity": "high", "zone": {"id": 3}, "temp_c": 41.5,
            "sensors": [{"id": "a"}, {"id": "b"}]}
    assert failed_condition(data, where) == failure


@pytest.mark.parametrize(
    ("path", "cond", "why"),
    [
        ("a..b", 1, "not a dotted path"),
        ("a", {"gtt": 1}, "unknown operator(s) gtt"),
        ("a", {}, "empty operator mapping"),
        ("a", {"in": 3}, "expected a list"),
        ("a", {"exists": "yes"}, "expected true or false"),
    ],
)
def test_bad_conditions_are_refused(path: str, cond: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
        validate_condition(path, cond)


@pytest.mark.parametrize(
    ("pattern", "subject", "hit"),
    [
        ("acme.>", "acme.climate.v1.alarms", True),
        ("acme.>", "acme", False),
        ("acme.*.v1.alarms", "acme.climate.v1.alarms", True),
        ("acme.*", "acme.climate.v1", False),
        (">", "x", True),
        ("acme.climate.v1.alarms", "acme.climate.v1.alarms", True),
        ("acme.climate.v1.alarms", "acme.climate.v1.alarms.x", False),
    ],
)
def test_nats_wildcards(pattern: str, subject: str, hit: bool) -> None:
    assert subject_matches(pattern, subject) is hit
