"""The container backend end to end: smoke and chaos scenarios on Docker, nothing left behind.

Every test needs a Docker engine (``docker`` marker: skipped without one, a failure with
QIKI_REQUIRE_DOCKER=1 as in CI). Each run's journal must say ``backend: container``, and
after each run no container or network carrying its labels may remain.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.containers.engine import (
    SESSION_ENV,
    docker_client,
    list_labelled,
    new_run_id,
    run_labels,
    run_selector,
    session_selector,
)
from harness.report.journal import Journal

pytestmark = pytest.mark.docker

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
Runner = Callable[..., Journal]
Qiki = Callable[..., subprocess.CompletedProcess[str]]


def _in_containers(name: str, broker_line: str) -> str:
    """The shipped scenario ``name`` with its services in containers on the container backend."""
    text = (SCENARIOS / f"{name}.yaml").read_text()
    assert broker_line in text, f"{name}.yaml changed: update this test's edit"
    text = text.replace(f"name: {name}\n", f"name: {name}-in-containers\n", 1)
    return text.replace(
        broker_line,
        "  broker: {backend: container, nodes: 1}\n  services_in: container\n",
        1,
    )


def _passed(j: Journal) -> None:
    """Verdict passed, on the container backend, and nothing of the run left on the engine."""
    failed = "; ".join(c.summary() for c in j.failed_checks())
    assert j.verdict == "passed", f"{j.scenario}: {j.verdict}: {j.error or failed}"
    assert j.backend == "container", j.backend_reason
    assert j.broker["backend"] == "container"
    client = docker_client()
    try:
        assert list_labelled(client, run_selector(j.broker["run_id"])) == ([], []), (
            "containers/networks of the run left behind"
        )
        session = os.environ.get(SESSION_ENV)
        if session:
            assert list_labelled(client, session_selector(session)) == ([], []), (
                "containers/networks of this test session left behind"
            )
    finally:
        client.close()


def _events(j: Journal, kind: str) -> list[dict[str, Any]]:
    return [e for e in j.events if e.get("kind") == kind]


def _summary(j: Journal) -> dict[str, Any]:
    [summary] = _events(j, "evidence.summary")
    return summary


def test_smoke_on_containers_services_as_processes(scenario_runner: Runner) -> None:
    j = scenario_runner(SCENARIOS / "smoke.yaml", backend="container")
    _passed(j)
    assert set(j.services) == {"registrar", "lagmon", "radar_sim"}
    assert not any("container" in e for e in _events(j, "service.started"))


def test_smoke_everything_in_containers(scenario_runner: Runner, tmp_path: Path) -> None:
    text = _in_containers("smoke", "  broker: {backend: process, nodes: 1}\n")
    j = scenario_runner(text, backend="container", report_dir=tmp_path)
    _passed(j)
    started = _events(j, "service.started")
    run_id = j.broker["run_id"]
    assert sorted(e["service"] for e in started) == ["lagmon", "radar_sim", "registrar"]
    assert all(e["container"] == f"qiki-{run_id}-{e['service']}" for e in started)
    # The registrar's store was read through its published port (the codes check passed on
    # records), and each container's log is kept in the run directory.
    assert all(j.services[n]["http"].startswith("http://127.0.0.1:") for n in j.services)
    log = (tmp_path / j.run_id / "logs" / "registrar.log").read_text()
    assert "BOOT_OK" in log


def test_broker_restart_on_containers(scenario_runner: Runner) -> None:
    j = scenario_runner(SCENARIOS / "broker-restart.yaml", backend="container")
    _passed(j)
    assert _summary(j)["node_restarts"] == {"n1": 1}


def test_broker_pause_on_containers(scenario_runner: Runner) -> None:
    j = scenario_runner(SCENARIOS / "chaos-broker-pause.yaml", backend="container")
    _passed(j)
    assert [f.action for f in j.faults] == ["pause"] and j.faults[0].removed_s is not None


def test_registrar_kill_in_a_container(scenario_runner: Runner) -> None:
    text = _in_containers("chaos-registrar-kill", "  broker: {backend: process, nodes: 1}\n")
    j = scenario_runner(text, backend="container")
    _passed(j)
    assert _summary(j)["service_restarts"]["registrar"] == 1
    during = [e for e in _events(j, "fault.evidence") if e["phase"] == "during"]
    assert during and during[0]["state"]["running"] is False


@pytest.mark.covers_scenario(SCENARIOS / "chaos-container-partition.yaml")
def test_container_partition_disconnect(scenario_journal: Runner) -> None:
    j = scenario_journal(SCENARIOS / "chaos-container-partition.yaml")
    _passed(j)
    assert [f.action for f in j.faults] == ["disconnect"]
    during = [e for e in _events(j, "fault.evidence") if e["phase"] == "during"]
    assert during, "no evidence recorded during the disconnect"
    nodes = during[0]["state"]["nodes"]
    # n1 and n2 dropped their route to n3 and kept the one between them.
    assert (nodes["n1"]["routes"], nodes["n2"]["routes"]) == (1, 1), nodes
    after = [e for e in _events(j, "fault.evidence") if e["phase"] == "after"]
    assert after, "no evidence recorded after the heal"
    routes = {name: n["routes"] for name, n in after[0]["state"]["nodes"].items()}
    assert routes == {"n1": 2, "n2": 2, "n3": 2}, f"routes after the heal: {after[0]}"


def test_down_removes_a_labelled_leftover(qiki: Qiki) -> None:
    from harness.containers.images import ensure_nats_image

    image = ensure_nats_image().tag
    run_id = new_run_id()
    labels = run_labels(run_id)  # the session label too: a failed test is still cleaned up
    client = docker_client()
    try:
        # What a crashed run leaves: a running server and its network.
        client.networks.create(f"qiki-{run_id}-net", labels=labels)
        client.containers.run(image, name=f"qiki-{run_id}-n1", labels=labels, detach=True,
                              network_mode="none")
        assert list_labelled(client, run_selector(run_id)) == (
            [f"qiki-{run_id}-n1"], [f"qiki-{run_id}-net"]
        )
        # --run: only this leftover; a plain `down` would also remove concurrent runs' ones.
        res = qiki("down", "--run", run_id, timeout_s=60)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "removed 1 container(s), 1 network(s)" in res.stdout
        assert list_labelled(client, run_selector(run_id)) == ([], [])
    finally:
        client.close()
