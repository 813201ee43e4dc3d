"""Load gates: latency, rate and error budgets checked against a load run (issue 5).

Pure functions over results, so they are unit-tested without a server. Defaults for the
end-to-end gates come from the original QIKI platform's radar SLA: p50 <= 500 ms,
p95 <= 1500 ms from a CloudEvent's ``time`` to its row in the registrar's store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.load.injector import LoadResult

__all__ = ["GateResult", "LoadGates", "LocustGates", "LocustStats", "percentile"]


def percentile(values: Sequence[float], q: float, *, presorted: bool = False) -> float | None:
    """The ``q``-th percentile (0..100) by nearest rank; None for no values.

    Nearest rank returns an observed value (never an interpolation between two), which is
    what a latency budget means: "95 % of messages took at most this long".
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile: q must be within 0..100, got {q}")
    if not values:
        return None
    data = values if presorted else sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(data)))
    return float(data[rank - 1])


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict: ``observed`` against ``threshold`` (``observed`` None = no data)."""

    name: str
    passed: bool
    observed: float | None
    threshold: float
    message: str = ""

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        obs = "n/a" if self.observed is None else f"{self.observed:.4g}"
        return f"{verdict} {self.name}: observed {obs}, threshold {self.threshold:g}" + (
            f" ({self.message})" if self.message else "")


def _check_threshold(owner: str, name: str, value: float | None, *, ratio: bool = False) -> None:
    """Raise ValueError naming owner, field and value unless ``value`` is None or a number
    ``>= 0`` (``within 0..1`` for a ``ratio``)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{owner}: {name} must be a number or None, got {value!r}")
    if value < 0 or (ratio and value > 1):
        bound = "within 0..1" if ratio else ">= 0"
        raise ValueError(f"{owner}: {name} must be {bound}, got {value!r}")


def _max_gate(name: str, observed: float | None, threshold: float, unit: str) -> GateResult:
    if observed is None:
        return GateResult(name, False, None, threshold, "no samples to measure")
    ok = observed <= threshold
    return GateResult(name, ok, observed, threshold,
                      "" if ok else f"{observed:.4g}{unit} > {threshold:g}{unit}")


def _min_gate(name: str, observed: float | None, threshold: float, unit: str) -> GateResult:
    if observed is None:
        return GateResult(name, False, None, threshold, "no samples to measure")
    ok = observed >= threshold
    return GateResult(name, ok, observed, threshold,
                      "" if ok else f"{observed:.4g}{unit} < {threshold:g}{unit}")


@dataclass(frozen=True)
class LoadGates:
    """Thresholds for an injector run; ``None`` switches a gate off.

    - ``puback_p50_ms`` / ``puback_p95_ms`` / ``puback_p99_ms``: PubAck latency from the
      intended send time.
    - ``min_rate_ratio``: achieved / target rate (not applicable to ``MaxRate``).
    - ``max_error_ratio``: failed / attempted.
    - ``e2e_p50_ms`` / ``e2e_p95_ms``: CloudEvent time -> stored by the registrar. Evaluated
      only when the result carries end-to-end samples (``e2e_latencies_ms`` not None); an
      empty sample list fails, because "measured nothing" is not "met the SLA".
    """

    puback_p50_ms: float | None = None
    puback_p95_ms: float | None = None
    puback_p99_ms: float | None = None
    min_rate_ratio: float | None = 0.95
    max_error_ratio: float | None = 0.0
    e2e_p50_ms: float | None = 500.0
    e2e_p95_ms: float | None = 1500.0

    def __post_init__(self) -> None:
        for name in ("puback_p50_ms", "puback_p95_ms", "puback_p99_ms", "min_rate_ratio",
                     "e2e_p50_ms", "e2e_p95_ms"):
            _check_threshold("LoadGates", name, getattr(self, name))
        _check_threshold("LoadGates", "max_error_ratio", self.max_error_ratio, ratio=True)

    def evaluate(self, result: LoadResult) -> list[GateResult]:
        """Every enabled gate's verdict for ``result`` (in a stable order)."""
        out: list[GateResult] = []
        lat = sorted(result.latencies_ms)
        for name, q in (("puback_p50_ms", 50), ("puback_p95_ms", 95), ("puback_p99_ms", 99)):
            threshold = getattr(self, name)
            if threshold is not None:
                out.append(_max_gate(name, percentile(lat, q, presorted=True), threshold, "ms"))
        if self.min_rate_ratio is not None:
            ratio = result.rate_ratio
            if ratio is None:
                out.append(GateResult("min_rate_ratio", True, None, self.min_rate_ratio,
                                      "not applicable: no target rate (MaxRate)"))
            else:
                out.append(_min_gate("min_rate_ratio", ratio, self.min_rate_ratio, ""))
        if self.max_error_ratio is not None:
            if not result.attempted:
                out.append(GateResult("max_error_ratio", False, None, self.max_error_ratio,
                                      "nothing was attempted"))
            else:
                out.append(_max_gate("max_error_ratio", result.error_ratio,
                                     self.max_error_ratio, ""))
        if result.e2e_latencies_ms is not None:
            e2e = sorted(result.e2e_latencies_ms)
            for name, q in (("e2e_p50_ms", 50), ("e2e_p95_ms", 95)):
                threshold = getattr(self, name)
                if threshold is not None:
                    out.append(_max_gate(name, percentile(e2e, q, presorted=True),
                                         threshold, "ms"))
        return out


@dataclass(frozen=True)
class LocustStats:
    """Aggregated Locust figures (the ``Aggregated`` row of ``<prefix>_stats.csv``)."""

    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    rps: float

    @property
    def fail_ratio(self) -> float:
        """Failures / requests (0 for no requests)."""
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class LocustGates:
    """Thresholds for a headless Locust run; ``None`` switches a gate off."""

    max_fail_ratio: float | None = 0.0
    max_p95_ms: float | None = None
    min_rps: float | None = None

    def __post_init__(self) -> None:
        _check_threshold("LocustGates", "max_fail_ratio", self.max_fail_ratio, ratio=True)
        _check_threshold("LocustGates", "max_p95_ms", self.max_p95_ms)
        _check_threshold("LocustGates", "min_rps", self.min_rps)

    def evaluate(self, stats: LocustStats) -> list[GateResult]:
        """Every enabled gate's verdict; a run with no requests fails every enabled gate."""
        out: list[GateResult] = []
        if self.max_fail_ratio is not None:
            if not stats.requests:
                out.append(GateResult("max_fail_ratio", False, None, self.max_fail_ratio,
                                      "no requests were made"))
            else:
                out.append(_max_gate("max_fail_ratio", stats.fail_ratio,
                                     self.max_fail_ratio, ""))
        if self.max_p95_ms is not None:
            out.append(_max_gate("max_p95_ms", stats.p95_ms if stats.requests else None,
                                 self.max_p95_ms, "ms"))
        if self.min_rps is not None:
            out.append(_min_gate("min_rps", stats.rps if stats.requests else None,
                                 self.min_rps, "/s"))
        return out
