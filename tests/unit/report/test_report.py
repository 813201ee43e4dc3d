"""Journal round trip, JUnit structure, self-contained HTML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.checks.result import CheckResult
from harness.report import FaultEntry, Journal, LagPoint, TimelineEntry, to_html, to_junit


def journal(verdict: str = "failed") -> Journal:
    return Journal(
        run_id="r1", scenario="demo", verdict=verdict,  # type: ignore[arg-type]
        duration_s=3.5, backend="process", backend_reason="requested",
        timeline=[TimelineEntry(kind="fault", name="kill broker", started_s=1, ended_s=2)],
        faults=[FaultEntry(action="kill", target="broker", applied_s=1.0, removed_s=2.0)],
        checks=[
            CheckResult(name="lag.max", kind="lag", passed=True, expected=1, observed=0),
            CheckResult(name="delivery", kind="delivery", passed=False, expected={"lost": 0},
                        observed={"lost": 2}, details=["lost 2 acked message(s) <x>"]),
        ],
        lag_samples=[LagPoint(t=0.5, stream="S", consumer="c", lag=3),
                     LagPoint(t=1.5, stream="S", consumer="c", lag=40)],
    )


def test_journal_round_trip(tmp_path: Path) -> None:
    j = journal()
    back = Journal.read(j.write(tmp_path / "journal.json"))
    assert back == j
    assert back.exit_code == 1
    assert [c.name for c in back.failed_checks()] == ["delivery"]


def test_junit_counts_failures() -> None:
    root = ET.fromstring(to_junit([journal()]))
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failure = root.find(".//testcase[@name='delivery']/failure")
    assert failure is not None and "lost 2" in (failure.text or "")


def test_junit_error_verdict_has_error_case() -> None:
    j = Journal(run_id="r", scenario="s", verdict="error", error="broker did not start")
    root = ET.fromstring(to_junit([j]))
    err = root.find(".//testcase[@name='setup']/error")
    assert err is not None and err.get("message") == "broker did not start"


def test_html_is_self_contained_and_escaped() -> None:
    page = to_html(journal())
    assert "FAILED" in page and "<svg" in page and "polyline" in page
    assert "kill broker" in page  # the fault band label over the chart
    assert "&lt;x&gt;" in page and "<x>" not in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_html_timeline_names_the_step_and_journal_keeps_what_was_published() -> None:
    from harness.report.journal import PublishedRecord

    j = Journal(run_id="r", scenario="s",
                timeline=[TimelineEntry(kind="fault", name="kill service:gh", started_s=1.0,
                                        step="kill-gh")],
                published=[PublishedRecord(step="p", subject="a.b", sent=3, acked=2,
                                           started_s=0.1, ended_s=0.2)])
    assert "kill service:gh [kill-gh]" in to_html(j)
    again = Journal.model_validate_json(j.model_dump_json())
    assert again.published[0].acked == 2 and again.timeline[0].step == "kill-gh"


def test_the_error_wraps_instead_of_scrolling_sideways() -> None:
    """An interrupted run's error is one long line; the report shows it whole (wrapped)."""
    j = Journal(run_id="r", scenario="s", verdict="error",
                error="interrupted during method (t=3.1s of 6s; running: load 300/s)" * 5)
    html = to_html(j)
    assert '<pre class="errmsg">interrupted during method' in html
    assert "pre.errmsg{white-space:pre-wrap" in html
