"""Test support: the Docker gate (skip without an engine, fail when one is required).

Container tests are marked ``@pytest.mark.docker``. Where no engine answers they skip with
the reason; with env ``QIKI_REQUIRE_DOCKER=1`` (CI) a missing engine fails them instead, so
CI can never pass by skipping the container backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from harness.containers.engine import docker_available

__all__ = ["REQUIRE_DOCKER_ENV", "docker_gate"]

REQUIRE_DOCKER_ENV = "QIKI_REQUIRE_DOCKER"


def docker_gate(
    probe: Callable[[], tuple[bool, str]] = docker_available,
    env: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """Decide what a docker-marked test does: ("run" | "skip" | "fail", reason).

    ``probe`` answers (engine available, reason); ``env`` defaults to ``os.environ``.
    """
    env = os.environ if env is None else env
    ok, reason = probe()
    if ok:
        return "run", reason
    required = env.get(REQUIRE_DOCKER_ENV, "").strip().lower() in ("1", "true", "yes")
    if required:
        return "fail", f"{REQUIRE_DOCKER_ENV}=1 but no Docker engine answered: {reason}"
    return "skip", f"no Docker engine: {reason} (set {REQUIRE_DOCKER_ENV}=1 to make this fail)"
