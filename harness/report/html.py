"""Self-contained HTML report: verdict, recovery figures, availability and latency over time,
lag, checks (failed first), faults, timeline, registrar codes with names, links to the logs.

Rendered from Jinja2 templates shipped in ``harness/report/templates`` (package data), so a
reader can change the page without reading Python. No CDN, no scripts: charts are inline SVG
so the file opens anywhere, including CI artifact viewers that block scripts.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.checks.result import CheckResult
from harness.report.charts import availability_chart, lag_chart, latency_chart
from harness.report.journal import Journal

if TYPE_CHECKING:
    import jinja2

#: files of a run dir the report links to (logs, stores, machine-readable outputs)
_LINKED_SUFFIXES = {".log", ".txt", ".json", ".xml", ".db", ".jsonl", ".yaml", ".csv"}
_MAX_LINKS = 200


@cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment over the shipped templates (autoescaping on)."""
    import jinja2  # imported here: the load injector imports this package's siblings

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["blank"] = lambda v: "" if v is None else v
    return env


def run_files(run_dir: Path) -> list[str]:
    """Relative paths of the logs and outputs in ``run_dir`` the report links to."""
    out: list[str] = []
    if not run_dir.is_dir():
        return out
    for p in sorted(run_dir.rglob("*")):
        if len(out) >= _MAX_LINKS:
            break
        rel = p.relative_to(run_dir)
        if (p.is_file() and p.suffix in _LINKED_SUFFIXES and len(rel.parts) <= 3
                and rel.name != "report.html" and rel.parts[0] != "secrets"):
            out.append(rel.as_posix())
    return out


def _code_rows(j: Journal) -> list[tuple[str, str, str, int]]:
    rows = []
    for code, count in sorted(j.registrar_counts.items(), key=lambda kv: (len(kv[0]), kv[0])):
        info = j.code_names.get(code, {})
        cls = info.get("class", "")
        if code.isdigit():
            cls = f"{code[0]}xx {cls}".strip()
        rows.append((code, info.get("name", ""), cls, count))
    return rows


def _meta(j: Journal) -> list[tuple[str, str]]:
    return [
        ("run id", j.run_id),
        ("scenario file", j.scenario_file or ""),
        ("started", j.started_at),
        ("duration", f"{j.duration_s:.2f} s"),
        ("backend", f"{j.backend} ({j.backend_reason})"),
        ("nats-server", j.nats_server_version),
    ]


def _failed_first(checks: list[CheckResult]) -> list[CheckResult]:
    return sorted(checks, key=lambda c: c.passed)


def to_html(j: Journal, *, files: list[str] | None = None) -> str:
    """Render one journal as a self-contained HTML page; ``files`` are run-dir relative
    paths to link (see :func:`run_files`)."""
    delivery: dict[str, Any] | None = None
    if j.delivery is not None:
        delivery = j.delivery.model_dump(
            exclude={"lost_ids", "duplicated_ids", "unexpected_ids"})
    return environment().get_template("report.html.j2").render(
        j=j,
        meta=_meta(j),
        failed=j.failed_checks(),
        checks_sorted=_failed_first(j.checks),
        availability=availability_chart(j),
        latency=latency_chart(j),
        lag=lag_chart(j),
        delivery=delivery,
        codes=_code_rows(j),
        logs=files or [],
    )


def write_html(j: Journal, path: Path) -> Path:
    """Write :func:`to_html` output to ``path``, linking the files of its directory."""
    path.write_text(to_html(j, files=run_files(path.parent)), encoding="utf-8")
    return path
