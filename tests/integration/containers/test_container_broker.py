"""ContainerBroker against a real Docker engine: single node, faults, cluster, partitions."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import nats
import pytest
from nats.js.api import StreamConfig

from harness.broker.container import ContainerBroker, ContainerNode, create_broker
from harness.broker.errors import BrokerStartError
from harness.containers.engine import docker_client, list_labelled, run_selector
from harness.containers.faults import ContainerFault, run_fault
from tests.js_retry import until_answered

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 30
) -> None:
    """Poll ``check`` until true; a generous deadline, not a speed assertion."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.1)


def leftovers(run_id: str) -> tuple[list[str], list[str]]:
    client = docker_client()
    try:
        return list_labelled(client, run_selector(run_id))
    finally:
        client.close()


@pytest.fixture
async def single() -> AsyncIterator[ContainerBroker]:
    async with ContainerBroker() as broker:
        yield broker
    assert leftovers(broker.run_id) == ([], [])


async def test_single_node_publishes_via_published_localhost_port(
    single: ContainerBroker,
) -> None:
    (node,) = single.nodes
    assert re.fullmatch(r"nats://127\.0\.0\.1:\d+", node.client_url)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", node.monitor_url)
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", single.version)
    assert single.nats_settings().servers == [node.client_url]
    desc = single.describe()
    assert desc["backend"] == "container" and desc["nodes"][0]["running"] is True
    assert "n1" in node.log_text()  # server name appears in its startup log

    nc = await nats.connect(node.client_url, connect_timeout=5)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="T", subjects=["t.>"]))
        ack = await js.publish("t.1", b"hello")
        assert (ack.stream, ack.seq) == ("T", 1)
        # clients only ever learn 127.0.0.1 (never a container address)
        assert all("172." not in u for u in (nc.connected_url.netloc,))
    finally:
        await nc.close()


async def test_pause_freezes_and_resume_thaws(single: ContainerBroker) -> None:
    (node,) = single.nodes
    await node.pause()
    assert node.paused and node.running
    assert not await node.healthy(timeout_s=1.0)  # frozen: no answer
    await node.resume()
    assert not node.paused
    await eventually(node.healthy, "healthz after unpause")


async def test_kill_then_restart_keeps_stream_data(single: ContainerBroker) -> None:
    (node,) = single.nodes
    url = node.client_url
    nc = await nats.connect(url, connect_timeout=5)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="K", subjects=["k.>"]))
    for i in range(5):
        await js.publish("k.x", str(i).encode())
    await nc.close()

    await node.kill()
    assert not node.running and node.exit_code == 137  # SIGKILL
    assert not await node.healthy()
    await node.restart()
    assert node.running and node.restarts == 1 and node.client_url == url

    nc = await nats.connect(url, connect_timeout=5)
    try:
        info = await nc.jetstream().stream_info("K")
        assert info.state.messages == 5
    finally:
        await nc.close()


async def test_fault_values_apply_and_heal(single: ContainerBroker) -> None:
    times = await run_fault(ContainerFault("pause", "n1"), single, duration_s=0.2)
    assert times.removed_at is not None and times.removed_at >= times.applied_at
    (node,) = single.nodes
    assert not node.paused
    with pytest.raises(RuntimeError):
        async with ContainerFault("kill", "n1").applied(single):
            assert not node.running
            raise RuntimeError("step failed")
    assert node.running  # healed although the body failed
    await eventually(node.healthy, "healthz after heal")


async def test_no_container_or_network_left_after_failing_body() -> None:
    run_id = ""
    with pytest.raises(ZeroDivisionError):
        async with create_broker(nodes=1) as broker:
            run_id = broker.run_id
            assert leftovers(run_id) != ([], [])
            1 / 0  # noqa: B018
    assert run_id and leftovers(run_id) == ([], [])


async def test_failed_start_reports_the_server_error_and_cleans_up() -> None:
    broker = ContainerBroker(extra_config={"bogus_option_xyz": 1}, ready_timeout_s=20)
    with pytest.raises(BrokerStartError, match="bogus_option_xyz"):
        await broker.start()
    assert leftovers(broker.run_id) == ([], [])


async def _stream_messages(node: ContainerNode, stream: str) -> int | None:
    try:
        jsz = await node.monitor("/jsz?accounts=true&streams=true", timeout_s=1.0)
    except (OSError, TimeoutError):
        return None
    for acc in jsz.get("account_details") or []:
        for sd in acc.get("stream_detail") or []:
            if sd.get("name") == stream:
                return int(sd["state"]["messages"])
    return None


async def test_cluster_r3_stream_survives_kill_and_partition() -> None:
    # Fast route PINGs so peers notice the partition in seconds (default: minutes).
    async with ContainerBroker(3, extra_config={"ping_interval": "1s", "ping_max": 2}) as cluster:
        assert [n.name for n in cluster.nodes] == ["n1", "n2", "n3"]
        assert await cluster.meta_leader() in {"n1", "n2", "n3"}
        nc = await nats.connect(servers=cluster.client_urls, connect_timeout=5)
        try:
            js = nc.jetstream(timeout=10)
            await js.add_stream(StreamConfig(name="R", subjects=["r.>"], num_replicas=3))
            # the create answers before the stream's Raft group has a leader: wait for it
            await cluster.stream_leader("R", timeout_s=30)
            for i in range(3):
                await until_answered(
                    lambda i=i: js.publish("r.x", str(i).encode(), headers={"Nats-Msg-Id": str(i)}),
                    f"publish {i} to the new stream",
                )

            # kill the stream leader: a new one is elected, writes continue
            leader = await cluster.stream_leader("R")
            await leader.kill()
            new_leader = await cluster.stream_leader("R", timeout_s=30)
            assert new_leader is not leader
            # the client may be reconnecting, the new leader's interest still on its way
            await until_answered(
                lambda: js.publish("r.x", b"after-kill", headers={"Nats-Msg-Id": "after-kill"}),
                "publish after the leader kill",
            )
            await leader.restart()

            # partition one follower off the network: quorum (2 of 3) still writes
            follower = next(n for n in cluster.nodes if n is not new_leader)
            await follower.disconnect()
            assert not follower.connected
            assert not await follower.healthy()  # off the network: published port dead too
            others = [n for n in cluster.nodes if n is not follower]

            async def routes_dropped() -> bool:
                routez = await others[0].monitor("/routez")
                return all(r.get("remote_name") != follower.name for r in routez["routes"])

            await eventually(routes_dropped, f"peers drop routes to {follower.name}")
            await until_answered(
                lambda: js.publish(
                    "r.x", b"during-partition", headers={"Nats-Msg-Id": "during-partition"}
                ),
                "publish during the partition",
            )
            await follower.connect()

            async def caught_up() -> bool:
                return await _stream_messages(follower, "R") == 5

            await eventually(caught_up, f"{follower.name} catches up after reconnect", 60)
        finally:
            await nc.close()
        run_id = cluster.run_id
    assert leftovers(run_id) == ([], [])
