"""Fast, rate-controlled JetStream injector with pipelined PubAcks (issue 5).

How it goes fast: ``await js.publish()`` waits a full round trip per message (about 8k msg/s
here). The injector instead publishes with a reply subject ``<inbox>.<seq>`` on *one* wildcard
inbox subscription and lets PubAcks come back asynchronously, with at most ``window`` messages
in flight. JetStream answers a publish that has a reply subject with the PubAck on that
subject, so this is exactly what ``js.publish`` does, minus the waiting.

How it measures honestly: message ``i`` has an intended send time from the rate schedule and
its latency is ``ack time - intended time``. If the broker stalls, the injector falls behind,
and the delay shows up as latency rather than as a quietly lower rate (no coordinated
omission).

Delivery accounting: every message has a unique id (the CloudEvent id, also ``Nats-Msg-Id``
so JetStream de-duplicates retries); :class:`LoadResult` records attempted, acked and failed
ids (with reasons) for the delivery check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from harness._resource import cancel_and_wait
from harness.errors import ConfigError
from harness.load._wire import WireAuth, WireClient
from harness.load.gates import percentile
from harness.load.rates import Constant, Rate
from harness.progress import LoadCounters, ProgressSink
from harness.report.series import IntervalSeries

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

__all__ = [
    "Engine",
    "Injector",
    "LoadResult",
    "OutMessage",
    "PayloadFactory",
    "bytes_factory",
    "cloudevent_factory",
    "inject",
    "run_load",
]

log = logging.getLogger(__name__)

#: Failure reasons recorded per id (stable strings: checks and reports group by them).
REASON_TIMEOUT = "ack timeout"
REASON_NO_STREAM = "no responders (no stream bound to the subject?)"
REASON_STOPPED = "no ack before the run stopped"


class OutMessage(NamedTuple):
    """One message to publish: its unique ``id`` (the delivery check's key), payload and
    headers (which should carry ``Nats-Msg-Id: id``); ``subject`` overrides the run's.

    Immutable. A named tuple rather than a frozen dataclass: one is built per message, and a
    frozen dataclass' ``__init__`` alone cost ~0.8 us here (about 10 % of the client's
    per-message CPU)."""

    id: str
    payload: bytes
    headers: dict[str, str] | None = None
    subject: str | None = None


#: Builds message ``seq`` (0, 1, 2, ...) of a run.
PayloadFactory = Callable[[int], OutMessage]

#: on_reply(seq, PubAck payload, status): ``seq`` as an int or as the ASCII digits of the reply
#: subject's tail (the wire engine hands over its parser's bytes: no conversion hop), status
#: b"503" for no responders.
_OnReply = Callable[[int | bytes, bytes, bytes | None], None]


def bytes_factory(size: int = 256, *, run_id: str | None = None) -> PayloadFactory:
    """Plain ``size``-byte payloads with ids ``<run_id>-<seq>`` in ``Nats-Msg-Id``.

    The cheapest factory: what the benchmark uses so it measures the publishing path.
    """
    if size < 0:
        raise ValueError(f"bytes_factory: size must be >= 0, got {size}")
    rid = run_id or uuid.uuid4().hex[:12]
    body = (b"qiki-load-" * (size // 10 + 1))[:size]

    def make(seq: int) -> OutMessage:
        mid = f"{rid}-{seq}"
        return OutMessage(mid, body, {"Nats-Msg-Id": mid})

    return make


def cloudevent_factory(
    *,
    event_type: str = "qiki.harness.v1.Load",
    source: str = "urn:qiki:harness:load",
    data: Callable[[int], Any] | None = None,
    size: int = 256,
    subject: str | None = None,
) -> PayloadFactory:
    """Binary-mode CloudEvents (``services.common.cloudevents``); the CloudEvent id is the
    ``Nats-Msg-Id``: ``<run uuid>-<seq>``, unique per run.

    ``data(seq)`` builds the JSON data; by default a ``{"seq": n, "pad": "..."}`` object
    padded so the payload is about ``size`` bytes. ``subject`` is the CloudEvent subject
    attribute (not the NATS subject).

    Speed: building and validating every event costs ~30-100 us here, more than the whole
    publish. So the first event is built by ``new_event``/``to_binary`` (validated), and the
    rest reuse its encoded headers with a fresh id and time and their own JSON data.
    """
    # Imported here: the platform contract module is only needed when this factory is used.
    from services.common.cloudevents import format_time, new_event, to_binary

    pad = "x" * max(0, size - 24)

    def default_data(seq: int) -> Any:
        return {"seq": seq, "pad": pad}

    make_data = data or default_data
    run_id = uuid.uuid4().hex
    first = new_event(event_type, source, make_data(0), subject=subject, id=f"{run_id}-0")
    template, first_payload = to_binary(first)
    template = dict(template)
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    def make(seq: int) -> OutMessage:
        mid = f"{run_id}-{seq}"
        if seq == 0:
            return OutMessage(mid, first_payload, dict(template))
        headers = dict(template)
        headers["ce-id"] = mid
        headers["Nats-Msg-Id"] = mid
        headers["ce-time"] = format_time(datetime.now(UTC))
        return OutMessage(mid, dumps(make_data(seq)).encode(), headers)

    return make


@dataclass
class LoadResult:
    """What a load run did, per message id, plus latency and rate figures.

    ``latencies_ms[k]`` belongs to ``acked[k]`` and is measured from the message's intended
    send time. ``failed`` maps id -> reason. ``attempted`` is in send order.
    """

    subject: str
    rate: str
    window: int
    started_at: datetime
    ended_at: datetime
    #: Seconds the schedule planned (duration_s, or the offset after the last message).
    planned_s: float
    #: Seconds from start to the last publish (>= planned_s when the injector fell behind).
    send_elapsed_s: float
    target_rate_per_s: float | None
    attempted: list[str] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0
    late_acks: int = 0
    max_send_lag_ms: float = 0.0
    errors: list[str] = field(default_factory=list)
    #: End-to-end latencies (CloudEvent time -> stored by the registrar), if measured.
    e2e_latencies_ms: list[float] | None = None
    #: Which publishing engine ran ("wire" or "nats-py").
    engine: str = ""
    #: True for MaxRate runs (no schedule): rates are then computed up to the last ack.
    unbounded: bool = False
    #: Loop time of the last PubAck, and of the start (internal, for MaxRate rates).
    last_ack: float = 0.0
    t0: float = 0.0
    #: acked/failed and PubAck latency per interval, and write outages (bounded size; the
    #: run report draws availability from it). Times relative to the injector's start.
    series: IntervalSeries | None = None

    @property
    def elapsed_s(self) -> float:
        """The span rates are computed over: the plan, or longer if sending fell behind
        (for ``MaxRate``: up to the last PubAck)."""
        if self.unbounded and self.last_ack > self.t0:
            return max(self.send_elapsed_s, self.last_ack - self.t0)
        return max(self.planned_s, self.send_elapsed_s)

    @property
    def achieved_rate_per_s(self) -> float:
        """Acked messages per second over :attr:`elapsed_s`."""
        return len(self.acked) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def rate_ratio(self) -> float | None:
        """Achieved / target rate (None when there is no target, i.e. ``MaxRate``)."""
        if not self.target_rate_per_s or math.isinf(self.target_rate_per_s):
            return None
        return self.achieved_rate_per_s / self.target_rate_per_s

    @property
    def error_ratio(self) -> float:
        """Failed / attempted (0 when nothing was attempted)."""
        return len(self.failed) / len(self.attempted) if self.attempted else 0.0

    def delivery_sets(self) -> tuple[set[str], set[str], set[str]]:
        """``(attempted, acked, failed)`` id sets for the delivery check."""
        return set(self.attempted), set(self.acked), set(self.failed)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures: counts, rates, PubAck latency percentiles, failure reasons."""
        lat = sorted(self.latencies_ms)
        out: dict[str, Any] = {
            "subject": self.subject,
            "rate": self.rate,
            "window": self.window,
            "engine": self.engine,
            "attempted": len(self.attempted),
            "acked": len(self.acked),
            "failed": len(self.failed),
            "error_ratio": round(self.error_ratio, 6),
            "duplicates": self.duplicates,
            "late_acks": self.late_acks,
            "elapsed_s": round(self.elapsed_s, 3),
            "target_rate_per_s": (None if self.target_rate_per_s is None
                                  or math.isinf(self.target_rate_per_s)
                                  else round(self.target_rate_per_s, 1)),
            "achieved_rate_per_s": round(self.achieved_rate_per_s, 1),
            "rate_ratio": None if self.rate_ratio is None else round(self.rate_ratio, 4),
            "p50_ms": _r(percentile(lat, 50, presorted=True)),
            "p95_ms": _r(percentile(lat, 95, presorted=True)),
            "p99_ms": _r(percentile(lat, 99, presorted=True)),
            "max_ms": _r(lat[-1] if lat else None),
            "max_send_lag_ms": round(self.max_send_lag_ms, 3),
            "failure_reasons": dict(Counter(self.failed.values())),
            "errors": self.errors[:20],
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
        }
        if self.e2e_latencies_ms is not None:
            e2e = sorted(self.e2e_latencies_ms)
            out["e2e_samples"] = len(e2e)
            out["e2e_p50_ms"] = _r(percentile(e2e, 50, presorted=True))
            out["e2e_p95_ms"] = _r(percentile(e2e, 95, presorted=True))
        return out


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


Engine = Literal["auto", "wire", "nats-py"]


class _PublishFailed(Exception):
    """One message could not be published (its id fails with ``reason``)."""

    def __init__(self, reason: str, *, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


class _NatsPyEngine:
    """Publishes through the nats-py client itself (any auth, TLS; about 30k msg/s here)."""

    name = "nats-py"

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._sub: Subscription | None = None
        self.events: list[str] = []

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def start(self, inbox: str, on_reply: _OnReply) -> None:
        plen = len(inbox) + 1

        async def cb(msg: Msg) -> None:
            try:
                seq = int(msg.subject[plen:])
            except ValueError:
                return
            headers = msg.headers
            no_responders = headers is not None and headers.get("Status") == "503"
            on_reply(seq, msg.data, b"503" if no_responders else None)

        self._sub = await self.nc.subscribe(inbox + ".*", cb=cb)
        self._reply_prefix = inbox + "."

    async def send(self, subject: str, seq: int, msg: OutMessage) -> None:
        from nats import errors as nats_errors

        try:
            await self.nc.publish(msg.subject or subject, msg.payload,
                                  reply=self._reply_prefix + str(seq), headers=msg.headers)
        except nats_errors.OutboundBufferLimitError:
            raise _PublishFailed("publish failed: disconnected, reconnect buffer full") from None
        except (nats_errors.ConnectionClosedError, nats_errors.ConnectionDrainingError) as e:
            raise _PublishFailed(f"publish failed: {type(e).__name__}", fatal=True) from None
        except Exception as e:  # a bad message (size, header) fails that id, not the run
            raise _PublishFailed(f"publish failed: {type(e).__name__}: {e}") from None

    async def flush(self, partial: bool = False) -> None:
        return None

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()


#: The wire engine hands its buffer to the transport once it holds this many bytes (and on
#: every flush).
_WRITE_AT = 64 * 1024
#: Mid-burst (the sender only yielding to let acks in, not about to wait), the buffer is written
#: once it holds this much: bigger writes cost nats-server fewer reads per message.
_PARTIAL_WRITE_AT = 32 * 1024
#: ``HPUB <subject> <inbox>.`` + ``<seq> <hdr len> <total len>`` + the one-header block.
_HPUB_MSG_ID = b"%b%d %d %d\r\nNATS/1.0\r\nNats-Msg-Id: %b\r\n\r\n%b\r\n"
_MSG_ID_HDR_LEN = len(b"NATS/1.0\r\nNats-Msg-Id: \r\n\r\n")


class _WireEngine:
    """Publishes on a second, minimal protocol connection (see :mod:`harness.load._wire`)."""

    name = "wire"

    def __init__(self, client: WireClient, grace_s: float) -> None:
        self.client = client
        self.grace_s = grace_s
        # Publishes not yet handed to the transport: one buffer, written in big pieces (fewer
        # syscalls here, and nats-server parses more per read).
        self._buf = bytearray()
        self._down_since: float | None = None
        # subject -> b"HPUB <subject> <inbox>." and b"PUB <subject> <inbox>."
        self._heads: dict[str, tuple[bytes, bytes]] = {}
        self._is_connected = client.connected.is_set
        self._partial_at = _PARTIAL_WRITE_AT
        self._reply = b""

    @property
    def connected(self) -> bool:
        return self.client.connected.is_set()

    @property
    def events(self) -> list[str]:
        return self.client.events + [f"server error: {e}" for e in self.client.server_errors]

    async def start(self, inbox: str, on_reply: _OnReply) -> None:
        await self.client.connect(inbox, on_reply)
        self._reply = inbox.encode() + b"."

    async def send(self, subject: str, seq: int, msg: OutMessage) -> None:
        if not self.send_nowait(subject, seq, msg):
            await self._await_connection()
            if not self.send_nowait(subject, seq, msg):
                raise _PublishFailed("publish failed: disconnected")

    def send_nowait(self, subject: str, seq: int, msg: OutMessage) -> bool:
        """Queue one publish without awaiting (the hot path); False when disconnected."""
        if not self._is_connected():
            return False
        subj = msg.subject or subject
        heads = self._heads.get(subj)
        if heads is None:
            b = subj.encode()
            heads = self._heads[subj] = (b"HPUB %b %b" % (b, self._reply),
                                         b"PUB %b %b" % (b, self._reply))
        payload = msg.payload
        headers = msg.headers
        if headers:
            if len(headers) == 1:
                ((k, v),) = headers.items()
                if k == "Nats-Msg-Id":
                    # The usual case: one format call for the whole HPUB.
                    vb = v.encode()
                    hl = _MSG_ID_HDR_LEN + len(vb)
                    self._buf += _HPUB_MSG_ID % (heads[0], seq, hl, hl + len(payload), vb,
                                                 payload)
                    if len(self._buf) >= _WRITE_AT:
                        self._write()
                    return True
                hdr = b"NATS/1.0\r\n%b: %b\r\n\r\n" % (k.encode(), v.encode())
            else:
                hdr = b"NATS/1.0\r\n" + "".join(
                    f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n"
            hl = len(hdr)
            self._buf += b"%b%d %d %d\r\n%b%b\r\n" % (heads[0], seq, hl, hl + len(payload), hdr,
                                                      payload)
        else:
            self._buf += b"%b%d %d\r\n%b\r\n" % (heads[1], seq, len(payload), payload)
        if len(self._buf) >= _WRITE_AT:
            self._write()
        return True

    async def _await_connection(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._down_since is None:
            self._down_since = now
        remaining = self._down_since + self.grace_s - now
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.client.connected.wait(), remaining)
        if not self.client.connected.is_set():
            # Past the grace period: fail fast until the connection is back, so a long
            # outage costs ids (recorded) instead of stalling the schedule forever.
            raise _PublishFailed("publish failed: disconnected")
        self._down_since = None

    def _write(self) -> None:
        if self._buf:
            # Written while disconnected -> lost; their PubAcks time out and say so.
            # A fresh buffer each time: the transport may keep a reference to the old one.
            self.client.write(self._buf)
            self._buf = bytearray()

    async def flush(self, partial: bool = False) -> None:
        """Write what is buffered (``partial``: only once it is worth a write, the mid-burst
        case) and wait while the transport is over its high-water mark."""
        if not partial or len(self._buf) >= self._partial_at:
            self._write()
        await self.client.drain()

    async def close(self) -> None:
        self._write()
        await self.client.close()


def _wire_for(nc: Client, grace_s: float) -> _WireEngine | None:
    """A wire engine speaking to ``nc``'s server with its credentials and TLS context, or
    None when the connection uses something only nats-py can do (NKeys, JWT credentials:
    a nonce to sign). The run's journal then says ``engine: nats-py``."""
    opts = getattr(nc, "options", {}) or {}
    if getattr(nc, "_user_credentials", None) or getattr(nc, "_nkeys_seed", None) \
            or getattr(nc, "_nkeys_seed_str", None) or getattr(nc, "_signature_cb", None):
        return None
    url = nc.connected_url
    if url is None or url.scheme not in ("nats", "tls", ""):
        return None
    host = url.hostname or "127.0.0.1"
    tls = opts.get("tls")
    auth = WireAuth(user=url.username or opts.get("user"),
                    password=url.password or opts.get("password"), token=opts.get("token"),
                    tls=tls if isinstance(tls, ssl.SSLContext) else None,
                    tls_hostname=opts.get("tls_hostname"))
    return _WireEngine(WireClient([f"nats://{host}:{url.port or 4222}"], auth=auth,
                                  name=str(opts.get("name") or "qiki-harness-load")),
                       grace_s=grace_s)


class Injector:
    """One load run: publish on ``subject`` following ``rate`` for ``duration_s`` seconds or
    ``count`` messages (whichever ends first), at most ``window`` PubAcks outstanding.

    ``await run()`` returns a :class:`LoadResult`; ``stop()`` ends sending early (in-flight
    acks are still awaited up to ``ack_timeout_s``). A PubAck not received within
    ``ack_timeout_s`` of the publish frees its window slot and fails the id; one arriving
    later moves the id back to acked (``late_acks``): the message *is* stored.

    ``engine``: ``"wire"`` publishes on a second, minimal protocol connection to the same
    server (several times faster than nats-py); ``"nats-py"`` uses ``nc`` itself;
    ``"auto"`` (default) takes wire unless ``nc`` uses NKeys or JWT credentials.
    On a disconnect the wire engine waits up to ``ack_timeout_s`` for the reconnect (the
    delay shows as latency), then fails ids fast until it is back.
    """

    def __init__(
        self,
        nc: Client,
        subject: str,
        *,
        rate: Rate | None = None,
        duration_s: float | None = None,
        count: int | None = None,
        window: int = 1000,
        ack_timeout_s: float = 5.0,
        factory: PayloadFactory | None = None,
        engine: Engine = "auto",
        yield_every: int = 64,
        progress: ProgressSink | None = None,
        label: str | None = None,
        on_result: Callable[[LoadResult], None] | None = None,
    ) -> None:
        if not subject or any(c in subject for c in " \t\r\n*>"):
            raise ConfigError(f"load: subject must be a literal NATS subject, got {subject!r}")
        rate = rate if rate is not None else Constant(1000)
        if not isinstance(rate, Rate):
            raise TypeError(f"load: rate must be a Rate (Constant, Ramp, ...), got {rate!r}")
        if duration_s is None and count is None:
            raise ConfigError("load: give duration_s or count (or both); got neither")
        if duration_s is not None and not (duration_s > 0 and math.isfinite(duration_s)):
            raise ConfigError(f"load: duration_s must be > 0, got {duration_s!r}")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or count < 1):
            raise ConfigError(f"load: count must be an int >= 1, got {count!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError(f"load: window must be an int >= 1, got {window!r}")
        if not ack_timeout_s > 0:
            raise ConfigError(f"load: ack_timeout_s must be > 0, got {ack_timeout_s!r}")
        if engine not in ("auto", "wire", "nats-py"):
            raise ConfigError(f"load: engine must be 'auto', 'wire' or 'nats-py', got {engine!r}")
        self.nc = nc
        self.subject = subject
        self.rate = rate
        self.duration_s = duration_s
        self.count = count
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        # Default: CloudEvents, what the platform's consumers expect (issue 5).
        self.factory = factory or cloudevent_factory()
        self.engine: Engine = engine
        self.yield_every = max(1, yield_every)
        # Resume sending once the window has drained to here: waking for every single free
        # slot would cost a task switch per message at full speed.
        self._low_water = window - max(1, window // 4)
        self._stopping = False
        self._ran = False
        # seq -> (id, intended loop time, send loop time); insertion order == send order,
        # which is what lets the timeout sweep stop at the first unexpired entry.
        self._inflight: dict[int, tuple[str, float, float]] = {}
        self._timed_out: dict[int, tuple[str, float]] = {}
        self._slot_free = asyncio.Event()
        self._drained = asyncio.Event()
        self._sending_done = False
        self._eng: _NatsPyEngine | _WireEngine | None = None
        # Live progress (issue 12): the view polls counters() a few times a second; nothing
        # is reported per message.
        self.progress = progress
        self.label = label or f"{rate!r} on {subject}"
        self._res: LoadResult | None = None
        self.on_result = on_result

    def counters(self) -> LoadCounters:
        """Running totals (cheap: a few ``len`` calls), for a progress view."""
        res = self._res
        if res is None:
            return LoadCounters()
        return LoadCounters(attempted=len(res.attempted), acked=len(res.acked),
                            failed=len(res.failed), in_flight=len(self._inflight))

    def stop(self) -> None:
        """Stop sending; ``run()`` then waits for in-flight acks and returns."""
        self._stopping = True
        self._slot_free.set()

    def _pick_engine(self) -> _NatsPyEngine | _WireEngine:
        if self.engine == "nats-py":
            return _NatsPyEngine(self.nc)
        wire = _wire_for(self.nc, self.ack_timeout_s)
        if wire is None:
            if self.engine == "wire":
                raise ConfigError("load: engine='wire' cannot use this connection (NKeys or "
                                  "JWT credentials); use engine='nats-py' or 'auto'")
            return _NatsPyEngine(self.nc)
        return wire

    async def run(self) -> LoadResult:
        """Run the load and return what happened. Single use."""
        if self._ran:
            raise RuntimeError("Injector.run() is single use; create a new Injector")
        self._ran = True
        loop = asyncio.get_running_loop()
        inbox = self.nc.new_inbox()
        res = LoadResult(
            subject=self.subject, rate=repr(self.rate), window=self.window,
            started_at=datetime.now(UTC), ended_at=datetime.now(UTC), planned_s=0.0,
            send_elapsed_s=0.0, target_rate_per_s=None,
        )
        res.series = IntervalSeries(origin=loop.time(), interval_s=0.5, outage_threshold_s=1.0)
        self._res = res
        if self.progress is not None:
            self.progress.load_started(self, self.label, self.counters)
        eng = self._pick_engine()
        self._eng = eng
        await eng.start(inbox, self._make_on_reply(res))
        res.engine = eng.name
        sweeper = asyncio.create_task(self._sweep(res), name="qiki-load-ack-sweeper")
        try:
            await self._send(loop, eng, res)
            self._sending_done = True
            await eng.flush()
            if self._inflight:
                self._drained.clear()
                # The sweeper fails whatever is left after ack_timeout_s, so this ends.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained.wait(), self.ack_timeout_s * 2 + 1)
        finally:
            await cancel_and_wait(sweeper)
            stop_t = loop.time()
            for _seq, (mid, intended, _ts) in list(self._inflight.items()):
                res.failed[mid] = REASON_STOPPED
                res.series.fail(stop_t, intended)
            res.series.close()
            self._inflight.clear()
            with contextlib.suppress(Exception):
                await eng.close()
            res.errors.extend(eng.events)
            res.ended_at = datetime.now(UTC)
            if self.progress is not None:
                self.progress.load_finished(self, self.counters())
            if self.on_result is not None:
                # also when cancelled: what was sent until then is still a result
                self.on_result(res)
        return res

    async def _send(self, loop: asyncio.AbstractEventLoop, eng: _NatsPyEngine | _WireEngine,
                    res: LoadResult) -> None:
        factory, subject = self.factory, self.subject
        inflight, window = self._inflight, self.window
        count, duration_s = self.count, self.duration_s
        unbounded = self.rate.unbounded
        offsets = self.rate.offsets()
        attempted_append = res.attempted.append
        assert res.series is not None
        series_sent, series_fail = res.series.sent, res.series.fail
        send = eng.send
        # The wire engine queues synchronously: no coroutine per message on the hot path.
        send_nowait = eng.send_nowait if isinstance(eng, _WireEngine) else None

        t0 = loop.time()
        res.started_at = datetime.now(UTC)
        seq = 0
        last_send = t0
        max_lag = 0.0
        next_off: float | None = next(offsets, None)
        since_yield = 0
        while not self._stopping and next_off is not None:
            if count is not None and seq >= count:
                break
            now = loop.time()
            if duration_s is not None:
                if (now - t0 if unbounded else next_off) >= duration_s:
                    break
            if not unbounded and next_off > now - t0:
                since_yield = 0
                await eng.flush()
                await asyncio.sleep(next_off - (now - t0))
                continue
            if len(inflight) >= window:
                self._slot_free.clear()
                since_yield = 0
                await eng.flush()
                await self._slot_free.wait()
                continue
            msg = factory(seq)
            intended = now if unbounded else t0 + next_off
            lag = now - intended
            if lag > max_lag:
                max_lag = lag
            inflight[seq] = (msg.id, intended, now)
            attempted_append(msg.id)
            series_sent(now)
            try:
                if send_nowait is None or not send_nowait(subject, seq, msg):
                    await send(subject, seq, msg)
            except _PublishFailed as e:
                inflight.pop(seq, None)
                res.failed[msg.id] = e.reason
                series_fail(now, intended)
                if e.fatal:
                    res.errors.append(f"connection closed at message {seq}; stopping")
                    self._stopping = True
                elif not eng.connected:
                    await asyncio.sleep(0.01)  # do not spin while the connection is down
            last_send = now
            seq += 1
            next_off = next(offsets, None)
            since_yield += 1
            if since_yield >= self.yield_every:
                # Let the ack handler, the writer and nats-py's flusher run. Not a full flush:
                # the loop is not about to wait, and bigger writes are cheaper for the server.
                since_yield = 0
                await eng.flush(partial=True)
                await asyncio.sleep(0)
        res.send_elapsed_s = last_send - t0 if seq else 0.0
        res.max_send_lag_ms = max_lag * 1000.0
        res.unbounded = unbounded
        if self.duration_s is not None and not unbounded:
            res.planned_s = self.duration_s
            if count is not None:
                res.planned_s = min(self.duration_s, self.rate.offset_of(count))
        elif not unbounded and count is not None:
            res.planned_s = self.rate.offset_of(count)
        if not unbounded and res.planned_s > 0:
            res.target_rate_per_s = self.rate.count_before(res.planned_s) / res.planned_s
        elif unbounded:
            res.target_rate_per_s = math.inf
        res.t0 = t0

    def _make_on_reply(self, res: LoadResult) -> _OnReply:
        inflight, timed_out = self._inflight, self._timed_out
        loop = asyncio.get_running_loop()
        acked_append, lat_append = res.acked.append, res.latencies_ms.append
        assert res.series is not None
        series = res.series
        slot_free, drained = self._slot_free, self._drained
        low_water = self._low_water

        def on_reply(key: int | bytes, data: bytes, status: bytes | None) -> None:
            now = loop.time()
            try:
                seq = int(key)
            except ValueError:
                return  # not one of ours
            entry = inflight.pop(seq, None)
            late = False
            if entry is None:
                late_entry = timed_out.pop(seq, None)
                if late_entry is None:
                    return  # a duplicate reply: nothing to account
                mid, intended = late_entry
                late = True
            else:
                mid, intended, _sent = entry
            reason: str | None = None
            if status == b"503":
                reason = REASON_NO_STREAM
            elif not data or b'"error"' in data:
                reason = _ack_error(data)
            if reason is None:
                if late:
                    res.failed.pop(mid, None)
                    res.late_acks += 1
                acked_append(mid)
                lat_ms = (now - intended) * 1000.0
                lat_append(lat_ms)
                series.ack(now, lat_ms, intended)
                res.last_ack = now
                # nats-server writes '"duplicate": true' (with a space); accept both.
                if b'"duplicate"' in data and b"true" in data:
                    res.duplicates += 1
            elif not late:
                res.failed[mid] = reason
                series.fail(now, intended)
            n = len(inflight)
            if n <= low_water:
                slot_free.set()
            if n == 0 and self._sending_done:
                drained.set()

        return on_reply

    async def _sweep(self, res: LoadResult) -> None:
        """Fail ids whose PubAck is overdue, freeing their window slots."""
        loop = asyncio.get_running_loop()
        inflight, timeout = self._inflight, self.ack_timeout_s
        period = min(0.25, timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            expired: list[int] = []
            for seq, (_mid, _ti, sent) in inflight.items():
                if now - sent < timeout:
                    break
                expired.append(seq)
            for seq in expired:
                mid, intended, _sent = inflight.pop(seq)
                res.failed[mid] = REASON_TIMEOUT
                if res.series is not None:
                    res.series.fail(now, intended)
                self._timed_out[seq] = (mid, intended)
            if expired:
                if self._eng is not None and not self._eng.connected:
                    res.errors.append(
                        f"{len(expired)} PubAcks timed out while disconnected from NATS")
                self._slot_free.set()
                if not inflight and self._sending_done:
                    self._drained.set()


def _ack_error(data: bytes) -> str | None:
    """Reason text for a PubAck that is not a success (``{"error": {...}}`` or garbage);
    None for a success."""
    if not data:
        return "empty PubAck"
    try:
        body = json.loads(data)
    except ValueError:
        return f"unparseable PubAck: {data[:80]!r}"
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return (f"server error {err.get('code')}/{err.get('err_code')}: "
                f"{err.get('description')}")
    if isinstance(body, dict) and "stream" in body:
        return None  # a success whose payload happened to contain "error"
    return f"unexpected PubAck: {data[:80]!r}"


async def inject(
    nc: Client,
    subject: str,
    *,
    rate: Rate | None = None,
    duration_s: float | None = None,
    count: int | None = None,
    window: int = 1000,
    ack_timeout_s: float = 5.0,
    factory: PayloadFactory | None = None,
    engine: Engine = "auto",
    progress: ProgressSink | None = None,
    label: str | None = None,
    on_result: Callable[[LoadResult], None] | None = None,
) -> LoadResult:
    """Run an :class:`Injector` to completion on a connected client and return its result
    (``progress``: where to report it, see :mod:`harness.progress`; ``on_result`` is called
    with the result when the run ends, also when it is cancelled)."""
    return await Injector(nc, subject, rate=rate, duration_s=duration_s, count=count,
                          window=window, ack_timeout_s=ack_timeout_s, factory=factory,
                          engine=engine, progress=progress, label=label,
                          on_result=on_result).run()


async def run_load(
    servers: str | Sequence[str],
    subject: str,
    *,
    rate: Rate | None = None,
    duration_s: float | None = None,
    count: int | None = None,
    window: int = 1000,
    ack_timeout_s: float = 5.0,
    factory: PayloadFactory | None = None,
    engine: Engine = "auto",
    connect_kwargs: dict[str, Any] | None = None,
    progress: ProgressSink | None = None,
    label: str | None = None,
    on_result: Callable[[LoadResult], None] | None = None,
) -> LoadResult:
    """Connect to ``servers``, run the load, close: the entry point of ``qiki-harness load``.

    ``connect_kwargs`` go to ``nats.connect`` (credentials, e.g. from
    ``NatsSettings.connect_kwargs()``). Reconnects are endless by default, so a broker restart
    mid-run costs the in-flight messages (recorded as failed), not the run.
    """
    import nats

    urls = [servers] if isinstance(servers, str) else list(servers)
    events: list[str] = []

    async def on_disconnect() -> None:
        events.append(f"{datetime.now(UTC).isoformat()} disconnected")

    async def on_reconnect() -> None:
        events.append(f"{datetime.now(UTC).isoformat()} reconnected")

    async def on_error(e: Exception) -> None:
        events.append(f"{datetime.now(UTC).isoformat()} error: {e!r}")

    kwargs: dict[str, Any] = {
        "name": "qiki-harness-load",
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.25,
        "connect_timeout": 2,
        "allow_reconnect": True,
        # Room to buffer publishes while reconnecting before they fail.
        "pending_size": 16 * 1024 * 1024,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "error_cb": on_error,
    }
    kwargs.update(connect_kwargs or {})
    nc = await nats.connect(servers=urls, **kwargs)
    try:
        res = await inject(nc, subject, rate=rate, duration_s=duration_s, count=count,
                           window=window, ack_timeout_s=ack_timeout_s, factory=factory,
                           engine=engine, progress=progress, label=label,
                           on_result=on_result)
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()
        if not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()
    res.errors.extend(events)
    return res
