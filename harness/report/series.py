"""Chart maths for the report: per-interval availability, outage windows, ticks, fault lanes.

Pure functions and one small aggregator, no I/O, so the report's figures can be unit-tested.
The aggregator keeps a bounded amount of data however long the run: one counter pair and one
sparse log-scale latency histogram per interval (issue 12: the journal must stay compact).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: latency histogram resolution: bucket k holds values in [BASE**k, BASE**(k+1)) ms, so a
#: percentile read from it is within ~5% of the exact one
_BASE = 1.1
_LOG_BASE = math.log(_BASE)
#: at most this many outage windows are kept (a flapping broker must not bloat the journal)
MAX_OUTAGES = 200


def _bucket(ms: float) -> int:
    return -1 if ms < 1.0 else int(math.log(ms) / _LOG_BASE)


def _bucket_value(k: int) -> float:
    # geometric middle of the bucket; bucket -1 collects everything under 1 ms
    return 0.5 if k < 0 else _BASE ** (k + 0.5)


def hist_percentile(hist: dict[int, int], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of a histogram built by :class:`IntervalSeries`."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(total * q / 100.0))
    seen = 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= rank:
            return _bucket_value(k)
    return _bucket_value(max(hist))  # pragma: no cover - rank <= total


@dataclass
class _Slot:
    acked: int = 0
    failed: int = 0
    first_ack: float | None = None
    last_ack: float | None = None
    lat: dict[int, int] = field(default_factory=dict)
    e2e: dict[int, int] = field(default_factory=dict)


@dataclass
class IntervalSeries:
    """Acked/failed counts and PubAck latency per ``interval_s``, plus write-outage windows.

    Times are seconds on any clock; ``origin`` is subtracted so the series starts near 0.
    A write outage is a stretch of more than ``outage_threshold_s`` from the first publish
    attempted after an ack to the next ack (or, if none came, to the last failure): writes
    were tried and none succeeded. A pause in sending is not an outage.
    """

    origin: float = 0.0
    interval_s: float = 1.0
    outage_threshold_s: float = 1.0
    slots: dict[int, _Slot] = field(default_factory=dict)
    outages: list[tuple[float, float]] = field(default_factory=list)
    _last_ack: float | None = None
    #: first publish attempted since the last ack (None: nothing is waiting for an ack)
    _pending_since: float | None = None
    _failed_since_ack: float | None = None

    def _slot(self, t: float) -> _Slot:
        k = int((t - self.origin) // self.interval_s)
        s = self.slots.get(k)
        if s is None:
            s = self.slots[k] = _Slot()
        return s

    def sent(self, t: float) -> None:
        """A publish was attempted at ``t`` (the first after an ack may start an outage)."""
        if self._pending_since is None:
            self._pending_since = t

    def ack(self, t: float, latency_ms: float, sent_t: float | None = None) -> None:
        """A PubAck arrived at ``t`` after ``latency_ms`` for a publish sent at ``sent_t``.

        Counted in the interval it was sent in (as Jepsen plots an operation at its
        invocation), so a fault shows as failures where it happened, not an ack timeout
        later; the ack's own time goes to its interval's first/last ack (write recovery).
        """
        at = self._slot(t)
        if at.first_ack is None:
            at.first_ack = t
        at.last_ack = t
        s = self._slot(sent_t if sent_t is not None else t)
        s.acked += 1
        k = _bucket(latency_ms)
        s.lat[k] = s.lat.get(k, 0) + 1
        since = self._start()
        if since is not None and t - since > self.outage_threshold_s:
            self._add_outage(since, t)
        self._last_ack = t
        self._pending_since = None
        self._failed_since_ack = None

    def end_to_end(self, sent_t: float, latency_ms: float) -> None:
        """An end-to-end latency (sent -> stored by the consumer) of a message sent at
        ``sent_t``; drawn next to PubAck latency when a run measures it."""
        s = self._slot(sent_t)
        k = _bucket(latency_ms)
        s.e2e[k] = s.e2e.get(k, 0) + 1

    def fail(self, t: float, sent_t: float | None = None) -> None:
        """A publish sent at ``sent_t`` failed (error reply, timeout, connection down) at
        ``t``; counted in the interval it was sent in."""
        self._slot(sent_t if sent_t is not None else t).failed += 1
        self._failed_since_ack = t

    def close(self) -> None:
        """Finish: an outage still open (failures after the last ack) ends at the last failure."""
        since = self._start()
        end = self._failed_since_ack
        if since is not None and end is not None and end - since > self.outage_threshold_s:
            self._add_outage(since, end)
        self._failed_since_ack = None
        self._pending_since = None

    def _start(self) -> float | None:
        # the outage starts when a write was first tried after the last ack (not earlier:
        # idle time is not an outage); pipelined sends can predate that ack, hence the max
        if self._pending_since is None:
            return None
        if self._last_ack is None:
            return self._pending_since
        return max(self._pending_since, self._last_ack)

    def _add_outage(self, start: float, end: float) -> None:
        if len(self.outages) < MAX_OUTAGES:
            self.outages.append((start - self.origin, end - self.origin))

    def points(self, shift_s: float = 0.0) -> list[dict[str, Any]]:
        """One dict per interval (gaps filled with zeros): t, acked, failed, p50_ms, p99_ms."""
        if not self.slots:
            return []
        out: list[dict[str, Any]] = []
        for k in range(min(self.slots), max(self.slots) + 1):
            s = self.slots.get(k, _Slot())
            p50, p99 = hist_percentile(s.lat, 50), hist_percentile(s.lat, 99)
            e50, e99 = hist_percentile(s.e2e, 50), hist_percentile(s.e2e, 99)
            out.append({
                "t": round(shift_s + k * self.interval_s, 3),
                "acked": s.acked,
                "failed": s.failed,
                "p50_ms": None if p50 is None else round(p50, 2),
                "p99_ms": None if p99 is None else round(p99, 2),
                "e2e_p50_ms": None if e50 is None else round(e50, 2),
                "e2e_p99_ms": None if e99 is None else round(e99, 2),
                # exact first/last ack of the interval: write recovery is measured on them
                "first_ack_s": (None if s.first_ack is None
                                else round(s.first_ack - self.origin + shift_s, 3)),
                "last_ack_s": (None if s.last_ack is None
                               else round(s.last_ack - self.origin + shift_s, 3)),
            })
        return out

    def windows(self, shift_s: float = 0.0) -> list[tuple[float, float]]:
        """Outage windows ``(start, end)`` shifted by ``shift_s`` (run-relative seconds)."""
        return [(round(a + shift_s, 3), round(b + shift_s, 3)) for a, b in self.outages]


def merge_points(series: Iterable[Sequence[dict[str, Any]]],
                 interval_s: float) -> list[dict[str, Any]]:
    """Sum several per-interval series onto one grid of ``interval_s`` (latency: the worst).

    Percentiles cannot be summed; for overlapping publishers the chart shows the higher one,
    which is what a reader looking for latency trouble wants to see.
    """
    grid: dict[int, dict[str, Any]] = {}
    for pts in series:
        for p in pts:
            # floor, not round: coarsening 0.5 s onto 1 s must put exactly two in each cell
            k = math.floor(p["t"] / interval_s + 1e-9)
            g = grid.setdefault(k, {"t": round(k * interval_s, 3), "acked": 0, "failed": 0,
                                    "p50_ms": None, "p99_ms": None, "first_ack_s": None,
                                    "last_ack_s": None, "e2e_p50_ms": None,
                                    "e2e_p99_ms": None})
            g["acked"] += p["acked"]
            g["failed"] += p["failed"]
            if p.get("first_ack_s") is not None:
                f, last = p["first_ack_s"], p["last_ack_s"]
                g["first_ack_s"] = f if g["first_ack_s"] is None else min(g["first_ack_s"], f)
                g["last_ack_s"] = last if g["last_ack_s"] is None else max(g["last_ack_s"], last)
            for key in ("p50_ms", "p99_ms", "e2e_p50_ms", "e2e_p99_ms"):
                if p.get(key) is not None:
                    g[key] = p[key] if g[key] is None else max(g[key], p[key])
    return [grid[k] for k in sorted(grid)]


def merge_windows(windows: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Union of overlapping windows, sorted."""
    out: list[list[float]] = []
    for a, b in sorted(windows):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round, distinct, evenly spaced ticks covering ``[lo, hi]`` (1, 2, 2.5, 5 x 10^n steps).

    The last tick is >= ``hi`` so the axis ends on a labelled value; ``hi <= lo`` gives a unit
    axis. Never repeats a value (the old lag axis printed "0 1 1 2 2 3").
    """
    if not math.isfinite(lo) or not math.isfinite(hi):
        raise ValueError(f"nice_ticks: bounds must be finite, got {lo!r}..{hi!r}")
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks: list[float] = []
    v = start
    while True:
        ticks.append(round(v, 10))
        if v >= hi - 1e-12:
            break
        v = start + len(ticks) * step
    return ticks


def integer_ticks(hi: float, target: int = 5) -> list[float]:
    """Ticks for a count axis: like :func:`nice_ticks` from 0, with a step of at least 1."""
    ticks = nice_ticks(0.0, max(hi, 1.0), target)
    if len(ticks) > 1 and ticks[1] - ticks[0] < 1:
        ticks = [float(v) for v in range(0, math.ceil(max(hi, 1.0)) + 1)]
    return ticks


def fmt_tick(v: float) -> str:
    """A tick label without trailing zeros (``2.5``, ``10``, ``1k`` for 1000+)."""
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    if v == int(v):
        return str(int(v))
    return f"{v:g}"


def assign_lanes(intervals: Sequence[tuple[float, float]], min_gap: float = 0.0) -> list[int]:
    """Lane index per interval so that intervals in one lane never overlap (greedy, in order
    of start). ``min_gap`` widens each interval to leave room for its label."""
    order = sorted(range(len(intervals)), key=lambda i: intervals[i][0])
    lane_end: list[float] = []
    lanes = [0] * len(intervals)
    for i in order:
        a, b = intervals[i]
        b = max(b, a + min_gap)
        for n, end in enumerate(lane_end):
            if a >= end:
                lanes[i], lane_end[n] = n, b
                break
        else:
            lanes[i] = len(lane_end)
            lane_end.append(b)
    return lanes


def first_ack_after(points: Sequence[dict[str, Any]], outages: Sequence[tuple[float, float]],
                    t: float) -> float | None:
    """Write recovery: seconds from ``t`` (the heal) to the first PubAck after it.

    Exact when ``t`` falls in a write outage (the outage ends with that ack) or in an interval
    whose first ack is after ``t``; when acks were flowing across ``t`` (no outage) it is the
    gap to the interval's last ack, an upper bound under the outage threshold. None: no ack
    after ``t``.
    """
    for a, b in outages:
        if a <= t < b:
            return round(b - t, 3)
    for p in points:
        first, last = p.get("first_ack_s"), p.get("last_ack_s")
        if first is None or last is None or last < t:
            continue
        return round(max(0.0, (first if first >= t else last) - t), 3)
    return None
