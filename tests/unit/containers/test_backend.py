"""``auto`` backend choice and its journal reasons; the docker test gate."""

from __future__ import annotations

import pytest

from harness.containers.backend import choose_backend
from harness.containers.testing import docker_gate


def up() -> tuple[bool, str]:
    return True, "Docker engine 20.10 answered at unix:///var/run/docker.sock"


def down() -> tuple[bool, str]:
    return False, "DOCKER_HOST is unset and /var/run/docker.sock does not exist"


def binary_ok() -> tuple[bool, str]:
    return True, "nats-server 2.15.1 at /venv/bin/nats-server"


def binary_missing() -> tuple[bool, str]:
    return False, "nats-server not found"


def test_auto_picks_container_when_engine_answers() -> None:
    backend, reason = choose_backend("auto", docker_probe=up, binary_probe=binary_missing)
    assert backend == "container"
    assert reason == "auto: Docker engine 20.10 answered at unix:///var/run/docker.sock"


def test_auto_falls_back_to_process_and_says_why() -> None:
    backend, reason = choose_backend(docker_probe=down, binary_probe=binary_ok)
    assert backend == "process"
    assert "no Docker engine" in reason and "docker.sock does not exist" in reason
    assert "nats-server 2.15.1" in reason


def test_auto_with_nothing_working_names_both_failures() -> None:
    backend, reason = choose_backend("auto", docker_probe=down, binary_probe=binary_missing)
    assert backend == "process"
    assert "docker.sock" in reason and "nats-server not found" in reason


@pytest.mark.parametrize("name", ["process", "container", "external"])
def test_explicit_backend_is_kept_without_probing(name: str) -> None:
    def boom() -> tuple[bool, str]:
        raise AssertionError("must not probe an explicit choice")

    assert choose_backend(name, docker_probe=boom, binary_probe=boom) == (
        name,
        f"{name} backend requested",
    )


def test_unknown_backend_is_a_value_error_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"'docker' is not one of process, container"):
        choose_backend("docker")


def test_gate_runs_skips_or_fails() -> None:
    assert docker_gate(up, {})[0] == "run"
    action, reason = docker_gate(down, {})
    assert action == "skip" and "docker.sock" in reason and "QIKI_REQUIRE_DOCKER" in reason
    action, reason = docker_gate(down, {"QIKI_REQUIRE_DOCKER": "1"})
    assert action == "fail" and "docker.sock" in reason
    assert docker_gate(down, {"QIKI_REQUIRE_DOCKER": "0"})[0] == "skip"
