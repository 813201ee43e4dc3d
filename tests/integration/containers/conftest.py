"""Docker gate and session cleanup for the container-backend tests.

- Tests marked ``docker`` skip with the reason when no Docker engine answers, and FAIL when
  env QIKI_REQUIRE_DOCKER=1 (CI), via :func:`harness.containers.testing.docker_gate`.
- Every container/network created in this session carries ``qiki-harness.session=<id>``
  (env QIKI_HARNESS_SESSION); at session end they are removed by that label, because the
  testcontainers reaper cannot run offline.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.containers.engine import SESSION_ENV, cleanup, new_run_id, session_selector
from harness.containers.testing import docker_gate

_gate: tuple[str, str] | None = None


@pytest.fixture(autouse=True)
def _docker_gate(request: pytest.FixtureRequest) -> None:
    """Skip or fail docker-marked tests when no engine answers (probed once per session)."""
    global _gate
    if request.node.get_closest_marker("docker") is None:
        return
    if _gate is None:
        _gate = docker_gate()
    action, reason = _gate
    if action == "skip":
        pytest.skip(reason)
    if action == "fail":
        pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _container_session() -> Iterator[str]:
    """Label this session's resources; remove whatever is left of them at the end."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    session = os.environ.get(SESSION_ENV) or f"pytest-{new_run_id()}"
    previous = os.environ.get(SESSION_ENV)
    os.environ[SESSION_ENV] = session
    try:
        yield session
    finally:
        if previous is None:
            os.environ.pop(SESSION_ENV, None)
        if _gate is not None and _gate[0] == "run":
            cleanup(session_selector(session))
