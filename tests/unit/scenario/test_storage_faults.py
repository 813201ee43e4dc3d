"""Storage-fault steps and ``store: fuse`` in scenario files: what is accepted, what is named."""

from __future__ import annotations

import pytest

from harness.scenario.loader import ScenarioError, parse_scenario
from harness.scenario.model import FaultStep, step_body

BASE = """\
name: demo
topology:
  broker: {backend: process, nodes: 1, store: fuse}
  services:
    registrar: {}
method:
  - load: {at_s: 0, duration_s: 3, rate_per_s: 200}
  - fault: FAULT
checks:
  - delivery: {}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(text, "s.yaml")
    return exc.value.problems


def _fault(fault: str, base: str = BASE) -> FaultStep:
    sc = parse_scenario(base.replace("FAULT", fault), "s.yaml")
    step = step_body(sc.method[1])
    assert isinstance(step, FaultStep)
    return step


def test_storage_faults_load() -> None:
    assert _fault("{at_s: 1, action: power-loss, target: broker}").action == "power-loss"
    assert _fault("{at_s: 1, action: disk-full, target: broker:n1, duration_s: 2}").duration_s == 2
    slow = _fault("{at_s: 1, action: slow-disk, target: broker, duration_s: 2, latency_ms: 50}")
    assert slow.latency_ms == 50


@pytest.mark.parametrize(("fault", "needle"), [
    ("{at_s: 1, action: disk-full, target: broker}", "action 'disk-full' needs duration_s"),
    ("{at_s: 1, action: slow-disk, target: broker, duration_s: 1}", "needs latency_ms"),
    ("{at_s: 1, action: power-loss, target: service:registrar}", "applies to broker targets"),
])
def test_bad_storage_fault_is_named(fault: str, needle: str) -> None:
    probs = _problems(BASE.replace("FAULT", fault))
    assert any(needle in p and "method[1].fault" in p for p in probs), probs


def test_storage_fault_needs_the_fuse_store() -> None:
    text = BASE.replace("store: fuse", "store: disk").replace(
        "FAULT", "{at_s: 1, action: power-loss, target: broker}")
    probs = _problems(text)
    assert any("needs topology.broker.store: fuse" in p for p in probs), probs


def test_fuse_store_needs_the_process_backend_and_file_storage() -> None:
    fault = "{at_s: 1, action: kill, target: broker, duration_s: 1}"
    for topo in ("backend: container, nodes: 1, store: fuse",
                 "backend: process, nodes: 1, store: fuse, storage: memory"):
        text = BASE.replace("backend: process, nodes: 1, store: fuse", topo).replace(
            "FAULT", fault)
        probs = _problems(text)
        assert any("store 'fuse' needs backend 'process' and storage 'file'" in p
                   for p in probs), probs


def test_broker_all_is_for_power_loss_only() -> None:
    assert _fault("{at_s: 1, action: power-loss, target: broker:all}").target == "broker:all"
    probs = _problems(BASE.replace("FAULT", "{at_s: 1, action: kill, target: broker:all}"))
    assert any("target 'broker:all' is for action 'power-loss'" in p for p in probs), probs


R3 = BASE.replace("nodes: 1, store: fuse", "nodes: 3")


def test_corrupt_and_minority_load() -> None:
    c = _fault("{at_s: 1, action: corrupt, target: broker:n2, stream: QIKI_EVENTS_V1, "
               "mode: truncate, seed: 7}", R3)
    assert (c.stream, c.mode, c.seed, c.region) == ("QIKI_EVENTS_V1", "truncate", 7, "any")
    assert _fault("{at_s: 1, action: corrupt, target: broker:n2, stream: S, "
                  "region: payload}", R3).region == "payload"
    # bit flip is the default; the store may be a plain directory (no FUSE needed)
    assert _fault("{at_s: 1, action: corrupt, target: 'broker:stream-leader:S', "
                  "stream: S}", R3).mode == "bitflip"
    m = _fault("{at_s: 1, action: power-loss, target: broker:minority}",
               R3.replace("nodes: 3", "nodes: 3, store: fuse"))
    assert m.target == "broker:minority"


@pytest.mark.parametrize(("fault", "needle"), [
    ("{at_s: 1, action: corrupt, target: broker:n2}", "needs a broker node target and stream"),
    ("{at_s: 1, action: corrupt, target: service:registrar, stream: S}",
     "needs a broker node target and stream"),
    ("{at_s: 1, action: corrupt, target: broker:n2, stream: S, mode: shred}", "bitflip"),
    ("{at_s: 1, action: kill, target: broker:minority}", "is for action 'power-loss'"),
    ("{at_s: 1, action: kill, target: broker:n2, region: payload}",
     "region is for action 'corrupt'"),
    ("{at_s: 1, action: corrupt, target: broker:n2, stream: S, region: header}", "payload"),
])
def test_bad_corrupt_or_minority_is_named(fault: str, needle: str) -> None:
    probs = _problems(R3.replace("FAULT", fault))
    assert any(needle in p for p in probs), probs


def test_minority_needs_a_cluster_and_corrupt_a_local_store() -> None:
    probs = _problems(BASE.replace("FAULT", "{at_s: 1, action: power-loss, "
                                            "target: broker:minority}"))
    assert any("needs topology.broker.nodes: 3" in p for p in probs), probs
    ext = R3.replace("backend: process", "backend: container").replace(
        "FAULT", "{at_s: 1, action: corrupt, target: broker:n2, stream: S}")
    assert any("needs topology.broker.backend: process" in p for p in _problems(ext))


def test_replicas_check_loads_and_needs_a_local_store() -> None:
    text = R3.replace("FAULT", "{at_s: 1, action: kill, target: broker:n2}") + \
        "  - replicas: {stream: QIKI_EVENTS_V1, max_divergent: 2}\n"
    sc = parse_scenario(text, "s.yaml")
    assert sc.checks[-1].replicas.max_divergent == 2  # type: ignore[union-attr]
    probs = _problems(text.replace("backend: process", "backend: container"))
    assert any("replicas check needs topology.broker.backend: process" in p for p in probs)
    assert any("stream" in p for p in _problems(text.replace("stream: QIKI_EVENTS_V1, ", "")))
