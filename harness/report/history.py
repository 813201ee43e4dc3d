"""Run history: ``index.html`` over a reports directory (``qiki-harness report [DIR]``).

Every run directory is read from its journal. A journal that is missing, truncated or not
valid is listed as ``broken`` with the reason, never a crash: an interrupted run or a full
disk must not hide every other run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from harness.report.journal import Journal
from harness.report.series import fmt_tick, nice_ticks

#: the figures a trend is drawn for, with their unit
TREND_FIGURES = (("pub_p99_ms", "PubAck p99", "ms"), ("outage_s", "write outage", "s"),
                 ("recovery_s", "recovery", "s"), ("lost", "lost", ""))


@dataclass
class RunRow:
    """One run of the index: its figures, or why its journal could not be read."""

    run_dir: str
    scenario: str = ""
    verdict: str = "broken"
    started_at: str = ""
    duration_s: float | None = None
    backend: str = ""
    lost: int | None = None
    duplicated: int | None = None
    recovery: str = ""
    recovery_s: float | None = None
    pub_p99_ms: float | None = None
    outage_s: float | None = None
    failed_checks: list[str] = field(default_factory=list)
    problem: str = ""
    has_report: bool = False


def _p99(j: Journal) -> float | None:
    vals = [float(x["p99_ms"]) for x in j.load if x.get("p99_ms") is not None]
    if vals:
        return max(vals)
    if j.availability is not None:
        pts = [p.p99_ms for p in j.availability.points if p.p99_ms is not None]
        return max(pts) if pts else None
    return None


def row_of(run_dir: Path) -> RunRow:
    """Read one run directory into a row; a bad journal gives a ``broken`` row with why."""
    row = RunRow(run_dir=run_dir.name, has_report=(run_dir / "report.html").is_file())
    path = run_dir / "journal.json"
    if not path.is_file():
        row.problem = "no journal.json (the run did not finish writing its outputs)"
        return row
    try:
        j = Journal.read(path)
    except (ValidationError, ValueError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        row.problem = f"journal.json unreadable: {first}"
        # keep what a partial journal still says, so the row is not anonymous
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        for key in ("scenario", "started_at"):
            # a truncated file is not JSON any more, but its first fields are still there
            m = re.search(rf'"{key}":\s*"([^"]*)"', text)
            if m:
                setattr(row, key, m.group(1))
        return row
    row.scenario, row.verdict, row.started_at = j.scenario, j.verdict, j.started_at
    row.duration_s, row.backend = j.duration_s, j.backend
    if j.delivery is not None:
        row.lost, row.duplicated = j.delivery.lost, j.delivery.duplicated
    row.recovery = "; ".join(
        f"{r.kind}{'' if r.threshold is None else f' (<= {r.threshold:g})'}: "
        f"{'never' if r.value_s is None else f'{r.value_s:.2f} s'}"
        for r in j.recoveries)
    lag = [r.value_s for r in j.recoveries if r.kind == "lag" and r.value_s is not None]
    row.recovery_s = lag[0] if lag else j.recovery_s
    row.pub_p99_ms = _p99(j)
    if j.availability is not None:
        row.outage_s = round(sum(o.duration_s for o in j.availability.outages), 3)
    row.failed_checks = [c.name for c in j.failed_checks()]
    if j.verdict == "error" and j.error:
        row.problem = j.error.splitlines()[0][:300]
    return row


def collect(reports_dir: Path) -> list[RunRow]:
    """Every run directory under ``reports_dir`` (a directory holding a journal or a
    report), newest first by start time, then name."""
    if not reports_dir.is_dir():
        raise FileNotFoundError(f"reports directory {reports_dir} does not exist")
    rows = [row_of(d) for d in sorted(reports_dir.iterdir())
            if d.is_dir() and any((d / n).exists()
                                  for n in ("journal.json", "report.html", "junit.xml", "logs"))]
    return sorted(rows, key=lambda r: (r.started_at or r.run_dir), reverse=True)


@dataclass
class Spark:
    """A small inline chart of one figure across a scenario's runs (oldest to newest)."""

    label: str
    unit: str
    points: str
    dots: list[tuple[float, float, str]]
    y_top: str
    width: int = 160
    height: int = 36


def sparkline(label: str, unit: str, values: list[tuple[str, float | None]],
              width: int = 160, height: int = 36) -> Spark | None:
    """Values (``(run, value)``, oldest first) as a polyline; None if nothing was measured."""
    known = [(i, run, v) for i, (run, v) in enumerate(values) if v is not None]
    if not known:
        return None
    top = nice_ticks(0.0, max(v for _, _, v in known) or 1.0, 2)[-1]
    n = max(len(values) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return (round(4 + (width - 8) * i / n, 1), round(height - 4 - (height - 8) * v / top, 1))

    pts = [xy(i, v) for i, _, v in known]
    return Spark(label=label, unit=unit, points=" ".join(f"{x},{y}" for x, y in pts),
                 dots=[(x, y, f"{run}: {v:g}{unit}") for (x, y), (_, run, v) in
                       zip(pts, known, strict=True)],
                 y_top=f"{fmt_tick(top)} {unit}".strip(), width=width, height=height)


def trends(rows: list[RunRow]) -> dict[str, list[Spark]]:
    """Per scenario, a sparkline per figure over its readable runs (oldest first)."""
    by: dict[str, list[RunRow]] = {}
    for r in sorted(rows, key=lambda r: (r.started_at or r.run_dir)):
        if r.verdict != "broken" and r.scenario:
            by.setdefault(r.scenario, []).append(r)
    out: dict[str, list[Spark]] = {}
    for scen, runs in sorted(by.items()):
        sparks = [sparkline(label, unit, [(r.run_dir, getattr(r, attr)) for r in runs])
                  for attr, label, unit in TREND_FIGURES]
        out[scen] = [s for s in sparks if s is not None]
    return out


def write_index(reports_dir: Path) -> Path:
    """Write ``index.html`` into ``reports_dir``; returns its path."""
    from harness.report.html import environment

    rows = collect(reports_dir)
    page = environment().get_template("index.html.j2").render(
        rows=rows, trends=trends(rows), reports_dir=str(reports_dir),
        counts={v: sum(1 for r in rows if r.verdict == v)
                for v in ("passed", "failed", "error", "broken")})
    path = reports_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
