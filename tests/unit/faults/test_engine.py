"""The fault engine without NATS: target resolution, handlers, heals, errors, evidence."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.errors import ConfigError
from harness.faults import engine as engine_mod
from harness.faults.engine import (
    FaultEngine,
    FaultTargetError,
    describe_handlers,
    fault_evidence_summary,
    resolve_node_name,
    resolve_process,
)
from harness.faults.partition import RouteProxies
from harness.scenario.model import FaultStep

_pids = itertools.count(1000)


@dataclass
class FakeNode:
    """A broker node that records the signals it gets (no process behind it)."""

    name: str
    running: bool = True
    paused: bool = False
    restarts: int = 0
    pid: int = field(default_factory=lambda: next(_pids))
    cluster_port: int = 0
    calls: list[str] = field(default_factory=list)
    fail_restart: bool = False

    async def kill(self) -> None:
        self.calls.append("kill")
        self.running = False

    async def terminate(self) -> None:
        self.calls.append("terminate")
        self.running = False

    async def pause(self) -> None:
        self.calls.append("pause")
        self.paused = True

    async def resume(self) -> None:
        self.calls.append("resume")
        self.paused = False

    async def restart(self) -> None:
        self.calls.append("restart")
        if self.fail_restart:
            raise RuntimeError("port 4222 taken")
        self.running, self.paused = True, False
        self.restarts += 1
        self.pid = next(_pids)


@dataclass
class FakeContainerNode(FakeNode):
    """A container node: it can leave and rejoin the broker network."""

    connected: bool = True

    async def disconnect(self) -> None:
        self.calls.append("disconnect")
        self.connected = False

    async def connect(self) -> None:
        self.calls.append("connect")
        self.connected = True


class FakeBroker:
    def __init__(self, nodes: list[FakeNode]) -> None:
        self.nodes = nodes

    async def meta_leader(self) -> str:
        return "n2"

    async def stream_leader(self, stream: str) -> FakeNode:
        assert stream == "QIKI_EVENTS_V1"
        return self.nodes[2]


@dataclass
class _Stream:
    name: str


@dataclass
class _Config:
    streams: list[_Stream] = field(default_factory=lambda: [_Stream("QIKI_EVENTS_V1")])


@dataclass
class FakeService:
    proc: FakeProc


@dataclass
class FakeProc:
    pid: int = 42
    running: bool = True
    restarts: int = 0


class FakePlatform:
    """What the engine reads from a platform: broker, services, proxies, config, events."""

    def __init__(self, nodes: list[FakeNode], route_proxies: RouteProxies | None = None):
        self.broker = FakeBroker(nodes)
        self.services: dict[str, Any] = {}
        self.proxies: dict[str, Any] = {}
        self.route_proxies = route_proxies
        self.config = _Config()
        self.events: list[dict[str, Any]] = []

    def event(self, kind: str, **data: Any) -> None:
        self.events.append({"kind": kind, **data})


def step(action: str, target: str = "broker", **kw: Any) -> FaultStep:
    if action in {"pause", "partition", "disconnect", "part-kill"}:
        kw.setdefault("duration_s", 1.0)
    return FaultStep(action=action, target=target, **kw)  # type: ignore[arg-type]


def cluster() -> list[FakeNode]:
    return [FakeNode("n1"), FakeNode("n2"), FakeNode("n3")]


@pytest.fixture(autouse=True)
def short_evidence_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fake nodes have no monitoring port: leaders never show, so do not wait 10 s for them.
    monkeypatch.setattr(engine_mod, "EVIDENCE_TIMEOUT_S", 0.05)


# ------------------------------------------------------------------ target resolution


async def test_broker_targets_resolve_to_nodes() -> None:
    p: Any = FakePlatform(cluster())
    assert (await resolve_process(p, "broker"))[1] == "n1"
    assert (await resolve_process(p, "broker:n3"))[1] == "n3"
    assert (await resolve_process(p, "broker:meta-leader"))[1] == "n2"
    node, name = await resolve_process(p, "broker:stream-leader:QIKI_EVENTS_V1")
    assert name == "n3" and node is p.broker.nodes[2]
    assert await resolve_node_name(p, "route:n2") == "n2"


async def test_unknown_node_names_the_known_ones() -> None:
    p: Any = FakePlatform(cluster())
    with pytest.raises(FaultTargetError, match=r"'broker:n7': nodes are \['n1', 'n2', 'n3'\]"):
        await resolve_process(p, "broker:n7")
    with pytest.raises(FaultTargetError, match=r"'route:n4': nodes are \['n1', 'n2', 'n3'\]"):
        await resolve_node_name(p, "route:n4")


async def test_service_not_running_is_named() -> None:
    p: Any = FakePlatform([FakeNode("n1")])
    with pytest.raises(FaultTargetError, match="service registrar is not running"):
        await resolve_process(p, "service:registrar")


async def test_broker_without_nodes_is_refused() -> None:
    p: Any = FakePlatform([])
    with pytest.raises(FaultTargetError, match="no controllable nodes"):
        await resolve_process(p, "broker")


async def test_unsupported_combination_lists_what_is_supported() -> None:
    p: Any = FakePlatform([FakeNode("n1")])
    eng = FaultEngine(p)
    with pytest.raises(ConfigError) as err:
        await eng.apply(step("partition", "link:registrar"))
    msg = str(err.value)
    assert "'partition' is not supported on link targets ('link:registrar')" in msg
    assert "'blackhole'" in msg and "'latency'" in msg
    assert eng.active == []


def test_handlers_cover_the_issue() -> None:
    h = describe_handlers()
    assert {"kill", "terminate", "pause", "restart", "pause-kill", "partition",
            "disconnect", "part-kill"} <= set(h["broker"])
    assert set(h["route"]) == {"partition", "disconnect", "part-kill"}
    assert {"kill", "pause", "restart"} <= set(h["service"])


# ------------------------------------------------------------------ process faults


async def test_kill_heals_by_restart_and_leaves_evidence() -> None:
    node = FakeNode("n1")
    p: Any = FakePlatform([node])
    eng = FaultEngine(p)
    fault = await eng.apply(step("kill"))
    assert node.calls == ["kill"] and fault.detail == "SIGKILL n1" and fault.node == "n1"
    await eng.heal_all()
    assert node.calls == ["kill", "restart"]
    [rec] = eng.records()
    assert rec.removed_at is not None and rec.removed_at >= rec.applied_at
    ev = {e["phase"]: e for e in p.events if e["kind"] == "fault.evidence"}
    assert set(ev) == {"before", "during", "after"}
    assert ev["before"]["state"]["nodes"]["n1"]["restarts"] == 0
    assert ev["during"]["state"]["nodes"]["n1"]["running"] is False
    assert ev["after"]["state"]["nodes"]["n1"]["restarts"] == 1
    assert ev["after"]["state"]["nodes"]["n1"]["pid"] != ev["before"]["state"]["nodes"]["n1"]["pid"]
    assert fault_evidence_summary(p)["node_restarts"] == {"n1": 1}


async def test_pause_kill_freezes_then_kills_and_restarts_at_heal() -> None:
    node = FakeNode("n1")
    eng = FaultEngine(FakePlatform([node]))  # type: ignore[arg-type]
    await eng.apply(step("pause-kill", duration_s=1.0))
    assert node.calls == ["pause"]
    await eng.heal_all()
    assert node.calls == ["pause", "kill", "restart"]


async def test_heal_failure_is_recorded_not_raised() -> None:
    node = FakeNode("n1", fail_restart=True)
    p: Any = FakePlatform([node])
    eng = FaultEngine(p)
    await eng.apply(step("kill"))
    assert await eng.heal_all() == ["kill broker"]
    [rec] = eng.records()
    assert "heal failed: RuntimeError: port 4222 taken" in rec.detail
    assert any(e["kind"] == "fault.heal_failed" for e in p.events)
    assert await eng.heal_all() == []  # a second heal is a no-op


async def test_service_kill_evidence_shows_restart() -> None:
    p: Any = FakePlatform([FakeNode("n1")])
    proc = FakeProc()

    class Svc:
        def __init__(self) -> None:
            self.proc = proc

        async def kill(self) -> None:
            proc.running = False

        async def restart(self) -> None:
            proc.running, proc.restarts, proc.pid = True, proc.restarts + 1, 43

    p.services["registrar"] = Svc()
    eng = FaultEngine(p)
    await eng.apply(step("kill", "service:registrar"))
    await eng.heal_all()
    ev = {e["phase"]: e["state"] for e in p.events if e["kind"] == "fault.evidence"}
    assert ev["before"] == {"pid": 42, "running": True, "restarts": 0}
    assert ev["during"]["running"] is False
    assert ev["after"] == {"pid": 43, "running": True, "restarts": 1}


# ------------------------------------------------------------------ partitions


async def test_partition_without_route_proxies_says_how_to_get_them() -> None:
    eng = FaultEngine(FakePlatform(cluster()))  # type: ignore[arg-type]
    with pytest.raises(FaultTargetError, match=r"broker\.nodes: 3 on the process backend"):
        await eng.apply(step("partition", "route:n3"))


async def test_partition_cuts_every_route_of_the_node_both_ways() -> None:
    nodes = cluster()
    for i, n in enumerate(nodes):
        n.cluster_port = 40000 + i  # nothing listens: the proxies never dial in this test
    async with RouteProxies() as routes:
        await routes.attach(FakeBroker(nodes))
        p: Any = FakePlatform(nodes, routes)
        eng = FaultEngine(p)
        fault = await eng.apply(step("partition", "route:n3"))
        down = {k for k, v in routes.describe().items() if v["down"]}
        assert down == {"n1->n3", "n3->n1", "n2->n3", "n3->n2"}
        assert fault.detail.startswith("isolated n3: routes down")
        await eng.heal_all()
        assert not any(v["down"] for v in routes.describe().values())
        # the stream-leader target partitions whichever node leads
        await eng.apply(step("partition", "broker:stream-leader:QIKI_EVENTS_V1"))
        assert routes.proxies[(2, 0)].is_down
        await eng.heal_all()
        assert "route_proxies" in fault_evidence_summary(p)


async def test_part_kill_kills_while_cut_off_then_heals_and_restarts() -> None:
    nodes = cluster()
    for i, n in enumerate(nodes):
        n.cluster_port = 40000 + i
    async with RouteProxies() as routes:
        await routes.attach(FakeBroker(nodes))
        eng = FaultEngine(FakePlatform(nodes, routes))  # type: ignore[arg-type]
        fault = await eng.apply(step("part-kill", "broker:n2"))
        assert nodes[1].calls == [] and routes.proxies[(1, 0)].is_down
        assert fault.detail.endswith("SIGKILL and restart at heal")
        await eng.heal_all()
        assert nodes[1].calls == ["kill", "restart"]
        assert not any(p.is_down for p in routes.proxies.values())


async def test_disconnect_uses_the_container_network() -> None:
    nodes: list[FakeNode] = [FakeContainerNode("n1"), FakeContainerNode("n2"),
                             FakeContainerNode("n3")]
    eng = FaultEngine(FakePlatform(nodes))  # type: ignore[arg-type]
    fault = await eng.apply(step("disconnect", "broker:n2"))
    assert nodes[1].calls == ["disconnect"] and "disconnected n2" in fault.detail
    await eng.heal_all()
    assert nodes[1].calls == ["disconnect", "connect"]
    # on a container cluster a partition is the same network fault
    await eng.apply(step("partition", "route:n1"))
    assert nodes[0].calls == ["disconnect"]
    await eng.heal_all()


def test_route_proxies_only_for_scenarios_that_partition() -> None:
    from harness.faults.partition import needs_route_proxies
    from harness.scenario.loader import parse_scenario

    base = "name: x\ntopology: {broker: {nodes: %d}}\nmethod:\n  - fault: %s\n"
    part = "{action: partition, target: 'route:n3', duration_s: 1}"
    kill = "{action: kill, target: 'broker:stream-leader:S'}"
    assert needs_route_proxies(parse_scenario(base % (3, part)))
    assert needs_route_proxies(parse_scenario(
        base % (3, "{action: part-kill, target: 'broker:n1', duration_s: 1}")))
    assert not needs_route_proxies(parse_scenario(base % (3, kill)))
    with pytest.raises(ValueError, match=r"route faults .* need topology\.broker\.nodes: 3"):
        parse_scenario(base % (1, part))


async def test_minority_is_floor_n_minus_1_over_2_nodes_picked_by_seed() -> None:
    from harness.faults.engine import resolve_nodes

    p = FakePlatform(cluster())
    picks = {s: [n for _, n in await resolve_nodes(p, "broker:minority", seed=s)]  # type: ignore[arg-type]
             for s in range(12)}
    assert all(len(v) == 1 for v in picks.values())
    assert picks[0] == [n for _, n in await resolve_nodes(p, "broker:minority", seed=0)]  # type: ignore[arg-type]
    assert len({v[0] for v in picks.values()}) > 1  # the seed matters
    five = FakePlatform([FakeNode(f"n{i}") for i in range(1, 6)])
    assert len(await resolve_nodes(five, "broker:minority")) == 2  # type: ignore[arg-type]
    assert [n for _, n in await resolve_nodes(p, "broker:stream-leader:QIKI_EVENTS_V1")] == [  # type: ignore[arg-type]
        "n3"]
    with pytest.raises(FaultTargetError, match="have no minority"):
        await resolve_nodes(FakePlatform([FakeNode("n1")]), "broker:minority")  # type: ignore[arg-type]


# ------------------------------------------------------------------ collisions, crash-loop


class SlowService:
    """A service whose restart takes ``restart_s`` (readiness through a slow link): it
    records every call with its start and end, and a kill while restarting fails the
    restart, as a real process killed before it is ready does."""

    def __init__(self, restart_s: float) -> None:
        self.proc = FakeProc()
        self.restart_s = restart_s
        self.calls: list[str] = []
        self.starting = False

    async def kill(self) -> None:
        self.calls.append("kill" + (" WHILE STARTING" if self.starting else ""))
        self.proc.running = False

    async def pause(self) -> None:
        self.calls.append("pause" + (" WHILE STARTING" if self.starting else ""))

    async def resume(self) -> None:
        self.calls.append("resume")

    async def restart(self) -> None:
        import asyncio

        self.calls.append("restart")
        self.starting = True
        try:
            await asyncio.sleep(self.restart_s)
        finally:
            self.starting = False
        self.calls.append("ready")
        self.proc.running, self.proc.restarts = True, self.proc.restarts + 1


async def test_a_fault_on_a_target_still_healing_waits_and_is_journalled() -> None:
    import asyncio

    p: Any = FakePlatform([FakeNode("n1")])
    svc = SlowService(restart_s=0.3)
    p.services["registrar"] = svc
    eng = FaultEngine(p)
    first = await eng.apply(step("kill", "service:registrar", duration_s=0.1))
    healing = asyncio.create_task(eng.remove(first))
    await asyncio.sleep(0.05)  # the restart is under way
    second = await eng.apply(step("kill", "service:registrar", name="again"))
    await healing
    assert svc.calls == ["kill", "restart", "ready", "kill"]  # never killed while starting
    [col] = [e for e in p.events if e["kind"] == "fault.collision"]
    assert col["healing"] == "kill service:registrar" and col["step"] == "again"
    assert col["waited_s"] > 0.1 and col["policy"] == "waited for the heal"
    assert col["state"] == "healing"
    assert "late: waited for the heal of kill service:registrar (healing" in second.detail
    await eng.heal_all()
    assert first.heal_error is None and second.heal_error is None


async def test_crash_loop_heals_each_crash_before_the_next() -> None:
    p: Any = FakePlatform([FakeNode("n1")])
    svc = SlowService(restart_s=0.15)
    p.services["registrar"] = svc
    eng = FaultEngine(p)
    loop = await eng.apply(step("crash-loop", "service:registrar", every_s=0.1, count=4,
                                crash="pause-kill", duration_s=0.02))
    assert loop.heal is not None
    await eng.remove(loop)  # waits for the loop: every crash done and healed
    assert svc.calls == ["pause", "kill", "restart", "ready"] * 4
    crashes = [r for r in eng.records() if r.kind == "pause-kill"]
    assert len(crashes) == 4 and all(r.removed_at is not None for r in crashes)
    assert not any(e["kind"] == "fault.heal_failed" for e in p.events)
    late = [e for e in p.events if e["kind"] == "fault.collision"]
    assert late and all(e["crash"] > 1 for e in late)  # restarts (0.15 s) outlast every_s
    assert all(e["policy"].startswith("postponed") for e in late)
    [rec] = [r for r in eng.records() if r.kind == "crash-loop"]
    assert "4 crash(es), 0 heal(s) failed" in rec.detail and "postponed" in rec.detail


async def test_crash_loop_for_s_and_rollback_stops_it() -> None:
    import asyncio

    p: Any = FakePlatform([FakeNode("n1")])
    svc = SlowService(restart_s=0.0)
    p.services["registrar"] = svc
    eng = FaultEngine(p)
    await eng.apply(step("crash-loop", "service:registrar", every_s=0.05, for_s=60))
    await asyncio.sleep(0.2)
    await eng.heal_all()  # rollback mid-loop: no new crash starts, the current one heals
    n = svc.calls.count("kill")
    assert 1 <= n < 60 and svc.calls[-1] == "ready"
    await asyncio.sleep(0.15)
    assert svc.calls.count("kill") == n


async def test_faults_waiting_for_one_target_go_one_at_a_time() -> None:
    """Two faults due while a third holds the target: the heal wakes one, the other waits
    for that one's heal in turn (never two crashes on top of each other)."""
    import asyncio

    p: Any = FakePlatform([FakeNode("n1")])
    svc = SlowService(restart_s=0.1)
    p.services["registrar"] = svc
    eng = FaultEngine(p)

    async def fault(name: str) -> None:
        f = await eng.apply(step("pause-kill", "service:registrar", name=name, duration_s=0.05))
        await asyncio.sleep(0.05)
        await eng.remove(f)

    await asyncio.gather(fault("a"), fault("b"), fault("c"))
    assert svc.calls == ["pause", "kill", "restart", "ready"] * 3
    waits = [e for e in p.events if e["kind"] == "fault.collision"]
    assert [e["step"] for e in waits] == ["b", "c"]
    assert not [e for e in p.events if e.get("policy", "").startswith("applied on top")]


async def test_a_fault_without_duration_is_landed_on_and_said_so() -> None:
    p: Any = FakePlatform([FakeNode("n1")])
    svc = SlowService(restart_s=0.0)
    p.services["registrar"] = svc
    eng = FaultEngine(p)
    await eng.apply(step("kill", "service:registrar"))  # healed by the rollbacks only
    second = await eng.apply(step("pause", "service:registrar", name="then"))
    assert "applied on top of kill service:registrar (in force)" in second.detail
    await eng.heal_all()
