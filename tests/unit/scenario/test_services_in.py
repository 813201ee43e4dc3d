"""``topology.services_in``: containers need the container backend and no host proxies."""

from __future__ import annotations

import pytest

from harness.scenario.loader import ScenarioError, parse_scenario

BASE = """\
name: demo
topology:
  broker: {{backend: {backend}, nodes: 1}}
  services_in: {where}
  services:
    registrar: {{proxied: {proxied}}}
"""


def _parse(backend: str, where: str, proxied: str = "false") -> object:
    return parse_scenario(BASE.format(backend=backend, where=where, proxied=proxied), "s.yaml")


@pytest.mark.parametrize("backend", ["container", "auto"])
def test_containers_with_a_container_capable_backend(backend: str) -> None:
    s = _parse(backend, "container")
    assert s.topology.services_in == "container"  # type: ignore[attr-defined]


def test_default_is_process() -> None:
    s = parse_scenario("name: demo\n", "s.yaml")
    assert s.topology.services_in == "process"


@pytest.mark.parametrize("backend", ["process", "external"])
def test_containers_need_the_container_backend(backend: str) -> None:
    extra = "" if backend == "process" else ", url: nats://127.0.0.1:4222"
    text = BASE.format(backend=backend + extra, where="container", proxied="false")
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    [problem] = info.value.problems
    assert "topology" in problem and "services_in: container needs broker.backend" in problem
    assert repr(backend) in problem


def test_containers_cannot_use_host_proxies() -> None:
    with pytest.raises(ScenarioError) as info:
        _parse("container", "container", proxied="true")
    [problem] = info.value.problems
    assert "fault proxy" in problem and "registrar" in problem


def test_unknown_place_is_named() -> None:
    with pytest.raises(ScenarioError) as info:
        _parse("container", "kubernetes")
    [problem] = info.value.problems
    assert problem.startswith("topology.services_in") and "kubernetes" in problem
