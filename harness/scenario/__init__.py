"""Scenarios: the typed model, the loader (errors with file, key path, line) and the runner.

    from harness.scenario import load_scenario, run_scenario, RunOptions

    journal = run_scenario(load_scenario("scenarios/smoke.yaml"))
    assert journal.verdict == "passed"
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from harness.scenario.loader import ScenarioError, load_scenario, parse_scenario
from harness.scenario.model import Scenario, Topology

# The runner imports the platform, which imports the model: resolved on first use, so
# importing the model never drags the runner in (and never cycles).
_RUNNER_NAMES = ("RunOptions", "ScenarioRunner", "run_scenario")

__all__ = [
    "RunOptions",
    "Scenario",
    "ScenarioError",
    "ScenarioRunner",
    "Topology",
    "load_scenario",
    "parse_scenario",
    "run_scenario",
]


def __getattr__(name: str) -> Any:
    if name in _RUNNER_NAMES:
        return getattr(import_module("harness.scenario.runner"), name)
    raise AttributeError(f"module 'harness.scenario' has no attribute {name!r}")
