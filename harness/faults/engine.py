"""Fault steps on a running platform: resolve the target, apply, heal, and keep the record.

Every applied fault knows how to heal itself; :meth:`FaultEngine.heal_all` runs those for
rollbacks, so a run never leaves a paused broker or a cut link behind. New fault kinds
(partitions on cluster routes, container network faults) plug in with
:func:`register_fault` without touching the runner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from harness._resource import cancel_and_wait
from harness.checks.observations import FaultRecord
from harness.errors import ConfigError, HarnessError
from harness.faults.toxics import (
    Bandwidth,
    Blackhole,
    Down,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    Toxic,
)
from harness.progress import ProgressSink

if TYPE_CHECKING:
    from harness.platform import Platform
    from harness.scenario.model import FaultStep

Heal = Callable[[], Awaitable[None]]
"""Undo a fault (restart, resume, remove a toxic); None when nothing is left to undo."""

FaultHandler = Callable[["Platform", "FaultStep", str], Awaitable[tuple[Heal | None, str]]]
"""(platform, step, target argument) -> (heal, detail for the journal)."""

_HANDLERS: dict[tuple[str, str], FaultHandler] = {}


def register_fault(target_kind: str, action: str) -> Callable[[FaultHandler], FaultHandler]:
    """Decorator: handle ``action`` on targets of kind ``target_kind`` (broker, service...)."""

    def deco(fn: FaultHandler) -> FaultHandler:
        _HANDLERS[(target_kind, action)] = fn
        return fn

    return deco


class Killable(Protocol):
    """What process faults need: a broker node or a service process."""

    async def kill(self) -> None: ...
    async def terminate(self) -> None: ...
    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    async def restart(self) -> None: ...


class FaultTargetError(HarnessError):
    """A fault's target does not exist in this topology."""


async def resolve_process(platform: Platform, target: str) -> tuple[Killable, str]:
    """``broker``/``broker:n2``/``broker:meta-leader``/``broker:stream-leader:S`` or
    ``service:NAME`` -> the object to signal and its name."""
    kind, _, arg = target.partition(":")
    if kind == "service":
        svc = platform.services.get(arg)
        if svc is None:
            raise FaultTargetError(f"fault target {target!r}: service {arg} is not running")
        return svc, arg
    broker = platform.broker
    if broker is None or not broker.nodes:
        raise FaultTargetError(f"fault target {target!r}: the broker has no controllable nodes")
    nodes = {n.name: n for n in broker.nodes}
    if not arg:
        node = broker.nodes[0]
        return node, node.name
    if arg == "meta-leader":
        name = await broker.meta_leader()  # type: ignore[attr-defined]
        return nodes[name], name
    if arg.startswith("stream-leader:"):
        stream = arg.partition(":")[2]
        node = await broker.stream_leader(stream)  # type: ignore[attr-defined]
        return node, node.name
    if arg not in nodes:
        raise FaultTargetError(f"fault target {target!r}: nodes are {sorted(nodes)}")
    return nodes[arg], arg


def _process_fault(action: str) -> FaultHandler:
    async def handler(platform: Platform, step: FaultStep, target: str) -> tuple[Heal | None, str]:
        obj, name = await resolve_process(platform, target)
        if action == "kill":
            await obj.kill()
            return obj.restart, f"SIGKILL {name}"
        if action == "terminate":
            await obj.terminate()
            return obj.restart, f"SIGTERM {name}"
        if action == "pause":
            await obj.pause()
            return obj.resume, f"SIGSTOP {name}"
        if action == "restart":
            await obj.restart()
            return None, f"restarted {name}"
        if action == "pause-kill":
            # Jepsen's composite: frozen first (timeouts fire everywhere), then it dies
            # instead of waking up, and comes back from its store.
            await obj.pause()

            async def kill_then_restart() -> None:
                await obj.kill()
                await obj.restart()

            return kill_then_restart, f"SIGSTOP {name}, SIGKILL at heal"
        raise AssertionError(action)

    return handler


for _kind in ("broker", "service"):
    for _action in ("kill", "terminate", "pause", "restart", "pause-kill"):
        register_fault(_kind, _action)(_process_fault(_action))


def toxic_for(step: FaultStep) -> Toxic:
    """The proxy toxic a link fault step stands for."""
    match step.action:
        case "latency":
            return Latency(latency_ms=step.latency_ms or 0.0, jitter_ms=step.jitter_ms)
        case "bandwidth":
            return Bandwidth(rate_bytes_per_s=float(step.rate_bytes_per_s or 1))
        case "blackhole":
            return Blackhole()
        case "reset_peer":
            return ResetPeer()
        case "down":
            return Down()
        case "slicer":
            return Slicer(average_size=64, size_variation=32, delay_us=100)
        case "limit_data":
            return LimitData(bytes=step.bytes or 0)
    raise ConfigError(f"action {step.action!r} is not a link fault")


def _link_fault(
    platform: Platform, step: FaultStep, target: str
) -> Awaitable[tuple[Heal | None, str]]:
    async def run() -> tuple[Heal | None, str]:
        proxy = platform.proxies.get(target)
        if proxy is None:
            raise FaultTargetError(f"fault target link:{target}: no fault proxy on that link")
        toxic = toxic_for(step)
        name = await proxy.add(toxic, direction=step.direction)

        async def heal() -> None:
            await proxy.remove(name)

        return heal, f"{toxic!r} {step.direction} on {proxy.url}"

    return run()


for _action in ("latency", "bandwidth", "blackhole", "reset_peer", "down", "slicer", "limit_data"):
    register_fault("link", _action)(_link_fault)


async def resolve_node_name(platform: Platform, target: str) -> str:
    """``route:n3`` -> ``n3``; broker targets resolve like process faults (stream leader...)."""
    kind, _, arg = target.partition(":")
    if kind == "route":
        broker = platform.broker
        names = [n.name for n in broker.nodes] if broker is not None else []
        if arg not in names:
            raise FaultTargetError(f"fault target {target!r}: nodes are {sorted(names)}")
        return arg
    _, name = await resolve_process(platform, target)
    return name


@register_fault("route", "partition")
@register_fault("broker", "partition")
async def _partition(platform: Platform, step: FaultStep, target: str) -> tuple[Heal | None, str]:
    """Minority partition: cut one node off from its peers (both directions) until healed.

    Process backend: Down toxics on every route proxy from and to the node. Container
    backend: the node leaves the run's Docker network (its clients lose it too).
    """
    return await _isolate(platform, step, target, await resolve_node_name(platform, target))


async def _isolate(
    platform: Platform, step: FaultStep, target: str, name: str
) -> tuple[Heal, str]:
    assert platform.broker is not None
    node = next(n for n in platform.broker.nodes if n.name == name)
    routes = getattr(platform, "route_proxies", None)
    if routes is not None:
        heal = await routes.isolate(routes.index_of(name))
        cut = ", ".join(p.name for p in routes.links_of(routes.index_of(name)))
        return heal, f"isolated {name}: routes down ({cut})"
    if hasattr(node, "disconnect") and hasattr(node, "connect"):
        await node.disconnect()
        return node.connect, f"isolated {name}: left the broker network"
    raise FaultTargetError(
        f"fault {step.action} {target!r}: the cluster has no route proxies. Partitions need "
        "topology.broker.nodes: 3 on the process backend (the runner then puts a fault proxy "
        "on every route) or the container backend (network disconnect)"
    )


@register_fault("route", "part-kill")
@register_fault("broker", "part-kill")
async def _part_kill(platform: Platform, step: FaultStep, target: str) -> tuple[Heal | None, str]:
    """Jepsen's part-kill: cut the node off now; at the heal it is killed while still cut
    off, the partition is lifted and the node restarts from its store."""
    # Resolved once: a stream-leader target names another node once the partition bites.
    name = await resolve_node_name(platform, target)
    heal_partition, detail = await _isolate(platform, step, target, name)
    assert platform.broker is not None
    node = next(n for n in platform.broker.nodes if n.name == name)

    async def kill_heal_restart() -> None:
        try:
            await node.kill()
        finally:
            await heal_partition()
        await node.restart()

    return kill_heal_restart, f"{detail}; SIGKILL and restart at heal"


@register_fault("route", "disconnect")
@register_fault("broker", "disconnect")
async def _disconnect(
    platform: Platform, step: FaultStep, target: str
) -> tuple[Heal | None, str]:
    """Container backend: the node leaves the Docker network; process backend: a partition."""
    name = await resolve_node_name(platform, target)
    assert platform.broker is not None
    node = next(n for n in platform.broker.nodes if n.name == name)
    if hasattr(node, "disconnect") and hasattr(node, "connect"):
        await node.disconnect()
        return node.connect, f"disconnected {name} from the broker network"
    return await _partition(platform, step, target)


#: Targets naming several nodes at once (``power-loss`` only).
MANY_NODES = ("broker:all", "broker:minority")


async def resolve_nodes(platform: Platform, target: str, *,
                        seed: int = 0) -> list[tuple[Killable, str]]:
    """``broker:all`` -> every node; ``broker:minority`` -> floor((n-1)/2) nodes picked by
    ``seed`` (reproducible); any other broker target -> its one node (a stream leader is
    resolved now, at fault time)."""
    import random

    broker = platform.broker
    if target in MANY_NODES:
        if broker is None or not broker.nodes:
            raise FaultTargetError(f"fault target {target!r}: the broker has no nodes")
        every: list[tuple[Killable, str]] = [(n, n.name) for n in broker.nodes]
        if target == "broker:all":
            return every
        k = (len(every) - 1) // 2
        if k == 0:
            raise FaultTargetError(f"fault target {target!r}: {len(every)} node(s) have no "
                                   "minority")
        picked = set(random.Random(seed).sample(sorted(n for _, n in every), k))
        return [(n, name) for n, name in every if name in picked]
    return [await resolve_process(platform, target)]


def _storage_of(platform: Platform, step: FaultStep) -> Any:
    fs = getattr(platform, "storage", None)
    if fs is None:
        raise FaultTargetError(
            f"fault {step.action} {step.target!r}: the broker's store is not on the "
            "storage-fault filesystem. Hint: set topology.broker.store: fuse (process backend)"
        )
    return fs


@register_fault("broker", "power-loss")
async def _power_loss(platform: Platform, step: FaultStep, target: str) -> tuple[Heal | None, str]:
    """Power loss of one node: SIGKILL it, drop every write its store had not fsynced (the
    page cache is gone), restart it (at once, or at the heal when ``duration_s`` is set)."""
    fs = _storage_of(platform, step)
    nodes = await resolve_nodes(platform, target, seed=step.seed)
    platform.event("fault.nodes", action=step.action, target=target,
                   nodes=[name for _, name in nodes])
    # every node dies before any store is rewound: a coordinated power failure
    await asyncio.gather(*(node.kill() for node, _ in nodes))  # waits for the exits
    parts = []
    for _, name in nodes:
        lost = await fs.drop(platform.storage_prefix(name))
        after = await fs.stats(platform.storage_prefix(name))
        platform.event("storage.power_loss", node=name, bytes_dropped=lost["bytes_dropped"],
                       files_vanished=lost["files_vanished"],
                       bytes_written=after["bytes_written"], bytes_synced=after["bytes_synced"],
                       vanished=lost["vanished"], rewound=lost["rewound"])
        parts.append(f"{name}: dropped {lost['bytes_dropped']} unsynced bytes "
                     f"({lost['files_vanished']} never-synced files vanished)")
    detail = f"SIGKILL {', '.join(n for _, n in nodes)}; " + "; ".join(parts)

    async def restart_all() -> None:
        await asyncio.gather(*(node.restart() for node, _ in nodes))

    if step.duration_s:
        return restart_all, detail + "; restart at heal"
    await restart_all()
    return None, detail + "; restarted"


@register_fault("broker", "disk-full")
async def _disk_full(platform: Platform, step: FaultStep, target: str) -> tuple[Heal | None, str]:
    """The node's store cannot grow (ENOSPC) until the heal gives the space back."""
    fs = _storage_of(platform, step)
    _, name = await resolve_process(platform, target)
    prefix = platform.storage_prefix(name)
    used = await fs.fill(prefix)

    async def heal() -> None:
        await fs.set_quota(None, prefix)
        stats = await fs.stats(prefix)
        platform.event("storage.space_back", node=name, enospc=stats["enospc"])

    return heal, f"store of {name} full at {used} bytes: writes that grow it fail with ENOSPC"


@register_fault("service", "disk-full")
async def _service_disk_full(
    platform: Platform, step: FaultStep, target: str
) -> tuple[Heal | None, str]:
    """The service's data dir cannot grow (ENOSPC) until the heal gives the space back."""
    name = target.partition(":")[2]
    fs = getattr(platform, "service_storage", {}).get(name)
    if fs is None:
        raise FaultTargetError(
            f"fault disk-full {target!r}: the data dir of {name} is not on the storage-fault "
            f"filesystem. Hint: set topology.services.{name}.store: fuse")
    used = await fs.fill("")

    async def heal() -> None:
        await fs.set_quota(None, "")
        stats = await fs.stats("")
        platform.event("storage.space_back", service=name, enospc=stats["enospc"])

    return heal, f"data dir of {name} full at {used} bytes: writes that grow it fail with ENOSPC"


@register_fault("broker", "slow-disk")
async def _slow_disk(platform: Platform, step: FaultStep, target: str) -> tuple[Heal | None, str]:
    """Every fsync on the node's store takes ``latency_ms`` longer until the heal."""
    fs = _storage_of(platform, step)
    _, name = await resolve_process(platform, target)
    prefix = platform.storage_prefix(name)
    seconds = (step.latency_ms or 0.0) / 1000.0
    await fs.set_fsync_latency(seconds, prefix)

    async def heal() -> None:
        await fs.set_fsync_latency(0.0, prefix)

    return heal, f"fsync on the store of {name} delayed {step.latency_ms} ms"


@dataclass
class ActiveFault:
    """A fault that was applied; ``heal`` undoes it (None once healed or nothing to undo)."""

    step: FaultStep
    applied_s: float
    detail: str
    heal: Heal | None
    removed_s: float | None = None
    heal_error: str | None = None
    #: the broker node a broker/route fault hit (resolved when applied)
    node: str | None = None
    #: collecting the ``during`` evidence (cancelled if the heal comes first)
    evidence: asyncio.Task[None] | None = None
    #: the process it holds (``service:NAME``, ``broker:nN``): one fault at a time per key
    key: str | None = None
    #: it holds its key's slot until its heal is done
    holds_slot: bool = False
    healing: bool = False


#: A crash-loop's crash postponed by more than this is journalled (``fault.collision``).
LATE_S = 0.05


#: How long evidence collection waits for the broker to settle (new leader, routes back);
#: a fault that lasts longer gets its whole duration for the ``during`` evidence: a stream
#: leader's successor is elected 4 to 9 s (Raft election timeout) after the kill, later on a
#: loaded machine or after a split vote, and 10 s missed it at load 6-7.
EVIDENCE_TIMEOUT_S = 10.0


class FaultEngine:
    """Applies fault steps to a platform and remembers how to heal each one.

    Besides the record of each fault, it gathers evidence that the fault really happened
    and really healed, as platform events (``fault.evidence``, phases ``before``,
    ``during`` and ``after``): node pids, restarts, distinct route peers and the meta and
    stream leaders for broker and route faults; pid and restarts for services; the proxy's
    connection counters for link faults. ``during``/``after`` wait (bounded) for the
    expected state (a new stream leader, a node without routes, routes back) and say how
    long that took or that it never came.
    """

    def __init__(self, platform: Platform, *, t0: float | None = None,
                 progress: ProgressSink | None = None) -> None:
        self.platform = platform
        self.t0 = time.monotonic() if t0 is None else t0
        #: live progress (issue 12): told when each fault is applied and healed
        self.progress = progress or ProgressSink()
        self.active: list[ActiveFault] = []
        self._evidence: list[asyncio.Task[None]] = []
        #: process key -> its slot (FIFO) and the fault holding it: a fault reaching a
        #: target whose previous fault is not healed yet waits for that heal (issue 11 §5)
        self._slots: dict[str, asyncio.Lock] = {}
        self._holders: dict[str, ActiveFault] = {}
        #: running crash-loops (held here: asyncio keeps only weak references to tasks)
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    def _now(self) -> float:
        return time.monotonic() - self.t0

    async def apply(self, step: FaultStep, *, healed_here: bool | None = None) -> ActiveFault:
        """Apply ``step`` now; raises ConfigError for a combination nobody handles.

        A process fault takes its target's slot and keeps it until :meth:`remove` healed it,
        so the next fault on that target waits (journalled) instead of hitting a process
        that is still restarting. ``healed_here``: the caller will call :meth:`remove`
        during the method (default: the step has ``duration_s``); otherwise the slot is
        given back at once, the fault lasting until the rollbacks."""
        kind, _, arg = step.target.partition(":")
        handler = _HANDLERS.get((kind, step.action))
        if handler is None:
            supported = sorted(a for k, a in _HANDLERS if k == kind)
            raise ConfigError(
                f"fault action {step.action!r} is not supported on {kind} targets "
                f"({step.target!r}); supported: {supported}"
            )
        # Process handlers resolve the whole target (broker:stream-leader:S); links the name.
        target = arg if kind == "link" else step.target
        node = (await resolve_node_name(self.platform, step.target)
                if kind in ("broker", "route") and step.target not in MANY_NODES else None)
        key = _process_key(step, node)
        slot = key is not None and step.action != "crash-loop"
        collision = await self._take_slot(step, key) if slot else ""
        try:
            before = await self._observe(step)
            self._evidence_event(step, "before", before, node=node)
            applied = self._now()
            fault = ActiveFault(step=step, applied_s=applied, detail="", heal=None, key=key)
            heal: Heal | None
            if step.action == "crash-loop":
                heal, detail = self._start_crash_loop(fault)
            else:
                heal, detail = await handler(self.platform, step, target)
        except BaseException:
            if slot:
                self._give_slot(key)
            raise
        fault.heal, fault.detail = heal, detail + collision
        if heal is None:
            fault.removed_s = applied
        if slot:
            if heal is not None and (step.duration_s is not None if healed_here is None
                                     else healed_here):
                fault.holds_slot = True
                assert key is not None
                self._holders[key] = fault
            else:
                self._give_slot(key)
        self.active.append(fault)
        self.platform.event("fault.applied", action=step.action, target=step.target,
                            detail=fault.detail)
        if heal is not None:
            self.progress.fault_applied(id(fault), f"{step.action} {step.target}", step.duration_s)
        fault.node = node
        fault.evidence = self._spawn(lambda: self._collect(step, "during", node))
        return fault

    async def remove(self, fault: ActiveFault) -> None:
        """Heal one fault (idempotent); the failure, if any, is kept, not raised."""
        heal, fault.heal = fault.heal, None
        if heal is None:
            return
        pending, fault.evidence = fault.evidence, None
        if pending is not None and not pending.done():
            # Healed before the fault's expected state showed (or before the collector ran):
            # keep what it looks like now, still under the fault.
            await cancel_and_wait(pending)
            self._evidence_event(fault.step, "during", await self._observe(fault.step),
                                 node=fault.node, settled=False)
        fault.healing = True
        try:
            await heal()
        except Exception as exc:
            fault.heal_error = f"{type(exc).__name__}: {exc}"
            self.platform.event("fault.heal_failed", target=fault.step.target,
                                error=fault.heal_error)
        finally:
            fault.healing = False
            if fault.holds_slot:
                fault.holds_slot = False
                self._holders.pop(fault.key or "", None)
                self._give_slot(fault.key)
        fault.removed_s = self._now()
        self.progress.fault_healed(id(fault), fault.heal_error)
        self.platform.event("fault.removed", action=fault.step.action, target=fault.step.target)
        self._spawn(lambda: self._collect(fault.step, "after", fault.node))

    async def heal_all(self) -> list[str]:
        """Heal every fault still in force, newest first; returns what was healed.
        A crash-loop still running starts no new crash."""
        self._stopping = True
        healed = []
        for fault in reversed(self.active):
            if fault.heal is not None:
                await self.remove(fault)
                healed.append(f"{fault.step.action} {fault.step.target}")
        await self.settle()
        return healed

    async def settle(self, timeout_s: float = EVIDENCE_TIMEOUT_S + 5.0) -> None:
        """Wait for pending evidence collection (bounded); what is late is cancelled."""
        tasks, self._evidence = self._evidence, []
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout_s)
        # A collector inside a nats-py request may swallow one cancellation (wait_for).
        await cancel_and_wait(*late, suppress_errors=True)

    # ------------------------------------------------------------------ collisions

    async def _take_slot(self, step: FaultStep, key: str | None) -> str:
        """Wait (first come, first served) until the target's previous fault is healed;
        journal the collision. Returns the text the fault's detail gets."""
        assert key is not None
        lock = self._slots.setdefault(key, asyncio.Lock())
        notes = []
        if lock.locked():
            holder = self._holders.get(key)
            what = f"{holder.step.action} {holder.step.target}" if holder else "another fault"
            state = "healing" if holder is not None and holder.healing else "in force"
            start = self._now()
            await lock.acquire()
            waited = self._now() - start
            self.platform.event("fault.collision", action=step.action, target=step.target,
                                step=step.name, healing=what, state=state,
                                waited_s=round(waited, 3), policy="waited for the heal")
            notes.append(f"; applied {waited:.2f} s late: waited for the heal of {what} "
                         f"({state} when this fault was due)")
        else:
            await lock.acquire()
        # Faults without duration_s give their slot back at once (nobody heals them before
        # the rollbacks): a later fault lands on top of them, and says so.
        held = [f for f in self.active if f.key == key and f.heal is not None
                and f.step.action != "crash-loop"]
        for f in held:
            self.platform.event("fault.collision", action=step.action, target=step.target,
                                step=step.name, holding=f"{f.step.action} {f.step.target}",
                                waited_s=0.0, policy="applied on top of a fault in force")
            notes.append(f"; applied on top of {f.step.action} {f.step.target} (in force)")
        return "".join(notes)

    def _give_slot(self, key: str | None) -> None:
        lock = self._slots.get(key or "")
        if lock is not None and lock.locked():
            lock.release()

    # ------------------------------------------------------------------ crash-loop

    def _start_crash_loop(self, loop: ActiveFault) -> tuple[Heal, str]:
        step = loop.step
        task = asyncio.create_task(self._crash_loop(loop), name=f"crash-loop {step.target}")
        self._loops.append(task)

        async def finish() -> None:
            # The runner calls this at the planned end: the loop's last crashes may still be
            # running late (slow restarts); they finish, each healed, before this returns.
            await asyncio.shield(task)

        times = f"{step.count} times" if step.count is not None else f"for {step.for_s:g} s"
        down = f"down {step.duration_s:g} s" if step.duration_s else "restarted at once"
        return finish, f"{step.crash} {step.target} every {step.every_s:g} s, {times}, {down}"

    async def _crash_loop(self, loop: ActiveFault) -> None:
        """Crash the target every ``every_s``, each crash healed before the next one.

        A restart that outlasts the period (readiness through a slow link) postpones the
        next crash until the target has run ``every_s - duration_s`` since it was ready:
        it is never crashed while still starting (issue 11 §5: "heal failed ... exited with
        code -9 before it was ready"), nor the moment it is up (it could then never work off
        anything, and redeliveries would pile up). Each postponement is journalled as a
        ``fault.collision`` event with the delay.
        """
        step = loop.step
        assert step.every_s is not None
        down = step.duration_s or 0.0
        up = step.every_s - down  # how long the target runs between crashes
        crashes = failed = late_n = 0
        max_late = 0.0
        due = loop.applied_s
        while not self._stopping:
            if step.count is not None and crashes >= step.count:
                break
            if step.for_s is not None and crashes and due - loop.applied_s + down > step.for_s:
                break
            if due > self._now():
                await asyncio.sleep(due - self._now())
            if self._stopping:
                break
            one = step.model_copy(update={
                "action": step.crash, "name": None, "duration_s": down or None,
                "every_s": None, "count": None, "for_s": None})
            try:
                crash = await self.apply(one, healed_here=True)
            except Exception as exc:  # the target vanished: the loop ends, said so
                self.platform.event("fault.crash_loop_stopped", target=step.target,
                                    crash=crashes + 1, error=f"{type(exc).__name__}: {exc}")
                loop.heal_error = f"crash {crashes + 1} failed: {type(exc).__name__}: {exc}"
                break
            crashes += 1
            if down:
                await asyncio.sleep(down)
            await self.remove(crash)
            failed += crash.heal_error is not None
            planned = crash.applied_s + step.every_s
            due = max(planned, self._now() + up)
            last = step.count is not None and crashes >= step.count
            if due - planned > LATE_S and not last:
                late_n += 1
                max_late = max(max_late, due - planned)
                self.platform.event(
                    "fault.collision", action=step.action, target=step.target, step=step.name,
                    crash=crashes + 1, waited_s=round(due - planned, 3),
                    healing=f"{step.crash} {step.target} (crash {crashes}: its restart took "
                            f"{crash.removed_s - crash.applied_s - down:.2f} s)"
                    if crash.removed_s is not None else f"{step.crash} {step.target}",
                    policy=f"postponed: the target runs {up:g} s between crashes")
        loop.detail += (f"; {crashes} crash(es), {failed} heal(s) failed, {late_n} postponed"
                        + (f" (up to {max_late:.2f} s: restarts outlasted every_s)"
                           if late_n else ""))

    # ------------------------------------------------------------------ evidence

    def _spawn(self, collect: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        # The coroutine is made inside the task: a task cancelled before it runs leaves no
        # never-awaited coroutine behind.
        async def guarded() -> None:
            try:
                await collect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # evidence is best effort, never fails a run
                self.platform.event("fault.evidence_failed", error=f"{type(exc).__name__}: "
                                    f"{exc}")

        task = asyncio.create_task(guarded())
        self._evidence.append(task)
        return task

    def _evidence_event(self, step: FaultStep, phase: str, state: dict[str, Any] | None,
                        **extra: Any) -> None:
        if state is None:
            return
        self.platform.event("fault.evidence", phase=phase, action=step.action,
                            target=step.target, state=state, **extra)

    def _streams(self) -> list[str]:
        return [s.name for s in self.platform.config.streams]

    async def _observe(self, step: FaultStep) -> dict[str, Any] | None:
        """The state a fault on ``step.target`` acts on, right now."""
        from harness.faults.partition import cluster_state

        kind, _, arg = step.target.partition(":")
        p = self.platform
        if kind in ("broker", "route") and p.broker is not None and p.broker.nodes:
            streams = self._streams() if len(p.broker.nodes) > 1 else []
            return await cluster_state(p.broker.nodes, streams)
        if kind == "service" and arg in p.services:
            proc = p.services[arg].proc
            return {"pid": proc.pid, "running": proc.running, "restarts": proc.restarts}
        if kind == "link" and arg in p.proxies:
            return dict(p.proxies[arg].stats.__dict__)
        return None

    async def _collect(self, step: FaultStep, phase: str, hit: str | None) -> None:
        """Record the state once the fault took hold (``during``) or healed (``after``)."""
        from harness.faults.partition import wait_cluster_state

        kind, _, _ = step.target.partition(":")
        p = self.platform
        if kind not in ("broker", "route") or p.broker is None or not p.broker.nodes:
            self._evidence_event(step, phase, await self._observe(step))
            return
        nodes = p.broker.nodes
        cluster = len(nodes) > 1
        streams = self._streams() if cluster else []

        def leaders_ok(state: dict[str, Any]) -> bool:
            return all(state["stream_leaders"].values()) and state["meta_leader"] is not None

        def during(state: dict[str, Any]) -> bool:
            if step.action in ("partition", "disconnect", "part-kill"):
                # Cut off: no routes on the node, and its peers have dropped theirs to it.
                cut_off = all(
                    n.get("routes") == (0 if name == hit else len(nodes) - 2)
                    for name, n in state["nodes"].items()
                )
                return cut_off and (not cluster or leaders_ok(state))
            if not cluster:
                return True
            # A new leader is elected among the nodes still running.
            return leaders_ok(state)

        def after(state: dict[str, Any]) -> bool:
            up = all(n["running"] and not n["paused"] for n in state["nodes"].values())
            if not up or not cluster:
                return up
            routed = all(n.get("routes") == len(nodes) - 1 for n in state["nodes"].values())
            return routed and leaders_ok(state)

        # The heal cancels a ``during`` collector still waiting: the fault's duration bounds it.
        window = EVIDENCE_TIMEOUT_S
        if phase == "during":
            window = max(window, step.duration_s or 0.0)
        state, held, took = await wait_cluster_state(
            nodes, streams, during if phase == "during" else after, timeout_s=window
        )
        self._evidence_event(step, phase, state, node=hit, settled=held,
                             waited_s=round(took, 3))

    def records(self) -> list[FaultRecord]:
        """Faults as observations for the checks and the journal."""
        return [
            FaultRecord(
                kind=f.step.action,
                target=f.step.target,
                applied_at=f.applied_s,
                removed_at=f.removed_s,
                detail=f.detail + (f"; heal failed: {f.heal_error}" if f.heal_error else ""),
            )
            for f in self.active
        ]

    def last_heal_s(self) -> float | None:
        """When the last fault was healed (for lag recovery); None if none was."""
        ends = [f.removed_s for f in self.active if f.removed_s is not None]
        return max(ends) if ends else None


def _process_key(step: FaultStep, node: str | None) -> str | None:
    """The process a fault holds: ``service:NAME``, ``broker:nN`` (resolved), ``broker:all``;
    None for links and routes (toxics and partitions combine)."""
    kind = step.target.partition(":")[0]
    if kind == "service":
        return step.target
    if kind == "broker":
        if step.target in MANY_NODES:  # broker:all, broker:minority: every node counts
            return "broker:all"
        return f"broker:{node}" if node else None
    return None


async def _crash_loop_handler(
    platform: Platform, step: FaultStep, target: str
) -> tuple[Heal | None, str]:
    raise AssertionError("crash-loop is run by FaultEngine.apply itself")


for _kind in ("broker", "service"):
    register_fault(_kind, "crash-loop")(_crash_loop_handler)


def describe_handlers() -> dict[str, Any]:
    """Supported (target kind -> actions), for ``qiki-harness doctor`` and error messages."""
    out: dict[str, list[str]] = {}
    for kind, action in sorted(_HANDLERS):
        out.setdefault(kind, []).append(action)
    return out


def fault_evidence_summary(platform: Platform) -> dict[str, Any]:
    """End-of-run counters that show faults happened: the harness client's disconnects and
    reconnects, broker node restarts and pids, service restarts, proxy counters."""
    kinds = [e.get("kind") for e in platform.events]
    out: dict[str, Any] = {
        "harness_disconnects": kinds.count("harness.disconnected"),
        "harness_reconnects": kinds.count("harness.reconnected"),
        "node_restarts": {},
        "service_restarts": {
            name: svc.proc.restarts for name, svc in platform.services.items()
        },
        "link_proxies": {
            name: dict(proxy.stats.__dict__) for name, proxy in platform.proxies.items()
        },
    }
    broker = platform.broker
    if broker is not None:
        out["node_restarts"] = {n.name: int(getattr(n, "restarts", 0)) for n in broker.nodes}
    routes = getattr(platform, "route_proxies", None)
    if routes is not None:
        out["route_proxies"] = routes.describe()
    return out


# Registers ``corrupt`` (its own module: it edits store files, nothing here does).
from harness.faults import corrupt as _corrupt  # noqa: E402,F401
