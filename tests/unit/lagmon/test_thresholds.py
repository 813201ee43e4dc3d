"""Threshold parsing and the crossing state machine."""

from __future__ import annotations

import pytest

from services.lagmon.events import THRESHOLD_CLEARED, THRESHOLD_CROSSED
from services.lagmon.thresholds import (
    LagReading,
    Thresholds,
    ThresholdSpec,
    ThresholdSpecError,
    ThresholdTracker,
    merge_specs,
)


def reading(lag: int, consumer: str = "c1", stream: str = "S") -> LagReading:
    return LagReading(stream, consumer, lag, lag, 0, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("S:c=5", ThresholdSpec("c", 5, "S")),
        ("c=0", ThresholdSpec("c", 0, None)),
        (" QIKI_EVENTS_V1:registrar-events = 1000 ".replace(" = ", "="), None),
    ],
)
def test_parse_valid(text: str, expected: ThresholdSpec | None) -> None:
    spec = ThresholdSpec.parse(text)
    if expected is not None:
        assert spec == expected
    else:
        assert spec == ThresholdSpec("registrar-events", 1000, "QIKI_EVENTS_V1")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("c", "expected STREAM:CONSUMER=N"),
        ("S:c=abc", "'abc' is not an integer"),
        ("S:c=-1", "must be >= 0"),
        ("a:b:c=1", "expected STREAM:CONSUMER=N"),
        ("=3", "expected STREAM:CONSUMER=N"),
    ],
)
def test_parse_rejects_with_clear_message(text: str, needle: str) -> None:
    with pytest.raises(ThresholdSpecError) as info:
        ThresholdSpec.parse(text)
    assert needle in str(info.value)
    assert repr(text) in str(info.value)


def test_lookup_precedence() -> None:
    t = Thresholds(
        [ThresholdSpec("c", 10, "S"), ThresholdSpec("c", 20), ThresholdSpec("c", 30, "S")],
        default=99,
    )
    assert t.for_consumer("S", "c") == 30  # later exact spec wins
    assert t.for_consumer("OTHER", "c") == 20  # name-only spec on any stream
    assert t.for_consumer("S", "d") == 99  # default
    assert Thresholds().for_consumer("S", "d") is None
    assert t.as_dict() == {"S:c": 30, "c": 20, "*": 99}


def test_cli_name_only_spec_overrides_config_exact_spec() -> None:
    config = [ThresholdSpec("registrar-events", 1000, "QIKI_EVENTS_V1")]
    cli = [ThresholdSpec.parse("registrar-events=5")]
    t = Thresholds([*config, *cli])
    assert t.for_consumer("QIKI_EVENTS_V1", "registrar-events") == 5
    # ... and an exact CLI spec after it wins again for its stream only.
    t.set(ThresholdSpec.parse("QIKI_EVENTS_V1:registrar-events=7"))
    assert t.for_consumer("QIKI_EVENTS_V1", "registrar-events") == 7
    assert t.for_consumer("OTHER", "registrar-events") == 5


def test_bad_construction_arguments() -> None:
    with pytest.raises(ValueError, match="clear_ratio"):
        Thresholds(clear_ratio=1.5)
    with pytest.raises(ValueError, match="default threshold"):
        Thresholds(default=-1)


def test_one_event_per_crossing_not_per_poll() -> None:
    tracker = ThresholdTracker(Thresholds([ThresholdSpec("c1", 5)]))
    events: list[str] = []
    for lag in [0, 3, 5, 6, 9, 100, 7, 6, 5, 2, 0, 0, 8, 8]:
        for tr in tracker.evaluate([reading(lag)]):
            events.append(f"{tr.kind.rsplit('.', 1)[1]}@{tr.reading.lag}")
            tracker.commit(tr)
    # 5 is not over (lag > threshold); back to 5 clears.
    assert events == ["ThresholdCrossed@6", "ThresholdCleared@5", "ThresholdCrossed@8"]


def test_uncommitted_transition_is_offered_again() -> None:
    tracker = ThresholdTracker(Thresholds([ThresholdSpec("c1", 5)]))
    first = tracker.evaluate([reading(10)])
    assert [t.kind for t in first] == [THRESHOLD_CROSSED]
    # Publish failed -> not committed -> the next poll offers it again.
    again = tracker.evaluate([reading(11)])
    assert [t.kind for t in again] == [THRESHOLD_CROSSED]
    tracker.commit(again[0])
    assert tracker.is_over("S", "c1")
    assert tracker.evaluate([reading(12)]) == []


def test_hysteresis_band() -> None:
    tracker = ThresholdTracker(Thresholds([ThresholdSpec("c1", 10)], clear_ratio=0.5))
    tracker.commit(tracker.evaluate([reading(11)])[0])
    assert tracker.evaluate([reading(10)]) == []  # at threshold, still inside the band
    assert tracker.evaluate([reading(6)]) == []
    cleared = tracker.evaluate([reading(5)])
    assert [t.kind for t in cleared] == [THRESHOLD_CLEARED]


def test_consumers_without_threshold_are_ignored() -> None:
    tracker = ThresholdTracker(Thresholds([ThresholdSpec("c1", 1)]))
    assert tracker.evaluate([reading(1000, consumer="other")]) == []


def test_event_data_shape() -> None:
    tracker = ThresholdTracker(Thresholds([ThresholdSpec("c1", 1, "S")]))
    (tr,) = tracker.evaluate([LagReading("S", "c1", 7, 4, 3, 2)])
    assert tr.data() == {
        "stream": "S",
        "consumer": "c1",
        "lag": 7,
        "threshold": 1,
        "num_pending": 4,
        "num_ack_pending": 3,
        "num_redelivered": 2,
    }


def test_merge_specs_from_mapping_and_list() -> None:
    specs = merge_specs({"S:a": 1, "b": 2}, [ThresholdSpec("c", 3)])
    assert specs == [ThresholdSpec("a", 1, "S"), ThresholdSpec("b", 2), ThresholdSpec("c", 3)]


def test_restored_state_suppresses_the_crossing_and_allows_the_clear() -> None:
    tracker = ThresholdTracker(Thresholds([ThresholdSpec("c", 10, "S")]))
    tracker.restore([("S", "c")])
    assert tracker.evaluate([LagReading("S", "c", 50, 50, 0, 0)]) == []
    (cleared,) = tracker.evaluate([LagReading("S", "c", 3, 3, 0, 0)])
    assert cleared.kind == THRESHOLD_CLEARED
