"""pytest plugin of qiki-harness (entry point ``pytest11``): markers, fixtures, scenarios."""

from __future__ import annotations

import pytest

MARKERS: dict[str, str] = {
    "smoke": "fast end-to-end checks that the platform keeps its basic promises",
    "chaos": "fault-injection scenarios (broker kills, pauses, proxies, partitions)",
    "load": "load-injection runs with latency and throughput gates",
    "contract": "CloudEvents / registrar contract checks",
    "docker": "needs a Docker engine (skipped without one unless QIKI_REQUIRE_DOCKER=1)",
}


def pytest_configure(config: pytest.Config) -> None:
    """Register the harness markers so ``--strict-markers`` runs accept them."""
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
