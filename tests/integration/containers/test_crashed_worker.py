"""A pytest-xdist worker that dies mid-test never runs its own clean-up: the controller
sweeps its containers and networks (by the workers' session labels) once all are done."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from harness.containers.engine import LABEL_RUN, docker_client

pytest.importorskip("xdist")
pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

TESTS = """
import os

from harness.containers.engine import docker_client, run_labels

RUN = os.environ["CRASH_TEST_RUN"]


def test_crashes_holding_a_network():
    client = docker_client()
    client.networks.create(f"qiki-{RUN}-held", labels=run_labels(RUN))
    os._exit(3)  # the worker dies: no fixture teardown, no session finish


def test_others_pass():
    pass
"""


def test_the_controller_removes_what_a_crashed_worker_left(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = f"crash-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CRASH_TEST_RUN", run)
    monkeypatch.delenv("QIKI_HARNESS_SESSION", raising=False)
    pytester.makepyfile(test_crash=TESTS)
    client = docker_client()
    try:
        result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider",
                                               "--max-worker-restart=1")
        result.assert_outcomes(passed=1, failed=1)
        assert "crashed" in result.stdout.str()
        left = client.networks.list(filters={"label": f"{LABEL_RUN}={run}"})
        assert [n.name for n in left] == []
    finally:
        for n in client.networks.list(filters={"label": f"{LABEL_RUN}={run}"}):
            n.remove()
        client.close()
