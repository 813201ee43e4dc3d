"""Faults that collide on one target (issue 11 §5): statically known overlaps are refused
when the file is read; crash-loop steps are checked at once."""

from __future__ import annotations

import pytest

from harness.scenario.loader import ScenarioError, parse_scenario
from harness.scenario.model import FaultStep, step_body

BASE = """\
name: demo
topology:
  services:
    registrar: {proxied: true}
method:
  - load: {at_s: 0, duration_s: 20, rate_per_s: 100}
FAULTS
checks:
  - delivery: {}
"""


def _load(faults: str) -> list[FaultStep]:
    sc = parse_scenario(BASE.replace("FAULTS", faults), "s.yaml")
    return [s for s in map(step_body, sc.method) if isinstance(s, FaultStep)]


def _problems(faults: str) -> str:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(BASE.replace("FAULTS", faults), "s.yaml")
    return "\n".join(exc.value.problems)


def test_overlapping_process_faults_on_one_target_are_refused() -> None:
    text = _problems(
        '  - fault: {at_s: 1, action: pause, target: "service:registrar", duration_s: 5}\n'
        '  - fault: {at_s: 3, action: kill, target: "service:registrar", duration_s: 1}\n')
    assert ("method[2].fault.at_s (line 8): kill service:registrar at 3 s comes while "
            "method[1]") in text
    assert "start it at or after 6 s" in text and "crash-loop" in text
    # broker and broker:n1 are one node; broker:all holds them all
    assert "still holds it" in _problems(
        "  - fault: {at_s: 1, action: pause, target: broker, duration_s: 2}\n"
        '  - fault: {at_s: 2, action: kill, target: "broker:n1"}\n')


def test_back_to_back_and_other_targets_are_fine() -> None:
    faults = _load(
        '  - fault: {at_s: 1, action: pause-kill, target: "service:registrar", duration_s: 1}\n'
        '  - fault: {at_s: 2, action: pause-kill, target: "service:registrar", duration_s: 1}\n'
        '  - fault: {at_s: 1, action: latency, target: "link:registrar", duration_s: 9, '
        'latency_ms: 1500}\n'
        "  - fault: {at_s: 1.5, action: kill, target: broker, duration_s: 1}\n")
    assert len(faults) == 4


def test_crash_loop_loads_and_spans_its_crashes() -> None:
    [loop] = _load('  - fault: {at_s: 1, action: crash-loop, target: "service:registrar", '
                   "every_s: 3, count: 6, duration_s: 1, crash: pause-kill}\n")
    assert loop.end_s() == 1 + 5 * 3 + 1
    [loop] = _load('  - fault: {at_s: 1, action: crash-loop, target: "service:registrar", '
                   "every_s: 2, for_s: 9}\n")
    assert loop.end_s() == 10 and loop.crash == "kill"


@pytest.mark.parametrize(("fault", "says"), [
    ("{at_s: 1, action: crash-loop, target: 'service:registrar', count: 3}",
     "needs every_s and exactly one of count"),
    ("{at_s: 1, action: crash-loop, target: 'service:registrar', every_s: 1, count: 3, "
     "for_s: 5}", "exactly one of count"),
    ("{at_s: 1, action: crash-loop, target: 'service:registrar', every_s: 1, count: 3, "
     "duration_s: 1}", "must be shorter than every_s"),
    ("{at_s: 1, action: crash-loop, target: 'link:registrar', every_s: 1, count: 3}",
     "service:NAME and broker node targets"),
    ("{at_s: 1, action: kill, target: 'service:registrar', every_s: 1}",
     "are for action 'crash-loop'"),
    ("{at_s: 1, action: crash-loop, target: 'service:registrar', every_s: 1, count: 3, "
     "crash: explode}", "crash"),
])
def test_crash_loop_mistakes_are_named(fault: str, says: str) -> None:
    assert says in _problems(f"  - fault: {fault}\n")


def test_a_crash_loop_overlapping_another_fault_is_refused() -> None:
    assert "still holds it" in _problems(
        '  - fault: {at_s: 1, action: crash-loop, target: "service:registrar", every_s: 3, '
        "count: 3}\n"
        '  - fault: {at_s: 4, action: pause, target: "service:registrar", duration_s: 1}\n')
