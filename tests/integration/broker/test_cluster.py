"""NatsCluster (process backend, 3 nodes) against the real nats-server binary."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js.api import StreamConfig

from harness._process import _proc_state
from harness.broker import BrokerError, NatsCluster, open_broker
from harness.broker._config import free_ports
from tests.js_retry import until_answered


# A tiny relay for these tests only: the real fault proxy lives in harness/faults. It
# proves that routes go through whatever route_url_for returns.
class TcpRelay:
    """Forward 127.0.0.1:<port> to 127.0.0.1:<target_port>; ``cut()`` drops and refuses."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_w))
        tasks = [
            asyncio.ensure_future(self._pipe(reader, up_w)),
            asyncio.ensure_future(self._pipe(up_r, writer)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)
        self._writers.difference_update((writer, up_w))

    async def cut(self) -> None:
        """Refuse new connections and drop the live ones (the link is down)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def heal(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        """Stop relaying for good."""
        with contextlib.suppress(Exception):
            await self.cut()


def alive(pid: int | None) -> bool:
    state = _proc_state(pid) if pid is not None else None
    return state is not None and state not in "ZX"


@pytest.fixture
async def cluster() -> AsyncIterator[NatsCluster]:
    async with NatsCluster(3) as c:
        yield c


async def client_info(port: int) -> dict[str, object]:
    """The INFO a client gets on connect."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        line = await asyncio.wait_for(reader.readline(), 2)
    finally:
        writer.close()
    assert line.startswith(b"INFO ")
    info: dict[str, object] = json.loads(line[5:])
    return info


async def test_cluster_forms_with_meta_leader(cluster: NatsCluster) -> None:
    assert [n.name for n in cluster.nodes] == ["n1", "n2", "n3"]
    assert len(set(cluster.client_urls)) == 3
    leader = await cluster.meta_leader()
    assert leader in {"n1", "n2", "n3"}
    assert cluster.get_node(leader).name == leader
    assert cluster.node(leader) is cluster.get_node(leader)
    with pytest.raises(KeyError, match="'n9'"):
        cluster.get_node("n9")
    for node in cluster.nodes:
        jsz = await node.monitor("/jsz")
        assert jsz["meta_cluster"]["cluster_size"] == 3
        # no_advertise: clients are not told the other nodes' addresses.
        assert not (await client_info(node.client_port)).get("connect_urls")
    assert cluster.describe()["cluster"] is True


async def test_r3_stream_survives_stream_leader_kill(cluster: NatsCluster) -> None:
    nc = await nats.connect(
        servers=cluster.client_urls, max_reconnect_attempts=-1, reconnect_time_wait=0.05
    )
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="R3", subjects=["r3.>"], num_replicas=3))
        # the create answers before the stream's Raft group has a leader: wait for it
        await cluster.stream_leader("R3", timeout_s=30)
        await until_answered(
            lambda: js.publish("r3.a", b"1", timeout=5, headers={"Nats-Msg-Id": "a"}),
            "publish to the new stream",
        )
        leader = await cluster.stream_leader("R3")
        await leader.kill()
        assert not leader.running
        # Raft elects the successor 4-9 s after the kill, later on a loaded machine: the
        # default 10 s wait is the same bound that failed the chaos e2e at load 6-7.
        new_leader = await cluster.stream_leader("R3", timeout_s=30)
        assert new_leader is not leader and new_leader.running
        # Writes keep being accepted (retry while the client may reconnect elsewhere).
        for i in range(5):
            await until_answered(
                lambda i=i: js.publish(
                    f"r3.b{i}", b"x", timeout=1, headers={"Nats-Msg-Id": f"b{i}"}
                ),
                f"publish {i} after the leader kill",
            )
        info = await js.stream_info("R3")
        assert info.state.messages == 6
        # The killed node comes back on the same ports and rejoins.
        await leader.restart()
        assert leader.running and leader.restarts == 1
        assert await cluster.meta_leader() in {"n1", "n2", "n3"}
    finally:
        await nc.close()


async def test_open_broker_three_nodes_and_failing_body_cleanup() -> None:
    broker = open_broker("process", nodes=3)
    assert isinstance(broker, NatsCluster)
    with pytest.raises(RuntimeError, match="fail inside"):
        async with broker:
            pids = [n.pid for n in broker.nodes]
            workdir = broker.workdir
            assert all(alive(p) for p in pids)
            raise RuntimeError("fail inside")
    assert not any(alive(p) for p in pids)
    assert workdir is not None and not workdir.exists()


async def test_routes_go_through_route_url_for_and_partition_isolates() -> None:
    """Every route goes through a relay: cutting n1's relays cuts n1 off for real.

    Without the cluster's unreachable route advertisement, nodes learn each other's direct
    route ports by gossip and a partition would be bypassed (checked by hand on 2.15.1).
    """
    relays: dict[tuple[int, int], TcpRelay] = {}

    def route_url_for(i: int, j: int, peer_port: int) -> str:
        relay = relays.get((i, j))
        if relay is None:
            relay = relays[(i, j)] = TcpRelay(peer_port)
            relay.port = free_ports(1)[0]
        return f"nats-route://127.0.0.1:{relay.port}"

    cluster = NatsCluster(3, route_url_for=route_url_for, ready_timeout_s=15)
    try:
        cluster.prepare()  # ports known: relays can listen before the nodes start
        for i in range(3):
            cluster.route_urls(i)
        for relay in relays.values():
            await relay.start()
        await cluster.start()
        assert len(relays) == 6

        _, n2, n3 = cluster.nodes
        assert all(r.accepted > 0 for r in relays.values())
        for relay in (relays[(0, 1)], relays[(1, 0)], relays[(0, 2)], relays[(2, 0)]):
            await relay.cut()

        async def routes(node_index: int) -> set[str]:
            rz = await cluster.nodes[node_index].monitor("/routez")
            return {r["remote_name"] for r in rz.get("routes") or []}

        for _ in range(100):
            if not await routes(0):
                break
            await asyncio.sleep(0.05)
        # Give gossip a chance to find a way around the cut: there must be none.
        await asyncio.sleep(1.0)
        assert await routes(0) == set()
        assert await routes(1) == {"n3"} and await routes(2) == {"n2"}
        for relay in relays.values():
            await relay.heal()
        for _ in range(100):
            if await routes(0) == {"n2", "n3"}:
                break
            await asyncio.sleep(0.05)
        assert await routes(0) == {"n2", "n3"}
        assert await cluster.meta_leader() in {"n1", "n2", "n3"}
        assert n2.running and n3.running
    finally:
        await cluster.close()
        for relay in relays.values():
            await relay.close()


async def test_stream_leader_unknown_stream_is_a_clear_error(cluster: NatsCluster) -> None:
    with pytest.raises(BrokerError, match="stream 'NOPE': no running leader"):
        await cluster.stream_leader("NOPE", timeout_s=0.3)


def test_cluster_size_is_checked() -> None:
    with pytest.raises(ValueError, match="size must be an int >= 1, got 0"):
        NatsCluster(0)


async def test_route_port_race_on_first_start_retries_with_a_fresh_route_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Route ports are picked before the nodes start (peers must name them); one taken by
    another process meanwhile fails that node's bind and the cluster retries with fresh ones."""
    import socket

    from harness.broker import process

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real = process.free_ports
    calls: list[int] = []

    def racy_free_ports(count: int) -> list[int]:
        calls.append(count)
        return [taken] if len(calls) == 1 else real(count)

    monkeypatch.setattr(process, "free_ports", racy_free_ports)
    try:
        async with NatsCluster(3, wait_placement=False) as cluster:
            assert taken not in [n.cluster_port for n in cluster.nodes]
            assert "address already in use" in cluster.nodes[0].log_text()
            assert len(calls) > 3  # the first three picks, then fresh ones
            await cluster.meta_leader()
    finally:
        squatter.close()
