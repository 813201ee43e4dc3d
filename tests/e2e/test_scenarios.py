"""Every shipped scenario has a broken variant that must fail, naming the check and why.

The shipped scenarios themselves run as collected items (``pytest scenarios/``); here each
one is changed in a single place that makes it impossible to pass, and the journal must say
exactly which check failed and why: the checks can fail, and they fail for the right reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.report.journal import Journal

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

# (scenario, (old, new) text edit, failing check, expected detail fragment)
VARIANTS = [
    pytest.param(
        "smoke",
        # a lag threshold of 0, with the registrar frozen for a moment so lag is certain
        ("  - lag: {max: 500}", "  - lag: {max: 0}"),
        "lag.max", "> 0 at t=",
        id="smoke-lag-threshold-0",
    ),
    pytest.param(
        "registrar-restart",
        ("counts: {101: {min: 2}}", "counts: {101: {min: 2}}\n      includes: [802]"),
        "registrar.codes", "code 802 expected but never recorded",
        id="registrar-restart-code-never-comes",
    ),
    pytest.param(
        "broker-restart",
        ("includes: [411, 410, 910, 911]", "includes: [411, 410, 910, 911]\n      excludes: [411]"),
        "registrar.codes", "code 411 excluded but recorded",
        id="broker-restart-excluded-code-occurs",
    ),
    pytest.param(
        "slow-consumer",
        ("includes: [702, 701]", "includes: [702, 701]\n      excludes: [702]"),
        "registrar.codes", "code 702 excluded but recorded",
        id="slow-consumer-excluded-code-occurs",
    ),
    pytest.param(
        "malformed-events",
        ("924: {min: 10, max: 10}", "924: {min: 11, max: 11}"),
        "registrar.codes", "code 924 recorded 10 time(s), expected at least 11",
        id="malformed-events-count-never-reached",
    ),
    pytest.param(
        "load-sla",
        ("puback_p99_ms: 1000", "puback_p99_ms: 0.001"),
        "load.gates", "FAIL puback_p99_ms",
        id="load-sla-impossible-gate",
    ),
]

SMOKE_PAUSE = (
    "  - load: {at_s: 0, duration_s: 2, rate_per_s: 200}",
    "  - load: {at_s: 0, duration_s: 2, rate_per_s: 200}\n"
    "  - fault: {at_s: 0.5, duration_s: 1, action: pause, target: \"service:registrar\"}",
)


@pytest.mark.parametrize(("name", "edit", "check", "why"), VARIANTS)
def test_broken_variant_fails_for_the_right_reason(
    scenario_runner: Callable[..., Journal],
    name: str,
    edit: tuple[str, str],
    check: str,
    why: str,
) -> None:
    text = (SCENARIOS / f"{name}.yaml").read_text()
    assert edit[0] in text, f"{name}.yaml changed: update this test's edit"
    text = text.replace(*edit)
    if name == "smoke":
        assert SMOKE_PAUSE[0] in text
        text = text.replace(*SMOKE_PAUSE)
    journal = scenario_runner(text, backend="process")
    assert journal.verdict == "failed", journal.error
    assert journal.exit_code == 1
    failed = journal.failed_checks()
    assert [c.name for c in failed] == [check], [c.summary() for c in failed]
    assert any(why in d for d in failed[0].details), failed[0].details
