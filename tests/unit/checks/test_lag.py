"""Lag checks: max lag and recovery time, both directions."""

from __future__ import annotations

from harness.checks import LagSample, check_lag_recovery, check_max_lag, recovery_time_s


def s(t: float, lag: int, consumer: str = "c1") -> LagSample:
    return LagSample(t=t, stream="S", consumer=consumer, lag=lag)


def test_max_lag_pass_and_fail() -> None:
    samples = [s(0, 0), s(1, 50), s(2, 10)]
    assert check_max_lag(samples, 50).passed
    bad = check_max_lag(samples, 49)
    assert not bad.passed
    assert bad.observed["max_lag_by_consumer"] == {"S/c1": 50}
    assert "lag 50 > 49" in bad.details[0]


def test_max_lag_filters_by_consumer() -> None:
    samples = [s(0, 500, "other"), s(0, 1, "c1")]
    assert check_max_lag(samples, 10, consumer="c1").passed
    assert not check_max_lag(samples, 10).passed


def test_no_samples_fails() -> None:
    result = check_max_lag([], 10)
    assert not result.passed
    assert "no lag samples" in result.details[0]


def test_recovery_time_measured_from_fault_end() -> None:
    samples = [s(0, 0), s(1, 300), s(2, 200), s(3, 5), s(4, 0)]
    assert recovery_time_s(samples, 10, after_t=1.5) == 1.5
    assert check_lag_recovery(samples, 10, within_s=2, after_t=1.5).passed
    late = check_lag_recovery(samples, 10, within_s=1, after_t=1.5)
    assert not late.passed and "only 1.50s" in late.details[0]


def test_recovery_that_relapses_does_not_count() -> None:
    samples = [s(1, 0), s(2, 500), s(3, 0), s(4, 900)]
    assert recovery_time_s(samples, 10, after_t=0.5) is None
    result = check_lag_recovery(samples, 10, within_s=10, after_t=0.5)
    assert not result.passed and "never came back" in result.details[0]


def test_recovery_waits_for_every_consumer() -> None:
    samples = [s(1, 0, "a"), s(1, 99, "b"), s(2, 0, "a"), s(3, 0, "b")]
    assert recovery_time_s(samples, 10, after_t=1) == 2
