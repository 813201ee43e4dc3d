"""CTRF JSON (Common Test Report Format): the test results CI reporters read, next to JUnit.

One document per run directory (``ctrf.json``, a test per check, as in ``junit.xml``) and one
per pytest session (``--qiki-ctrf PATH``). Shape: ``{"reportFormat": "CTRF", "specVersion",
"results": {"tool", "summary", "tests"}}``; statuses ``passed | failed | skipped | pending |
other``; times in milliseconds.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.report.journal import Journal

SPEC_VERSION = "0.0.0"
STATUSES = ("passed", "failed", "skipped", "pending", "other")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qiki-harness")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def document(tool: str, tests: Sequence[dict[str, Any]], start_ms: int, stop_ms: int,
             *, extra: dict[str, Any] | None = None, suites: int | None = None) -> dict[str, Any]:
    """A CTRF document around ``tests`` (each with at least name, status, duration)."""
    for t in tests:
        if t.get("status") not in STATUSES:
            raise ValueError(f"CTRF test {t.get('name')!r}: status {t.get('status')!r} is not "
                             f"one of {', '.join(STATUSES)}")
    counts = Counter(t["status"] for t in tests)
    summary: dict[str, Any] = {"tests": len(tests), **{s: counts.get(s, 0) for s in STATUSES},
                               "start": start_ms, "stop": stop_ms,
                               "duration": max(0, stop_ms - start_ms)}
    if suites is not None:
        summary["suites"] = suites
    doc: dict[str, Any] = {
        "reportFormat": "CTRF",
        "specVersion": SPEC_VERSION,
        "reportId": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "generatedBy": "qiki-harness",
        "results": {"tool": {"name": tool, "version": _version()}, "summary": summary,
                    "tests": list(tests)},
    }
    if extra:
        doc["results"]["extra"] = extra
    return doc


def _start_ms(j: Journal) -> int:
    try:
        return int(datetime.fromisoformat(j.started_at).timestamp() * 1000)
    except ValueError:
        return 0


def to_ctrf(journals: Sequence[Journal]) -> dict[str, Any]:
    """Every check of every journal as a CTRF test; a run that errored is one failed
    ``setup`` test carrying the error (as in the JUnit output)."""
    tests: list[dict[str, Any]] = []
    starts, stops = [], []
    for j in journals:
        start = _start_ms(j)
        stop = start + int(j.duration_s * 1000)
        starts.append(start)
        stops.append(stop)
        suite = f"qiki-harness.{j.scenario}"
        common = {"filePath": j.scenario_file or "", "type": "scenario",
                  "extra": {"run_id": j.run_id, "backend": j.backend}}
        if j.verdict == "error":
            tests.append({"name": f"{j.scenario} setup", "status": "failed", "duration": 0,
                          "suite": [suite, "setup"], "message": (j.error or "error")[:2000],
                          **common})
        for phase, checks in (("steady_state.before", j.steady_state_before),
                              ("checks", j.checks),
                              ("steady_state.after", j.steady_state_after)):
            for c in checks:
                t: dict[str, Any] = {"name": f"{j.scenario} {phase} {c.name}",
                                     "status": "passed" if c.passed else "failed",
                                     "duration": 0, "suite": [suite, phase], **common}
                if not c.passed:
                    t["message"] = c.summary()[:2000]
                    t["trace"] = "\n".join(c.details)
                tests.append(t)
    return document("qiki-harness", tests, min(starts, default=0), max(stops, default=0),
                    suites=len(journals),
                    extra={"verdicts": {j.run_id: j.verdict for j in journals}})


def write_ctrf(journals: Sequence[Journal], path: Path) -> Path:
    """Write :func:`to_ctrf` output to ``path`` as indented JSON."""
    path.write_text(json.dumps(to_ctrf(journals), indent=2), encoding="utf-8")
    return path


class PytestCtrf:
    """A pytest plugin object writing a CTRF document for the session (``--qiki-ctrf``).

    One test per test item: the call phase's outcome, or a failed/errored setup or teardown
    (status ``failed``, ``rawStatus`` says which phase). Under pytest-xdist only the
    controller registers it: workers' reports reach the controller's hooks.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tests: dict[str, dict[str, Any]] = {}
        self.start_ms = int(datetime.now(UTC).timestamp() * 1000)

    def pytest_runtest_logreport(self, report: Any) -> None:
        """Fold each phase's report into its test's entry."""
        t = self.tests.setdefault(report.nodeid, {
            "name": report.nodeid, "status": "other", "duration": 0,
            "filePath": str(report.location[0]) if report.location else "",
            "suite": [report.nodeid.split("::")[0] or "session"]})
        t["duration"] += round(getattr(report, "duration", 0.0) * 1000)
        if report.when == "call" or report.skipped:
            if report.skipped:
                t["status"] = "skipped"
                if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
                    t["message"] = str(report.longrepr[2])
            elif report.passed:
                t["status"] = "passed"
            else:
                t["status"] = "failed"
        if report.failed:
            t["status"] = "failed"
            if report.when != "call":
                t["rawStatus"] = f"error in {report.when}"
            text = str(report.longrepr or "")
            t["message"] = text.strip().splitlines()[-1][:2000] if text.strip() else "failed"
            t["trace"] = text[-20000:]
        elif report.when == "setup" and report.passed and t["status"] == "other":
            t["status"] = "pending"  # until the call phase reports

    def pytest_sessionfinish(self, session: Any, exitstatus: int) -> None:
        """Write the document once the session is over."""
        stop = int(datetime.now(UTC).timestamp() * 1000)
        tests = [{**t, "status": "other" if t["status"] == "pending" else t["status"]}
                 for t in self.tests.values()]
        doc = document("pytest", tests, self.start_ms, stop,
                       extra={"exitstatus": int(exitstatus)})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
