"""Locust users on nats-py: ``NatsUser`` and ``JetStreamUser`` (issue 5).

They fire Locust request events, so every Locust output (console, CSV, HTML, distributed
aggregation) shows NATS latencies:

==============  ===============================================  =========================
request_type    response_time                                    failure
==============  ===============================================  =========================
``JS_PUB``      publish -> PubAck (JetStream stored it)          timeout, error PubAck
``REQ``         request -> reply (core NATS request/reply)       timeout, no responders
``E2E``         CloudEvent ``time`` -> row in the registrar's    not stored in time
                store (``GET <registrar>/records?id=...``)
==============  ===============================================  =========================

nats-py runs on asyncio and Locust on gevent: see :mod:`harness.load.bridge`. One bridge
(one uvloop thread) and one NATS connection per host are shared by all users of a process;
they are opened by the first user and closed when the test stops and the process quits.
``JS_PUB`` goes by default through a shared minimal-protocol publisher whose PubAcks are
routed to callbacks (:class:`harness.load._wire.PubAckMux`, no asyncio task per request,
about 1.5x the rate of ``js.publish`` through the bridge); ``fast_publish = False`` or TLS /
NKeys / JWT credentials use nats-py.

Importing this module imports locust (which monkeypatches the process): import it only from
locustfiles.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent
import gevent.lock
from locust import User, events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from harness.load._wire import PubAckMux, WireAuth, WireClient, WireError
from harness.load.bridge import AsyncBridge
from harness.load.gates import GateResult, LocustGates, LocustStats

if TYPE_CHECKING:
    import argparse

    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.api import PubAck

__all__ = [
    "JetStreamUser",
    "NatsUser",
    "add_cli_arguments",
    "install_gates",
    "shared_bridge",
]

log = logging.getLogger(__name__)

#: ``nats.connect`` keyword arguments that carry credentials or TLS (what QIKI_NATS_* give),
#: and the identity's reply prefix (least privilege: its own inbox only).
_AUTH_KEYS = ("token", "user", "password", "user_credentials", "nkeys_seed", "tls",
              "inbox_prefix")
_env_kwargs: dict[str, Any] | None = None


def env_connect_kwargs() -> dict[str, Any]:
    """Credentials and TLS from ``QIKI_NATS_*`` (token, user/password, creds, NKey seed file,
    CA/cert/key), read once per process: how Locust users reach a secured broker without a
    secret on the command line (issue 10). Empty when none are set."""
    global _env_kwargs
    if _env_kwargs is None:
        from services.common.settings import NatsSettings

        kw = NatsSettings.from_env().connect_kwargs()
        # One dict (and one SSLContext) per process: it is part of the shared-client key.
        _env_kwargs = {k: kw[k] for k in _AUTH_KEYS if k in kw}
    return dict(_env_kwargs)

_bridge: AsyncBridge | None = None
_clients: dict[str, Client] = {}
_muxes: dict[str, PubAckMux | None] = {}
_lock = gevent.lock.Semaphore()
_cleanup_installed: set[int] = set()
_connection_events: dict[str, int] = {"disconnects": 0, "reconnects": 0, "errors": 0}
_closing = False


def shared_bridge() -> AsyncBridge:
    """The process-wide bridge, started on first use."""
    global _bridge
    with _lock:
        if _bridge is None or not _bridge.running:
            _bridge = AsyncBridge()
            _bridge.start()
        return _bridge


def _shared_client(environment: Environment, servers: list[str],
                   connect_kwargs: dict[str, Any]) -> Client:
    """The process-wide connection to ``servers`` (one per server list), opened on first use."""
    key = ",".join(servers) + "|" + repr(sorted(connect_kwargs.items()))
    bridge = shared_bridge()
    with _lock:
        client = _clients.get(key)
        if client is not None and not client.is_closed:
            return client
        _install_cleanup(environment)
        client = bridge.run(_connect(servers, connect_kwargs), timeout_s=30)
        _clients[key] = client
        return client


def _shared_mux(environment: Environment, servers: list[str],
                connect_kwargs: dict[str, Any]) -> PubAckMux | None:
    """The process-wide fast JetStream publisher for ``servers``, or None when the
    connection needs nats-py (NKeys, JWT credentials)."""
    key = ",".join(servers) + "|" + repr(sorted(connect_kwargs.items()))
    bridge = shared_bridge()
    with _lock:
        if key in _muxes:
            return _muxes[key]
        unsupported = {"user_credentials", "nkeys_seed", "nkeys_seed_str", "signature_cb"}
        if unsupported & {k for k, v in connect_kwargs.items() if v} or not all(
                u.startswith("nats://") for u in servers):
            _muxes[key] = None
            return None
        _install_cleanup(environment)

        def on_event(text: str) -> None:
            if text.startswith("disconnected"):
                _connection_events["disconnects"] += 1
                if not _closing:
                    log.warning("NATS (fast publisher) %s", text)
            elif text == "reconnected":
                _connection_events["reconnects"] += 1
                log.warning("NATS (fast publisher) reconnected")

        client = WireClient(servers, auth=WireAuth(
            user=connect_kwargs.get("user"), password=connect_kwargs.get("password"),
            token=connect_kwargs.get("token"), tls=connect_kwargs.get("tls")),
            name="qiki-harness-locust",
            on_event=on_event)
        mux = PubAckMux(client, inbox_prefix=connect_kwargs.get("inbox_prefix"))
        bridge.run(mux.start(), timeout_s=30)
        _muxes[key] = mux
        return mux


async def _connect(servers: list[str], connect_kwargs: dict[str, Any]) -> Client:
    import nats

    async def on_disconnect() -> None:
        _connection_events["disconnects"] += 1
        if not _closing:  # a drain at test stop disconnects too: not worth a warning
            log.warning("NATS disconnected (%s)", ",".join(servers))

    async def on_reconnect() -> None:
        _connection_events["reconnects"] += 1
        log.warning("NATS reconnected (%s)", ",".join(servers))

    async def on_error(e: Exception) -> None:
        _connection_events["errors"] += 1
        log.warning("NATS error: %r", e)

    kwargs: dict[str, Any] = {
        "name": "qiki-harness-locust",
        "connect_timeout": 2,
        # Endless, quick reconnects: a broker restart during a load test is a finding
        # (requests fail while it is down), not the end of the test.
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.25,
        "allow_reconnect": True,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "error_cb": on_error,
    }
    kwargs.update(connect_kwargs)
    return await nats.connect(servers=servers, **kwargs)


def close_shared(timeout_s: float = 5.0) -> None:
    """Drain and close every shared connection (the bridge stays up for a next test)."""
    global _closing
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
        muxes = [m for m in _muxes.values() if m is not None]
        _muxes.clear()
    if not (clients or muxes) or _bridge is None or not _bridge.running:
        return
    _closing = True
    try:
        for mux in muxes:
            try:
                _bridge.run(mux.close(), timeout_s=timeout_s)
            except Exception as e:
                log.warning("closing the fast publisher failed: %r", e)
        for client in clients:
            try:
                _bridge.run(_close(client), timeout_s=timeout_s)
            except Exception as e:
                log.warning("closing a NATS connection failed: %r", e)
    finally:
        _closing = False


async def _close(client: Client) -> None:
    if client.is_closed:
        return
    try:
        await client.drain()
    except Exception:
        await client.close()


def shutdown_shared() -> None:
    """Close the connections and stop the bridge thread (on Locust's ``quitting``)."""
    global _bridge
    close_shared()
    with _lock:
        bridge, _bridge = _bridge, None
    if bridge is not None:
        bridge.stop()


def _install_cleanup(environment: Environment) -> None:
    if id(environment) in _cleanup_installed:
        return
    _cleanup_installed.add(id(environment))

    def on_test_stop(**_kw: Any) -> None:
        close_shared()

    def on_quitting(**_kw: Any) -> None:
        # Locust fires ``quitting`` before it stops the users when it is interrupted
        # (Ctrl-C, SIGTERM): closing the connections under them failed their in-flight
        # publishes, and a clean stop exited 1. Stop them first (a no-op once stopped).
        runner = environment.runner
        if runner is not None:
            runner.stop()
        shutdown_shared()

    environment.events.test_stop.add_listener(on_test_stop)
    environment.events.quitting.add_listener(on_quitting)


class NatsUser(User):
    """Base Locust user holding a shared nats-py connection to ``host`` (``nats://...``,
    comma-separated for several servers).

    Subclasses write tasks with :meth:`request` (fires ``REQ``) and :meth:`publish` (core
    NATS, fires nothing: there is no acknowledgement to time).
    """

    abstract = True
    #: Extra ``nats.connect`` keyword arguments (credentials, names); empty: credentials and
    #: TLS from ``QIKI_NATS_*`` (:func:`env_connect_kwargs`).
    connect_kwargs: dict[str, Any] = {}
    #: Default per-operation timeout.
    timeout_s: float = 2.0

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._nc: Client | None = None

    @property
    def servers(self) -> list[str]:
        """Server URLs from ``--host``."""
        host = self.host or ""
        urls = [u.strip() for u in host.split(",") if u.strip()]
        if not urls or not all(u.startswith(("nats://", "tls://", "ws://", "wss://"))
                               for u in urls):
            raise ValueError(f"{type(self).__name__}: --host must be nats://HOST:PORT "
                             f"(comma-separated for several), got {host!r}")
        return urls

    @property
    def nc(self) -> Client:
        """The shared connection (opened on first use)."""
        if self._nc is None or self._nc.is_closed:
            self._nc = _shared_client(self.environment, self.servers, self._connect_kwargs())
        return self._nc

    def _connect_kwargs(self) -> dict[str, Any]:
        return dict(self.connect_kwargs) if self.connect_kwargs else env_connect_kwargs()

    @property
    def bridge(self) -> AsyncBridge:
        """The process-wide asyncio bridge."""
        return shared_bridge()

    def _fire(self, request_type: str, name: str, response_time_ms: float,
              response_length: int, exception: BaseException | None) -> None:
        self.environment.events.request.fire(
            request_type=request_type, name=name, response_time=response_time_ms,
            response_length=response_length, exception=exception, context={},
        )

    def publish(self, subject: str, payload: bytes = b"",
                headers: dict[str, str] | None = None) -> None:
        """Core NATS publish (fire and forget)."""
        nc = self.nc
        self.bridge.run(nc.publish(subject, payload, headers=headers), timeout_s=self.timeout_s)

    def request(self, subject: str, payload: bytes = b"", *, headers: dict[str, str] | None = None,
                timeout_s: float | None = None, name: str | None = None) -> Msg | None:
        """Request/reply; fires ``REQ`` with the round-trip time. None on failure."""
        nc = self.nc
        timeout = timeout_s or self.timeout_s

        async def call() -> tuple[float, Msg | None, BaseException | None]:
            t = time.perf_counter()
            try:
                msg = await nc.request(subject, payload, timeout=timeout, headers=headers)
                return time.perf_counter() - t, msg, None
            except Exception as e:
                return time.perf_counter() - t, None, e

        return self._timed("REQ", name or subject, call, timeout,
                           lambda m: len(m.data) if m is not None else 0)

    def _timed(self, request_type: str, name: str, call: Callable[[], Any], timeout: float,
               size: Callable[[Any], int]) -> Any:
        t = time.perf_counter()
        try:
            elapsed_s, value, exc = self.bridge.run(call(), timeout_s=timeout + 5)
        except Exception as e:  # the bridge itself failed: still a failed request, not a crash
            elapsed_s, value, exc = time.perf_counter() - t, None, e
        self._fire(request_type, name, elapsed_s * 1000.0, size(value) if exc is None else 0, exc)
        return value if exc is None else None


class JetStreamUser(NatsUser):
    """Locust user publishing to JetStream; fires ``JS_PUB`` with the PubAck latency.

    With ``registrar_url`` (or ``--qiki-registrar-url``) set, :meth:`check_stored` fires
    ``E2E`` with the time from the CloudEvent's ``time`` to the registrar's ``stored_at``.
    """

    abstract = True
    #: Base URL of the registrar's HTTP API (``GET /records?id=...``); None = no E2E.
    registrar_url: str | None = None
    #: Publish through the shared minimal-protocol publisher (PubAcks routed to callbacks,
    #: no asyncio task per request) when the connection allows; False = nats-py's
    #: ``js.publish``. Either way the latency is publish -> PubAck.
    fast_publish: bool = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._js: JetStreamContext | None = None
        self._js_nc: Client | None = None
        self._mux: PubAckMux | None = None

    def js_publish(self, subject: str, payload: bytes, *, headers: dict[str, str] | None = None,
                   timeout_s: float | None = None, name: str | None = None) -> PubAck | None:
        """JetStream publish; fires ``JS_PUB`` (PubAck latency). None on failure."""
        timeout = timeout_s or self.timeout_s
        if self.fast_publish:
            mux = self._mux
            if mux is None or mux.closed:
                mux = self._mux = _shared_mux(self.environment, self.servers,
                                              self._connect_kwargs())
            if mux is not None:
                return self._fast_js_publish(mux, subject, payload, headers, timeout,
                                             name or subject)
        nc = self.nc
        js = self._js
        if js is None or self._js_nc is not nc:
            # One context per user and connection: building it per request costs.
            js = self._js = nc.jetstream()
            self._js_nc = nc

        async def call() -> tuple[float, PubAck | None, BaseException | None]:
            t = time.perf_counter()
            try:
                ack = await js.publish(subject, payload, timeout=timeout, headers=headers)
                return time.perf_counter() - t, ack, None
            except Exception as e:
                return time.perf_counter() - t, None, e

        return self._timed("JS_PUB", name or subject, call, timeout,
                           lambda _a: len(payload))  # type: ignore[no-any-return]

    def _fast_js_publish(self, mux: PubAckMux, subject: str, payload: bytes,
                         headers: dict[str, str] | None, timeout: float,
                         name: str) -> PubAck | None:
        from nats.js.api import PubAck

        def start(resolve: Callable[[tuple[float, bytes | None, BaseException | None]], None],
                  ) -> None:
            mux.publish(subject, payload, headers, timeout,
                        lambda elapsed, data, exc: resolve((elapsed, data, exc)))

        t = time.perf_counter()
        try:
            elapsed_s, data, exc = self.bridge.call(start, timeout_s=timeout + 5)
        except Exception as e:  # the bridge itself failed: a failed request, not a crash
            elapsed_s, data, exc = time.perf_counter() - t, None, e
        ack: PubAck | None = None
        if exc is None and data is not None:
            try:
                ack = PubAck.from_response(json.loads(data))
            except (ValueError, TypeError, KeyError) as e:
                exc = e
        self._fire("JS_PUB", name, elapsed_s * 1000.0, len(payload) if exc is None else 0, exc)
        if isinstance(exc, WireError):
            # Disconnected: back off a little instead of failing thousands of times a second.
            gevent.sleep(0.05)
        return ack

    def publish_event(self, subject: str, event: Any, *, timeout_s: float | None = None,
                      name: str | None = None) -> PubAck | None:
        """Publish a ``services.common.cloudevents.CloudEvent`` in binary mode (its id is the
        ``Nats-Msg-Id``); fires ``JS_PUB``."""
        from services.common.cloudevents import to_binary

        headers, payload = to_binary(event)
        return self.js_publish(subject, payload, headers=dict(headers), timeout_s=timeout_s,
                               name=name)

    def _registrar_url(self) -> str | None:
        opts = getattr(self.environment, "parsed_options", None)
        return self.registrar_url or getattr(opts, "qiki_registrar_url", None) or None

    def check_stored(self, event_id: str, event_time: datetime, *, timeout_s: float = 5.0,
                     poll_s: float = 0.05, name: str = "registrar") -> float | None:
        """Poll ``GET <registrar>/records?id=<event_id>`` until the record appears; fire ``E2E``
        with ``stored_at - event_time`` in ms and return it (None when not stored in time or
        no registrar is configured, in which case nothing is fired)."""
        base = self._registrar_url()
        if not base:
            return None
        url = f"{base.rstrip('/')}/records?{urllib.parse.urlencode({'id': event_id})}"
        deadline = time.monotonic() + timeout_s
        last_error: BaseException | None = None
        while True:
            try:
                stored_at = _stored_at(_get_json(url, timeout_s=min(2.0, timeout_s)), event_id)
            except (OSError, ValueError) as e:
                stored_at, last_error = None, e
            if stored_at is not None:
                ms = (stored_at - event_time).total_seconds() * 1000.0
                self._fire("E2E", name, max(0.0, ms), 0, None)
                return ms
            if time.monotonic() >= deadline:
                exc = last_error or TimeoutError(
                    f"event {event_id} not in the registrar's store after {timeout_s}s")
                self._fire("E2E", name, timeout_s * 1000.0, 0, exc)
                return None
            gevent.sleep(poll_s)


def _get_json(url: str, timeout_s: float) -> Any:
    # urllib under gevent's patched sockets: cooperative, blocks only this greenlet.
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def _stored_at(body: Any, event_id: str) -> datetime | None:
    """``stored_at`` of the record for ``event_id`` in a ``/records`` answer (a list, or an
    object with ``records``/``items``); ISO-8601 strings or epoch seconds."""
    records = body
    if isinstance(body, dict):
        records = body.get("records", body.get("items", []))
    if not isinstance(records, list):
        raise ValueError(f"registrar /records: expected a list of records, got {type(body)}")
    for rec in records:
        if not isinstance(rec, dict):
            continue
        if rec.get("event_id", rec.get("id")) not in (event_id, None):
            continue
        raw = rec.get("stored_at")
        if isinstance(raw, (int, float)):
            return datetime.fromtimestamp(raw, UTC)
        if isinstance(raw, str):
            dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return None


# --- headless gates and reports -------------------------------------------------------------

def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``--qiki-*`` options (call from an ``init_command_line_parser`` listener)."""
    group = parser.add_argument_group("qiki-harness")
    group.add_argument("--qiki-max-fail-ratio", type=float, default=None,
                       help="gate: highest allowed failures/requests (0..1); exit 1 above it")
    group.add_argument("--qiki-max-p95-ms", type=float, default=None,
                       help="gate: highest allowed aggregated p95 response time (ms)")
    group.add_argument("--qiki-min-rps", type=float, default=None,
                       help="gate: lowest allowed aggregated requests per second")
    group.add_argument("--qiki-report-json", default=None,
                       help="write stats, gate results and per-worker request counts here")
    group.add_argument("--qiki-registrar-url", default=None,
                       help="registrar base URL for end-to-end (E2E) latency")
    group.add_argument("--qiki-ensure-streams", action="store_true", default=False,
                       help="create the platform streams if missing (memory storage)")


_worker_requests: dict[str, int] = {}


def install_gates(environment: Environment) -> None:
    """Evaluate the ``--qiki-*`` gates when Locust quits (master or standalone), set the
    exit code (1 when a gate fails) and write ``--qiki-report-json``; count requests per
    worker in distributed runs. Call from an ``init`` listener."""
    opts = environment.parsed_options
    counter = {"n": 0}

    def count_request(**_kw: Any) -> None:
        counter["n"] += 1

    def report_to_master(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        data["qiki_requests"] = counter["n"]
        counter["n"] = 0

    def worker_report(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        n = int(data.get("qiki_requests", 0))
        _worker_requests[client_id] = _worker_requests.get(client_id, 0) + n

    def on_quitting(environment: Environment, **_kw: Any) -> None:
        if isinstance(environment.runner, WorkerRunner):
            return
        # Headless Locust fires ``quitting`` while the users still run (it stops them only
        # afterwards) and its CSV is a snapshot up to a second old: stop first, so gates,
        # CSV and report all see the same, final numbers.
        _stop_and_settle(environment)
        total = environment.stats.total
        stats = LocustStats(
            requests=total.num_requests, failures=total.num_failures,
            p50_ms=total.get_response_time_percentile(0.5) if total.num_requests else None,
            p95_ms=total.get_response_time_percentile(0.95) if total.num_requests else None,
            p99_ms=total.get_response_time_percentile(0.99) if total.num_requests else None,
            rps=total.total_rps,
        )
        gates = LocustGates(
            max_fail_ratio=getattr(opts, "qiki_max_fail_ratio", None),
            max_p95_ms=getattr(opts, "qiki_max_p95_ms", None),
            min_rps=getattr(opts, "qiki_min_rps", None),
        )
        results = gates.evaluate(stats)
        for r in results:
            (log.info if r.passed else log.error)("gate %s", r)
        failed = [r for r in results if not r.passed]
        if failed:
            environment.process_exit_code = 1
        elif results and not (environment.runner and environment.runner.exceptions):
            # Gates decide: failures within the allowed ratio are not an error exit.
            environment.process_exit_code = 0
        csv_prefix = getattr(opts, "csv_prefix", None)
        if csv_prefix:
            _write_final_csv(environment, csv_prefix)
        path = getattr(opts, "qiki_report_json", None)
        if path:
            _write_report(Path(path), stats, results,
                          workers=(dict(_worker_requests)
                                   if isinstance(environment.runner, MasterRunner) else None))

    environment.events.request.add_listener(count_request)
    environment.events.report_to_master.add_listener(report_to_master)
    environment.events.worker_report.add_listener(worker_report)
    environment.events.quitting.add_listener(on_quitting)


def _stop_and_settle(environment: Environment, timeout_s: float = 10.0) -> None:
    """Stop the runner; on a master, wait until every worker has reported it stopped (its
    final stats arrive before that message)."""
    from locust.runners import STATE_MISSING, STATE_RUNNING, STATE_SPAWNING, STATE_STOPPING

    runner = environment.runner
    if runner is None:
        return
    if runner.state in (STATE_RUNNING, STATE_SPAWNING):
        runner.stop()
    if isinstance(runner, MasterRunner):
        # "missing": a worker whose heartbeats came late (a loaded machine) still runs its
        # users; not waiting for it left its last stats out of the master's numbers (a
        # 2-worker run counted 19,564 requests while the streams stored 21,039).
        busy = (STATE_RUNNING, STATE_SPAWNING, STATE_STOPPING, STATE_MISSING)
        deadline = time.monotonic() + timeout_s
        while (any(c.state in busy for c in runner.clients.all)
               and time.monotonic() < deadline):
            gevent.sleep(0.05)


def _write_final_csv(environment: Environment, prefix: str) -> None:
    """Rewrite ``<prefix>_stats.csv`` and ``<prefix>_failures.csv`` with the final stats
    (Locust's own writer, atomically replaced: its periodic writer keeps its old handle)."""
    import csv
    import os

    from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (("_stats.csv", writer.requests_csv),
                          ("_failures.csv", writer.failures_csv)):
        path = f"{prefix}{suffix}"
        tmp = f"{path}.tmp"
        try:
            with open(tmp, "w", newline="") as f:
                write(csv.writer(f))
            os.replace(tmp, path)
        except OSError as e:
            log.error("could not write final Locust stats to %s: %s", path, e)


def _write_report(path: Path, stats: LocustStats, results: list[GateResult],
                  workers: dict[str, int] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "stats": {"requests": stats.requests, "failures": stats.failures,
                  "fail_ratio": stats.fail_ratio, "p50_ms": stats.p50_ms,
                  "p95_ms": stats.p95_ms, "p99_ms": stats.p99_ms, "rps": stats.rps},
        "gates": [{"name": r.name, "passed": r.passed, "observed": r.observed,
                   "threshold": r.threshold, "message": r.message} for r in results],
        "passed": all(r.passed for r in results),
        "workers": workers,
        "connection_events": dict(_connection_events),
    }
    path.write_text(json.dumps(body, indent=2))


def warm_up(environment: Environment) -> None:
    """Start the bridge and connect before the run starts (not on a master, which runs no
    users): Locust's ``--run-time`` clock starts before the first user does, so a slow first
    connect would eat into a short run. A failed connect is only logged here; the users'
    requests then fail and say why.

    With the users' default credentials and TLS (``QIKI_NATS_*``): connecting without them
    warmed a client no user shares, and against a TLS broker it failed the handshake and
    retried until the bridge gave up, 30 s before every such run."""
    if isinstance(environment.runner, MasterRunner) or not environment.host:
        return
    try:
        _shared_client(environment, [u.strip() for u in environment.host.split(",")],
                       env_connect_kwargs())
    except Exception as e:
        log.warning("warm-up connect to %s failed: %r", environment.host, e)


_registered: set[int] = set()


def register(locust_events: Any = events) -> None:
    """Hook the ``--qiki-*`` options and gates into Locust (from a locustfile). Once per
    events object: ``qiki-harness locust -f mine.py`` also loads a plugin file that calls it,
    and a second call would add the options twice (an argparse conflict)."""
    if id(locust_events) in _registered:
        return
    _registered.add(id(locust_events))
    locust_events.init_command_line_parser.add_listener(add_cli_arguments)

    def on_init(environment: Environment, **_kw: Any) -> None:
        install_gates(environment)
        warm_up(environment)

    locust_events.init.add_listener(on_init)
