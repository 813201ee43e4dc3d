"""Services of a platform: the catalog of reference definitions, user-service placeholders,
readiness probes, and the objects that start and signal them.

    from harness.services import REFERENCE_SERVICES, PLACEHOLDERS, ServiceLauncher

A name in :data:`REFERENCE_SERVICES` is a reference service (registrar, lagmon, radar_sim);
any other name under ``topology.services`` is a user service.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from harness.services.catalog import REFERENCE_SERVICES, ReferenceService, reference_service
from harness.services.placeholders import PLACEHOLDERS, expand

# The runtime imports process and proxy machinery: resolved on first use, so the scenario
# model can consult the catalog without dragging it in.
_RUNTIME_NAMES = ("ServiceLauncher", "ServiceProcess")

__all__ = [
    "PLACEHOLDERS",
    "REFERENCE_SERVICES",
    "ReferenceService",
    "ServiceLauncher",
    "ServiceProcess",
    "expand",
    "reference_service",
]


def __getattr__(name: str) -> Any:
    if name in _RUNTIME_NAMES:
        return getattr(import_module("harness.services.runtime"), name)
    raise AttributeError(f"module 'harness.services' has no attribute {name!r}")
