"""Network partitions of a process-backend NATS cluster: a fault proxy on every route.

Node ``i`` reaches node ``j`` through its own proxy ``(i, j)``; cutting a node off means
putting a :class:`~harness.faults.toxics.Down` toxic on every proxy from and to it (both
directions: each node dials its peers, so a one-sided cut would be bridged by the other
side's connection). Down refuses new route connections and drops the open ones, so the
servers notice at once instead of waiting for route PINGs.

    routes = RouteProxies()
    async with routes:
        cluster = NatsCluster(3, route_url_for=routes.route_url_for)
        cluster.prepare()                    # ports known, nothing spawned yet
        await routes.attach(cluster)         # proxies listen before the nodes dial
        async with cluster:
            heal = await routes.isolate(2)   # minority partition: n3 alone
            ...
            await heal()

The cluster must advertise an unreachable route address (``NatsCluster`` does when
``route_url_for`` is given), or gossip would teach the nodes direct routes around the proxies.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from harness._resource import AsyncResource
from harness.faults.proxy import FaultProxy
from harness.faults.toxics import Down

if TYPE_CHECKING:
    from harness.scenario.model import Scenario

__all__ = ["RouteProxies", "cluster_state", "needs_route_proxies", "wait_cluster_state"]


class _RoutedNode(Protocol):
    name: Any
    cluster_port: int | None


class _RoutedCluster(Protocol):
    @property
    def nodes(self) -> Sequence[Any]: ...


class RouteProxies(AsyncResource):
    """One :class:`FaultProxy` per directed route ``(i, j)`` of a cluster; partitions on top.

    An async context manager; :meth:`attach` creates and starts the proxies once the
    cluster's route ports are known (after ``cluster.prepare()``), and exit stops them.
    """

    def __init__(self) -> None:
        self.proxies: dict[tuple[int, int], FaultProxy] = {}
        self.names: list[str] = []
        self._cut_ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"RouteProxies({len(self.proxies)} routes over {self.names})"

    async def attach(self, cluster: _RoutedCluster) -> None:
        """Start a proxy for every ordered pair of nodes, pointed at the peer's route port."""
        if self.proxies:
            raise RuntimeError("RouteProxies.attach: already attached to a cluster")
        nodes = list(cluster.nodes)
        if len(nodes) < 2:
            raise ValueError(f"RouteProxies need a cluster of 2+ nodes, got {len(nodes)}")
        self.names = [str(n.name) for n in nodes]
        try:
            for i, j in itertools.permutations(range(len(nodes)), 2):
                port = nodes[j].cluster_port
                if not port:
                    raise ValueError(
                        f"node {self.names[j]} has no route port yet: call cluster.prepare() "
                        "before RouteProxies.attach()"
                    )
                proxy = FaultProxy("127.0.0.1", int(port),
                                   name=f"route:{self.names[i]}->{self.names[j]}")
                await proxy.start()
                self.proxies[(i, j)] = proxy
        except BaseException:
            await self.close()
            raise

    def route_url_for(self, from_idx: int, to_idx: int, peer_route_port: int) -> str:
        """``NatsCluster(route_url_for=...)`` hook: node ``from_idx`` dials its proxy."""
        proxy = self.proxies.get((from_idx, to_idx))
        if proxy is None:
            raise RuntimeError(
                f"no route proxy {from_idx}->{to_idx}: RouteProxies.attach(cluster) must run "
                "after cluster.prepare() and before the cluster starts"
            )
        return f"nats-route://{proxy.listen_host}:{proxy.port}"

    def index_of(self, name: str) -> int:
        """Index of node ``name``; ValueError naming the known nodes."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"no node {name!r} behind the route proxies; nodes are "
                             f"{self.names}") from None

    def links_of(self, index: int) -> list[FaultProxy]:
        """Every route proxy from or to node ``index``."""
        return [p for (i, j), p in sorted(self.proxies.items()) if index in (i, j)]

    async def isolate(self, index: int) -> Callable[[], Awaitable[None]]:
        """Cut node ``index`` off from every peer (both directions); returns the heal."""
        if not 0 <= index < len(self.names):
            raise ValueError(f"node index {index} out of range for nodes {self.names}")
        return await self.cut(self.links_of(index))

    async def split(self, side: Sequence[int]) -> Callable[[], Awaitable[None]]:
        """Partition ``side`` from the rest: every route crossing the cut goes down."""
        a = set(side)
        crossing = [p for (i, j), p in sorted(self.proxies.items()) if (i in a) != (j in a)]
        return await self.cut(crossing)

    async def cut(self, links: Sequence[FaultProxy]) -> Callable[[], Awaitable[None]]:
        """Put a uniquely named Down toxic on ``links``; the returned heal removes exactly those
        (overlapping partitions heal independently)."""
        name = f"partition-{next(self._cut_ids)}"
        done: list[FaultProxy] = []
        try:
            for proxy in links:
                await proxy.add(Down(), direction="both", name=name)
                done.append(proxy)
        except BaseException:
            for proxy in done:
                await proxy.remove(name)
            raise

        async def heal() -> None:
            for proxy in done:
                if name in proxy.toxics:
                    await proxy.remove(name)

        return heal

    def describe(self) -> dict[str, Any]:
        """Journal-friendly: each route proxy and whether it is cut."""
        return {
            f"{self.names[i]}->{self.names[j]}": {"listen": p.port, "down": p.is_down}
            for (i, j), p in sorted(self.proxies.items())
        }

    async def close(self) -> None:
        """Stop every proxy. Idempotent."""
        proxies, self.proxies = list(self.proxies.values()), {}
        for proxy in proxies:
            await proxy.stop()

    async def start(self) -> None:
        """Nothing to start yet: the proxies start in :meth:`attach`, once the cluster's
        route ports are known."""


def needs_route_proxies(scenario: Scenario) -> bool:
    """True when a scenario's faults act on cluster routes (partition, part-kill or
    ``route:nN``)."""
    from harness.scenario.model import FaultStep, step_body

    if scenario.topology.broker.nodes < 2:
        return False
    for entry in scenario.method:
        step = step_body(entry)
        if isinstance(step, FaultStep) and (
            step.target.startswith("route:") or step.action in ("partition", "part-kill")
        ):
            return True
    return False


# ------------------------------------------------------------------ observed cluster state


async def _node_state(node: Any, streams: Sequence[str]) -> dict[str, Any]:
    state: dict[str, Any] = {
        "running": bool(node.running),
        "paused": bool(getattr(node, "paused", False)),
        "restarts": int(getattr(node, "restarts", 0)),
        "pid": getattr(node, "pid", None),
    }
    if not state["running"] or state["paused"] or not hasattr(node, "monitor"):
        return state
    try:
        routez = await node.monitor("/routez", timeout_s=0.5)
        # Route pooling opens several connections per peer: count distinct peers.
        peers = {r.get("remote_name") or r.get("remote_id") for r in routez.get("routes") or []}
        state["routes"] = len(peers - {None})
        jsz = await node.monitor("/jsz?accounts=true&streams=true", timeout_s=0.5)
        state["meta_leader"] = (jsz.get("meta_cluster") or {}).get("leader")
        leaders: dict[str, str | None] = {}
        for acc in jsz.get("account_details") or []:
            for sd in acc.get("stream_detail") or []:
                if sd.get("name") in streams:
                    leaders[sd["name"]] = (sd.get("cluster") or {}).get("leader")
        state["stream_leaders"] = leaders
    except (OSError, TimeoutError, ValueError) as exc:
        state["monitor_error"] = type(exc).__name__
    return state


async def cluster_state(nodes: Sequence[Any], streams: Sequence[str] = ()) -> dict[str, Any]:
    """What the nodes report now: per node running/paused/restarts/pid and, when reachable,
    distinct route peers, the meta leader and stream leaders; plus the leaders a quorum of
    the nodes agrees on (``meta_leader``, ``stream_leaders``; None when no quorum does)."""
    states = await asyncio.gather(*(_node_state(n, streams) for n in nodes))
    per_node = {str(n.name): s for n, s in zip(nodes, states, strict=True)}
    live = {name for name, s in per_node.items() if s["running"] and not s["paused"]}

    quorum = len(per_node) // 2 + 1

    def agreed(values: list[Any]) -> Any:
        # A quorum's view: a cut-off old leader keeps naming itself until it steps down.
        counts = Counter(v for v in values if v)
        for v, n in counts.most_common(1):
            if n >= quorum and v in live:
                return v
        return None

    reachable = [s for s in per_node.values() if "meta_leader" in s]
    return {
        "nodes": per_node,
        "meta_leader": agreed([s.get("meta_leader") for s in reachable]),
        "stream_leaders": {
            st: agreed([s.get("stream_leaders", {}).get(st) for s in reachable]) for st in streams
        },
    }


async def wait_cluster_state(
    nodes: Sequence[Any],
    streams: Sequence[str],
    pred: Callable[[dict[str, Any]], bool],
    *,
    timeout_s: float,
) -> tuple[dict[str, Any], bool, float]:
    """Poll :func:`cluster_state` until ``pred`` holds or ``timeout_s`` passes; returns
    (last state, whether it held, seconds waited)."""
    t0 = time.monotonic()
    delay = 0.05
    while True:
        state = await cluster_state(nodes, streams)
        if pred(state):
            return state, True, time.monotonic() - t0
        if time.monotonic() - t0 >= timeout_s:
            return state, False, time.monotonic() - t0
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.25)
