"""Load gates: each gate both passes and fails on the figures it guards."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from harness.load.gates import LoadGates, LocustGates, LocustStats, percentile
from harness.load.injector import LoadResult


def result(latencies_ms: list[float], *, failed: int = 0, planned_s: float = 1.0,
           target: float | None = 100.0, e2e: list[float] | None = None) -> LoadResult:
    n_ok = len(latencies_ms)
    now = datetime.now(UTC)
    ok_ids = [f"ok-{i}" for i in range(n_ok)]
    bad_ids = [f"bad-{i}" for i in range(failed)]
    return LoadResult(
        subject="s", rate="Constant(100/s)", window=10, started_at=now, ended_at=now,
        planned_s=planned_s, send_elapsed_s=planned_s, target_rate_per_s=target,
        attempted=ok_ids + bad_ids, acked=ok_ids, latencies_ms=list(latencies_ms),
        failed={i: "ack timeout" for i in bad_ids}, e2e_latencies_ms=e2e,
    )


def by_name(results: list) -> dict:  # type: ignore[type-arg]
    return {r.name: r for r in results}


def test_percentile_is_nearest_rank() -> None:
    data = list(range(1, 101))
    assert percentile(data, 50) == 50
    assert percentile(data, 95) == 95
    assert percentile(data, 100) == 100
    assert percentile(data, 0) == 1
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile(data, 101)


def test_latency_gates_pass_and_fail() -> None:
    gates = LoadGates(puback_p50_ms=10, puback_p95_ms=50, puback_p99_ms=90)
    fast = by_name(gates.evaluate(result([1.0] * 100)))
    assert all(fast[n].passed for n in ("puback_p50_ms", "puback_p95_ms", "puback_p99_ms"))
    slow_tail = [1.0] * 90 + [100.0] * 10  # p50 fine, p95 and p99 over budget
    r = by_name(gates.evaluate(result(slow_tail)))
    assert r["puback_p50_ms"].passed
    assert not r["puback_p95_ms"].passed
    assert r["puback_p95_ms"].observed == 100.0
    assert not r["puback_p99_ms"].passed
    assert "100ms > 50ms" in r["puback_p95_ms"].message


def test_latency_gate_with_no_acks_fails() -> None:
    r = by_name(LoadGates(puback_p95_ms=50).evaluate(result([], failed=5)))
    assert not r["puback_p95_ms"].passed
    assert r["puback_p95_ms"].observed is None


def test_rate_ratio_gate() -> None:
    gates = LoadGates(min_rate_ratio=0.98, max_error_ratio=None, e2e_p50_ms=None,
                      e2e_p95_ms=None)
    ok = by_name(gates.evaluate(result([1.0] * 100)))  # 100 acked in 1 s of a 100/s target
    assert ok["min_rate_ratio"].passed
    assert ok["min_rate_ratio"].observed == pytest.approx(1.0)
    short = by_name(gates.evaluate(result([1.0] * 90)))
    assert not short["min_rate_ratio"].passed
    assert short["min_rate_ratio"].observed == pytest.approx(0.9)


def test_rate_ratio_not_applicable_without_target() -> None:
    r = by_name(LoadGates().evaluate(result([1.0], target=float("inf"))))
    assert r["min_rate_ratio"].passed
    assert "not applicable" in r["min_rate_ratio"].message


def test_error_ratio_gate() -> None:
    gates = LoadGates(max_error_ratio=0.01)
    assert by_name(gates.evaluate(result([1.0] * 100)))["max_error_ratio"].passed
    bad = by_name(gates.evaluate(result([1.0] * 98, failed=2)))["max_error_ratio"]
    assert not bad.passed
    assert bad.observed == pytest.approx(0.02)
    nothing = by_name(gates.evaluate(result([])))["max_error_ratio"]
    assert not nothing.passed


def test_e2e_defaults_are_the_radar_sla() -> None:
    g = LoadGates()
    assert (g.e2e_p50_ms, g.e2e_p95_ms) == (500.0, 1500.0)
    within = by_name(g.evaluate(result([1.0] * 100, e2e=[400.0] * 95 + [1400.0] * 5)))
    assert within["e2e_p50_ms"].passed and within["e2e_p95_ms"].passed
    late = by_name(g.evaluate(result([1.0] * 100, e2e=[400.0] * 90 + [2000.0] * 10)))
    assert late["e2e_p50_ms"].passed
    assert not late["e2e_p95_ms"].passed


def test_e2e_gates_skip_without_measurement_and_fail_on_empty() -> None:
    assert "e2e_p50_ms" not in by_name(LoadGates().evaluate(result([1.0] * 100)))
    empty = by_name(LoadGates().evaluate(result([1.0] * 100, e2e=[])))
    assert not empty["e2e_p50_ms"].passed
    assert empty["e2e_p50_ms"].message == "no samples to measure"


def test_bad_thresholds_name_the_field() -> None:
    with pytest.raises(ValueError, match="LoadGates: puback_p95_ms must be >= 0"):
        LoadGates(puback_p95_ms=-1)
    with pytest.raises(ValueError, match=r"LoadGates: max_error_ratio must be within 0\.\.1"):
        LoadGates(max_error_ratio=2)
    with pytest.raises(ValueError, match="LocustGates: min_rps must be a number"):
        LocustGates(min_rps="fast")  # type: ignore[arg-type]


def test_locust_gates_pass_and_fail() -> None:
    stats = LocustStats(requests=1000, failures=10, p50_ms=2, p95_ms=20, p99_ms=40, rps=500)
    gates = LocustGates(max_fail_ratio=0.02, max_p95_ms=25, min_rps=400)
    assert all(r.passed for r in gates.evaluate(stats))
    strict = LocustGates(max_fail_ratio=0.0, max_p95_ms=10, min_rps=1000)
    r = by_name(strict.evaluate(stats))
    assert not r["max_fail_ratio"].passed
    assert not r["max_p95_ms"].passed
    assert not r["min_rps"].passed


def test_locust_gates_fail_a_run_without_requests() -> None:
    stats = LocustStats(requests=0, failures=0, p50_ms=None, p95_ms=None, p99_ms=None, rps=0)
    assert not any(r.passed for r in LocustGates(max_p95_ms=10, min_rps=1).evaluate(stats))


def test_str_of_a_gate_result_reads_well() -> None:
    r = LoadGates(puback_p95_ms=5).evaluate(result([10.0] * 10))[0]
    assert str(r).startswith("FAIL puback_p95_ms: observed 10, threshold 5")
