"""Chart geometry for the report: the numbers a template needs to draw an inline SVG chart.

Python computes positions, ticks and fault lanes (testable); the Jinja templates only draw.
Charts in the style of Jepsen's and Locust's: time on x, fault bands behind the series, each
fault's label in its own lane above the plot so labels never overlap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.report.journal import Journal, RecoveryFigure
from harness.report.series import assign_lanes, fmt_tick, integer_ticks, nice_ticks

COLORS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477"]
ACKED, FAILED, OUTAGE = "#2e8b57", "#c62828", "#555"
#: pixels per label character (11px system-ui), to reserve lane room for a fault label
_CHAR_PX = 6.2
_LANE_PX = 15


@dataclass
class Band:
    """A fault (or outage) drawn as a shaded band with its label in a lane."""

    x: float
    w: float
    label: str
    title: str
    lane_y: float = 0.0
    color: str = "#b3261e"


@dataclass
class Series:
    """One named series: a polyline, or bars (``bars``: x, y, w, h rectangles)."""

    name: str
    color: str
    #: polyline point lists; a new segment where the series has a gap (no ack)
    segments: list[str] = field(default_factory=list)
    bars: list[tuple[float, float, float, float]] = field(default_factory=list)
    dash: str = ""


@dataclass
class Marker:
    """A vertical line at a moment (a heal, a recovery), labelled."""

    x: float
    label: str
    color: str = "#333"
    dash: str = "4 3"


@dataclass
class Chart:
    """Everything a template needs to draw one time chart."""

    title: str
    y_label: str
    width: int
    height: int
    left: float
    top: float
    plot_w: float
    plot_h: float
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    series: list[Series] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    empty: str = ""

    @property
    def bottom(self) -> float:
        """y of the x axis."""
        return self.top + self.plot_h


class _Frame:
    """Maps run time and values to pixels for one chart; places fault lanes above the plot."""

    def __init__(self, j: Journal, y_max: float, *, width: int, height: int,
                 count_axis: bool, t_max: float) -> None:
        self.left, right, bottom = 64.0, 16.0, 36.0
        self.width, self.height = width, height
        self.plot_w = width - self.left - right
        self.x_ticks_v = nice_ticks(0.0, t_max, 8)
        self.t_max = self.x_ticks_v[-1]
        self.y_ticks_v = integer_ticks(y_max) if count_axis else nice_ticks(0.0, y_max)
        self.y_max = self.y_ticks_v[-1]
        intervals = [(f.applied_s, f.removed_s if f.removed_s is not None else t_max)
                     for f in j.faults]
        labels = [fault_label(f.action, f.target) for f in j.faults]
        px_per_s = self.plot_w / self.t_max
        # a label needs its text width of room in its lane, so two labels never overlap
        self.lanes = assign_lanes(
            [(a, max(b, a + (len(lab) * _CHAR_PX + 8) / px_per_s))
             for (a, b), lab in zip(intervals, labels, strict=True)])
        n_lanes = max(self.lanes, default=-1) + 1
        self.top = 12.0 + n_lanes * _LANE_PX
        self.plot_h = height - self.top - bottom
        self.bands = [
            Band(x=self.x(a), w=max(self.x(b) - self.x(a), 2.0), label=lab,
                 title=f"{lab}: {a:.2f}s to {b:.2f}s", lane_y=12.0 + lane * _LANE_PX)
            for (a, b), lab, lane in zip(intervals, labels, self.lanes, strict=True)
        ]

    def x(self, t: float) -> float:
        return round(self.left + self.plot_w * t / self.t_max, 1)

    def y(self, v: float) -> float:
        return round(self.top + self.plot_h - self.plot_h * v / self.y_max, 1)

    def chart(self, title: str, y_label: str, unit: str = "") -> Chart:
        return Chart(
            title=title, y_label=y_label, width=self.width, height=self.height,
            left=self.left, top=self.top, plot_w=self.plot_w, plot_h=self.plot_h,
            x_ticks=[(self.x(t), f"{fmt_tick(t)}s") for t in self.x_ticks_v],
            y_ticks=[(self.y(v), fmt_tick(v) + unit) for v in self.y_ticks_v],
            bands=list(self.bands),
        )


def fault_label(action: str, target: str) -> str:
    """The label of a fault band."""
    return f"{action} {target}"


def _t_max(j: Journal) -> float:
    ts = [j.duration_s, *(p.t for p in j.lag_samples),
          *(f.removed_s or f.applied_s for f in j.faults)]
    if j.availability is not None:
        ts += [p.t + j.availability.interval_s for p in j.availability.points]
    return max([t for t in ts if t is not None] or [1.0]) or 1.0


def _recovery_markers(f: _Frame, figs: Sequence[RecoveryFigure]) -> list[Marker]:
    out: list[Marker] = []
    for r in figs:
        if r.value_s is None:
            out.append(Marker(x=f.x(r.reference_s), label=f"{r.label}: never", color="#b3261e"))
            continue
        out.append(Marker(x=f.x(r.reference_s + r.value_s),
                          label=f"{r.label}: {r.value_s:.2f}s after {r.reference}",
                          color="#1d4f91"))
    return out


def availability_chart(j: Journal, width: int = 1000, height: int = 260) -> Chart | None:
    """Acked and failed publishes per interval (stacked bars), outage windows, write recovery."""
    a = j.availability
    if a is None or not a.points:
        return None
    y_max = max([1, *(p.acked + p.failed for p in a.points)])
    f = _Frame(j, y_max, width=width, height=height, count_axis=True, t_max=_t_max(j))
    bar_w = max(f.x(a.interval_s) - f.x(0) - 1, 1.0)
    acked = Series(name=f"acked publishes per {fmt_tick(a.interval_s)}s", color=ACKED)
    failed = Series(name=f"failed publishes per {fmt_tick(a.interval_s)}s", color=FAILED)
    for p in a.points:
        x0 = f.x(p.t)
        if p.acked:
            acked.bars.append((x0, f.y(p.acked), bar_w, round(f.y(0) - f.y(p.acked), 1)))
        if p.failed:
            top = p.acked + p.failed
            failed.bars.append((x0, f.y(top), bar_w, round(f.y(p.acked) - f.y(top), 1)))
    c = f.chart("Availability: publishes per interval", "publishes")
    c.series = [acked, failed]
    for o in a.outages:
        c.bands.append(Band(x=f.x(o.start_s), w=max(f.x(o.end_s) - f.x(o.start_s), 2.0),
                            label="", color=OUTAGE,
                            title=f"write outage {o.start_s:.2f}s to {o.end_s:.2f}s "
                                  f"({o.duration_s:.2f}s without a PubAck)"))
    c.markers = _recovery_markers(f, [r for r in j.recoveries if r.kind == "write"])
    return c


def latency_chart(j: Journal, width: int = 1000, height: int = 240) -> Chart | None:
    """PubAck (and end-to-end, when measured) p50/p99 per interval (lines); gaps where an
    interval had no ack."""
    a = j.availability
    if a is None or not any(p.p99_ms is not None for p in a.points):
        return None
    y_max = max(max(p.p99_ms or 0.0, p.e2e_p99_ms or 0.0) for p in a.points)
    f = _Frame(j, y_max, width=width, height=height, count_axis=False, t_max=_t_max(j))
    e2e = any(p.e2e_p99_ms is not None for p in a.points)
    c = f.chart("Latency per interval: PubAck" + (" and end-to-end" if e2e else ""), "ms")
    half = a.interval_s / 2
    lines = [("p50_ms", "PubAck p50", COLORS[0], ""), ("p99_ms", "PubAck p99", COLORS[1], "5 3")]
    if e2e:
        lines += [("e2e_p50_ms", "end-to-end p50", COLORS[3], ""),
                  ("e2e_p99_ms", "end-to-end p99", COLORS[4], "5 3")]
    for key, name, color, dash in lines:
        segs: list[list[str]] = [[]]
        for p in a.points:
            v = getattr(p, key)
            if v is None:
                # no ack in this interval: break the line rather than draw across the outage
                if segs[-1]:
                    segs.append([])
                continue
            segs[-1].append(f"{f.x(p.t + half)},{f.y(v)}")
        c.series.append(Series(name=name, color=color, dash=dash,
                               segments=[" ".join(sg) for sg in segs if sg]))
    return c


def lag_chart(j: Journal, width: int = 1000, height: int = 260) -> Chart:
    """Lag per consumer over time, with lag recovery markers (threshold and reference)."""
    series: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for p in j.lag_samples:
        series[f"{p.stream}/{p.consumer}"].append((p.t, p.lag))
    y_max = max([1, *(p.lag for p in j.lag_samples)])
    f = _Frame(j, y_max, width=width, height=height, count_axis=True, t_max=_t_max(j))
    c = f.chart("Consumer lag", "messages")
    for n, (name, pts) in enumerate(sorted(series.items())):
        c.series.append(Series(name=f"lag {name}", color=COLORS[n % len(COLORS)],
                               segments=[" ".join(f"{f.x(t)},{f.y(v)}" for t, v in pts)]))
    c.markers = _recovery_markers(f, [r for r in j.recoveries if r.kind == "lag"])
    if not series:
        c.empty = "no lag samples"
    return c
