"""qiki-harness: chaos and smoke testing for NATS JetStream microservices.

The public surface is this package and its concern packages (``harness.broker``,
``harness.faults``, ``harness.load``, ``harness.checks``, ``harness.scenario``,
``harness.report``); everything else may change. Importing ``harness`` loads nothing heavy:
the names below are resolved on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from harness.errors import ConfigError, HarnessError, SetupError

__version__ = "0.1.0"

_LAZY = {
    "Journal": "harness.report",
    "Platform": "harness.platform",
    "RunOptions": "harness.scenario",
    "Scenario": "harness.scenario",
    "load_scenario": "harness.scenario",
    "open_broker": "harness.broker",
    "run_scenario": "harness.scenario",
}

__all__ = ["ConfigError", "HarnessError", "SetupError", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    return getattr(import_module(module), name)
