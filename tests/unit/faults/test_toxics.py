"""Toxics are values: argument checks at construction, equality, readable repr."""

from __future__ import annotations

import math

import pytest

from harness.faults import (
    Bandwidth,
    Blackhole,
    Down,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    SlowClose,
    Toxic,
)
from harness.faults.toxics import check_direction


def test_repr_leaves_out_defaults() -> None:
    assert repr(Latency(100)) == "Latency(latency_ms=100)"
    assert repr(Latency(100, jitter_ms=5, toxicity=0.5)) == (
        "Latency(toxicity=0.5, latency_ms=100, jitter_ms=5)"
    )
    assert repr(Blackhole()) == "Blackhole()"
    assert repr(Slicer(10, 2, delay_us=50)) == (
        "Slicer(average_size=10, size_variation=2, delay_us=50)"
    )


def test_values_compare_and_hash() -> None:
    assert Latency(100) == Latency(100.0)
    assert Latency(100) != Latency(100, toxicity=0.5)
    assert len({ResetPeer(0), ResetPeer(0), ResetPeer(5)}) == 2


def test_frozen() -> None:
    lat = Latency(100)
    with pytest.raises(AttributeError):
        lat.latency_ms = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Latency(-1), ["latency_ms=-1", ">= 0"]),
        (lambda: Latency(10, jitter_ms=-2), ["jitter_ms=-2"]),
        (lambda: Latency(math.nan), ["finite"]),
        (lambda: Latency(10, toxicity=1.5), ["toxicity=1.5", "<= 1"]),
        (lambda: Latency(10, toxicity=-0.1), ["toxicity=-0.1"]),
        (lambda: Bandwidth(0), ["rate_bytes_per_s=0", "> 0"]),
        (lambda: LimitData(-5), ["bytes=-5"]),
        (lambda: Slicer(0), ["average_size=0"]),
        (lambda: Slicer(10, 10), ["size_variation must be < average_size"]),
        (lambda: ResetPeer(-1), ["timeout_ms=-1"]),
        (lambda: SlowClose(-1), ["delay_ms=-1"]),
        (lambda: Down(toxicity=0.5), ["toxicity must be 1.0"]),
    ],
)
def test_bad_values_are_refused_with_the_field_and_value(make, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as info:
        make()
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Latency("100"),  # type: ignore[arg-type]
        lambda: Latency(True),
        lambda: LimitData(1.5),  # type: ignore[arg-type]
        lambda: Slicer(10.0),  # type: ignore[arg-type]
        lambda: Toxic(),
    ],
)
def test_wrong_types_are_type_errors(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError):
        make()


def test_check_direction() -> None:
    assert check_direction("both") == "both"
    with pytest.raises(ValueError, match=r"'sideways'.*upstream, downstream, both"):
        check_direction("sideways")


def test_describe_is_journal_friendly() -> None:
    assert Latency(100, 10).describe() == {
        "type": "latency", "latency_ms": 100, "jitter_ms": 10, "toxicity": 1.0,
    }
