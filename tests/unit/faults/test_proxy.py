"""FaultProxy against a local TCP echo server: every toxic, live add/remove, down, stats.

Time checks assert lower bounds strictly (a toxic must delay at least that long) and upper
bounds loosely (only to tell "delayed once" from "delayed per chunk" or "stuck"): the machine
is shared and noisy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from harness.faults import (
    Bandwidth,
    Blackhole,
    Down,
    FaultError,
    FaultProxy,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    SlowClose,
    ToxicNotFound,
    apply_for,
)

from .conftest import Upstream

pytestmark = pytest.mark.timeout(30)

Pair = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def proxy(upstream: Upstream) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", upstream.port, name="t", seed=7) as p:
        yield p


async def _open(proxy: FaultProxy) -> Pair:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _echo(pair: Pair, payload: bytes, timeout_s: float = 5.0) -> bytes:
    reader, writer = pair
    writer.write(payload)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(payload)), timeout_s)


async def _close(pair: Pair) -> None:
    pair[1].close()
    try:
        await pair[1].wait_closed()
    except ConnectionError:
        pass


async def _read_to_end(reader: asyncio.StreamReader, timeout_s: float = 5.0) -> bytes:
    out = b""
    while chunk := await asyncio.wait_for(reader.read(65536), timeout_s):
        out += chunk
    return out


async def test_passthrough_keeps_bytes_and_counts_them(proxy: FaultProxy) -> None:
    pair = await _open(proxy)
    payload = bytes(range(256)) * 8192  # 2 MiB, several reads and write-buffer pauses
    assert await _echo(pair, payload) == payload
    stats = proxy.stats
    assert stats.bytes_upstream == len(payload)
    assert stats.bytes_downstream == len(payload)
    assert stats.connections_accepted == 1
    assert stats.connections_active == 1
    await _close(pair)
    for _ in range(100):
        if proxy.stats.connections_active == 0:
            break
        await asyncio.sleep(0.01)
    assert proxy.stats.connections_active == 0


async def test_addresses(proxy: FaultProxy) -> None:
    assert proxy.port > 0
    assert proxy.address == ("127.0.0.1", proxy.port)
    assert proxy.url == f"nats://127.0.0.1:{proxy.port}"
    kwargs = proxy.nats_connect_kwargs(ping_interval_s=0.5)
    assert kwargs["servers"] == [proxy.url]
    assert kwargs["dont_randomize"] is True
    assert kwargs["ping_interval"] == 0.5
    assert "t" in repr(proxy) and "up" in repr(proxy)


async def test_latency_adds_its_delay_once_per_direction(proxy: FaultProxy) -> None:
    pair = await _open(proxy)
    await _echo(pair, b"warm")
    await proxy.add(Latency(150), direction="downstream")
    t0 = time.monotonic()
    assert await _echo(pair, b"ping") == b"ping"
    one = time.monotonic() - t0
    assert one >= 0.150
    assert one < 2.0
    await proxy.remove("latency_downstream")
    await proxy.add(Latency(150), direction="both")
    t0 = time.monotonic()
    assert await _echo(pair, b"ping") == b"ping"
    assert time.monotonic() - t0 >= 0.300
    await _close(pair)


async def test_latency_is_counted_from_arrival_not_stacked_per_chunk(proxy: FaultProxy) -> None:
    """10 chunks 30 ms apart through 200 ms: ~470 ms in all, not 10 x 200 ms."""
    await proxy.add(Latency(200), direction="upstream")
    reader, writer = await _open(proxy)
    chunks = [f"chunk-{i:02d};".encode() for i in range(10)]
    t0 = time.monotonic()
    for c in chunks:
        writer.write(c)
        await writer.drain()
        await asyncio.sleep(0.03)
    got = await asyncio.wait_for(reader.readexactly(sum(map(len, chunks))), 10)
    elapsed = time.monotonic() - t0
    assert got == b"".join(chunks)  # order kept
    assert elapsed >= 0.200 + 9 * 0.03
    assert elapsed < 1.8  # stacked per chunk would be >= 2 s
    await _close((reader, writer))


async def test_jitter_keeps_order(proxy: FaultProxy) -> None:
    await proxy.add(Latency(20, jitter_ms=19), direction="upstream")
    reader, writer = await _open(proxy)
    chunks = [f"{i:03d}".encode() for i in range(40)]
    for c in chunks:
        writer.write(c)
        await writer.drain()
        await asyncio.sleep(0.002)
    assert await asyncio.wait_for(reader.readexactly(120), 10) == b"".join(chunks)
    await _close((reader, writer))


async def test_live_add_and_remove_on_an_open_connection(proxy: FaultProxy) -> None:
    pair = await _open(proxy)
    name = await proxy.add(Latency(300), direction="downstream")
    t0 = time.monotonic()
    await _echo(pair, b"a")
    assert time.monotonic() - t0 >= 0.3
    await proxy.remove(name)
    assert proxy.toxics == {}
    t0 = time.monotonic()
    await _echo(pair, b"b")
    assert time.monotonic() - t0 < 0.3  # generous: back on the fast path, no 300 ms
    await _close(pair)


async def test_bandwidth_limits_the_rate(proxy: FaultProxy) -> None:
    rate = 200_000
    await proxy.add(Bandwidth(rate), direction="downstream")
    pair = await _open(proxy)
    payload = b"x" * 100_000
    t0 = time.monotonic()
    assert await _echo(pair, payload, timeout_s=10) == payload
    elapsed = time.monotonic() - t0
    slice_bytes = rate * 0.02
    assert elapsed >= (len(payload) - slice_bytes) / rate  # >= ~0.48 s
    assert elapsed < 5.0
    await _close(pair)


async def test_blackhole_forwards_nothing_and_removal_heals(proxy: FaultProxy) -> None:
    pair = await _open(proxy)
    await _echo(pair, b"before")
    await proxy.add(Blackhole(), direction="upstream")
    reader, writer = pair
    writer.write(b"lost")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(10), 0.5)
    assert proxy.stats.bytes_dropped >= 4
    assert proxy.stats.connections_active == 1  # accepted and held open
    await proxy.remove("blackhole_upstream")
    assert await _echo(pair, b"after") == b"after"
    await _close(pair)


async def test_blackhole_on_new_connections(proxy: FaultProxy) -> None:
    await proxy.add(Blackhole(), direction="downstream")
    reader, writer = await _open(proxy)
    writer.write(b"hello")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(10), 0.4)
    await _close((reader, writer))


async def test_limit_data_closes_after_n_bytes(proxy: FaultProxy) -> None:
    await proxy.add(LimitData(10), direction="downstream")
    reader, writer = await _open(proxy)
    writer.write(b"0123456789abcdefghij" * 5)
    await writer.drain()
    assert await _read_to_end(reader) == b"0123456789"
    await _close((reader, writer))


async def test_slicer_splits_into_small_reads(proxy: FaultProxy, upstream: Upstream) -> None:
    await proxy.add(Slicer(10, 3, delay_us=5000), direction="upstream")
    pair = await _open(proxy)
    payload = b"y" * 200
    assert await _echo(pair, payload) == payload
    assert max(upstream.reads) <= 13
    assert len(upstream.reads) >= 200 // 13
    await _close(pair)


async def test_slow_close_delays_the_close(proxy: FaultProxy, upstream: Upstream) -> None:
    upstream.close_after_reply = b"bye"
    await proxy.add(SlowClose(400), direction="downstream")
    reader, writer = await _open(proxy)
    t0 = time.monotonic()
    writer.write(b"hi")
    await writer.drain()
    assert await _read_to_end(reader) == b"bye"
    assert time.monotonic() - t0 >= 0.4
    await _close((reader, writer))


async def test_close_passes_through_without_toxics(proxy: FaultProxy, upstream: Upstream) -> None:
    upstream.close_after_reply = b"bye"
    reader, writer = await _open(proxy)
    writer.write(b"hi")
    assert await _read_to_end(reader) == b"bye"
    await _close((reader, writer))


async def test_reset_peer_resets_and_removal_lets_connections_through(
    proxy: FaultProxy,
) -> None:
    """Toxiproxy issue 465: after reset_peer is removed, clients must connect again."""
    await proxy.add(ResetPeer(0), direction="downstream")
    reader, writer = await _open(proxy)
    with pytest.raises(ConnectionResetError):
        writer.write(b"x")
        await writer.drain()
        await asyncio.wait_for(reader.read(10), 5)
        await asyncio.wait_for(reader.read(10), 5)
    writer.close()
    assert proxy.stats.connections_reset == 1
    await proxy.remove("reset_peer_downstream")
    for _ in range(3):
        pair = await _open(proxy)
        assert await _echo(pair, b"fine") == b"fine"
        await _close(pair)
    assert proxy.stats.connections_reset == 1


async def test_removing_reset_peer_cancels_a_pending_reset(proxy: FaultProxy) -> None:
    pair = await _open(proxy)
    await _echo(pair, b"up")
    await proxy.add(ResetPeer(timeout_ms=300), direction="both")
    await proxy.remove("reset_peer_both")
    await asyncio.sleep(0.6)
    assert await _echo(pair, b"still") == b"still"
    assert proxy.stats.connections_reset == 0
    await _close(pair)


async def test_toxicity_zero_never_applies(proxy: FaultProxy) -> None:
    """Toxiproxy issue 603: a toxicity-0 reset_peer still reset connections now and then."""
    await proxy.add(ResetPeer(0, toxicity=0.0), direction="both")
    await proxy.add(Blackhole(toxicity=0.0), direction="both")
    for _ in range(25):
        pair = await _open(proxy)
        assert await _echo(pair, b"ok") == b"ok"
        await _close(pair)
    assert proxy.stats.connections_reset == 0
    assert proxy.stats.bytes_dropped == 0


async def test_toxicity_one_always_applies(proxy: FaultProxy) -> None:
    await proxy.add(ResetPeer(0, toxicity=1.0), direction="downstream")
    for _ in range(10):
        reader, writer = await _open(proxy)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(10), 5)
            await asyncio.wait_for(reader.read(10), 5)
        writer.close()
    assert proxy.stats.connections_reset == 10


async def test_partial_toxicity_applies_to_some_connections(proxy: FaultProxy) -> None:
    await proxy.add(ResetPeer(0, toxicity=0.5), direction="downstream")
    survived = 0
    n = 30
    for _ in range(n):
        pair = await _open(proxy)
        try:
            await _echo(pair, b"?")
            survived += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        pair[1].close()
    # P(all or none of 30) at p = 0.5 is 2 * 2**-30; the seed makes it fixed anyway.
    assert 0 < survived < n
    assert proxy.stats.connections_reset == n - survived


async def test_down_refuses_and_drops_then_comes_back(proxy: FaultProxy) -> None:
    port = proxy.port
    reader, writer = await _open(proxy)
    await _echo((reader, writer), b"1")
    await proxy.set_down(True)
    assert proxy.is_down
    assert await _read_to_end(reader) == b""  # existing connection dropped
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await proxy.set_down(False)
    assert proxy.port == port
    pair = await _open(proxy)
    assert await _echo(pair, b"2") == b"2"
    await _close(pair)
    await _close((reader, writer))


async def test_down_toxic_for_a_block(proxy: FaultProxy) -> None:
    async with proxy.applied(Down()) as name:
        assert name == "down"
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", proxy.port)
    assert not proxy.is_down
    pair = await _open(proxy)
    assert await _echo(pair, b"back") == b"back"
    await _close(pair)


async def test_upstream_refusing_closes_the_client() -> None:
    sock_server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead_port = sock_server.sockets[0].getsockname()[1]
    sock_server.close()
    await sock_server.wait_closed()
    async with FaultProxy("127.0.0.1", dead_port, name="dead") as proxy:
        reader, writer = await _open(proxy)
        assert await _read_to_end(reader) == b""
        writer.close()
        assert proxy.stats.upstream_connect_failures == 1


async def test_names_and_misuse(proxy: FaultProxy) -> None:
    assert await proxy.add(Latency(1)) == "latency_downstream"
    with pytest.raises(FaultError, match="already has a toxic named 'latency_downstream'"):
        await proxy.add(Latency(2))
    assert await proxy.add(Latency(2), name="second") == "second"
    assert list(proxy.toxics) == ["latency_downstream", "second"]
    assert proxy.toxics["second"].toxic == Latency(2)
    with pytest.raises(ToxicNotFound, match="no toxic named 'nope'"):
        await proxy.remove("nope")
    with pytest.raises(ValueError, match="direction='left'"):
        await proxy.add(Latency(1), direction="left")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a Toxic"):
        await proxy.add("latency")  # type: ignore[arg-type]
    await proxy.clear()
    assert proxy.toxics == {}
    assert proxy.describe()["toxics"] == []


async def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="upstream_port=0"):
        FaultProxy("127.0.0.1", 0)
    with pytest.raises(ValueError, match="listen_port=70000"):
        FaultProxy("127.0.0.1", 4222, listen_port=70000)
    with pytest.raises(FaultError, match="not started"):
        _ = FaultProxy("127.0.0.1", 4222).port


async def test_failed_start_cleans_up(proxy: FaultProxy, upstream: Upstream) -> None:
    clash = FaultProxy("127.0.0.1", upstream.port, listen_port=upstream.port)
    with pytest.raises(FaultError, match="cannot listen"):
        await clash.start()
    assert not clash.is_down


async def test_apply_for_records_the_window_and_removes(proxy: FaultProxy) -> None:
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)
        assert "blackhole_both" in proxy.toxics

    window = await apply_for(proxy, Blackhole(), 5.0, direction="both", sleep=fake_sleep)
    assert slept == [5.0]
    assert proxy.toxics == {}
    assert window.name == "blackhole_both" and window.proxy == "t"
    assert window.applied_at <= window.removed_at


async def test_apply_for_removes_when_cancelled(proxy: FaultProxy) -> None:
    task = asyncio.create_task(apply_for(proxy, Latency(10), 60))
    for _ in range(100):
        if proxy.toxics:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert proxy.toxics == {}
    with pytest.raises(ValueError, match="duration_s=-1"):
        await apply_for(proxy, Latency(10), -1)


async def test_stop_closes_open_connections(upstream: Upstream) -> None:
    proxy = FaultProxy("127.0.0.1", upstream.port)
    await proxy.start()
    reader, writer = await _open(proxy)
    await _echo((reader, writer), b"x")
    await proxy.stop()
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    writer.close()
    assert proxy.stats.connections_active == 0


def test_works_on_uvloop() -> None:
    """uvloop's transports are not asyncio.Transport subclasses; the proxy must not care."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(65536):
                w.write(data)
            w.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with FaultProxy("127.0.0.1", port) as proxy:
                pair = await _open(proxy)
                payload = b"u" * 300_000
                assert await _echo(pair, payload) == payload
                await proxy.add(ResetPeer(0, toxicity=0.0))
                assert await _echo(pair, b"z") == b"z"
                await _close(pair)
        finally:
            server.close()
            await server.wait_closed()

    uvloop.run(main())


async def test_eof_to_a_vanished_peer_is_counted_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 11: an EOF held behind a toxic reaches a peer that is gone (the server closed,
    then reset the proxy's socket when the delayed bytes arrived). shutdown() raises
    ENOTCONN; the proxy counts it in ``peers_gone`` and logs no error or traceback."""

    async def close_at_once(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()  # FIN now; bytes arriving later get an RST from the kernel

    server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    caplog.set_level("DEBUG")
    try:
        async with FaultProxy("127.0.0.1", port, name="gone") as proxy:
            await proxy.add(Latency(latency_ms=300), direction="upstream")
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # the server's EOF
            writer.write(b"late bytes")  # delivered at +300 ms to a closed socket: RST
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write_eof()  # passed on at +300 ms, after the RST came back
            for _ in range(200):  # up to 10 s on a loaded machine
                if proxy.stats.peers_gone:
                    break
                await asyncio.sleep(0.05)
            assert proxy.stats.peers_gone == 1
            assert proxy.describe()["stats"]["peers_gone"] == 1
            writer.close()
    finally:
        server.close()
        await server.wait_closed()
    loud = [r for r in caplog.records if r.levelno >= 30 or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]
