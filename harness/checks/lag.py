"""Consumer-lag checks over the lag samples taken during a run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from harness.checks.observations import LagSample
from harness.checks.result import CheckResult


def _select(
    samples: Iterable[LagSample], stream: str | None, consumer: str | None
) -> list[LagSample]:
    return [
        s
        for s in samples
        if (stream is None or s.stream == stream) and (consumer is None or s.consumer == consumer)
    ]


def check_max_lag(
    samples: Sequence[LagSample],
    max_lag: int,
    *,
    stream: str | None = None,
    consumer: str | None = None,
    name: str = "lag.max",
) -> CheckResult:
    """The lag of each selected consumer stays at or under ``max_lag`` in every sample.

    No samples at all is a failure: a lag check that never looked proves nothing.
    """
    chosen = _select(samples, stream, consumer)
    worst: dict[str, int] = {}
    details: list[str] = []
    for s in chosen:
        key = f"{s.stream}/{s.consumer}"
        worst[key] = max(worst.get(key, 0), s.lag)
        if s.lag > max_lag and len(details) < 20:
            details.append(f"{key} lag {s.lag} > {max_lag} at t={s.t:.2f}s")
    if not chosen:
        details.append(f"no lag samples for stream={stream!r} consumer={consumer!r}")
    passed = bool(chosen) and all(v <= max_lag for v in worst.values())
    return CheckResult(
        name=name,
        kind="lag",
        passed=passed,
        expected={"max_lag": max_lag, "stream": stream, "consumer": consumer},
        observed={"max_lag_by_consumer": worst, "samples": len(chosen)},
        details=details,
    )


def recovery_time_s(
    samples: Sequence[LagSample],
    threshold: int,
    after_t: float,
    *,
    stream: str | None = None,
    consumer: str | None = None,
) -> float | None:
    """Seconds from ``after_t`` until every selected consumer is at or under ``threshold``.

    Measured on the first sample round at or after ``after_t`` in which no selected consumer
    is above the threshold and that stays so for the rest of the run; None if it never does.
    """
    chosen = sorted(_select(samples, stream, consumer), key=lambda s: s.t)
    latest: dict[str, int] = {}
    recovered_at: float | None = None
    for s in chosen:
        latest[f"{s.stream}/{s.consumer}"] = s.lag
        if s.t < after_t:
            continue
        if all(v <= threshold for v in latest.values()):
            if recovered_at is None:
                recovered_at = s.t
        else:
            recovered_at = None
    return None if recovered_at is None else max(0.0, recovered_at - after_t)


def check_lag_recovery(
    samples: Sequence[LagSample],
    threshold: int,
    within_s: float,
    after_t: float,
    *,
    stream: str | None = None,
    consumer: str | None = None,
    name: str = "lag.recovery",
) -> CheckResult:
    """Lag is back under ``threshold`` within ``within_s`` after ``after_t`` (the last fault)."""
    took = recovery_time_s(samples, threshold, after_t, stream=stream, consumer=consumer)
    details: list[str] = []
    if took is None:
        details.append(f"lag never came back under {threshold} after t={after_t:.2f}s")
    elif took > within_s:
        details.append(f"lag back under {threshold} only {took:.2f}s after t={after_t:.2f}s")
    return CheckResult(
        name=name,
        kind="lag",
        passed=took is not None and took <= within_s,
        expected={"threshold": threshold, "within_s": within_s, "after_t": round(after_t, 3)},
        observed={"recovery_s": None if took is None else round(took, 3)},
        details=details,
    )
