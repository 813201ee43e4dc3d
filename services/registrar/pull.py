"""A streaming pull consumer: keeps pull requests outstanding and hands out micro-batches.

Why not ``PullSubscription.fetch(1000)``: nats-py's fetch waits until the whole batch is
filled or its timeout expires, so at 1,000 events/s a fetch of 1,000 holds the first event
for up to a second (the registrar's latency goal is p99 <= 20 ms). Here, pull requests of
``batch`` messages each stay outstanding on the server (at most two, so the server keeps
streaming while the previous batch is stored) and :meth:`PullConsumer.take` returns
whatever has arrived, up to ``batch`` messages, as soon as there is anything.

Requests expire after ``expires_s``; the server then answers 408 and a new request goes out.
A request whose answer never comes (the server restarted and forgot it) is replaced after
``expires_s`` plus a margin; :meth:`reset` replaces them at once (after a reconnect).

Deliveries skip nats-py's per-message machinery (issue 13: about a third of the registrar's
CPU per event): :func:`install_inbox_fast_path` takes the inbox's messages straight from the
protocol parser (runs of complete ``HMSG`` in a read are sliced out in one loop) into the
buffer as :class:`Delivered` objects, whose headers are parsed only when the batch loop reads
them. The connection, reconnects, pull requests and acks stay nats-py's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

__all__ = [
    "Delivered",
    "PullConsumer",
    "install_fast_header_parser",
    "install_inbox_fast_path",
    "parse_ack_subject",
    "parse_raw_headers",
    "publish_acks",
    "remove_inbox_fast_path",
]

_log = logging.getLogger(__name__)

_WS = re.compile(r"\s")
_CRLF = b"\r\n"
_MISSING: Any = object()
_NAME_CACHE: dict[bytes, str | None] = {}
_STATUS = "Status"
_monotonic = time.monotonic
_PENDING = "Nats-Pending-Messages"


class _LineCache:
    """Whole header lines -> (name, value), for the lines that repeat.

    Most of an event's header lines are the same in every event of a stream (``ce-source``,
    ``ce-type``, ``ce-specversion``, the content type); a dict hit on the raw line skips the
    split, strip and decode. Lines of a name whose values keep changing (ids, times) are not
    cached after ``max_misses`` distinct values. Bounded: cleared when ``max_lines`` is
    reached.
    """

    __slots__ = ("lines", "max_lines", "max_misses", "misses")

    def __init__(self, max_lines: int = 4096, max_misses: int = 32) -> None:
        self.lines: dict[bytes, tuple[str | None, str]] = {}
        self.misses: dict[bytes, int] = {}
        self.max_lines = max_lines
        self.max_misses = max_misses

    def remember(self, line: bytes, name: bytes, parsed: tuple[str | None, str]) -> None:
        """Cache ``line`` unless its name has shown too many distinct values."""
        n = self.misses.get(name, 0)
        if n >= self.max_misses:
            return
        if len(self.lines) >= self.max_lines or len(self.misses) >= self.max_lines:
            self.lines.clear()
            self.misses.clear()
        self.misses[name] = n + 1
        self.lines[line] = parsed


_LINES = _LineCache()


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """Parse a NATS header block exactly like nats-py's ``Client._parse_header_lines``.

    Same results (a unit test compares them on generated input), about 3x faster: nats-py
    checks every name character with a generator expression, which profiling showed to be
    the single largest cost of the registrar's ingest (a third of its CPU time). Lines that
    repeat from message to message are looked up whole (:class:`_LineCache`).
    """
    out: dict[str, str] = {}
    names = _NAME_CACHE
    cache = _LINES
    lines = cache.lines
    for line in raw.split(_CRLF):
        hit = lines.get(line)
        if hit is not None:
            if hit[0] is not None:
                out[hit[0]] = hit[1]
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = names.get(name, _MISSING)
        if key is _MISSING:
            key = _header_name(name)
            if len(names) < 1024:  # header names repeat; bound the cache anyway
                names[name] = key
        text = value.strip().decode("utf-8", "replace")
        if key is not None:
            out[key] = text
        cache.remember(line, name, (key, text))
    return out


def _header_name(name: bytes) -> str | None:
    try:
        key = name.strip().decode("ascii")
    except UnicodeDecodeError:
        return None  # nats-py skips non-ASCII names too
    if _WS.search(key):  # \s on str == str.isspace, nats-py's test
        return None
    return key


_HDR_LINE = b"NATS/1.0"
_UNPARSED: Any = object()


def parse_raw_headers(raw: bytes | None) -> dict[str, str] | None:
    """The headers dict nats-py's ``Client._process_headers`` makes of a raw header block
    (``NATS/1.0[ status[ description]]\r\nName: value\r\n...\r\n\r\n``), same results
    (a unit test compares them), without a coroutine per message."""
    if not raw:
        return None
    hdr: dict[str, str] | None = None
    rest = raw[8:]
    if rest[:1] == b" ":
        # Inline status (JetStream control messages): "NATS/1.0 408 Request Timeout\r\n..."
        line = raw[9:]
        status = line[:3].strip().decode()
        desc = line[4 : len(line) - 4]
        hdr = {}
        if status.isdigit():
            hdr[_STATUS] = status
        i = rest.find(_CRLF)
        rest = rest[i + 2 :]
        if desc:
            j = desc.find(_CRLF)
            if j > 0:
                hdr["Description"] = desc[:j].decode()
                hdr.update(parse_header_lines(desc[j + 2 :]))
            else:
                hdr["Description"] = desc.decode()
    if not len(rest) > 2:
        return hdr
    parsed = parse_header_lines(raw[10:])
    if hdr:
        hdr.update(parsed)
    else:
        hdr = parsed
    return hdr or None


class Delivered:
    """A message delivered to a pull inbox: what the registrar reads of nats-py's ``Msg``
    (``subject``, ``reply``, ``data``, ``headers``), made straight from the protocol parts.

    The headers are parsed when first read (:func:`parse_raw_headers`), in the batch loop,
    instead of in a coroutine per message as nats-py does on arrival.
    """

    __slots__ = ("_headers", "data", "raw_headers", "reply", "subject")

    def __init__(self, subject: str, reply: str, data: bytes, raw_headers: bytes | None) -> None:
        self.subject = subject
        self.reply = reply
        self.data = data
        #: the header block as received (``NATS/1.0\r\n...``), or None
        self.raw_headers = raw_headers
        self._headers: dict[str, str] | None = _UNPARSED

    @property
    def headers(self) -> dict[str, str] | None:
        """The message's headers (None when it has none), like ``Msg.headers``."""
        h = self._headers
        if h is _UNPARSED:
            h = self._headers = parse_raw_headers(self.raw_headers)
        return h

    def __repr__(self) -> str:
        return f"<Delivered {self.subject!r} reply={self.reply!r} {len(self.data)} B>"


#: sid -> handler(subject, reply, data, raw headers), per client (see install_inbox_fast_path)
_FAST_SIDS_ATTR = "_qiki_fast_sids"


def install_inbox_fast_path(
    nc: Client, sid: int, handler: Callable[[bytes, bytes, bytes, bytes | None], None]
) -> bool:
    """Hand the messages of subscription ``sid`` to ``handler`` straight from the parser.

    nats-py turns every received message into a ``Msg`` (headers parsed in a coroutine),
    queues it on the subscription and wakes the subscription's task, which awaits the
    callback: profiling the registrar's ingest put about a third of its CPU there. Here the
    client's ``_process_msg`` (the parser's one entry point for messages; shadowed on this
    instance only) calls ``handler`` synchronously for the registered sids and leaves every
    other message to nats-py. The subscription itself stays registered with nats-py, so
    unsubscribing and re-subscribing after a reconnect work as before.

    Returns False (and installs nothing) when this nats-py has no such hook: the caller then
    keeps the subscription's callback.
    """
    orig = getattr(nc, "_process_msg", None)
    if orig is None or not isinstance(getattr(nc, "stats", None), dict):
        return False
    fast: dict[int, Callable[[bytes, bytes, bytes, bytes | None], None]] | None = getattr(
        nc, _FAST_SIDS_ATTR, None
    )
    if fast is None:
        fast = {}
        table = fast
        stats = nc.stats

        async def process_msg(
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            h = table.get(sid)
            if h is None:
                await orig(sid, subject, reply, data, headers)
                return
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            h(subject, reply, data, headers)

        setattr(nc, _FAST_SIDS_ATTR, fast)
        nc._process_msg = process_msg  # type: ignore[method-assign]
        _install_batch_parser(nc, table)
    fast[sid] = handler
    return True


_HMSG = b"HMSG "
_AWAITING_CONTROL_LINE = 1  # nats.protocol.parser's states of those names
_AWAITING_MSG_PAYLOAD = 2


def _install_batch_parser(
    nc: Client, table: dict[int, Callable[[bytes, bytes, bytes, bytes | None], None]]
) -> bool:
    """Let the client's protocol parser take runs of complete ``HMSG`` for ``table``'s sids
    in one synchronous loop per read, before nats-py's parser sees the rest.

    nats-py's ``Parser.parse`` handles one message per iteration: a regex match on the
    buffer, two copies and a ``del`` of the consumed bytes, an awaited call. A read from the
    socket holds dozens of pull deliveries; here they are sliced out of the buffer in one
    pass and the buffer is cut once. Anything else (another subscription's message, PING,
    INFO, -ERR, a message cut off at the end of the read) stops the loop and is left to
    nats-py's parser, unchanged, which also hands fast-path messages to ``table`` (see
    :func:`install_inbox_fast_path`), so the two never disagree about what a message is.
    """
    ps = getattr(nc, "_ps", None)
    orig = getattr(ps, "parse", None)
    if ps is None or orig is None or not isinstance(getattr(ps, "buf", None), bytearray):
        return False
    stats = nc.stats

    async def parse(data: bytes = b"") -> None:
        buf: bytearray = ps.buf
        if ps.state == _AWAITING_MSG_PAYLOAD and ps.header_needed > 0:
            # A read almost never ends on a message boundary: nats-py's parser has the
            # previous read's last control line and waits for its payload. Finish that
            # message here when it is ours, so the rest of this read takes the loop below.
            handler = table.get(ps.msg_arg.get("sid", -1))
            need = ps.needed
            if handler is not None and len(buf) + len(data) >= need + 2:
                buf.extend(data)
                data = b""
                hlen = ps.header_needed
                first_headers = bytes(buf[:hlen])
                payload = bytes(buf[hlen:need])
                del buf[: need + 2]
                ps.header_needed = 0
                ps.state = _AWAITING_CONTROL_LINE
                stats["in_msgs"] += 1
                stats["in_bytes"] += len(payload)
                handler(ps.msg_arg["subject"], ps.msg_arg["reply"], payload, first_headers)
        if ps.state == _AWAITING_CONTROL_LINE and (data.startswith(_HMSG) or
                                                   buf.startswith(_HMSG)):
            buf.extend(data)
            data = b""
            # One immutable copy of the read: slicing bytes copies once, slicing the
            # bytearray and then making bytes of it copied twice per part.
            view = bytes(buf)
            pos, n, count, size = 0, len(view), 0, 0
            while view.startswith(_HMSG, pos):
                eol = view.find(_CRLF, pos)
                if eol < 0:
                    break
                parts = view[pos + 5 : eol].split()
                if len(parts) == 5:
                    subject, sid_b, reply, hlen_b, tlen_b = parts
                elif len(parts) == 4:
                    subject, sid_b, hlen_b, tlen_b = parts
                    reply = b""
                else:
                    break
                try:
                    handler = table.get(int(sid_b))
                    hlen, tlen = int(hlen_b), int(tlen_b)
                except ValueError:
                    break
                start = eol + 2
                end = start + tlen
                if handler is None or end + 2 > n or hlen > tlen:
                    break
                payload = view[start + hlen : end]
                headers = view[start : start + hlen] if hlen else None
                pos = end + 2
                count += 1
                size += len(payload)
                handler(subject, reply, payload, headers)
            if pos:
                del buf[:pos]
                stats["in_msgs"] += count
                stats["in_bytes"] += size
        await orig(data)

    ps.parse = parse
    return True


def remove_inbox_fast_path(nc: Client, sid: int) -> None:
    """Forget ``sid`` (after unsubscribing); messages still in flight go to nats-py."""
    fast = getattr(nc, _FAST_SIDS_ATTR, None)
    if fast is not None:
        fast.pop(sid, None)


def install_fast_header_parser(nc: Client) -> bool:
    """Use :func:`parse_header_lines` for messages received by ``nc``.

    nats-py calls ``self._parse_header_lines(raw)`` (a private static method); shadowing it
    on this one instance changes nothing else. Returns False (and does nothing) when the
    installed nats-py has no such hook, so an upgrade degrades to the stock parser.
    """
    if not callable(getattr(type(nc), "_parse_header_lines", None)):
        return False
    nc._parse_header_lines = parse_header_lines  # type: ignore[method-assign]
    return True


async def publish_acks(nc: Client, replies: Sequence[str]) -> bool:
    """Acknowledge: one empty publish to each of ``replies``, queued as ONE buffer write.

    ``msg.ack()`` / ``nc.publish`` per message costs a coroutine, subject validation and a
    formatted command each (a tenth of the registrar's CPU per event); here the ``PUB``
    commands are joined into one bytes object and handed to nats-py's outgoing buffer the way
    ``publish`` does it (``_send_command``, then wake the flusher), so the bytes on the wire
    are the same acks. The reply subjects come from the server (``$JS.ACK...`` tokens, no
    whitespace), so they need no validation.

    Returns False without sending anything when the connection is not plainly connected
    (reconnecting, draining, closed) or this nats-py lacks the internals used: the caller
    then publishes one by one, which buffers or raises exactly as nats-py does.
    """
    if not replies:
        return True
    send = getattr(nc, "_send_command", None)
    flush = getattr(nc, "_flush_pending", None)
    stats = getattr(nc, "stats", None)
    if (
        send is None
        or flush is None
        or not isinstance(stats, dict)
        or not hasattr(nc, "_flush_queue")
        or not nc.is_connected
        or nc.is_draining_pubs
    ):
        return False
    cmd = "".join([f"PUB {r} 0\r\n\r\n" for r in replies]).encode()
    stats["out_msgs"] = stats.get("out_msgs", 0) + len(replies)
    await send(cmd)
    queue = nc._flush_queue
    if queue is not None and queue.empty():
        await flush()
    return True


def parse_ack_subject(reply: str | None) -> tuple[str | None, int | None, int]:
    """(stream, stream sequence, delivery count) from a JetStream ack subject.

    v1: ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``;
    v2 adds ``<domain>.<account hash>`` after ``$JS.ACK`` (and may append a token).
    """
    if not reply or not reply.startswith("$JS.ACK."):
        return None, None, 0
    t = reply.split(".")
    try:
        if len(t) == 9:
            return t[2], int(t[5]), int(t[4])
        if len(t) >= 11:
            return t[4], int(t[7]), int(t[6])
    except ValueError:
        pass
    return None, None, 0


class PullConsumer:
    """Pull requests against durable ``durable`` of ``stream``, delivered to one inbox."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        durable: str,
        *,
        batch: int = 1000,
        expires_s: float = 5.0,
        max_requests: int = 2,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch={batch}: expected >= 1")
        if expires_s <= 0:
            raise ValueError(f"expires_s={expires_s}: expected > 0")
        self.nc = nc
        self.stream = stream
        self.durable = durable
        self.batch = batch
        self.expires_s = expires_s
        self.max_requests = max_requests
        self._buf: deque[Msg | Delivered] = deque()
        self._arrived = asyncio.Event()
        self._sub: Subscription | None = None
        self._inbox = ""
        # Messages still owed by outstanding requests, and when the last one was sent.
        self._owed = 0
        self._requests = 0
        self._last_request = 0.0
        self._last_activity = 0.0
        self._api_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._req = json.dumps(
            {"batch": batch, "expires": int(expires_s * 1e9)}
        ).encode()
        self.paused = False
        #: True when messages come through :func:`install_inbox_fast_path`
        self.fast_path = False
        # Tasks the synchronous fast path started (top-ups, control messages): kept
        # referenced until done so they are not garbage-collected mid-flight.
        self._control: list[asyncio.Future[None]] = []

    async def start(self) -> None:
        """Subscribe to the inbox and send the first requests."""
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(
            self._inbox,
            cb=self._on_msg,
            pending_msgs_limit=max(65536, 4 * self.batch),
            pending_bytes_limit=256 * 1024 * 1024,
        )
        self.fast_path = install_inbox_fast_path(self.nc, self._sub._id, self._on_raw)
        await self._top_up()

    async def stop(self) -> None:
        """Unsubscribe; outstanding requests die with the subscription (or expire)."""
        self.paused = True
        if self._sub is not None:
            remove_inbox_fast_path(self.nc, self._sub._id)
            try:
                await self._sub.unsubscribe()
            except Exception:  # closed connection: nothing to unsubscribe
                pass
            self._sub = None

    def reset(self) -> None:
        """Forget outstanding requests (the server lost them) so new ones go out."""
        self._owed = 0
        self._requests = 0

    async def _top_up(self) -> None:
        if self.paused or self._sub is None:
            return
        now = time.monotonic()
        # No answer at all (not even the 408 at expiry) for a whole expiry plus margin:
        # the server no longer knows these requests (restart, leader change).
        if self._requests and now - max(self._last_request, self._last_activity) > (
            self.expires_s + 2.0
        ):
            _log.info("%s: pull requests unanswered, re-requesting", self.durable)
            self.reset()
        # Not while max_requests batches already wait in the buffer: requests are re-issued
        # as deliveries complete, and when storing is the bottleneck the buffer (memory)
        # would grow with the backlog; take() tops up again once it has drained.
        while (
            self._requests < self.max_requests
            and self._owed <= self.batch * (self.max_requests - 1)
            and len(self._buf) < self.batch * self.max_requests
        ):
            # Counted before the publish: top-ups may run concurrently (the fast path starts
            # them as tasks), and each must see the requests the others are sending.
            self._owed += self.batch
            self._requests += 1
            self._last_request = now
            try:
                await self.nc.publish(self._api_subject, self._req, reply=self._inbox)
            except Exception as exc:  # disconnected: reconnect handling calls reset()
                _log.debug("%s: pull request not sent: %s", self.durable, exc)
                self._owed = max(0, self._owed - self.batch)
                self._requests = max(0, self._requests - 1)
                return

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        """The fast path (:func:`install_inbox_fast_path`): called by the parser, in order."""
        if data:
            # A delivery (what _accept does for one, inlined: this runs once per event). The
            # clock is read when the request completes or the batch is taken (take), not per
            # message: the staleness check it serves has a margin of seconds.
            self._buf.append(Delivered(subject.decode(), reply.decode(), data, headers))
            self._owed -= 1
            self._arrived.set()
            if self._owed > self.batch * (self._requests - 1):
                return
            self._last_activity = _monotonic()
            self._requests = max(0, self._requests - 1)  # the oldest request is delivered
            self._control = [t for t in self._control if not t.done()]
            self._control.append(asyncio.ensure_future(self._top_up()))
            return
        if self._accept(Delivered(subject.decode(), reply.decode(), data, headers)):
            # Top-ups publish (a coroutine); at most one per request delivered, so a task.
            self._control = [t for t in self._control if not t.done()]
            self._control.append(asyncio.ensure_future(self._top_up()))

    async def _on_msg(self, msg: Msg | Delivered) -> None:
        """The subscription callback (when the fast path is not available)."""
        if self._accept(msg):
            await self._top_up()

    def _accept(self, msg: Msg | Delivered) -> bool:
        """Buffer a message or account for a control message; True when a top-up is due."""
        self._last_activity = time.monotonic()
        if not msg.data:
            hdrs = msg.headers
            if hdrs is not None and _STATUS in hdrs:
                return self._on_status(hdrs)
        self._buf.append(msg)
        self._owed -= 1
        self._arrived.set()
        if self._owed <= self.batch * (self._requests - 1):
            # The oldest request is fully delivered.
            self._requests = max(0, self._requests - 1)
            return True
        return False

    def _on_status(self, hdrs: dict[str, str]) -> bool:
        status = hdrs[_STATUS]
        if status == "100":  # idle heartbeat / flow control
            return False
        # 404/408/409: one request is over; the server says how many it still owed.
        self._requests = max(0, self._requests - 1)
        try:
            self._owed = max(0, self._owed - int(hdrs.get(_PENDING, "0")))
        except ValueError:
            self._owed = self.batch * self._requests
        if status not in ("404", "408"):
            _log.info(
                "%s: pull request ended: %s %s",
                self.durable,
                status,
                hdrs.get("Description", ""),
            )
        if self._requests == 0:
            self._owed = 0
        return True

    async def take(self, max_n: int, timeout_s: float) -> list[Msg | Delivered]:
        """Up to ``max_n`` delivered messages; waits up to ``timeout_s`` for the first one."""
        if not self._buf:
            self._arrived.clear()
            await self._top_up()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout_s)
            except TimeoutError:
                await self._top_up()
                return []
        buf = self._buf
        n = min(max_n, len(buf))
        out = [buf.popleft() for _ in range(n)]
        # Deliveries arrived since the last take (see _on_raw): the server is answering.
        self._last_activity = _monotonic()
        await self._top_up()
        return out

    @property
    def buffered(self) -> int:
        """Messages delivered but not yet taken."""
        return len(self._buf)
