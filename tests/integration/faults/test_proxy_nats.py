"""The fault proxy between nats-py and a real nats-server: JetStream, latency, blackhole,
reset, and the connect_urls trap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from harness.broker import NatsCluster, NatsServer
from harness.faults import Blackhole, FaultProxy, Latency, ResetPeer

pytestmark = pytest.mark.timeout(60)


class Events:
    """Connection callbacks as asyncio events, with counts."""

    def __init__(self) -> None:
        self.disconnected = asyncio.Event()
        self.reconnected = asyncio.Event()
        self.disconnects = 0
        self.reconnects = 0

    async def on_disconnected(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

    async def on_reconnected(self) -> None:
        self.reconnects += 1
        self.reconnected.set()

    async def on_error(self, exc: Exception) -> None:
        pass  # expected while faults are on; nats-py logs them otherwise

    def callbacks(self) -> dict[str, Callable[..., Any]]:
        return {
            "disconnected_cb": self.on_disconnected,
            "reconnected_cb": self.on_reconnected,
            "error_cb": self.on_error,
        }


@asynccontextmanager
async def connected(**kwargs: Any) -> AsyncIterator[Client]:
    nc = await nats.connect(**kwargs)
    try:
        yield nc
    finally:
        await nc.close()


async def _stream(nc: Client, name: str = "FAULTS") -> None:
    await nc.jetstream().add_stream(name=name, subjects=["faults.>"], storage="memory")


async def test_jetstream_publish_through_the_proxy(nats_proxy: FaultProxy) -> None:
    async with connected(**nats_proxy.nats_connect_kwargs()) as nc:
        await _stream(nc)
        js = nc.jetstream()
        acks = [await js.publish("faults.a", f"m{i}".encode()) for i in range(20)]
        assert [a.seq for a in acks] == list(range(1, 21))
        futures = [await js.publish_async("faults.b", b"x" * 1000) for _ in range(200)]
        done = await asyncio.gather(*futures)
        assert done[-1].seq == 220
    stats = nats_proxy.stats
    assert stats.bytes_upstream > 200 * 1000
    assert stats.connections_accepted == 1


async def test_latency_raises_puback_latency(
    nats_server: NatsServer, nats_proxy: FaultProxy
) -> None:
    async with connected(servers=[nats_server.client_url]) as direct, connected(
        **nats_proxy.nats_connect_kwargs()
    ) as proxied:
        await _stream(direct)
        await nats_proxy.add(Latency(100), direction="downstream")
        js = proxied.jetstream()
        times = []
        for i in range(5):
            t0 = time.monotonic()
            await js.publish("faults.lat", str(i).encode(), timeout=5)
            times.append(time.monotonic() - t0)
        assert min(times) >= 0.100
        assert sorted(times)[2] < 1.0  # generous: delayed once, not stuck
        await nats_proxy.remove("latency_downstream")
        t0 = time.monotonic()
        await js.publish("faults.lat", b"fast", timeout=5)
        assert time.monotonic() - t0 < 0.100 + 0.5


async def test_blackhole_is_noticed_by_ping_and_client_reconnects(
    nats_proxy: FaultProxy,
) -> None:
    """A blackhole breaks no socket: only a short ping_interval lets the client notice."""
    ev = Events()
    kwargs = nats_proxy.nats_connect_kwargs(
        ping_interval_s=0.5, max_outstanding_pings=2, connect_timeout=1
    )
    async with connected(**kwargs, **ev.callbacks()) as nc:
        await _stream(nc)
        await nats_proxy.add(Blackhole(), direction="both")
        # ~1.5 s of missed PONGs at this ping interval; allow a slow machine plenty.
        await asyncio.wait_for(ev.disconnected.wait(), 15)
        assert not ev.reconnected.is_set()  # reconnect attempts land in the blackhole too
        await nats_proxy.remove("blackhole_both")
        await asyncio.wait_for(ev.reconnected.wait(), 15)
        ack = await nc.jetstream().publish("faults.after", b"ok", timeout=5)
        assert ack.stream == "FAULTS"
    assert nats_proxy.stats.connections_accepted >= 2


async def test_default_ping_interval_does_not_notice_a_blackhole(
    nats_proxy: FaultProxy,
) -> None:
    """The guard above matters: with nats-py's default (120 s) nothing happens for minutes."""
    ev = Events()
    async with connected(servers=[nats_proxy.url], **ev.callbacks()) as nc:
        await nats_proxy.add(Blackhole(), direction="both")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ev.disconnected.wait(), 3)
        assert nc.is_connected
        await nats_proxy.remove("blackhole_both")


async def test_reset_peer_then_removal_lets_the_client_back(nats_proxy: FaultProxy) -> None:
    """Toxiproxy issue 465 on a NATS client: after reset_peer goes, reconnects succeed."""
    ev = Events()
    kwargs = nats_proxy.nats_connect_kwargs(ping_interval_s=0.5, connect_timeout=1)
    async with connected(**kwargs, **ev.callbacks()) as nc:
        await _stream(nc)
        await nats_proxy.add(ResetPeer(0), direction="both")
        await asyncio.wait_for(ev.disconnected.wait(), 15)
        await asyncio.sleep(0.5)  # let a few reconnect attempts be reset
        resets = nats_proxy.stats.connections_reset
        assert resets >= 1
        await nats_proxy.remove("reset_peer_both")
        await asyncio.wait_for(ev.reconnected.wait(), 15)
        ack = await nc.jetstream().publish("faults.back", b"ok", timeout=5)
        assert ack.seq >= 1


async def _discovered_via_proxy(cluster: NatsCluster) -> list[str]:
    port = int(cluster.client_urls[0].rsplit(":", 1)[1])
    async with FaultProxy("127.0.0.1", port, name="trap") as proxy, connected(
        **proxy.nats_connect_kwargs()
    ) as nc:
        await nc.flush()
        return [s.netloc for s in nc.discovered_servers]


async def test_connect_urls_let_a_client_bypass_the_proxy_unless_no_advertise() -> None:
    """The trap, shown on a 2-node cluster: with advertising on, the proxied client learns
    the other node's direct address; the broker's default (no_advertise) keeps it behind."""
    async with NatsCluster(2, extra_config={"cluster": {"no_advertise": False}}) as cluster:
        discovered = await _discovered_via_proxy(cluster)
        assert discovered, "expected connect_urls gossip with no_advertise off"
        direct = {u.removeprefix("nats://") for u in cluster.client_urls}
        assert set(discovered) <= direct | {u.replace("127.0.0.1", "localhost") for u in direct}
    async with NatsCluster(2) as cluster:
        assert await _discovered_via_proxy(cluster) == []
