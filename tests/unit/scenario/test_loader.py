"""Scenario files: valid ones load, every kind of mistake is named with path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.scenario.loader import ScenarioError, load_scenario, parse_scenario
from harness.scenario.model import FaultStep, LoadStep, step_body

REPO = Path(__file__).resolve().parents[3]

GOOD = """\
name: demo
markers: [chaos]
topology:
  broker: {backend: process, nodes: 1}
  services:
    registrar: {}
    lagmon: {thresholds: {registrar-events: 100}}
method:
  - load: {at_s: 0, duration_s: 3, rate_per_s: 200}
  - fault: {at_s: 1, duration_s: 1, action: kill, target: broker}
checks:
  - delivery: {}
  - lag_recovery: {threshold: 10, within_s: 5}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    assert isinstance(info.value, ConfigError)
    assert str(info.value).startswith("s.yaml: invalid scenario")
    return info.value.problems


def test_good_scenario_loads() -> None:
    s = parse_scenario(GOOD)
    assert s.name == "demo" and s.markers == ["chaos"]
    load, fault = (step_body(e) for e in s.method)
    assert isinstance(load, LoadStep) and load.rate_per_s == 200
    assert isinstance(fault, FaultStep) and fault.end_s() == 2
    assert s.duration_s() == 3


@pytest.mark.parametrize("path", sorted((REPO / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_are_valid(path: Path) -> None:
    assert load_scenario(path).name


def test_typo_in_key_names_path_and_line() -> None:
    text = GOOD.replace("rate_per_s: 200", "rate_per_sec: 200")
    probs = problems_of(text)
    assert "method[0].load.rate_per_sec (line 9): unknown key" in probs[-1]
    assert any(p.startswith("method[0].load.rate_per_s (line 9): required key") for p in probs)


def test_wrong_type_shows_value() -> None:
    probs = problems_of(GOOD.replace("nodes: 1", "nodes: two"))
    assert probs == [
        "topology.broker.nodes (line 4): Input should be 1 or 3 (got 'two')"
    ]


def test_unknown_step_kind() -> None:
    probs = problems_of(GOOD.replace("- fault:", "- faulty:"))
    assert probs[0].startswith("method[1] (line 10): a step is one of load, fault")


def test_bad_target_and_missing_duration() -> None:
    text = GOOD.replace("{at_s: 1, duration_s: 1, action: kill, target: broker}",
                        "{at_s: 1, action: pause, target: brokr}")
    probs = problems_of(text)
    assert any("method[1].fault.target (line 10)" in p and "unknown target 'brokr'" in p
               for p in probs)


def test_link_fault_needs_proxied_service() -> None:
    text = GOOD.replace(
        "{at_s: 1, duration_s: 1, action: kill, target: broker}",
        "{at_s: 1, duration_s: 1, action: latency, latency_ms: 100, target: link:registrar}",
    )
    probs = problems_of(text)
    assert "topology.services.registrar.proxied: true" in probs[0]


def test_duplicate_key_and_every_problem_at_once() -> None:
    probs = problems_of(GOOD + "name: again\n")
    assert probs == ["name (line 14): duplicate key"]


def test_broken_yaml_names_line() -> None:
    probs = problems_of("name: x\nmethod: [\n")
    assert probs[0].startswith("line 3, column 1: not valid YAML")


def test_not_a_mapping() -> None:
    assert "expected a mapping" in problems_of("- a\n- b\n")[0]


def test_missing_file() -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario("/nonexistent/x.yaml")
    assert "cannot read file" in info.value.problems[0]


def test_delivery_needs_load() -> None:
    text = "name: x\nchecks:\n  - delivery: {}\n"
    assert "needs at least one load step" in problems_of(text)[0]
