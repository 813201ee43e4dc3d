"""CTRF documents, the run-history index, and what the HTML report shows of the journal."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.checks.result import CheckResult
from harness.report import FaultEntry, Journal, to_html
from harness.report.charts import availability_chart, lag_chart
from harness.report.ctrf import STATUSES, document, to_ctrf
from harness.report.history import collect, row_of, write_index
from harness.report.journal import (
    Availability,
    IntervalPoint,
    OutageWindow,
    RecoveryFigure,
)


def chaos_journal(run_id: str = "r1", verdict: str = "failed", p99: float = 250.0) -> Journal:
    return Journal(
        run_id=run_id, scenario="chaos", verdict=verdict,  # type: ignore[arg-type]
        started_at="2026-11-27T10:00:00+00:00", duration_s=20.0, backend="process",
        faults=[FaultEntry(action="kill", target="stream-leader", applied_s=5, removed_s=9),
                FaultEntry(action="pause", target="meta-leader", applied_s=6, removed_s=10)],
        availability=Availability(
            interval_s=1.0,
            points=[IntervalPoint(t=float(t), acked=0 if 5 <= t < 10 else 300,
                                  failed=40 if 5 <= t < 10 else 0,
                                  p50_ms=None if 5 <= t < 10 else 3.0,
                                  p99_ms=None if 5 <= t < 10 else p99)
                    for t in range(20)],
            outages=[OutageWindow(start_s=5.0, end_s=10.2, threshold_s=1.0)]),
        recoveries=[
            RecoveryFigure(kind="write", label="write recovery (first PubAck after the heal)",
                           reference_s=10.0, reference="last fault healed at t=10.00s",
                           value_s=0.2),
            RecoveryFigure(kind="lag", label="lag recovery (every consumer lag <= 1000)",
                           reference_s=10.0, reference="last fault healed at t=10.00s",
                           threshold=1000, value_s=4.06, check="lag.recovery")],
        checks=[CheckResult(name="lag.recovery", kind="lag", passed=True,
                            expected={"threshold": 1000}, observed={"recovery_s": 4.06}),
                CheckResult(name="delivery", kind="delivery", passed=False,
                            expected={"lost": 0}, observed={"lost": 3},
                            details=["lost 3 acked message(s)"])],
        registrar_counts={"101": 1, "910": 2, "999": 1},
        code_names={"101": {"name": "BOOT_OK", "class": "boot"},
                    "910": {"name": "SERVICE_DOWN", "class": "critical"}},
    )


def test_ctrf_document_shape_and_counts() -> None:
    doc = to_ctrf([chaos_journal(), Journal(run_id="e", scenario="s", verdict="error",
                                            error="broker did not start")])
    assert doc["reportFormat"] == "CTRF" and re.fullmatch(r"\d+\.\d+\.\d+", doc["specVersion"])
    res = doc["results"]
    assert res["tool"]["name"] == "qiki-harness"
    assert set(res["summary"]) >= {"tests", *STATUSES, "start", "stop"}
    assert res["summary"]["tests"] == 3 and res["summary"]["failed"] == 2
    failed = [t for t in res["tests"] if t["status"] == "failed"]
    assert {t["name"] for t in failed} == {"chaos checks delivery", "s setup"}
    assert all(isinstance(t["duration"], int) and t["suite"] for t in res["tests"])
    assert "lost 3" in next(t for t in failed if "delivery" in t["name"])["trace"]
    json.dumps(doc)


def test_ctrf_rejects_unknown_status() -> None:
    with pytest.raises(ValueError, match="status 'ok'"):
        document("x", [{"name": "a", "status": "ok", "duration": 0}], 0, 0)


def test_report_header_checks_and_journal_agree_on_recovery() -> None:
    j = chaos_journal()
    page = to_html(j)
    # each figure carries its definition: threshold and reference point
    assert "lag recovery (every consumer lag &lt;= 1000)" in page
    assert "4.06 s after last fault healed at t=10.00s (check lag.recovery)" in page
    assert "write recovery (first PubAck after the heal)" in page and "0.20 s" in page
    # failed checks first, with their why; codes with names and class
    assert page.index("Failed checks") < page.index("Availability and latency")
    assert "lost 3 acked message(s)" in page
    assert re.search(r"<td>910</td><td>SERVICE_DOWN</td><td>9xx critical</td>", page)
    assert re.search(r"<td>999</td><td></td><td>9xx</td>", page)
    assert "<script" not in page and "http" not in page
    # the outage window is listed with its duration
    assert "<td class=\"num\">5.20</td>" in page


def test_charts_name_every_series_and_put_faults_in_lanes() -> None:
    j = chaos_journal()
    av = availability_chart(j)
    assert av is not None
    assert [s.name for s in av.series] == ["acked publishes per 1s", "failed publishes per 1s"]
    fault_bands = [b for b in av.bands if b.label]
    assert len({b.lane_y for b in fault_bands}) == 2, "overlapping faults get their own lanes"
    assert any(not b.label and "5.20s without a PubAck" in b.title for b in av.bands)
    labels = [lab for _, lab in av.y_ticks]
    assert len(labels) == len(set(labels))
    lag = lag_chart(j)
    assert lag.empty == "no lag samples"
    assert [m.label for m in lag.markers] == [
        "lag recovery (every consumer lag <= 1000): 4.06s after last fault healed at t=10.00s"]


def _run(root: Path, j: Journal) -> Path:
    d = root / j.run_id
    d.mkdir()
    j.write(d / "journal.json")
    (d / "report.html").write_text("<html></html>")
    return d


def test_index_lists_every_run_and_broken_journals(tmp_path: Path) -> None:
    _run(tmp_path, chaos_journal("a-run", "passed", p99=100))
    _run(tmp_path, chaos_journal("b-run", "failed", p99=300))
    truncated = _run(tmp_path, chaos_journal("c-run"))
    text = (truncated / "journal.json").read_text()
    (truncated / "journal.json").write_text(text[: len(text) // 2])
    (tmp_path / "d-run").mkdir()
    (tmp_path / "d-run" / "logs").mkdir()
    (tmp_path / "not-a-run").mkdir()
    rows = {r.run_dir: r for r in collect(tmp_path)}
    assert set(rows) == {"a-run", "b-run", "c-run", "d-run"}
    assert rows["c-run"].verdict == "broken" and "unreadable" in rows["c-run"].problem
    assert rows["c-run"].scenario == "chaos"  # read from what is left of the file
    assert rows["d-run"].verdict == "broken" and "no journal.json" in rows["d-run"].problem
    assert rows["b-run"].pub_p99_ms == 300 and rows["b-run"].outage_s == 5.2
    assert rows["b-run"].recovery_s == 4.06
    page = write_index(tmp_path).read_text()
    assert 'href="a-run/report.html"' in page and "polyline" in page
    assert page.count("<tr class=\"run") == 4
    assert row_of(tmp_path / "not-a-run").verdict == "broken"
