"""Run outputs: journal.json, report.html, junit.xml."""

from harness.report.html import to_html, write_html
from harness.report.journal import EXIT_CODES, FaultEntry, Journal, LagPoint, TimelineEntry
from harness.report.junit import to_junit, write_junit

__all__ = [
    "EXIT_CODES",
    "FaultEntry",
    "Journal",
    "LagPoint",
    "TimelineEntry",
    "to_html",
    "to_junit",
    "write_html",
    "write_junit",
]
