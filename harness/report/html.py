"""Self-contained HTML report: verdict, checks, timeline, lag chart with faults drawn over it.

No CDN, no JavaScript framework: the chart is inline SVG so the file opens anywhere,
including CI artifact viewers that block scripts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from html import escape
from pathlib import Path

from harness.checks.result import CheckResult
from harness.report.journal import Journal

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1d2330;max-width:1200px}
h1{margin:.2rem 0} h2{margin-top:2rem;border-bottom:1px solid #dde;padding-bottom:.2rem}
.verdict{display:inline-block;padding:.2rem .8rem;border-radius:4px;color:#fff;font-weight:700}
.passed{background:#1d7a3a}.failed{background:#b3261e}.error{background:#8a5a00}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #dde;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f5f9} td.pass{color:#1d7a3a;font-weight:700} td.fail{color:#b3261e;font-weight:700}
code,pre{font:12px ui-monospace,monospace;background:#f6f7fa}
pre{padding:.5rem;overflow:auto;max-height:20rem}
.meta td:first-child{width:14rem;color:#555}
svg text{font:11px system-ui,sans-serif}
"""

_COLORS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477"]


def _fmt(value: object) -> str:
    if isinstance(value, dict | list):
        return escape(json.dumps(value, sort_keys=True))
    return escape(str(value))


def _checks_table(title: str, checks: list[CheckResult]) -> str:
    if not checks:
        return ""
    rows = []
    for c in checks:
        state = "pass" if c.passed else "fail"
        details = "<br>".join(escape(d) for d in c.details[:20])
        rows.append(
            f"<tr><td class='{state}'>{state.upper()}</td><td>{escape(c.name)}</td>"
            f"<td><code>{_fmt(c.expected)}</code></td><td><code>{_fmt(c.observed)}</code></td>"
            f"<td>{details}</td></tr>"
        )
    return (
        f"<h2>{escape(title)}</h2><table><tr><th></th><th>check</th><th>expected</th>"
        f"<th>observed</th><th>details</th></tr>{''.join(rows)}</table>"
    )


def lag_chart_svg(j: Journal, width: int = 1000, height: int = 280) -> str:
    """Lag per consumer over time as polylines, faults as shaded bands with labels."""
    left, right, top, bottom = 60, 20, 20, 40
    pw, ph = width - left - right, height - top - bottom
    series: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for p in j.lag_samples:
        series[f"{p.stream}/{p.consumer}"].append((p.t, p.lag))
    t_max = max(
        [
            j.duration_s,
            *(p.t for p in j.lag_samples),
            *(f.removed_s or f.applied_s for f in j.faults),
        ],
        default=1.0,
    ) or 1.0
    y_max = max([1, *(p.lag for p in j.lag_samples)])

    def x(t: float) -> float:
        return left + pw * t / t_max

    def y(v: float) -> float:
        return top + ph - ph * v / y_max

    parts = [f"<svg width='{width}' height='{height}'>"]
    for f in j.faults:
        x0, x1 = x(f.applied_s), x(f.removed_s if f.removed_s is not None else t_max)
        parts.append(
            f"<rect x='{x0:.1f}' y='{top}' width='{max(x1 - x0, 2):.1f}' height='{ph}' "
            f"fill='#b3261e' fill-opacity='0.12'><title>{escape(f.action)} {escape(f.target)}"
            f"</title></rect><text x='{x0 + 3:.1f}' y='{top + 12}' fill='#b3261e'>"
            f"{escape(f.action)} {escape(f.target)}</text>"
        )
    parts.append(
        f"<line x1='{left}' y1='{top + ph}' x2='{left + pw}' y2='{top + ph}' stroke='#888'/>"
        f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + ph}' stroke='#888'/>"
    )
    for i in range(5):
        v = y_max * i / 4
        parts.append(f"<text x='{left - 6}' y='{y(v) + 4:.1f}' text-anchor='end'>{v:.0f}</text>")
        t = t_max * i / 4
        parts.append(
            f"<text x='{x(t):.1f}' y='{top + ph + 16}' text-anchor='middle'>{t:.1f}s</text>"
        )
    parts.append(f"<text x='{left}' y='{height - 4}'>lag (messages) over time</text>")
    for n, (name, pts) in enumerate(sorted(series.items())):
        color = _COLORS[n % len(_COLORS)]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        parts.append(
            f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{coords}'>"
            f"<title>{escape(name)}</title></polyline>"
            f"<text x='{left + pw - 4}' y='{top + 14 + 14 * n}' text-anchor='end' "
            f"fill='{color}'>{escape(name)}</text>"
        )
    if not series:
        parts.append(f"<text x='{left + 10}' y='{top + ph / 2}'>no lag samples</text>")
    parts.append("</svg>")
    return "".join(parts)


def to_html(j: Journal) -> str:
    """Render one journal as a self-contained HTML page."""
    meta = [
        ("run id", j.run_id),
        ("scenario file", j.scenario_file or ""),
        ("started", j.started_at),
        ("duration", f"{j.duration_s:.2f} s"),
        ("backend", f"{j.backend} ({j.backend_reason})"),
        ("nats-server", j.nats_server_version),
        ("recovery time", "" if j.recovery_s is None else f"{j.recovery_s:.2f} s"),
    ]
    meta_rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in meta)
    timeline = "".join(
        f"<tr><td>{e.started_s:.3f}</td><td>{'' if e.ended_s is None else f'{e.ended_s:.3f}'}"
        f"</td><td>{escape(e.kind)}</td>"
        f"<td>{escape(e.name)}{f' [{escape(e.step)}]' if e.step else ''}</td>"
        f"<td class='{'pass' if e.ok else 'fail'}'>{'ok' if e.ok else 'failed'}</td>"
        f"<td>{escape(e.detail)}</td></tr>"
        for e in j.timeline
    )
    faults = "".join(
        f"<tr><td>{escape(f.action)}</td><td>{escape(f.target)}</td><td>{f.applied_s:.3f}</td>"
        f"<td>{'' if f.removed_s is None else f'{f.removed_s:.3f}'}</td>"
        f"<td>{escape(f.detail)}</td></tr>"
        for f in j.faults
    )
    delivery = ""
    if j.delivery is not None:
        d = j.delivery.model_dump(exclude={"lost_ids", "duplicated_ids", "unexpected_ids"})
        delivery = "<h2>Delivery</h2><table><tr>" + "".join(
            f"<th>{escape(k)}</th>" for k in d
        ) + "</tr><tr>" + "".join(f"<td>{v}</td>" for v in d.values()) + "</tr></table>"
    codes = "".join(
        f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in sorted(j.registrar_counts.items())
    )
    error = f"<h2>Error</h2><pre>{escape(j.error)}</pre>" if j.error else ""
    failed = j.failed_checks()
    why = (
        "<ul>" + "".join(f"<li>{escape(c.summary())}</li>" for c in failed) + "</ul>"
        if failed
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>qiki-harness: {escape(j.scenario)}</title>
<style>{_CSS}</style></head><body>
<h1>{escape(j.scenario)} <span class="verdict {j.verdict}">{j.verdict.upper()}</span></h1>
<p>{escape(j.description)}</p>{why}{error}
<table class="meta">{meta_rows}</table>
<h2>Lag over time</h2>{lag_chart_svg(j)}
{_checks_table("Steady state (before)", j.steady_state_before)}
{_checks_table("Checks", j.checks)}
{_checks_table("Steady state (after)", j.steady_state_after)}
{delivery}
<h2>Faults</h2><table><tr><th>action</th><th>target</th><th>applied (s)</th><th>removed (s)</th>
<th>detail</th></tr>{faults}</table>
<h2>Timeline</h2><table><tr><th>start (s)</th><th>end (s)</th><th>kind</th><th>step</th>
<th></th><th>detail</th></tr>{timeline}</table>
<h2>Registrar codes</h2><table><tr><th>code</th><th>count</th></tr>{codes}</table>
</body></html>
"""


def write_html(j: Journal, path: Path) -> Path:
    """Write :func:`to_html` output to ``path``."""
    path.write_text(to_html(j), encoding="utf-8")
    return path
