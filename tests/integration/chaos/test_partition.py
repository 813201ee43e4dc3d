"""Partitions of a real 3-node nats-server cluster through route fault proxies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from harness.broker import NatsCluster
from harness.faults.partition import RouteProxies, cluster_state, wait_cluster_state
from tests.js_retry import until_answered

pytestmark = pytest.mark.chaos

STREAM = "PART"


@dataclass
class Routed:
    cluster: NatsCluster
    routes: RouteProxies


@pytest.fixture
async def routed(tmp_path: Path) -> AsyncIterator[Routed]:
    """A 3-node cluster whose six directed routes each run through a fault proxy."""
    async with RouteProxies() as routes:
        cluster = NatsCluster(3, route_url_for=routes.route_url_for, log_dir=tmp_path / "logs")
        try:
            cluster.prepare()
            await routes.attach(cluster)
            async with cluster:
                yield Routed(cluster, routes)
        finally:
            await cluster.close()


def routes_of(state: dict[str, object], name: str) -> int:
    nodes = state["nodes"]
    assert isinstance(nodes, dict)
    return int(nodes[name].get("routes", -1))


async def full_mesh(cluster: NatsCluster) -> dict[str, object]:
    """Wait until every node has a route to both peers (the meta leader can come first)."""
    state, held, _ = await wait_cluster_state(
        cluster.nodes, [], lambda s: all(routes_of(s, n) == 2 for n in ("n1", "n2", "n3")),
        timeout_s=15.0)
    assert held, f"no full route mesh: {state}"
    return state


async def test_routes_run_through_the_proxies(routed: Routed) -> None:
    await full_mesh(routed.cluster)
    state = await cluster_state(routed.cluster.nodes)
    assert {n: routes_of(state, n) for n in ("n1", "n2", "n3")} == {"n1": 2, "n2": 2, "n3": 2}
    assert len(routed.routes.proxies) == 6
    # every route connection of the cluster was accepted by one of our proxies
    assert all(p.stats.connections_accepted >= 1 for p in routed.routes.proxies.values())


async def test_isolate_n3_then_heal(routed: Routed) -> None:
    cluster = routed.cluster
    await full_mesh(cluster)
    nc = await nats.connect(cluster.nodes[0].client_url, connect_timeout=2,
                            max_reconnect_attempts=-1)
    try:
        js = nc.jetstream(timeout=5.0)
        await until_answered(lambda: js.add_stream(
            StreamConfig(name=STREAM, subjects=["part.>"], num_replicas=3)), "create the stream")
        await until_answered(
            lambda: js.publish("part.before", b"1", headers={"Nats-Msg-Id": "1"}),
            "publish before the partition")

        heal = await routed.routes.isolate(routed.routes.index_of("n3"))
        state, held, _ = await wait_cluster_state(
            cluster.nodes, [STREAM],
            lambda s: routes_of(s, "n3") == 0 and routes_of(s, "n1") == 1
            and s["stream_leaders"][STREAM] in {"n1", "n2"},
            timeout_s=15.0,
        )
        assert held, f"n3 still routed or no majority leader: {state}"
        # the cut is on every proxy from and to n3 and on no other
        down = {k for k, v in routed.routes.describe().items() if v["down"]}
        assert down == {"n1->n3", "n3->n1", "n2->n3", "n3->n2"}

        # the majority (n1, n2) still accepts R3 writes through n1
        # (the message id makes a retry after a lost ack a no-op, not a second message)
        ack = await until_answered(
            lambda: js.publish("part.during", b"2", headers={"Nats-Msg-Id": "2"}),
            "publish during the partition")
        assert ack.seq == 2

        await heal()
        state, held, _ = await wait_cluster_state(
            cluster.nodes, [STREAM],
            lambda s: all(routes_of(s, n) == 2 for n in ("n1", "n2", "n3")),
            timeout_s=15.0,
        )
        assert held, f"routes did not come back after the heal: {state}"
        assert not any(v["down"] for v in routed.routes.describe().values())
        # n3 catches up: its own replica (its monitoring port reports it) has both messages
        msgs = None
        for _ in range(150):
            jsz = await cluster.nodes[2].monitor("/jsz?accounts=true&streams=true")
            msgs = next((sd["state"]["messages"] for acc in jsz.get("account_details") or []
                         for sd in acc.get("stream_detail") or [] if sd["name"] == STREAM), None)
            if msgs == 2:
                break
            await asyncio.sleep(0.1)
        assert msgs == 2, f"n3's replica has {msgs} message(s) after the heal"
    finally:
        await nc.close()


async def test_overlapping_cuts_heal_independently(routed: Routed) -> None:
    r = routed.routes
    heal_n3 = await r.isolate(2)
    heal_n1 = await r.split([0])
    n1_n3 = r.proxies[(0, 2)]
    assert len(n1_n3.toxics) == 2  # both cuts hold the n1<->n3 route
    await heal_n3()
    assert n1_n3.is_down and not r.proxies[(1, 2)].is_down  # n1's cut still holds
    await heal_n1()
    assert not any(p.is_down for p in r.proxies.values())


async def test_attach_before_prepare_is_a_clear_error(tmp_path: Path) -> None:
    async with RouteProxies() as routes:
        cluster = NatsCluster(3, route_url_for=routes.route_url_for)
        try:
            with pytest.raises(ValueError, match="need a cluster of 2"):
                await routes.attach(cluster)
            with pytest.raises(RuntimeError, match=r"must run after cluster\.prepare"):
                routes.route_url_for(0, 1, 4248)
        finally:
            await cluster.close()
