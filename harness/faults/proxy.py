"""An asyncio TCP fault proxy for NATS links (Toxiproxy's model, in-process).

    async with FaultProxy("127.0.0.1", server_port, name="registrar-link") as proxy:
        nc = await nats.connect(**proxy.nats_connect_kwargs(ping_interval_s=0.5))
        async with proxy.applied(Latency(100), direction="downstream"):
            ...  # every server->client byte arrives 100 ms late

Design, and why:

- Each accepted connection gets a connection to the upstream and two *links* (upstream =
  client->server, downstream = server->client). A link with no toxic forwards in
  ``data_received`` straight into the other transport: no task, no queue, no copy; flow control
  pauses reading when the other side's write buffer is full. That keeps the proxy's own cost
  low (the benchmark goal is <= 10 % loss of acked JetStream throughput).
- A link with toxics queues ``(arrival time, bytes)`` and one worker task per link pushes each
  chunk through the toxics in the order they were added. Latency waits until *arrival* +
  latency, so a stream of chunks is delayed once, not once per chunk, and order is kept.
- Toxicity is drawn once per connection and direction when the toxic meets the connection
  (accepted while the toxic is on, or toxic added while it is open). A losing draw leaves the
  link untouched, so toxicity 0 cannot disturb anything (Toxiproxy issue 603). Removing a toxic
  takes it off every link and cancels its timers; new connections never see it (issue 465).

NATS traps when proxying a client:

- Servers in a cluster advertise ``connect_urls`` in INFO and nats-py adds them to its server
  pool (it has no option to ignore them): after the first fault the client reconnects straight
  to a server, *around* the proxy. Brokers whose clients are proxied must run with
  ``cluster { no_advertise: true }``, and proxied clients get only the proxy's URL with
  ``dont_randomize=True`` (see `FaultProxy.nats_connect_kwargs`).
- A blackhole breaks no socket: a client only notices through PING/PONG. nats-py's default
  ``ping_interval`` is 120 s with 2 outstanding pings, i.e. minutes of silence; proxied clients
  and services must take a short one (0.5-2 s) to detect and reconnect within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from harness.errors import HarnessError
from harness.faults.toxics import (
    Bandwidth,
    Blackhole,
    Direction,
    Down,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    SlowClose,
    Toxic,
    check_direction,
)

__all__ = [
    "FaultError",
    "FaultProxy",
    "ProxyStats",
    "ToxicEntry",
    "ToxicNotFound",
    "ToxicWindow",
    "apply_for",
]

log = logging.getLogger(__name__)

_Role = Literal["client", "server"]
_LinkDir = Literal["upstream", "downstream"]

# Queue bounds of a link with toxics: beyond HIGH queued bytes reading from the source pauses
# (back-pressure instead of unbounded memory behind a slow toxic).
_QUEUE_HIGH = 4 * 1024 * 1024
_QUEUE_LOW = 1024 * 1024
# Write buffer limits of the proxy's transports: large enough that a fast stream does not
# ping-pong between pause and resume on every read.
_WRITE_HIGH = 4 * 1024 * 1024
_WRITE_LOW = 1024 * 1024
# Bandwidth releases data in slices of about this many seconds' worth.
_BANDWIDTH_SLICE_S = 0.02


class FaultError(HarnessError):
    """A fault could not be applied or removed."""


class ToxicNotFound(FaultError, KeyError):
    """`FaultProxy.remove` was given a name that is not on the proxy."""

    def __str__(self) -> str:  # KeyError's str() would add quotes around the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ToxicEntry:
    """A toxic as installed on a proxy: its name, value and direction."""

    name: str
    toxic: Toxic
    direction: Direction


@dataclass(frozen=True)
class ProxyStats:
    """Counters of one proxy since it started (a snapshot)."""

    bytes_upstream: int
    """Bytes delivered client -> server."""
    bytes_downstream: int
    """Bytes delivered server -> client."""
    bytes_dropped: int
    """Bytes read but never delivered (blackhole, limit_data, closed peer)."""
    connections_accepted: int
    connections_active: int
    connections_reset: int
    """Connections ended by a ResetPeer toxic."""
    upstream_connect_failures: int
    peers_gone: int = 0
    """EOFs not passed on because the receiving peer had already gone (reset or closed
    under a toxic: ENOTCONN, EPIPE...). Normal life for a fault proxy: counted here and
    in the journal's evidence, never logged as an error (issue 11)."""


@dataclass(frozen=True)
class ToxicWindow:
    """When a toxic was on a proxy: what the journal records for a timed fault step."""

    proxy: str
    name: str
    toxic: Toxic
    direction: Direction
    applied_at: datetime
    removed_at: datetime


def _rst(transport: asyncio.Transport | None) -> None:
    """Close `transport` with a TCP RST (SO_LINGER on, 0 s) instead of a FIN."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Active:
    """One toxic on one link, with the link-local state it needs."""

    __slots__ = ("entry", "next_free", "passed", "removed", "seq", "timer")

    def __init__(self, entry: ToxicEntry, seq: int) -> None:
        self.entry = entry
        self.seq = seq
        self.removed = False
        self.next_free = 0.0  # Bandwidth: loop time the next slice may go
        self.passed = 0  # LimitData: bytes let through so far
        self.timer: asyncio.TimerHandle | None = None  # ResetPeer


class _Side(asyncio.Protocol):
    """Protocol for one of the two sockets of a proxied connection."""

    def __init__(self, conn: _Connection, role: _Role) -> None:
        self.conn = conn
        self.role = role
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's TCPTransport is not an asyncio.Transport
        # subclass but has the same methods.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_WRITE_HIGH, low=_WRITE_LOW)
        if self.role == "client":
            self.conn.client_connected()

    def data_received(self, data: bytes) -> None:
        self.conn.link_from(self.role).feed(data)

    def eof_received(self) -> bool:
        self.conn.link_from(self.role).feed_eof()
        return True  # keep our write half open: the other direction may still flow

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.side_lost(self.role, exc)

    def pause_writing(self) -> None:
        self.conn.link_to(self.role).pause_source("sink-full")

    def resume_writing(self) -> None:
        self.conn.link_to(self.role).resume_source("sink-full")


class _Link:
    """One direction of one connection: source side -> toxics -> sink side."""

    def __init__(self, conn: _Connection, direction: _LinkDir, source: _Side, sink: _Side) -> None:
        self.conn = conn
        self.direction = direction
        self.source = source
        self.sink = sink
        self.toxics: list[_Active] = []
        self.queue: deque[tuple[float, bytes | None]] = deque()  # None marks EOF
        self.queued_bytes = 0
        self.worker: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self.paused_for: set[str] = set()
        self.done = False  # EOF passed on to the sink
        self.held: list[bytes | None] = []  # arrived before the sink was connected
        self.held_bytes = 0

    # -- reading side ----------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.done or self.conn.closed:
            self.conn.proxy._dropped += len(data)
            return
        if self.sink.transport is None:
            self._hold(data)
            return
        if self.worker is None and not self.toxics:
            self._deliver(data)  # fast path: no toxic, nothing queued
            return
        self._enqueue(data)

    def feed_eof(self) -> None:
        if self.sink.transport is None:
            self._hold(None)
            return
        if self.worker is None and not self.toxics:
            self._pass_eof()
        else:
            self._enqueue(None)

    def _hold(self, data: bytes | None) -> None:
        # The upstream is still connecting. Reading was paused in connection_made, but
        # uvloop starts reading after connection_made returns regardless, so bytes can
        # still arrive: keep them, in order, until `release` (bounded by the pause below).
        self.held.append(data)
        self.held_bytes += len(data) if data is not None else 0
        if self.held_bytes > _QUEUE_HIGH:
            self.pause_source("queue-full")

    def release(self) -> None:
        """The sink is connected (and toxics drawn): pass on what arrived meanwhile."""
        held, self.held, self.held_bytes = self.held, [], 0
        for data in held:
            if data is None:
                self.feed_eof()
            else:
                self.feed(data)
        if not self.queued_bytes:
            self.resume_source("queue-full")

    def _enqueue(self, data: bytes | None) -> None:
        self.queue.append((self.conn.loop.time(), data))
        if data is not None:
            self.queued_bytes += len(data)
            if self.queued_bytes > _QUEUE_HIGH:
                self.pause_source("queue-full")
        if self.worker is None:
            self.worker = self.conn.loop.create_task(
                self._work(), name=f"{self.conn.proxy.name}:{self.conn.id}:{self.direction}"
            )
        self.wake.set()

    def pause_source(self, reason: str) -> None:
        if not self.paused_for:
            t = self.source.transport
            if t is not None and not t.is_closing():
                t.pause_reading()
        self.paused_for.add(reason)

    def resume_source(self, reason: str) -> None:
        self.paused_for.discard(reason)
        if not self.paused_for:
            t = self.source.transport
            if t is not None and not t.is_closing():
                t.resume_reading()

    # -- toxics ----------------------------------------------------------------------------

    def attach(self, active: _Active) -> None:
        self.toxics.append(active)
        self.toxics.sort(key=lambda a: a.seq)
        toxic = active.entry.toxic
        if isinstance(toxic, ResetPeer):
            target: _Role = "client" if self.direction == "downstream" else "server"
            active.timer = self.conn.loop.call_later(
                toxic.timeout_ms / 1000.0, self.conn.reset, target
            )
        elif isinstance(toxic, LimitData) and toxic.bytes == 0:
            self.conn.loop.call_soon(self.conn.close)

    def detach(self, name: str) -> None:
        for active in self.toxics:
            if active.entry.name == name:
                active.removed = True
                if active.timer is not None:
                    active.timer.cancel()
                self.toxics.remove(active)
                self.wake.set()  # an idle worker may now retire to the fast path
                return

    # -- worker ----------------------------------------------------------------------------

    async def _work(self) -> None:
        try:
            while True:
                if not self.queue:
                    if not self.toxics or self.done:
                        return
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                arrived, data = self.queue[0]
                try:
                    if data is None:
                        await self._eof_through(list(self.toxics))
                    else:
                        await self._through(list(self.toxics), 0, arrived, data)
                finally:
                    self.queue.popleft()
                    if data is not None:
                        self.queued_bytes -= len(data)
                        if self.queued_bytes < _QUEUE_LOW and "queue-full" in self.paused_for:
                            self.resume_source("queue-full")
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not leave a half-dead connection behind
            log.exception("fault proxy %s: link %s failed", self.conn.proxy.name, self.direction)
            self.conn.abort()
        finally:
            self.worker = None

    async def _through(self, toxics: list[_Active], i: int, arrived: float, data: bytes) -> None:
        loop = self.conn.loop
        while i < len(toxics) and toxics[i].removed:
            i += 1
        if i == len(toxics):
            self._deliver(data)
            return
        active = toxics[i]
        toxic = active.entry.toxic
        if isinstance(toxic, Latency):
            delay_ms = toxic.latency_ms
            if toxic.jitter_ms:
                delay_ms = max(0.0, delay_ms + random.uniform(-toxic.jitter_ms, toxic.jitter_ms))
            wait = arrived + delay_ms / 1000.0 - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._through(toxics, i + 1, arrived, data)
        elif isinstance(toxic, Blackhole):
            self.conn.proxy._dropped += len(data)
        elif isinstance(toxic, Bandwidth):
            rate = toxic.rate_bytes_per_s
            step = max(1, int(rate * _BANDWIDTH_SLICE_S))
            for start in range(0, len(data), step):
                piece = data[start : start + step]
                now = loop.time()
                go = max(now, active.next_free)
                if go > now:
                    await asyncio.sleep(go - now)
                active.next_free = go + len(piece) / rate
                await self._through(toxics, i + 1, arrived, piece)
        elif isinstance(toxic, Slicer):
            pos = 0
            while pos < len(data):
                size = toxic.average_size
                if toxic.size_variation:
                    size += random.randint(-toxic.size_variation, toxic.size_variation)
                await self._through(toxics, i + 1, arrived, data[pos : pos + size])
                pos += size
                if toxic.delay_us and pos < len(data):
                    await asyncio.sleep(toxic.delay_us / 1e6)
        elif isinstance(toxic, LimitData):
            allowed = toxic.bytes - active.passed
            piece = data[: max(0, allowed)]
            self.conn.proxy._dropped += len(data) - len(piece)
            if piece:
                active.passed += len(piece)
                await self._through(toxics, i + 1, arrived, piece)
            if active.passed >= toxic.bytes:
                self.conn.close()
        else:  # ResetPeer, SlowClose: data passes unchanged
            await self._through(toxics, i + 1, arrived, data)

    async def _eof_through(self, toxics: list[_Active]) -> None:
        # A blackhole does not swallow the close: a client that gives up on a blackholed link
        # closes it, and the server had better learn that now than at its next PING (minutes),
        # or the proxy would hold both sockets until the blackhole is removed.
        for active in toxics:
            toxic = active.entry.toxic
            if isinstance(toxic, SlowClose) and not active.removed:
                await asyncio.sleep(toxic.delay_ms / 1000.0)
        self._pass_eof()

    def _deliver(self, data: bytes) -> None:
        t = self.sink.transport
        if t is None or t.is_closing():
            self.conn.proxy._dropped += len(data)
            return
        t.write(data)
        if self.direction == "upstream":
            self.conn.proxy._bytes_up += len(data)
        else:
            self.conn.proxy._bytes_down += len(data)

    def _pass_eof(self) -> None:
        self.done = True
        t = self.sink.transport
        if t is not None and not t.is_closing() and t.can_write_eof():
            try:
                t.write_eof()
            except OSError as exc:
                # The sink vanished while the EOF waited behind a toxic (a killed client's
                # RST, unnoticed while reading was paused or after its EOF): shutdown() says
                # ENOTCONN. Nothing is left to pass on; count it and drop the connection
                # (issue 11: six tracebacks under 1.5 s of latency and a crash-loop).
                self.conn.proxy._peers_gone += 1
                log.debug("fault proxy %s: connection %s: %s peer gone before its EOF: %s",
                          self.conn.proxy.name, self.conn.id, self.sink.role, exc)
                self.conn.abort()
                return
        self.conn.link_done()

    def cancel(self) -> None:
        for active in self.toxics:
            if active.timer is not None:
                active.timer.cancel()
        if self.worker is not None:
            self.worker.cancel()


class _Connection:
    """A proxied connection: the client's socket, ours to the upstream, and two links."""

    def __init__(self, proxy: FaultProxy, conn_id: int) -> None:
        self.proxy = proxy
        self.id = conn_id
        self.loop = asyncio.get_running_loop()
        self.client = _Side(self, "client")
        self.server = _Side(self, "server")
        self.up = _Link(self, "upstream", self.client, self.server)
        self.down = _Link(self, "downstream", self.server, self.client)
        self.closed = False
        self.connect_task: asyncio.Task[None] | None = None

    def link_from(self, role: _Role) -> _Link:
        return self.up if role == "client" else self.down

    def link_to(self, role: _Role) -> _Link:
        return self.down if role == "client" else self.up

    def client_connected(self) -> None:
        self.proxy._accepted(self)
        # Hold the client's bytes in its socket until the upstream is there to take them.
        self.up.pause_source("connecting")
        self.connect_task = self.loop.create_task(
            self._connect_upstream(), name=f"{self.proxy.name}:{self.id}:connect"
        )

    async def _connect_upstream(self) -> None:
        try:
            await self.loop.create_connection(
                lambda: self.server, self.proxy.upstream_host, self.proxy.upstream_port
            )
        except OSError as exc:
            self.proxy._connect_failures += 1
            # Expected while a proxied cluster starts (peers dial before every node listens)
            # and while a node is down; counted in stats, so not a warning on every run.
            log.info(
                "fault proxy %s: upstream %s:%s refused connection %s: %s",
                self.proxy.name, self.proxy.upstream_host, self.proxy.upstream_port, self.id, exc,
            )
            self.close()
            return
        finally:
            self.connect_task = None
        if self.closed:
            _rst(self.server.transport)
            return
        self.proxy._roll_all(self)
        self.up.release()
        self.up.resume_source("connecting")

    def attach(self, entry: ToxicEntry, seq: int, rng: random.Random) -> None:
        """Put `entry` on the links of its direction that win the toxicity draw."""
        for link in (self.up, self.down):
            if entry.direction not in (link.direction, "both"):
                continue
            toxicity = entry.toxic.toxicity
            # Draw only for 0 < toxicity < 1: 0 must never apply, 1 must always (issue 603).
            if toxicity >= 1.0 or (toxicity > 0.0 and rng.random() < toxicity):
                link.attach(_Active(entry, seq))

    def detach(self, name: str) -> None:
        self.up.detach(name)
        self.down.detach(name)

    def link_done(self) -> None:
        if self.up.done and self.down.done:
            self.close()

    def side_lost(self, role: _Role, exc: Exception | None) -> None:
        if self.closed:
            return
        other = self.server if role == "client" else self.client
        if exc is not None:
            # The peer reset (or the socket failed): pass the reset on, as a wire would.
            self._finish()
            _rst(other.transport)
        else:
            self.close()

    def reset(self, target: _Role) -> None:
        """ResetPeer fired: RST to `target`, plain close to the other side."""
        if self.closed:
            return
        self.proxy._resets += 1
        victim, other = (self.client, self.server) if target == "client" else (
            self.server, self.client)
        self._finish()
        _rst(victim.transport)
        if other.transport is not None:
            other.transport.close()

    def close(self) -> None:
        """Close both sockets after flushing what is already written to them."""
        if self.closed:
            return
        self._finish()
        for side in (self.client, self.server):
            if side.transport is not None:
                side.transport.close()

    def abort(self) -> None:
        """Drop both sockets at once (nothing flushed)."""
        if self.closed:
            return
        self._finish()
        for side in (self.client, self.server):
            if side.transport is not None:
                side.transport.abort()

    def _finish(self) -> None:
        self.closed = True
        self.up.cancel()
        self.down.cancel()
        if self.connect_task is not None:
            self.connect_task.cancel()
        self.proxy._forget(self)


class FaultProxy:
    """TCP proxy on 127.0.0.1 between clients and one upstream (a NATS server), with toxics.

    Use as an async context manager; `port`, `url` and `address` are valid inside it. Toxics
    are added and removed live with `add`/`remove`/`clear` (or `applied`/`apply_for` for a
    timed step) and act on open and new connections alike. `set_down(True)` (or a `Down`
    toxic) stops listening and drops every connection; `set_down(False)` listens again on the
    same port.

    Args:
        upstream_host, upstream_port: where connections are forwarded.
        listen_host, listen_port: where the proxy listens (port 0 = a free port).
        name: for logs, task names and the journal.
        seed: seed of the toxicity draws, for reproducible runs (None = random).
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        name: str = "proxy",
        seed: int | None = None,
    ) -> None:
        if isinstance(upstream_port, bool) or not isinstance(upstream_port, int) or not (
            0 < upstream_port < 65536
        ):
            raise ValueError(
                f"FaultProxy(upstream_port={upstream_port!r}): expected an int in 1..65535"
            )
        if isinstance(listen_port, bool) or not isinstance(listen_port, int) or not (
            0 <= listen_port < 65536
        ):
            raise ValueError(
                f"FaultProxy(listen_port={listen_port!r}): expected an int in 0..65535 "
                "(0 = a free port)"
            )
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self.name = name
        self._port = listen_port
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._started = False
        self._entries: dict[str, tuple[ToxicEntry, int]] = {}
        self._seq = itertools.count()
        self._conn_ids = itertools.count(1)
        self._conns: set[_Connection] = set()
        self._manual_down = False
        self._listening_lock = asyncio.Lock()
        self._bytes_up = 0
        self._bytes_down = 0
        self._dropped = 0
        self._accepted_n = 0
        self._resets = 0
        self._connect_failures = 0
        self._peers_gone = 0

    def __repr__(self) -> str:
        state = "down" if self.is_down else ("up" if self._started else "stopped")
        return (
            f"FaultProxy(name={self.name!r}, {self.listen_host}:{self._port} -> "
            f"{self.upstream_host}:{self.upstream_port}, {state}, toxics={list(self._entries)})"
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        """Start listening. Prefer ``async with``."""
        if self._started:
            raise FaultError(f"fault proxy {self.name!r} is already started")
        self._started = True
        try:
            await self._listen()
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Stop listening and close every connection. Idempotent."""
        self._started = False
        await self._unlisten()
        for conn in list(self._conns):
            conn.abort()
        # Let the transports run their connection_lost callbacks before the loop moves on.
        await asyncio.sleep(0)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _listen(self) -> None:
        async with self._listening_lock:
            if self._server is not None:
                return
            try:
                self._server = await asyncio.get_running_loop().create_server(
                    self._new_side, self.listen_host, self._port, reuse_address=True
                )
            except OSError as exc:
                raise FaultError(
                    f"fault proxy {self.name!r} cannot listen on {self.listen_host}:{self._port}:"
                    f" {exc}. Hint: pass listen_port=0 for a free port"
                ) from exc
            self._port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        async with self._listening_lock:
            server, self._server = self._server, None
            if server is not None:
                server.close()
                await server.wait_closed()

    def _new_side(self) -> _Side:
        return _Connection(self, next(self._conn_ids)).client

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (valid once started)."""
        if not self._port:
            raise FaultError(f"fault proxy {self.name!r} is not started: no port yet")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(listen_host, port)``."""
        return (self.listen_host, self.port)

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``: the URL proxied NATS clients connect to."""
        return f"nats://{self.listen_host}:{self.port}"

    def nats_connect_kwargs(
        self,
        *,
        ping_interval_s: float = 1.0,
        max_outstanding_pings: int = 2,
        reconnect_time_wait_s: float = 0.25,
        **extra: Any,
    ) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` that keep a client on this proxy.

        Only the proxy's URL, ``dont_randomize`` and a short ping interval (a blackhole is
        noticed only through missed PONGs). Discovered ``connect_urls`` can still pull the
        client around the proxy unless the server runs with ``no_advertise`` (module docs).
        """
        kwargs: dict[str, Any] = {
            "servers": [self.url],
            "dont_randomize": True,
            "ping_interval": ping_interval_s,
            "max_outstanding_pings": max_outstanding_pings,
            "reconnect_time_wait": reconnect_time_wait_s,
            "max_reconnect_attempts": -1,
            "name": f"via-{self.name}",
        }
        kwargs.update(extra)
        return kwargs

    # -- toxics ----------------------------------------------------------------------------

    @property
    def toxics(self) -> Mapping[str, ToxicEntry]:
        """The toxics on the proxy now, by name, in the order they were added."""
        return {name: entry for name, (entry, _) in self._entries.items()}

    async def add(
        self, toxic: Toxic, *, direction: Direction = "downstream", name: str | None = None
    ) -> str:
        """Put `toxic` on the proxy (open and future connections); return its name.

        `direction` defaults to ``"downstream"`` (server -> client) as in Toxiproxy. The
        default name is ``<kind>_<direction>`` (``latency_downstream``; ``down`` for `Down`);
        names are unique.
        """
        if not isinstance(toxic, Toxic):
            raise TypeError(
                f"FaultProxy.add(toxic={toxic!r}): expected a Toxic (Latency, Blackhole, ...)"
            )
        direction = check_direction(direction)
        if name is None:
            # Down has no direction, so its default name has none either.
            name = toxic.kind if isinstance(toxic, Down) else f"{toxic.kind}_{direction}"
        if not isinstance(name, str) or not name:
            raise ValueError(f"FaultProxy.add(name={name!r}): expected a non-empty str")
        if name in self._entries:
            raise FaultError(
                f"fault proxy {self.name!r} already has a toxic named {name!r} "
                f"({self._entries[name][0].toxic!r}); pass name=... or remove it first"
            )
        entry = ToxicEntry(name=name, toxic=toxic, direction=direction)
        seq = next(self._seq)
        self._entries[name] = (entry, seq)
        log.info("fault proxy %s: + %s %r %s", self.name, name, toxic, direction)
        if isinstance(toxic, Down):
            await self._update_down()
        else:
            for conn in list(self._conns):
                if conn.connect_task is None:  # still connecting ones draw when connected
                    conn.attach(entry, seq, self._rng)
        return name

    async def remove(self, name: str) -> None:
        """Take the toxic `name` off the proxy and every connection."""
        if name not in self._entries:
            raise ToxicNotFound(
                f"fault proxy {self.name!r} has no toxic named {name!r}; it has "
                f"{sorted(self._entries) or 'none'}"
            )
        entry, _ = self._entries.pop(name)
        log.info("fault proxy %s: - %s", self.name, name)
        if isinstance(entry.toxic, Down):
            await self._update_down()
        else:
            for conn in list(self._conns):
                conn.detach(name)

    async def clear(self) -> None:
        """Remove every toxic (a manual `set_down` stays as it is)."""
        for name in list(self._entries):
            await self.remove(name)

    @contextlib.asynccontextmanager
    async def applied(
        self, toxic: Toxic, *, direction: Direction = "downstream", name: str | None = None
    ) -> AsyncIterator[str]:
        """``async with proxy.applied(Latency(100)) as name:``: the toxic is on inside the
        block and removed on the way out, whatever happens."""
        added = await self.add(toxic, direction=direction, name=name)
        try:
            yield added
        finally:
            if added in self._entries:
                await self.remove(added)

    # -- down ------------------------------------------------------------------------------

    @property
    def is_down(self) -> bool:
        """True while `set_down(True)` or a `Down` toxic is on."""
        return self._manual_down or any(
            isinstance(e.toxic, Down) for e, _ in self._entries.values()
        )

    async def set_down(self, down: bool) -> None:
        """Down: stop listening (connects refused) and drop open connections. Up: listen again
        on the same port."""
        self._manual_down = bool(down)
        await self._update_down()

    async def _update_down(self) -> None:
        if not self._started:
            return
        if self.is_down:
            await self._unlisten()
            for conn in list(self._conns):
                conn.close()
        else:
            await self._listen()

    # -- stats and bookkeeping -------------------------------------------------------------

    @property
    def stats(self) -> ProxyStats:
        """Counters since start (a snapshot)."""
        return ProxyStats(
            bytes_upstream=self._bytes_up,
            bytes_downstream=self._bytes_down,
            bytes_dropped=self._dropped,
            connections_accepted=self._accepted_n,
            connections_active=len(self._conns),
            connections_reset=self._resets,
            upstream_connect_failures=self._connect_failures,
            peers_gone=self._peers_gone,
        )

    def describe(self) -> dict[str, Any]:
        """Journal-friendly state: addresses, toxics and stats."""
        return {
            "name": self.name,
            "listen": f"{self.listen_host}:{self._port}",
            "upstream": f"{self.upstream_host}:{self.upstream_port}",
            "down": self.is_down,
            "toxics": [
                {"name": e.name, "direction": e.direction, **e.toxic.describe()}
                for e in self.toxics.values()
            ],
            "stats": self.stats.__dict__.copy(),
        }

    def _accepted(self, conn: _Connection) -> None:
        self._accepted_n += 1
        self._conns.add(conn)

    def _forget(self, conn: _Connection) -> None:
        self._conns.discard(conn)

    def _roll_all(self, conn: _Connection) -> None:
        for entry, seq in self._entries.values():
            if not isinstance(entry.toxic, Down):
                conn.attach(entry, seq, self._rng)


async def apply_for(
    proxy: FaultProxy,
    toxic: Toxic,
    duration_s: float,
    *,
    direction: Direction = "downstream",
    name: str | None = None,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> ToxicWindow:
    """Apply `toxic` for `duration_s` seconds, then remove it (also when cancelled).

    Returns the window with wall-clock apply/remove times, for the journal. `sleep` can be
    replaced in tests of scenario timing.
    """
    if isinstance(duration_s, bool) or not isinstance(duration_s, int | float) or not (
        duration_s >= 0
    ):
        raise ValueError(f"apply_for(duration_s={duration_s!r}): expected a number >= 0")
    added = await proxy.add(toxic, direction=direction, name=name)
    applied_at = datetime.now(UTC)
    try:
        await sleep(duration_s)
    finally:
        if added in proxy.toxics:
            await proxy.remove(added)
        removed_at = datetime.now(UTC)
    return ToxicWindow(
        proxy=proxy.name,
        name=added,
        toxic=toxic,
        direction=direction,
        applied_at=applied_at,
        removed_at=removed_at,
    )

