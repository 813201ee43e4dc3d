"""Chart maths of the report: ticks, fault lanes, per-interval series, outages, recovery."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.report.series import (
    MAX_OUTAGES,
    IntervalSeries,
    assign_lanes,
    first_ack_after,
    fmt_tick,
    hist_percentile,
    integer_ticks,
    merge_points,
    merge_windows,
    nice_ticks,
)


def test_ticks_are_round_and_distinct() -> None:
    assert nice_ticks(0, 3) == [0, 1, 2, 3]
    assert nice_ticks(0, 1.2) == [0, 0.25, 0.5, 0.75, 1, 1.25]
    assert nice_ticks(0, 2000) == [0, 500, 1000, 1500, 2000]
    assert nice_ticks(0, 32, 8) == [0, 5, 10, 15, 20, 25, 30, 35]
    # the old lag axis printed "0 1 1 2 2 3" for a max lag of 3
    labels = [fmt_tick(v) for v in integer_ticks(3)]
    assert labels == ["0", "1", "2", "3"]
    assert [fmt_tick(v) for v in (0, 2.5, 1000, 1500)] == ["0", "2.5", "1k", "1.5k"]


@given(st.floats(0, 1e6), st.floats(1e-3, 1e6))
def test_ticks_cover_the_range_without_repeats(lo: float, span: float) -> None:
    ticks = nice_ticks(lo, lo + span)
    assert ticks[0] <= lo + 1e-9 and ticks[-1] >= lo + span - 1e-9
    labels = [fmt_tick(v) for v in ticks]
    assert len(set(ticks)) == len(ticks)
    assert 2 <= len(ticks) <= 12, labels
    steps = {round(b - a, 6) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1


def test_ticks_reject_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(0, float("nan"))


def test_lanes_keep_overlapping_faults_apart() -> None:
    faults = [(8.0, 12.0), (10.0, 14.0), (11.0, 19.0), (20.0, 21.0)]
    lanes = assign_lanes(faults)
    assert lanes == [0, 1, 2, 0]
    # a short fault with a long label claims its label's room
    assert assign_lanes([(1.0, 1.1), (1.5, 2.0)], min_gap=1.0) == [0, 1]
    assert assign_lanes([(1.0, 1.1), (2.5, 3.0)], min_gap=1.0) == [0, 0]


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 20)), max_size=30))
def test_lanes_never_overlap(raw: list[tuple[float, float]]) -> None:
    iv = [(a, a + w) for a, w in raw]
    lanes = assign_lanes(iv)
    for i, (a, b) in enumerate(iv):
        for k, (c, d) in enumerate(iv):
            if i < k and lanes[i] == lanes[k]:
                assert b <= c or d <= a


def _series() -> IntervalSeries:
    """300 msg/s; no acks from 8 s to 12.5 s (failures instead), then acks again."""
    s = IntervalSeries(origin=100.0, interval_s=0.5, outage_threshold_s=1.0)
    for i in range(6000):
        t = 100.0 + i / 300
        s.sent(t)
        if 108.0 <= t < 112.5:
            s.fail(t)
        else:
            s.ack(t + 0.004, 4.0)
    s.close()
    return s


def test_interval_counts_and_outage_window() -> None:
    s = _series()
    pts = s.points(shift_s=2.0)
    assert pts[0]["t"] == 2.0 and pts[1]["t"] == 2.5
    assert sum(p["acked"] for p in pts) + sum(p["failed"] for p in pts) == 6000
    outage = [p for p in pts if 10.5 <= p["t"] < 14.5]  # 10.0 holds a last late ack
    assert len(outage) == 8
    assert all(p["acked"] == 0 and p["failed"] > 0 for p in outage)
    assert all(p["p99_ms"] is None for p in outage)
    [(a, b)] = s.windows(shift_s=2.0)
    assert a == pytest.approx(10.0, abs=0.01) and b == pytest.approx(14.5, abs=0.01)


def test_outage_still_open_at_the_end_is_closed_at_the_last_failure() -> None:
    s = IntervalSeries(outage_threshold_s=1.0)
    s.sent(0.0)
    s.ack(0.1, 3.0)
    for i in range(30):
        s.sent(0.2 + i * 0.1)
        s.fail(0.2 + i * 0.1)
    s.close()
    assert s.windows() == [(0.2, 3.1)]


def test_idle_time_and_late_timeouts_are_not_outages() -> None:
    s = IntervalSeries(outage_threshold_s=1.0)
    s.sent(0.0)
    s.ack(0.01, 10.0)
    s.sent(5.0)  # nothing was sent for 5 s: no outage
    s.ack(5.01, 10.0)
    # sending stopped; a message sent earlier times out later: writes were not being tried
    s.fail(9.0)
    s.close()
    assert s.windows() == []


def test_short_gaps_are_not_outages_and_outages_are_bounded() -> None:
    s = IntervalSeries(outage_threshold_s=1.0)
    for i in range(10):
        s.ack(i * 0.9, 1.0)
    assert s.outages == []
    many = IntervalSeries(outage_threshold_s=0.5)
    for i in range(MAX_OUTAGES * 2):
        many.sent(i * 1.0)
        many.ack(i * 1.0 + 0.9, 1.0)
    assert len(many.outages) == MAX_OUTAGES


def test_latency_percentiles_per_interval() -> None:
    s = IntervalSeries(interval_s=1.0)
    for i in range(100):
        s.ack(0.5, 10.0 if i < 98 else 500.0)
    [p] = s.points()
    assert p["p50_ms"] == pytest.approx(10.0, rel=0.06)
    assert p["p99_ms"] == pytest.approx(500.0, rel=0.06)
    assert hist_percentile({}, 50) is None


def test_memory_is_bounded_by_intervals_not_messages() -> None:
    s = IntervalSeries(interval_s=1.0)
    for i in range(200_000):
        s.ack(i / 100_000, 1.0 + (i % 1000))
    assert len(s.slots) == 2
    assert all(len(slot.lat) < 120 for slot in s.slots.values())


def test_write_recovery_is_time_to_first_ack_after_the_heal() -> None:
    s = _series()
    pts, wins = s.points(), s.windows()
    # heal inside the outage: recovery ends with the ack that ends the outage
    assert first_ack_after(pts, wins, 9.0) == pytest.approx(12.5 - 9.0, abs=0.01)
    # heal while acks flow: (almost) immediate
    assert first_ack_after(pts, wins, 15.0) == pytest.approx(0.0, abs=0.5)
    assert first_ack_after(pts, wins, 30.0) is None


def test_merge_sums_counts_and_keeps_the_worst_latency() -> None:
    a = [{"t": 0.0, "acked": 2, "failed": 0, "p50_ms": 1.0, "p99_ms": 3.0,
          "first_ack_s": 0.1, "last_ack_s": 0.4}]
    b = [{"t": 0.0, "acked": 1, "failed": 1, "p50_ms": 2.0, "p99_ms": 2.5,
          "first_ack_s": 0.05, "last_ack_s": 0.2}]
    [m] = merge_points([a, b], 0.5)
    assert (m["acked"], m["failed"], m["p50_ms"], m["p99_ms"]) == (3, 1, 2.0, 3.0)
    assert (m["first_ack_s"], m["last_ack_s"]) == (0.05, 0.4)
    assert merge_windows([(5, 6), (1, 2), (1.5, 3)]) == [(1, 3), (5, 6)]


def test_outcomes_count_where_the_publish_was_sent() -> None:
    # sent at 1.2, timed out at 6.2: the failure belongs to the fault at 1.2 (as Jepsen plots
    # an operation at its invocation); the late ack's time still marks its own interval
    s = IntervalSeries(interval_s=1.0)
    s.sent(1.2)
    s.fail(6.2, sent_t=1.2)
    s.ack(7.5, 6300.0, sent_t=1.3)
    pts = {p["t"]: p for p in s.points()}
    assert pts[1.0]["failed"] == 1 and pts[1.0]["acked"] == 1
    assert pts[6.0]["failed"] == 0 and pts[7.0]["acked"] == 0
    assert pts[7.0]["first_ack_s"] == 7.5
    assert pts[1.0]["p99_ms"] == pytest.approx(6300, rel=0.06)


def test_end_to_end_latency_per_interval_of_send_time() -> None:
    s = IntervalSeries(origin=1000.0, interval_s=1.0)
    for i in range(100):
        s.end_to_end(1000.5, 40.0 if i < 98 else 900.0)
    [p] = s.points()
    assert p["acked"] == 0 and p["p99_ms"] is None
    assert p["e2e_p50_ms"] == pytest.approx(40, rel=0.06)
    assert p["e2e_p99_ms"] == pytest.approx(900, rel=0.06)
    [m] = merge_points([s.points(), [{"t": 0.0, "acked": 5, "failed": 0, "p50_ms": 2.0,
                                      "p99_ms": 3.0, "first_ack_s": 0.1, "last_ack_s": 0.2}]],
                       1.0)
    assert m["acked"] == 5 and m["e2e_p99_ms"] == p["e2e_p99_ms"]


def test_coarsening_puts_the_same_number_of_intervals_in_each_cell() -> None:
    fine = [{"t": k * 0.5, "acked": 1, "failed": 0, "p50_ms": 1.0, "p99_ms": 1.0}
            for k in range(8)]
    coarse = merge_points([fine], 1.0)
    assert [p["t"] for p in coarse] == [0.0, 1.0, 2.0, 3.0]
    assert [p["acked"] for p in coarse] == [2, 2, 2, 2]
