"""The registrar service: JetStream events -> validated, coded audit records in SQLite.

Per batch (issue 2, section 4):

1. take up to ``batch`` delivered messages from each durable pull consumer;
2. validate each against the CloudEvents contract and assign a code (:mod:`.codemap`);
   a message that fails validation becomes a rejection record (92x code + reason) and its raw
   copy is published to the dead-letter subject (outside ``qiki.events.v1.>``);
3. insert every record in ONE SQLite transaction (``INSERT OR IGNORE``: redeliveries are not
   stored twice), committed with ``synchronous=FULL`` (fsynced);
4. only then acknowledge the messages (one ack publish each, written out together).

A crash anywhere before step 4 means redelivery, and step 3 makes that harmless.

The registrar's own lifecycle (100/101 boot, 410/411 NATS connected/disconnected,
910/911 recovery) is stored locally first (so it is recorded while NATS is down) and then
published best-effort as CloudEvents on the registrar events subject; when they come back
through the events stream they are recognised by (source, id) and not stored again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orjson import loads as _loads

from services.common.cloudevents import (
    CloudEvent,
    CloudEventError,
    from_message,
    new_event,
    to_binary,
)
from services.common.codes import RegistrarCode, rejection_code_for
from services.common.contracts import CompiledContract, ContractRegistry, DataViolation
from services.common.http import HttpServer, Response, json_response
from services.common.settings import NatsSettings, connect

from .codemap import CodeMapper
from .envelope import EnvelopeParser
from .metrics import RegistrarMetrics
from .pull import (
    Delivered,
    PullConsumer,
    install_fast_header_parser,
    parse_ack_subject,
    publish_acks,
)
from .store import RegistrarStore, Row, rejection_key
from .wal import DEFAULT_WAL_MAX_BYTES, WalKeeper

if TYPE_CHECKING:
    from typing import TypeAlias

    from nats.aio.client import Client
    from nats.aio.msg import Msg as NatsMsg

    #: What the pull consumer hands out: nats-py's Msg, or the fast path's Delivered.
    Msg: TypeAlias = NatsMsg | Delivered
    from nats.js.client import JetStreamContext

    from services.common.botspec import RuntimeConfig
    from services.common.contract_ref import ContractRef

__all__ = ["CRASH_AFTER_COMMIT_ENV", "Registrar", "RegistrarOptions"]

_log = logging.getLogger(__name__)

#: After a disk error, commits must succeed this long with no new failure before the
#: registrar records that its store takes writes again (931 STORAGE_OK).
STORAGE_OK_AFTER_S = 1.0

#: Test hook: ``QIKI_REGISTRAR_CRASH_AFTER_COMMIT=N`` makes the process ``os._exit(137)``
#: right after the N-th event batch is committed and before it is acknowledged, which is
#: the window where a crash leads to redelivery of stored messages.
CRASH_AFTER_COMMIT_ENV = "QIKI_REGISTRAR_CRASH_AFTER_COMMIT"

_DLQ_HEADER_PREFIX = "Qiki-Dlq-"
_NO_JSON: Any = object()  # _build: the payload was not decoded as JSON
_MAX_REASON_CHARS = 1000


@dataclass
class RegistrarOptions:
    """Everything the registrar needs to run (the CLI builds this from its flags)."""

    db_path: Path
    config: RuntimeConfig
    nats: NatsSettings = field(default_factory=NatsSettings)
    http_host: str = "127.0.0.1"
    http_port: int = 0
    batch: int | None = None  # default: the BotSpec's registrar batch_size
    max_bytes: int | None = None  # default: the BotSpec's registrar max_message_bytes
    max_data_bytes: int = 65536  # payload bytes kept in a record; the rest is truncated
    expires_s: float = 5.0
    provision: Literal["auto", "always", "never"] = "auto"
    crash_after_commit: int | None = None
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    #: Bound of the SQLite WAL file (see :mod:`.wal`); it stays under this however long
    #: events arrive.
    wal_max_bytes: int = DEFAULT_WAL_MAX_BYTES
    #: Validate every event's data against its type's contract from the spec
    #: (``config.contracts``; types without a contract pass). ``None`` follows the spec's
    #: ``runtime.registrar.validate_data`` (on by default); ``False`` is ``--no-validate-data``.
    #: Data that breaks its contract is rejected with code 923 (REJECTED_BAD_DATA), the reason
    #: naming the type, JSON pointer, keyword and value, and dead-lettered.
    contracts: bool | None = None
    #: An extra data check, called on every event that passed the envelope checks (and its
    #: contract): raise :class:`CloudEventError` (rule ``bad-data`` -> code 923) to reject it.
    #: It runs on the event loop, so its cost per event counts against the ingest budget.
    validate_data: Callable[[CloudEvent], None] | None = None

    def __post_init__(self) -> None:
        if self.wal_max_bytes < 1024 * 1024:
            raise ValueError(
                f"wal_max_bytes={self.wal_max_bytes}: expected >= 1 MiB (e.g. 64 MiB)"
            )
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"batch={self.batch}: expected >= 1 (e.g. 1000)")
        if self.max_bytes is not None and self.max_bytes < 1:
            raise ValueError(f"max_bytes={self.max_bytes}: expected >= 1 (e.g. 1048576)")
        if not 0 <= self.http_port <= 65535:
            raise ValueError(f"http_port={self.http_port}: expected 0..65535 (0 = any free)")


@dataclass
class _Reject:
    msg: Msg
    code: int
    reason: str
    stream: str | None
    stream_seq: int | None


class Registrar:
    """The registrar as an async context manager::

        async with Registrar(options) as reg:
            print(reg.http_url)
            await reg.wait_stopped()   # or reg.request_stop()

    Entering connects, binds the consumers, serves HTTP and starts consuming; leaving
    drains (finishes and acks the batch in flight) and closes everything.
    """

    def __init__(self, options: RegistrarOptions) -> None:
        self.options = options
        cfg = options.config
        svc = cfg.registrar
        self.source = svc.source
        self.batch = options.batch or svc.batch_size or 1000
        self.max_bytes = options.max_bytes or svc.max_message_bytes or 1_048_576
        self.events_subject = cfg.subjects.registrar_events
        self.dead_letter_subject = cfg.subjects.dead_letter
        self.durables = list(svc.durables)
        self.metrics = RegistrarMetrics()
        self.mapper = CodeMapper(cfg.codes)
        on = options.contracts if options.contracts is not None else svc.validate_data is not False
        #: type -> compiled contract (compiled once, here); empty when validation is off.
        #: Raises ContractError (a ValueError naming the file) for a contract that does not
        #: compile, before anything is connected.
        self.contracts: dict[str, CompiledContract] = (
            _compile_contracts(cfg.contracts) if on and cfg.contracts else {}
        )
        # type -> its data check from the raw payload, looked up once per event.
        self._data_checks: dict[str, Callable[[bytes], list[DataViolation]]] = {
            t: _data_check(c) for t, c in self.contracts.items()
        }
        # type -> its check of already decoded JSON (JSON Schema contracts): the fused path
        # decodes each payload once (see _build).
        self._decoded_checks: dict[str, Callable[[Any], list[DataViolation]]] = {
            t: c.validate
            for t, c in self.contracts.items()
            if type(c).validate_json is CompiledContract.validate_json
        }
        self._envelope = EnvelopeParser()
        self.store: RegistrarStore | None = None
        self.wal: WalKeeper | None = None
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.http: HttpServer | None = None
        self.consumers: list[PullConsumer] = []
        self._db = ThreadPoolExecutor(1, thread_name_prefix="registrar-db")
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._stopping = False
        self._outbox: list[Any] = []  # CloudEvents not yet published
        self._outbox_signal = asyncio.Event()
        self._recovery: asyncio.Task[None] | None = None
        self._batches_committed = 0
        #: the store refuses writes (disk full, I/O error) since this monotonic time
        self._storage_down_since: float | None = None
        self._storage_failures = 0
        self._storage_last_failure = 0.0
        self._storage_ok_at: float | None = None
        self._storage_settle: asyncio.Task[None] | None = None
        #: lifecycle rows the store refused; written with the next commit that succeeds
        self._unstored: list[Row] = []
        self._connected = False
        self._ready = False
        self.instance = f"{socket.gethostname()}:{os.getpid()}"

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        """Base URL of the query/metrics endpoint."""
        assert self.http is not None, "registrar not started"
        return self.http.url

    async def __aenter__(self) -> Registrar:
        try:
            await self.start()
        except BaseException as exc:
            if self.store is not None:
                # Stored locally only: NATS may be the very thing that failed.
                with contextlib.suppress(Exception):
                    await self._lifecycle(
                        RegistrarCode.BOOT_FAILED,
                        {"error": f"{type(exc).__name__}: {exc}"[:_MAX_REASON_CHARS]},
                    )
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the store, connect, bind consumers, serve HTTP, start consuming."""
        opts = self.options
        loop = asyncio.get_running_loop()
        self.store = await loop.run_in_executor(
            self._db,
            lambda: RegistrarStore(
                opts.db_path,
                synchronous=opts.synchronous,
                max_data_bytes=opts.max_data_bytes,
                autocheckpoint=False,
            ),
        )
        # Checkpoints run off the commit path and keep the WAL bounded (issue 13, .wal).
        self.wal = WalKeeper(self.store, max_bytes=opts.wal_max_bytes).start()
        await self._lifecycle(RegistrarCode.BOOT_START, {"db": str(opts.db_path)})
        self.nc = await connect(
            opts.nats,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            closed_cb=self._on_closed,
            error_cb=self._on_error,
        )
        install_fast_header_parser(self.nc)
        self._connected = True
        self.metrics.connected.set(1)
        await self._lifecycle(
            RegistrarCode.NATS_CONNECTED, {"server": _masked(self.nc.connected_url)}
        )
        self.js = self.nc.jetstream()
        await self._ensure_consumers()
        for durable in self.durables:
            stream = opts.config.consumer(durable).stream
            pc = PullConsumer(
                self.nc, stream, durable, batch=self.batch, expires_s=opts.expires_s
            )
            await pc.start()
            self.consumers.append(pc)
        self.http = HttpServer(
            {"/healthz": self._h_healthz, "/metrics": self._h_metrics, "/records": self._h_records,
             "/counts": self._h_counts},
            host=opts.http_host,
            port=opts.http_port,
        )
        await self.http.start()
        self._tasks.append(asyncio.create_task(self._publisher(), name="registrar-outbox"))
        for pc in self.consumers:
            self._tasks.append(asyncio.create_task(self._consume(pc), name=f"reg-{pc.durable}"))
        self._ready = True
        await self._lifecycle(
            RegistrarCode.BOOT_OK,
            {"durables": self.durables, "batch": self.batch, "http": self.http.url},
        )

    def request_stop(self) -> None:
        """Ask the service to stop (SIGTERM handler); :meth:`wait_stopped` returns."""
        self._stop.set()

    async def wait_stopped(self) -> None:
        """Wait until :meth:`request_stop` is called."""
        await self._stop.wait()

    async def close(self) -> None:
        """Drain: stop taking messages, finish the batch in flight, publish what is queued,
        close NATS, HTTP and the store. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        self._ready = False
        for pc in self.consumers:
            pc.paused = True
        # The consume loops notice _stopping within their take() timeout and finish the
        # batch they hold (store + ack) before returning.
        consume = [t for t in self._tasks if t.get_name().startswith("reg-")]
        if consume:
            _, pending = await asyncio.wait(consume, timeout=10.0)
            for t in pending:
                t.cancel()
        if self.nc is not None and self.nc.is_connected and self._outbox:
            self._outbox_signal.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush_outbox(), 2.0)
        for t in self._tasks:
            t.cancel()
        if self._recovery is not None:
            self._recovery.cancel()
        for t in [*self._tasks, *([self._recovery] if self._recovery else [])]:
            with contextlib.suppress(BaseException):
                await t
        for pc in self.consumers:
            await pc.stop()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.flush(), 2.0)
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self.http is not None:
            await self.http.close()
        if self.wal is not None:
            await asyncio.get_running_loop().run_in_executor(self._db, self.wal.close)
        if self.store is not None:
            store = self.store
            await asyncio.get_running_loop().run_in_executor(self._db, store.close)
        self._db.shutdown(wait=True)

    # -- provisioning ---------------------------------------------------------------------
    async def _ensure_consumers(self) -> None:
        from nats.js.errors import NotFoundError

        from services.common.botspec import provision

        assert self.js is not None
        mode = self.options.provision
        missing = []
        if mode == "always":
            missing = list(self.durables)
        else:
            for durable in self.durables:
                c = self.options.config.consumer(durable)
                try:
                    await self.js.consumer_info(c.stream, durable)
                except NotFoundError:
                    missing.append(durable)
        if not missing:
            return
        if mode == "never":
            raise RuntimeError(
                f"durable consumer(s) {', '.join(missing)} do not exist and provisioning is "
                "off; provision the platform first (or run with --provision auto)"
            )
        await provision(self.js, self.options.config)

    # -- consuming ------------------------------------------------------------------------
    async def _consume(self, pc: PullConsumer) -> None:
        # Two batches in flight: while batch N is committed (fsync, in the DB thread) batch
        # N+1 is validated here. Commits stay in order (one DB thread); each batch is acked
        # as soon as its own commit returns.
        inflight: deque[asyncio.Task[None]] = deque()
        try:
            while not self._stopping:
                msgs = await pc.take(self.batch, 0.25)
                while inflight and inflight[0].done():
                    inflight.popleft()
                if not msgs:
                    continue
                try:
                    inflight.append(await self._prepare(msgs))
                except Exception:
                    # Never die on a batch: its messages stay unacked and are redelivered.
                    _log.exception("%s: batch of %d failed; left for redelivery", pc.durable,
                                   len(msgs))
                    await asyncio.sleep(0.5)
                while len(inflight) >= 2:
                    await asyncio.wait([inflight.popleft()])
        finally:
            if inflight:
                await asyncio.wait(inflight)

    def _build(self, msgs: Sequence[Msg]) -> tuple[list[Row], list[_Reject]]:
        """Validate and code every message (the CPU-bound hot path: keep it lean)."""
        rows: list[Row] = []
        rejects: list[_Reject] = []
        now = time.time()
        max_bytes = self.max_bytes
        max_data = self.options.max_data_bytes
        classify = self.mapper.classify
        validate = self.options.validate_data
        checks = self._data_checks
        # The fused path (issue 13): raw header block -> envelope in one pass, data decoded
        # once for the JSON check, the contract and the code. It only ever accepts: whatever
        # it is unsure of (and every rejection) goes down the general path below, which
        # decides exactly as before. Off with an extra validate_data hook (it wants a
        # CloudEvent).
        parse = self._envelope.parse if validate is None else None
        decoded_checks = self._decoded_checks
        for msg in msgs:
            stream, sseq, _ = parse_ack_subject(msg.reply)
            if parse is not None and type(msg) is Delivered:
                env = parse(msg.raw_headers)
                data = msg.data
                if env is not None and len(data) <= max_bytes:
                    event_id, source, type_, time_iso, subject, ctype, is_json = env
                    decoded: Any = _NO_JSON
                    if is_json and data:
                        try:
                            decoded = _loads(data)
                        except ValueError:  # not JSON (or not JSON orjson takes)
                            env = None
                    if env is not None:
                        dcheck = decoded_checks.get(type_)
                        if dcheck is not None:
                            if decoded is _NO_JSON or dcheck(decoded):
                                env = None  # no JSON to check, or it breaks the contract
                        elif type_ in checks:  # a contract that reads the raw JSON itself
                            if checks[type_](data):
                                env = None
                    if env is not None:
                        cls = (
                            classify(type_, msg.subject, data, ctype)
                            if decoded is _NO_JSON
                            else classify(type_, msg.subject, data, ctype, decoded)
                        )
                        rows.append(
                            (
                                cls.code,
                                source,
                                event_id,
                                type_,
                                subject,
                                msg.subject,
                                time_iso,
                                now,
                                stream,
                                sseq,
                                cls.reason,
                                data[:max_data] if len(data) > max_data else data,
                                len(data),
                            )
                        )
                        continue
            try:
                hdrs = msg.headers
                # A binary event of a type with a contract: its data is parsed once, by the
                # contract check below, rather than also by from_message.
                hint = hdrs.get("ce-type") if checks and hdrs else None
                check = checks.get(hint) if hint is not None else None
                # from_message also checks that JSON data parses (rule bad-data).
                ev = from_message(hdrs, msg.data, max_size=max_bytes,
                                  check_data=check is None)
                if check is not None and ev.type != hint:  # not what the header claimed
                    check = None
                    ev = from_message(hdrs, msg.data, max_size=max_bytes)
                if not ev.source or not ev.id:
                    # Defence in depth for the store key: (source, id) must both be set.
                    raise CloudEventError(
                        "missing-attribute",
                        f"required attribute {'source' if not ev.source else 'id'!r} is "
                        "missing or empty; every CloudEvent needs non-empty id and source",
                    )
                data = ev.data
                if checks:
                    if check is None:
                        check = checks.get(ev.type)
                    if check is not None:
                        bad = check(data)
                        if bad:
                            raise CloudEventError("bad-data", _violation_reason(ev.type, bad))
                if validate is not None:
                    validate(ev)
            except CloudEventError as exc:
                code = int(rejection_code_for(exc.rule))
                rejects.append(_Reject(msg, code, f"{exc.rule}: {exc}", stream, sseq))
                continue
            except Exception as exc:  # a decoder bug must not stop the registrar
                code = int(RegistrarCode.REJECTED_NOT_CLOUDEVENT)
                reason = f"undecodable: {type(exc).__name__}: {exc}"
                rejects.append(_Reject(msg, code, reason, stream, sseq))
                continue
            cls = classify(ev.type, msg.subject, data, ev.datacontenttype)
            rows.append(
                (
                    cls.code,
                    ev.source,
                    ev.id,
                    ev.type,
                    ev.subject,
                    msg.subject,
                    ev.time.isoformat() if ev.time is not None else None,
                    now,
                    stream,
                    sseq,
                    cls.reason,
                    data[:max_data] if len(data) > max_data else data,
                    len(data),
                )
            )
        for rj in rejects:
            source, event_id = rejection_key(rj.stream, rj.stream_seq, rj.msg.reply or "")
            hdrs = rj.msg.headers or {}
            payload = rj.msg.data
            rows.append(
                (
                    rj.code,
                    source,
                    event_id,
                    _claimed(hdrs, "type"),
                    _claimed(hdrs, "subject"),
                    rj.msg.subject,
                    None,
                    now,
                    rj.stream,
                    rj.stream_seq,
                    rj.reason[:_MAX_REASON_CHARS],
                    payload[:max_data],
                    len(payload),
                )
            )
        return rows, rejects

    async def _prepare(self, msgs: Sequence[Msg]) -> asyncio.Task[None]:
        """Validate, dead-letter the rejects, then start commit + ack as a task."""
        t0 = time.perf_counter()
        rows, rejects = self._build(msgs)
        not_acked: set[int] = set()
        if rejects:
            failed = await self._dead_letter(rejects)
            if failed:
                # Not dead-lettered: neither store nor ack it, so it comes back and both
                # are retried (the store and the dead letter are idempotent).
                not_acked = {id(r.msg) for r in failed}
                keys = {
                    rejection_key(r.stream, r.stream_seq, r.msg.reply or "") for r in failed
                }
                rows = [r for r in rows if (r[1], r[2]) not in keys]
        return asyncio.create_task(self._commit_and_ack(msgs, rows, not_acked, t0))

    async def _commit_and_ack(
        self, msgs: Sequence[Msg], rows: list[Row], not_acked: set[int], t0: float
    ) -> None:
        assert self.wal is not None
        wal = self.wal
        try:
            counts = await asyncio.get_running_loop().run_in_executor(
                self._db, wal.write_batch, rows
            )
        except Exception as exc:
            disk = storage_error(exc)
            if disk is None:
                _log.exception("storing a batch of %d failed; left for redelivery", len(rows))
                return
            # Disk full or failing: nothing of this batch is acked, JetStream redelivers it.
            self._storage_failures += 1
            self._storage_last_failure = time.monotonic()
            if self._storage_down_since is None:
                self._storage_down_since = time.monotonic()
                # what the disk said, not the failed rollback on top of it
                _log.warning("the store refuses writes (%s): batches stay unacked until it "
                             "takes them again", disk)
                await self._lifecycle(RegistrarCode.STORAGE_FAILED,
                                      {"error": str(disk)[:500], "db": str(self.options.db_path)})
            return
        self._batches_committed += 1
        if self._storage_down_since is not None:
            # A full disk still takes writes that fit in place: the episode ends only once
            # commits succeed for STORAGE_OK_AFTER_S with no failure (no 930/931 flapping).
            self._storage_ok_at = time.monotonic()
            if self._storage_settle is None or self._storage_settle.done():
                self._storage_settle = asyncio.create_task(self._settle_storage())
        elif self._unstored:
            await self._storage_back()
        crash_at = self.options.crash_after_commit
        if crash_at is not None and self._batches_committed >= crash_at:
            # Test hook (see CRASH_AFTER_COMMIT_ENV): committed, not acknowledged.
            os._exit(137)
        self.metrics.count_stored(counts)
        dup = len(rows) - sum(counts.values())
        if dup:
            self.metrics.duplicates.inc(dup)
        await self._ack(msgs, not_acked)
        self.metrics.batch_seconds.observe(time.perf_counter() - t0)
        self.metrics.batch_size.observe(len(msgs))

    async def _ack(self, msgs: Sequence[Msg], skip: set[int]) -> None:
        nc = self.nc
        assert nc is not None
        # One ack publish per message, queued as one buffer write (publish_acks); nats-py's
        # flusher writes them out together, so this costs no round trip.
        replies = [m.reply for m in msgs if m.reply and id(m) not in skip]
        try:
            if not await publish_acks(nc, replies):
                publish = nc.publish
                for reply in replies:
                    await publish(reply, b"")
        except Exception as exc:  # disconnected: unacked ones are redelivered, store dedups
            _log.warning("acks not sent (%s); the messages will be redelivered", exc)

    async def _dead_letter(self, rejects: Sequence[_Reject]) -> list[_Reject]:
        """Publish raw copies to the dead-letter subject; return the ones that failed."""
        js = self.js
        assert js is not None
        sem = asyncio.Semaphore(64)

        async def one(rj: _Reject) -> _Reject | None:
            m = rj.msg
            hdrs = {k: v for k, v in (m.headers or {}).items() if _header_ok(k, v)}
            hdrs.pop("Nats-Msg-Id", None)
            hdrs.update(
                {
                    f"{_DLQ_HEADER_PREFIX}Subject": m.subject,
                    f"{_DLQ_HEADER_PREFIX}Stream": rj.stream or "",
                    f"{_DLQ_HEADER_PREFIX}Seq": str(rj.stream_seq or ""),
                    f"{_DLQ_HEADER_PREFIX}Code": str(rj.code),
                    f"{_DLQ_HEADER_PREFIX}Reason": _header_safe(rj.reason)[:500],
                    # Dedup: a redelivered reject is not dead-lettered twice.
                    "Nats-Msg-Id": f"dlq:{rj.stream}:{rj.stream_seq}"
                    if rj.stream_seq is not None
                    else f"dlq:{m.reply}",
                }
            )
            async with sem:
                try:
                    await js.publish(self.dead_letter_subject, m.data, headers=hdrs, timeout=2.0)
                except Exception as exc:
                    _log.warning("dead letter for %s:%s failed: %s", rj.stream, rj.stream_seq,
                                 exc)
                    self.metrics.dead_letter_failures.inc()
                    return rj
            self.metrics.dead_lettered.inc()
            return None

        results = await asyncio.gather(*(one(r) for r in rejects))
        return [r for r in results if r is not None]

    # -- own lifecycle ----------------------------------------------------------------------
    async def _settle_storage(self) -> None:
        while self._storage_down_since is not None:
            wait = self._storage_last_failure + STORAGE_OK_AFTER_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if self._storage_ok_at is not None and self._storage_ok_at > \
                    self._storage_last_failure:
                await self._storage_back()
            return  # else the next successful commit starts a new wait

    async def _storage_back(self) -> None:
        """A commit succeeded again: say so (931) and store what the store refused."""
        if self._storage_down_since is not None:
            seconds = self._storage_last_failure - self._storage_down_since
            failures, self._storage_failures = self._storage_failures, 0
            self._storage_down_since = None
            _log.warning("the store takes writes again after %.2f s (%d batch(es) refused)",
                         seconds, failures)
            await self._lifecycle(RegistrarCode.STORAGE_OK,
                                  {"seconds": round(seconds, 3), "batches_refused": failures})
        rows, self._unstored = self._unstored, []
        if rows and self.store is not None:
            try:
                counts = await asyncio.get_running_loop().run_in_executor(
                    self._db, self.store.write_batch, rows)
                self.metrics.count_stored(counts)
            except Exception as exc:
                if not is_storage_error(exc):
                    raise
                self._unstored = rows + self._unstored

    async def _lifecycle(self, code: RegistrarCode, data: dict[str, Any]) -> None:
        """Store a lifecycle event now (later if the store refuses it); queue it for
        publishing."""
        ev = new_event(
            self.mapper.lifecycle_type(code),
            self.source,
            {"code": int(code), "name": code.name, "instance": self.instance, **data},
            subject=self.instance,
        )
        payload = ev.data
        row: Row = (
            int(code),
            ev.source,
            ev.id,
            ev.type,
            ev.subject,
            None,
            ev.time.isoformat() if ev.time is not None else None,
            time.time(),
            None,
            None,
            None,
            payload,
            len(payload),
        )
        store = self.store
        if store is not None:
            try:
                counts = await asyncio.get_running_loop().run_in_executor(
                    self._db, store.write_batch, [row]
                )
                self.metrics.count_stored(counts)
            except Exception as exc:
                if not is_storage_error(exc):
                    raise
                # Published now, stored once the store takes writes again (and when it
                # comes back through the events stream: (source, id) dedups the two).
                self._unstored.append(row)
        _log.info("lifecycle %d %s", int(code), code.name)
        self._outbox.append(ev)
        self._outbox_signal.set()

    async def _publisher(self) -> None:
        while True:
            await self._outbox_signal.wait()
            self._outbox_signal.clear()
            try:
                await self._flush_outbox()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.debug("lifecycle publish deferred: %s", exc)
                await asyncio.sleep(0.5)
                self._outbox_signal.set()

    async def _flush_outbox(self) -> None:
        js = self.js
        if js is None or self.nc is None or not self.nc.is_connected:
            return  # retried from the reconnect callback
        while self._outbox:
            ev = self._outbox[0]
            headers, body = to_binary(ev)
            await js.publish(self.events_subject, body, headers=headers, timeout=2.0)
            self._outbox.pop(0)

    async def _on_disconnected(self) -> None:
        if not self._connected:
            return
        self._connected = False
        self.metrics.connected.set(0)
        if self._recovery is not None:
            self._recovery.cancel()
        if not self._stopping:
            await self._lifecycle(RegistrarCode.NATS_DISCONNECTED, {})

    async def _on_reconnected(self) -> None:
        self._connected = True
        self.metrics.connected.set(1)
        nc = self.nc
        await self._lifecycle(
            RegistrarCode.NATS_CONNECTED,
            {"server": _masked(nc.connected_url) if nc is not None else None,
             "reconnect": True},
        )
        if not self._stopping:
            self._recovery = asyncio.create_task(self._recover(), name="registrar-recovery")

    async def _recover(self) -> None:
        """910, then wait until every consumer answers and re-request, then 911."""
        from nats.js.errors import NotFoundError

        t0 = time.monotonic()
        await self._lifecycle(RegistrarCode.RECOVERY_START, {})
        assert self.js is not None
        attempts = 0
        for pc in self.consumers:
            while True:
                attempts += 1
                try:
                    await self.js.consumer_info(pc.stream, pc.durable, timeout=2.0)
                    break
                except NotFoundError:
                    # A memory-storage stream or consumer lost in a broker restart.
                    with contextlib.suppress(Exception):
                        await self._ensure_consumers()
                    await asyncio.sleep(0.25)
                except Exception:
                    await asyncio.sleep(0.25)
            pc.reset()
            pc.paused = False
            await pc._top_up()
        await self._lifecycle(
            RegistrarCode.RECOVERY_OK,
            {"seconds": round(time.monotonic() - t0, 3), "attempts": attempts},
        )

    async def _on_closed(self) -> None:
        if self._ready and not self._stopping:
            _log.error("NATS connection closed for good; stopping")
            self._stop.set()

    async def _on_error(self, exc: Exception) -> None:
        _log.debug("nats: %s: %s", type(exc).__name__, exc)

    # -- HTTP -----------------------------------------------------------------------------
    async def _h_healthz(self, q: dict[str, str]) -> Response:
        ok = self._ready and self._connected
        body = {"status": "ok" if ok else "degraded", "nats_connected": self._connected,
                "ready": self._ready}
        return json_response(body, 200 if ok else 503)

    async def _h_metrics(self, q: dict[str, str]) -> Response:
        return Response(200, self.metrics.exposition(), "text/plain; version=0.0.4")

    async def _h_records(self, q: dict[str, str]) -> Response:
        unknown = set(q) - {"code", "source", "id", "type", "since", "after_seq", "limit"}
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(sorted(unknown))}; expected code, source, "
                "id, type, since, after_seq, limit"
            )
        codes = [_int_param("code", c) for c in q["code"].split(",")] if "code" in q else None
        limit = _int_param("limit", q.get("limit", "1000"))
        after = _int_param("after_seq", q["after_seq"]) if "after_seq" in q else None
        path = self.options.db_path

        def run() -> list[dict[str, Any]]:
            with RegistrarStore(path, readonly=True) as ro:
                recs = ro.query(code=codes, source=q.get("source"), event_id=q.get("id"),
                                type=q.get("type"), since=q.get("since"), after_seq=after,
                                limit=min(limit, 10000))
            return [r.to_json() for r in recs]

        # A reader connection in a worker thread: never blocks the writer or the loop.
        records = await asyncio.get_running_loop().run_in_executor(None, run)
        return json_response({"count": len(records), "records": records})

    async def _h_counts(self, q: dict[str, str]) -> Response:
        path = self.options.db_path

        def run() -> dict[str, int]:
            with RegistrarStore(path, readonly=True) as ro:
                return {str(k): v for k, v in ro.counts_by_code().items()}

        return json_response(await asyncio.get_running_loop().run_in_executor(None, run))


def storage_error(exc: BaseException) -> BaseException | None:
    """The disk error behind ``exc`` when the store's disk refused a write (full, failing,
    read-only) as opposed to a bug: SQLite's SQLITE_FULL / SQLITE_IOERR / SQLITE_READONLY,
    or the OS's ENOSPC / EIO / EDQUOT / EROFS; None otherwise."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    # The store's rollback after SQLITE_FULL raises "cannot rollback - no transaction is
    # active" (SQLite already rolled back): the disk error is in the chain, not on top.
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, sqlite3.DatabaseError):
            text = str(cur).lower()
            if any(w in text for w in ("full", "disk i/o", "readonly", "read-only")):
                return cur
        elif isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EIO,
                                                         errno.EDQUOT, errno.EROFS):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def is_storage_error(exc: BaseException) -> bool:
    """True when :func:`storage_error` finds a disk error behind ``exc``."""
    return storage_error(exc) is not None


def _compile_contracts(refs: Mapping[str, ContractRef]) -> dict[str, CompiledContract]:
    """Type -> compiled contract; each distinct contract is compiled once."""
    registry = ContractRegistry.from_refs(refs)
    return {t: registry.contract(t) for t in registry.declared}


def _data_check(contract: CompiledContract) -> Callable[[bytes], list[DataViolation]]:
    """The fastest check of raw data against ``contract``: violations, empty when valid.

    A contract that validates decoded data (JSON Schema) gets it from orjson (faster than
    the registry's parser) and costs one compiled ``is_valid`` call when valid; what orjson
    refuses (not JSON, or JSON it does not take, such as integers over 64 bits) goes to the
    contract's own ``validate_json``, which gives the verdict. Others (pydantic) validate the
    raw JSON themselves.
    """
    if type(contract).validate_json is not CompiledContract.validate_json:
        return contract.validate_json
    validate, validate_json = contract.validate, contract.validate_json

    def check(raw: bytes) -> list[DataViolation]:
        try:
            data = _loads(raw)
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            return validate_json(raw)
        return validate(data)

    return check


#: Violations named in a rejection reason (the rest are counted).
_REASON_VIOLATIONS = 3


def _violation_reason(type_: str, violations: Sequence[DataViolation]) -> str:
    """``data breaks the contract of TYPE: /pointer: [keyword] message (value V); ...``."""
    shown = "; ".join(str(v) for v in violations[:_REASON_VIOLATIONS])
    more = len(violations) - _REASON_VIOLATIONS
    tail = f"; and {more} more" if more > 0 else ""
    return f"data breaks the contract of {type_}: {shown}{tail}"


def _claimed(headers: dict[str, str], attr: str) -> str | None:
    v = headers.get(f"ce-{attr}") or headers.get(f"ce_{attr}")
    return v[:500] if v else None


def _header_ok(k: str, v: str) -> bool:
    return bool(k) and "\r" not in v and "\n" not in v and ":" not in k


def _header_safe(s: str) -> str:
    return s.encode("ascii", "backslashreplace").decode("ascii").replace("\r", " ").replace(
        "\n", " "
    )


def _int_param(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected an integer") from None


def _masked(url: Any) -> str | None:
    if url is None:
        return None
    from services.common.settings import mask_url

    netloc = getattr(url, "netloc", None)
    scheme = getattr(url, "scheme", "nats")
    return mask_url(f"{scheme}://{netloc}") if netloc else mask_url(str(url))
