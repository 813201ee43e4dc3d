"""JUnit XML for CI systems: one testsuite per scenario, one testcase per check."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.report.journal import Journal


def to_junit(journals: list[Journal]) -> str:
    """Render journals as a JUnit XML document (``testsuites`` root)."""
    root = ET.Element("testsuites")
    for j in journals:
        cases = [
            *(("steady_state.before", c) for c in j.steady_state_before),
            *(("checks", c) for c in j.checks),
            *(("steady_state.after", c) for c in j.steady_state_after),
        ]
        failures = sum(1 for _, c in cases if not c.passed)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"qiki-harness.{j.scenario}",
            tests=str(max(len(cases), 1)),
            failures=str(failures),
            errors="1" if j.verdict == "error" else "0",
            time=f"{j.duration_s:.3f}",
            timestamp=j.started_at,
        )
        props = ET.SubElement(suite, "properties")
        for key, val in (("backend", j.backend), ("nats_server_version", j.nats_server_version),
                         ("run_id", j.run_id), ("verdict", j.verdict)):
            ET.SubElement(props, "property", name=key, value=val)
        if j.verdict == "error":
            case = ET.SubElement(suite, "testcase", classname=j.scenario, name="setup")
            err = ET.SubElement(case, "error", message=(j.error or "error")[:500])
            err.text = j.error or ""
        for phase, check in cases:
            case = ET.SubElement(
                suite, "testcase", classname=f"{j.scenario}.{phase}", name=check.name
            )
            if not check.passed:
                fail = ET.SubElement(case, "failure", message=check.summary()[:500])
                fail.text = "\n".join(check.details)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def write_junit(journals: list[Journal], path: Path) -> Path:
    """Write :func:`to_junit` output to ``path``."""
    path.write_text(to_junit(journals), encoding="utf-8")
    return path
