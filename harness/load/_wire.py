"""Minimal NATS protocol client for the injector's hot path (private).

nats-py spends most of a pipelined publish in per-message Python objects (a ``Msg`` per
PubAck, a task hop per callback, header building): about 30k acked msg/s on this machine.
The injector only needs three things from the protocol: ``HPUB`` with a reply subject, one
wildcard ``SUB`` for the PubAcks, and ``MSG``/``HMSG`` parsing of short replies. Doing just
that on an ``asyncio.Protocol`` (callbacks straight from ``data_received``, batched writes)
is several times faster.

Scope: TCP, or TLS upgraded after the server's INFO as nats-server expects (server verified,
client certificate presented for mTLS: whatever the ``ssl.SSLContext`` holds; issue 10), with
optional user/password or token (what :class:`~harness.load.injector.Injector` can take from
a nats-py client's options). NKeys and JWT credentials (a nonce to sign) use the nats-py
engine instead. Reconnects to the same server list with a fixed wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlparse

from harness._resource import cancel_and_wait

log = logging.getLogger(__name__)

#: on_msg(subject_tail_after_inbox_prefix, payload, status) -- status "503" for no responders.
OnReply = Callable[[bytes, bytes, bytes | None], None]

_CRLF = b"\r\n"
#: ``MSG <subject> <sid> [reply] <size>\r\n`` -> (subject, size).
_MSG_HEAD = re.compile(rb"MSG (\S+) \S+ (?:\S+ )?(\d+)\r\n")


class WireError(Exception):
    """The fast path cannot connect (bad server, auth failure, protocol error)."""


@dataclass(frozen=True)
class WireAuth:
    """Credentials the wire client can present in CONNECT, and its TLS context."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    #: TLS (``NatsSettings.ssl_context()``, or nats-py's ``options["tls"]``); None: plain TCP
    tls: ssl.SSLContext | None = None
    #: name the server certificate is checked against (default: the URL's host)
    tls_hostname: str | None = None


class _Proto(asyncio.Protocol):
    def __init__(self, owner: WireClient) -> None:
        self.owner = owner
        #: Unparsed bytes (a frame split across reads).
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.info: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        self.pong: asyncio.Future[None] | None = None
        self.can_write = asyncio.Event()
        self.can_write.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        # A big write buffer before pause_writing: the sender batches anyway.
        self.transport.set_write_buffer_limits(high=8 * 1024 * 1024)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.can_write.set()
        if not self.info.done():
            self.info.set_exception(WireError(f"connection closed before INFO: {exc!r}"))
        if self.pong is not None and not self.pong.done():
            self.pong.set_exception(WireError(f"connection closed before PONG: {exc!r}"))
        self.owner._lost(self, exc)

    def data_received(self, data: bytes) -> None:
        # Parse straight out of ``data`` (immutable bytes: slices are the payloads, no second
        # copy); only a split frame's start is carried over.
        buf = self.buf + data if self.buf else bytes(data)
        pos = 0
        n = len(buf)
        owner = self.owner
        on_reply = owner._on_reply_cb
        prefix_len = owner._prefix_len
        match_msg = _MSG_HEAD.match
        while pos < n:
            # The hot case, a PubAck: one regex call parses the whole head line.
            m = match_msg(buf, pos)
            if m is not None:
                subject, size_b = m.groups()
                start = m.end()
                stop = start + int(size_b)
                if stop + 2 > n:
                    break
                if on_reply is not None:
                    on_reply(subject[prefix_len:], buf[start:stop], None)
                pos = stop + 2
                continue
            end = buf.find(_CRLF, pos)
            if end < 0:
                break
            op = buf[pos:pos + 4]
            if op == b"MSG ":
                # MSG <subject> <sid> [reply] <size> (a head line the regex did not take)
                parts = buf[pos + 4:end].split()
                size = int(parts[-1])
                if end + 2 + size + 2 > n:
                    break
                payload = buf[end + 2:end + 2 + size]
                if on_reply is not None:
                    on_reply(parts[0][prefix_len:], payload, None)
                pos = end + 2 + size + 2
            elif op == b"HMSG":
                # HMSG <subject> <sid> [reply] <hdr_size> <total_size>
                parts = buf[pos + 5:end].split()
                hdr_size, total = int(parts[-2]), int(parts[-1])
                if end + 2 + total + 2 > n:
                    break
                hdr = buf[end + 2:end + 2 + hdr_size]
                payload = buf[end + 2 + hdr_size:end + 2 + total]
                # first header line: "NATS/1.0 503" (status) or "NATS/1.0"
                first = hdr.split(_CRLF, 1)[0].split()
                status = first[1] if len(first) > 1 else None
                if on_reply is not None:
                    on_reply(parts[0][prefix_len:], payload, status)
                pos = end + 2 + total + 2
            else:
                line = buf[pos:end]
                pos = end + 2
                self._control(line)
        self.buf = buf[pos:] if pos < n else b""

    def _control(self, line: bytes) -> None:
        if line == b"PING":
            if self.transport is not None:
                self.transport.write(b"PONG\r\n")
        elif line == b"PONG":
            if self.pong is not None and not self.pong.done():
                self.pong.set_result(None)
        elif line.startswith(b"INFO "):
            if not self.info.done():
                try:
                    self.info.set_result(json.loads(line[5:]))
                except ValueError as e:
                    self.info.set_exception(WireError(f"bad INFO from server: {e}"))
        elif line.startswith(b"-ERR"):
            err = line[5:].decode(errors="replace").strip("' ")
            if self.pong is not None and not self.pong.done():
                self.pong.set_exception(WireError(f"server refused the connection: {err}"))
            else:
                self.owner._server_error(err)
        # +OK and anything else: ignore (verbose is off)


class WireClient:
    """One NATS connection for publishing with replies on ``<inbox>.<seq>``."""

    def __init__(self, servers: Sequence[str], *, auth: WireAuth | None = None,
                 name: str = "qiki-harness-load", connect_timeout_s: float = 2.0,
                 reconnect_wait_s: float = 0.25,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.servers = list(servers)
        self.auth = auth or WireAuth()
        self.name = name
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_wait_s = reconnect_wait_s
        self.inbox = ""
        self._prefix_len = 0
        self._on_reply_cb: OnReply | None = None
        self._proto: _Proto | None = None
        self._closed = False
        self._reconnecting: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.events: list[str] = []
        self.server_errors: list[str] = []
        self._on_event = on_event

    def _event(self, text: str) -> None:
        self.events.append(text)
        if self._on_event is not None:
            self._on_event(text)

    async def connect(self, inbox: str, on_reply: OnReply) -> None:
        """Connect, subscribe to ``<inbox>.*`` and route replies to ``on_reply``."""
        self.inbox = inbox
        self._prefix_len = len(inbox) + 1
        self._on_reply_cb = on_reply
        last: Exception | None = None
        for url in self.servers:
            try:
                await self._open(url)
                return
            except (OSError, WireError, TimeoutError) as e:
                last = e
        raise WireError(f"could not connect to any of {self.servers}: {last!r}")

    async def _open(self, url: str) -> None:
        u = urlparse(url if "://" in url else f"nats://{url}")
        if u.scheme not in ("nats", "tls", ""):
            raise WireError(f"the fast path speaks nats:// and tls:// only, got {url!r}")
        tls = self.auth.tls
        if u.scheme == "tls" and tls is None:
            tls = ssl.create_default_context()
        loop = asyncio.get_running_loop()
        _transport, proto = await asyncio.wait_for(
            loop.create_connection(lambda: _Proto(self), u.hostname or "127.0.0.1",
                                   u.port or 4222), self.connect_timeout_s)
        try:
            info = await asyncio.wait_for(proto.info, self.connect_timeout_s)
            if info.get("tls_required") and tls is None:
                raise WireError("server requires TLS and no TLS context was given "
                                "(NatsSettings tls_ca_file / QIKI_NATS_CA)")
            if tls is not None:
                if not info.get("tls_required"):
                    raise WireError(f"TLS was asked for but the server at {u.hostname}:"
                                    f"{u.port} does not offer it")
                # nats-server's order: plain INFO, then the TLS handshake on the same socket.
                assert proto.transport is not None
                transport = await asyncio.wait_for(
                    loop.start_tls(proto.transport, proto, tls,
                                   server_hostname=self.auth.tls_hostname or u.hostname),
                    self.connect_timeout_s)
                if transport is None:
                    raise WireError("TLS handshake: the connection closed")
                proto.transport = cast(asyncio.Transport, transport)
                proto.transport.set_write_buffer_limits(high=8 * 1024 * 1024)
            opts: dict[str, object] = {
                "verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                "protocol": 1, "lang": "python-qiki-wire", "version": "1", "name": self.name,
            }
            user = u.username or self.auth.user
            password = u.password or self.auth.password
            if user and password:
                opts.update(user=user, **{"pass": password})
            elif user and not password:
                opts["auth_token"] = user
            elif self.auth.token:
                opts["auth_token"] = self.auth.token
            proto.pong = loop.create_future()
            assert proto.transport is not None
            proto.transport.write(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
            await asyncio.wait_for(proto.pong, self.connect_timeout_s)
            proto.transport.write(f"SUB {self.inbox}.* 1\r\n".encode())
        except BaseException:
            if proto.transport is not None:
                proto.transport.abort()
            raise
        self._proto = proto
        self.connected.set()

    def _lost(self, proto: _Proto, exc: Exception | None) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        self.connected.clear()
        if self._closed:
            return
        self._event(f"disconnected: {exc!r}" if exc else "disconnected")
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    def _server_error(self, err: str) -> None:
        self.server_errors.append(err)
        log.warning("NATS server error: %s", err)

    async def _reconnect(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.reconnect_wait_s * (1 + random.random() * 0.2))
            for url in self.servers:
                try:
                    await self._open(url)
                    self._event("reconnected")
                    return
                except (OSError, WireError, TimeoutError):
                    continue

    def write(self, data: bytes | bytearray) -> bool:
        """Queue protocol bytes; False when not connected (nothing was written).

        The caller must not change ``data`` afterwards (the transport may keep it)."""
        proto = self._proto
        if proto is None or proto.transport is None or proto.transport.is_closing():
            return False
        proto.transport.write(data)
        return True

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        proto = self._proto
        if proto is not None and not proto.can_write.is_set():
            await proto.can_write.wait()

    async def close(self) -> None:
        """Close the connection and stop reconnecting."""
        self._closed = True
        if self._reconnecting is not None:
            await cancel_and_wait(self._reconnecting, suppress_errors=True)
        proto, self._proto = self._proto, None
        self.connected.clear()
        if proto is not None and proto.transport is not None:
            proto.transport.close()


class PubAckError(Exception):
    """A JetStream publish was refused: no stream (``no_responders``) or an error PubAck."""

    def __init__(self, reason: str, *, no_responders: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.no_responders = no_responders


#: done(elapsed_s, puback_payload_or_None, error_or_None) -- called in the loop thread.
Done = Callable[[float, "bytes | None", "BaseException | None"], None]


class PubAckMux:
    """JetStream publishes with PubAcks routed to per-message callbacks: no task, no future
    per publish (what the Locust users need to reach 10k req/s per process, issue 5).

    All methods run in the event loop's thread.
    """

    def __init__(self, client: WireClient, inbox_prefix: str | None = None) -> None:
        """``inbox_prefix``: where PubAcks come back (``<prefix>.<random>.<seq>``), the
        identity's own under least privilege (``NatsSettings.inbox_prefix``); default
        nats-py's ``_INBOX``."""
        import itertools
        import time
        import uuid

        self.client = client
        self._seq = itertools.count(1)
        self._pending: dict[int, tuple[Done, asyncio.TimerHandle, float]] = {}
        self._clock = time.perf_counter
        self._inbox = f"{inbox_prefix or '_INBOX'}.{uuid.uuid4().hex}"
        self._reply = self._inbox.encode() + b"."

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self.client._closed

    async def start(self) -> None:
        """Connect and subscribe to the PubAck inbox."""
        await self.client.connect(self._inbox, self._on_reply)

    def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None,
                timeout_s: float, done: Done) -> None:
        """Publish; ``done`` is called exactly once: PubAck, refusal, disconnect or timeout."""
        if not self.client.connected.is_set():
            done(0.0, None, WireError("not connected to NATS (reconnecting)"))
            return
        seq = next(self._seq)
        subj = subject.encode()
        if headers:
            hdr = b"NATS/1.0\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n"
            hl = len(hdr)
            cmd = b"HPUB %b %b%d %d %d\r\n%b%b\r\n" % (subj, self._reply, seq, hl,
                                                     hl + len(payload), hdr, payload)
        else:
            cmd = b"PUB %b %b%d %d\r\n%b\r\n" % (subj, self._reply, seq, len(payload), payload)
        loop = asyncio.get_running_loop()
        handle = loop.call_later(timeout_s, self._expire, seq, timeout_s)
        self._pending[seq] = (done, handle, self._clock())
        if not self.client.write(cmd):
            self._pending.pop(seq, None)
            handle.cancel()
            done(0.0, None, WireError("not connected to NATS (reconnecting)"))

    def _expire(self, seq: int, timeout_s: float) -> None:
        entry = self._pending.pop(seq, None)
        if entry is not None:
            done, _h, t0 = entry
            done(self._clock() - t0, None, TimeoutError(f"no PubAck within {timeout_s}s"))

    def _on_reply(self, tail: bytes, payload: bytes, status: bytes | None) -> None:
        try:
            seq = int(tail)
        except ValueError:
            return
        entry = self._pending.pop(seq, None)
        if entry is None:
            return
        done, handle, t0 = entry
        handle.cancel()
        elapsed = self._clock() - t0
        if status == b"503":
            done(elapsed, None, PubAckError("no stream for the subject (no responders)",
                                            no_responders=True))
        elif not payload or b'"error"' in payload:
            try:
                body = json.loads(payload)
                err = body.get("error") if isinstance(body, dict) else None
            except ValueError:
                err = {"description": f"unparseable PubAck {payload[:80]!r}"}
            if err:
                done(elapsed, None, PubAckError(
                    f"server error {err.get('code')}/{err.get('err_code')}: "
                    f"{err.get('description')}"))
            else:
                done(elapsed, payload, None)
        else:
            done(elapsed, payload, None)

    async def close(self) -> None:
        """Fail what is pending and close the connection."""
        pending, self._pending = self._pending, {}
        for done, handle, t0 in pending.values():
            handle.cancel()
            done(self._clock() - t0, None, WireError("connection closed"))
        await self.client.close()
