"""The platform under test, brought up as one async context manager.

Broker (any backend) -> JetStream layout provisioned from the BotSpec -> optional fault
proxies in front of service links -> the services (reference and user ones, started by
:class:`harness.services.runtime.ServiceLauncher`) -> a harness client for the tap, lag
sampling and publishing. Teardown always runs, in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from harness._resource import AsyncResource
from harness.broker.base import Broker
from harness.checks.observations import LagSample, RegistrarRecord, TappedMessage
from harness.errors import SetupError
from harness.faults.partition import RouteProxies
from harness.faults.proxy import FaultProxy
from harness.faults.storage import FaultFS
from harness.faults.storage.mount import ORPHAN_DIR_PREFIX
from harness.scenario.model import Topology
from harness.security import Identity
from harness.security.credentials import RunCredentials, default_identities
from harness.security.permissions import inbox_prefix
from harness.services.catalog import reference_service
from harness.services.runtime import ServiceLauncher, ServiceProcess
from services.common.botspec import (
    RuntimeConfig,
    default_botspec_path,
    filter_covers,
    load_runtime_config,
)
from services.common.botspec import provision as provision_layout
from services.common.settings import NatsSettings, quiet_ssl_eof_noise


def tap_subjects(config: RuntimeConfig) -> list[str]:
    """What the tap listens to: every channel subject of the spec (not the dead-letter
    subject, which holds malformed messages by design), without those another one covers
    (one subscription per message, so nothing is recorded twice)."""
    subjects = config.channel_subjects()
    return [s for s in subjects
            if not any(o != s and filter_covers(o, s) for o in subjects)]


def scenario_botspec_path(topology: Topology, scenario_dir: Path | None) -> Path:
    """The BotSpec a scenario runs with: its ``topology.spec`` (relative to the scenario's
    directory, else the working directory), else ``$QIKI_BOTSPEC`` or the QIKI spec."""
    if topology.spec:
        return ((scenario_dir or Path.cwd()) / topology.spec).resolve()
    return default_botspec_path()


#: Header the harness puts on messages it breaks on purpose, so the contract check can tell
#: an injected malformed event from a platform bug.
INJECTED_HEADER = "Qiki-Harness-Injected"


def http_get_json(url: str, timeout_s: float = 2.0) -> Any:
    """GET a JSON document from one of our services on 127.0.0.1 (blocking; run in a thread)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read().decode("utf-8"))


@dataclass
class Tap:
    """Core-NATS subscription recording every message on the platform's subjects."""

    messages: list[TappedMessage] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    async def on_msg(self, msg: Msg) -> None:
        """Record one message (headers copied: the Msg object is reused by nats-py)."""
        self.messages.append(
            TappedMessage(
                subject=msg.subject,
                headers=dict(msg.headers) if msg.headers else None,
                payload=bytes(msg.data),
                received_at=time.monotonic() - self.t0,
            )
        )


class Platform(AsyncResource):
    """Broker + layout + services + harness client; ``async with Platform(...) as p``.

    ``broker`` may be given (already entered by the caller) or is opened from
    ``topology.broker`` with ``backend`` (the resolved backend, never ``auto``).
    """

    def __init__(
        self,
        topology: Topology,
        *,
        run_dir: Path,
        backend: str = "process",
        nats_url: str | None = None,
        broker: Broker | None = None,
        botspec: Path | None = None,
        tap: bool = True,
        route_proxies: bool = False,
        scenario_dir: Path | None = None,
        watch_subjects: Sequence[str] = (),
    ) -> None:
        self.topology = topology
        self.run_dir = run_dir
        self.backend = backend
        self.nats_url = nats_url or topology.broker.url
        #: the BotSpec: ``botspec``, else the scenario's ``topology.spec`` (relative to its
        #: directory), else the default (QIKI) spec
        self.botspec = botspec or scenario_botspec_path(topology, scenario_dir)
        self._given_broker = broker
        self.broker: Broker | None = broker
        #: per-run credentials and TLS material (``topology.broker.auth``/``tls``; issue 10)
        self.credentials: RunCredentials | None = getattr(broker, "credentials", None)
        self.config: RuntimeConfig = load_runtime_config(self.botspec).with_overrides(
            storage=topology.broker.storage, replicas=topology.broker.nodes
        )
        self.services: dict[str, ServiceProcess] = {}
        self.proxies: dict[str, FaultProxy] = {}
        #: a fault proxy on every cluster route (partitions); process clusters only
        self.want_route_proxies = route_proxies
        self.route_proxies: RouteProxies | None = None
        #: the storage-fault filesystem the broker's store lives on (``store: fuse``)
        self.storage: FaultFS | None = None
        #: services whose data dir is on the storage-fault filesystem (``store: fuse``)
        self.service_storage: dict[str, FaultFS] = {}
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.tap = Tap() if tap else None
        self.events: list[dict[str, Any]] = []
        self._stack = AsyncExitStack()
        self._services_image: str | None = None
        #: where relative paths of user services (cwd, build) start: the scenario's directory
        self.scenario_dir = scenario_dir or Path.cwd()
        self._launcher: ServiceLauncher | None = None
        #: subject pattern -> CloudEvent id -> times seen (delivery checks on a service's output)
        self.watched: dict[str, Counter[str]] = {s: Counter() for s in watch_subjects}
        self.t0 = time.monotonic()

    # ------------------------------------------------------------------ helpers

    def now(self) -> float:
        """Seconds since the platform started coming up."""
        return time.monotonic() - self.t0

    def event(self, kind: str, **data: Any) -> None:
        """Record a platform event (reconnects, restarts) for the journal."""
        self.events.append({"t": round(self.now(), 3), "kind": kind, **data})

    def settings(self, identity: str = "harness", **overrides: Any) -> NatsSettings:
        """Connection settings for a client of this platform (secrets included, never logged).

        ``identity``: whose credentials (a service name, ``harness`` or ``load``) when the
        run's broker has per-run credentials; an identity without its own falls back to the
        harness's (a service added outside the spec's identities).
        """
        assert self.broker is not None
        base: dict[str, Any] = {"ping_interval_s": self.topology.ping_interval_s}
        who = identity
        if self.credentials is not None:
            who = identity if identity in self.credentials.credentials else "harness"
            base.update(self.credentials.client_fields(who))
        # Replies (PubAcks, API answers, pull deliveries) on the identity's own inbox: under
        # auth: accounts it may subscribe there and nowhere else (harness.security.permissions).
        # An external broker's own QIKI_NATS_INBOX_PREFIX (its operator's rules) is kept.
        if self.backend != "external" or self.broker.nats_settings().inbox_prefix is None:
            base["inbox_prefix"] = inbox_prefix(who)
        base.update(overrides)
        return self.broker.nats_settings(**base)

    def identities(self) -> list[Identity]:
        """Who connects to this run's broker: each service, ``harness`` and ``load``.

        Under ``auth: accounts`` the least-privilege identities derived from the spec
        (:func:`harness.security.permissions.identities_for_run`; a service the spec says
        nothing about raises ``ValueError``); in every other mode each one unrestricted.
        """
        names = [n for n, spec in self.topology.services.items() if spec.enabled]
        if self.topology.broker.auth == "accounts":
            from harness.security.permissions import identities_for_run

            return identities_for_run(self.config, names)
        return default_identities(names)

    def _issue_credentials(self) -> RunCredentials | None:
        """Mint the run's credentials and certificates into ``<run_dir>/secrets/`` (0700)."""
        b = self.topology.broker
        if self.backend == "external" or (b.auth == "none" and not b.tls.enabled):
            return None
        # Container nodes are reached by their network aliases too (services in containers).
        hostnames = [f"n{i + 1}" for i in range(b.nodes)] if self.backend == "container" else []
        try:
            identities = self.identities()
        except ValueError as exc:  # a service the spec cannot derive permissions for
            # Name the spec file: the fix goes there (topology.spec, or the default QIKI one).
            raise SetupError(f"topology.broker.auth: {b.auth}: {exc} (spec: {self.botspec}; "
                             "a scenario's own is topology.spec)") from None
        creds = RunCredentials.issue(
            self.run_dir / "secrets", b.auth, identities, tls=b.tls.enabled,
            verify_client=b.tls.verify_client, hostnames=hostnames,
        )
        self.event("security.issued", **creds.describe())
        if creds.tls is not None:
            quiet_ssl_eof_noise()
        return creds

    def service_env(self, settings: NatsSettings) -> dict[str, str]:
        """Environment for a service process: credentials travel here, never on argv."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("QIKI_NATS_")}
        kw = settings.connect_kwargs()
        env["QIKI_NATS_URL"] = ",".join(settings.servers)
        env["QIKI_NATS_PING_INTERVAL_S"] = str(settings.ping_interval_s)
        if kw.get("token"):
            env["QIKI_NATS_TOKEN"] = str(kw["token"])
        if kw.get("user"):
            env["QIKI_NATS_USER"] = str(kw["user"])
        if kw.get("password"):
            env["QIKI_NATS_PASSWORD"] = str(kw["password"])
        for var, path in (("QIKI_NATS_CREDS", settings.creds_file),
                          ("QIKI_NATS_NKEY_SEED_FILE", settings.nkey_seed_file),
                          ("QIKI_NATS_CA", settings.tls_ca_file),
                          ("QIKI_NATS_CERT", settings.tls_cert_file),
                          ("QIKI_NATS_KEY", settings.tls_key_file)):
            if path is not None:
                env[var] = str(path)
        if settings.inbox_prefix is not None:
            # A user service under auth: accounts must pass it to nats.connect(inbox_prefix=...)
            env["QIKI_NATS_INBOX_PREFIX"] = settings.inbox_prefix
        env["QIKI_BOTSPEC"] = str(self.botspec)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # ------------------------------------------------------------------ lifecycle

    async def _open_broker(self) -> Broker:
        from harness.broker import open_broker

        b = self.topology.broker
        options: dict[str, Any] = {}
        if self.backend == "external":
            options["url"] = self.nats_url
        else:
            options.update(nodes=b.nodes, sync_always=b.sync_always)
            self.credentials = self._issue_credentials()
            if self.credentials is not None:
                options["credentials"] = self.credentials
        if b.version and self.backend in ("process", "container"):
            options["binary"] = await self._versioned_binary(b.version)
        if self.backend == "process":
            options["log_dir"] = self.run_dir / "logs"
            if b.store == "fuse":
                options["store_dir"] = await self._mount_store()
        if self.want_route_proxies and self.backend == "process" and b.nodes > 1:
            return await self._open_routed_cluster(options)
        broker: Broker = await self._stack.enter_async_context(
            open_broker(self.backend, **options)
        )
        return broker

    async def _versioned_binary(self, version: str) -> Path:
        """``topology.broker.version``: that release's nats-server, fetched once (issue 11)."""
        from harness.broker.versions import ensure_nats_server

        found = await asyncio.to_thread(ensure_nats_server, version)
        self.event("broker.binary", version=found.version, path=str(found.path),
                   source="fetched" if found.fetched else "cache")
        return found.path

    async def _mount_store(self) -> Path:
        """Mount the storage-fault filesystem for the store (removed, with its data, on close).

        Outside the run dir on purpose: the backing dir holds the whole store, and a report
        directory should not carry a mountpoint if a crash leaves one.
        """
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix=f"{ORPHAN_DIR_PREFIX}{self.run_dir.name[:40]}-"))
        self._stack.callback(shutil.rmtree, root, ignore_errors=True)
        fs = FaultFS(root / "backing", root / "store", run_id=self.run_dir.name,
                     log_path=self.run_dir / "logs" / "fusefs.log")
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.storage = await self._stack.enter_async_context(fs)
        self.event("storage.mounted", mountpoint=str(fs.mountpoint), fsname=fs.fsname)
        return fs.mountpoint

    async def service_store_dir(self, name: str) -> Path:
        """A service's data dir on its own storage-fault filesystem (``store: fuse``),
        mounted for the run; its files are copied into the run dir before the unmount."""
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(
            prefix=f"{ORPHAN_DIR_PREFIX}{self.run_dir.name[:40]}-{name[:20]}-"))
        self._stack.callback(shutil.rmtree, root, ignore_errors=True)
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        # Page cache on (no direct_io): the registrar's SQLite runs in WAL mode, which maps its
        # -shm file shared, and FUSE refuses a shared mmap of a direct_io file.
        fs = FaultFS(root / "backing", root / "data", run_id=self.run_dir.name,
                     log_path=self.run_dir / "logs" / f"fusefs-{name}.log", direct_io=False)
        self.service_storage[name] = await self._stack.enter_async_context(fs)

        def keep() -> None:
            # Runs after the service stopped (it was started later, so it stops first).
            for f in fs.mountpoint.iterdir():
                if f.is_file():
                    with contextlib.suppress(OSError):
                        shutil.copy2(f, self.run_dir / f.name)

        self._stack.callback(keep)
        self.event("storage.mounted", service=name, mountpoint=str(fs.mountpoint),
                   fsname=fs.fsname)
        return fs.mountpoint

    def storage_prefix(self, node: str) -> str:
        """The path of ``node``'s store inside the mount (``""`` for a single node)."""
        nodes = self.broker.nodes if self.broker is not None else []
        return node if len(nodes) > 1 else ""

    async def _open_routed_cluster(self, options: dict[str, Any]) -> Broker:
        """A process cluster whose every route runs through a fault proxy (partitions).

        The proxies must listen before the nodes dial, and they need the nodes' route
        ports: prepare the cluster (ports, no processes), start the proxies, then start it.
        """
        from harness.broker import open_broker

        routes = await self._stack.enter_async_context(RouteProxies())
        cluster: Any = open_broker("process", route_url_for=routes.route_url_for, **options)
        # prepare() makes a temp dir: close() removes it even if the proxies fail to start.
        self._stack.push_async_callback(cluster.close)
        cluster.prepare()
        await routes.attach(cluster)
        broker: Broker = await self._stack.enter_async_context(cluster)
        self.route_proxies = routes
        return broker

    async def _start_service(self, name: str) -> ServiceProcess:
        if self._launcher is None:
            self._launcher = ServiceLauncher(self, scenario_dir=self.scenario_dir)
        return await self._launcher.start(name)

    async def _proxy_for(self, name: str) -> FaultProxy:
        assert self.broker is not None
        host, _, port = self.broker.client_urls[0].removeprefix("nats://").rpartition(":")
        proxy = FaultProxy(host, int(port), name=f"link:{name}")
        await self._stack.enter_async_context(proxy)
        self.proxies[name] = proxy
        return proxy

    async def start(self) -> None:
        """Bring everything up; on failure tear down what was started, then raise."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.broker is None:
                # Clusters are ready only once an R<nodes> stream can be placed (the backends
                # wait for that), so provisioning below never races the election.
                self.broker = await self._open_broker()
            self.event("broker.ready", backend=self.backend, urls=self.broker.client_urls)
            settings = self.settings("harness", name="qiki-harness")
            self.nc = await nats.connect(
                **settings.connect_kwargs(),
                disconnected_cb=self._on_disconnect,
                reconnected_cb=self._on_reconnect,
                error_cb=self._on_error,
            )
            self._stack.push_async_callback(self._close_client)
            self.js = self.nc.jetstream()
            # Creating R3 streams and consumers on a loaded machine (containers on vfs) can
            # take longer than the client's default 5 s API timeout.
            await self._provision()
            if self.tap is not None:
                self.tap.t0 = self.t0
                for subject in tap_subjects(self.config):
                    await self.nc.subscribe(subject, cb=self.tap.on_msg, pending_msgs_limit=-1,
                                            pending_bytes_limit=-1)
            for subject in self.watched:
                await self.nc.subscribe(subject, cb=self._watcher(self.watched[subject]),
                                        pending_msgs_limit=-1, pending_bytes_limit=-1)
            if self.topology.proxied_load:
                await self._proxy_for("load")
            # Services start side by side: each spends most of its start-up importing.
            names = [n for n, spec in self.topology.services.items() if spec.enabled]
            if self.topology.services_in == "container" and any(
                reference_service(n) is not None for n in names
            ):
                from harness.containers.images import ensure_services_image

                # Built (or found by content hash) once, not by three concurrent starts.
                self._services_image = (await asyncio.to_thread(ensure_services_image)).tag
            started = await asyncio.gather(
                *(self._start_service(n) for n in names), return_exceptions=True
            )
            for name, svc in zip(names, started, strict=True):
                if isinstance(svc, BaseException):
                    raise svc
                self.services[name] = svc
        except BaseException:
            await self.close()
            raise

    @staticmethod
    def _watcher(seen: Counter[str]) -> Callable[[Msg], Awaitable[None]]:
        """Count the CloudEvent id of each message (binary mode ``ce-id``, else structured)."""

        async def on_msg(msg: Msg) -> None:
            ce_id = (msg.headers or {}).get("ce-id")
            if ce_id is None:
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    ce_id = json.loads(msg.data).get("id")
            if ce_id:
                seen[str(ce_id)] += 1

        return on_msg

    async def _provision(self, attempts: int = 3) -> None:
        """Create the layout; a timed-out API request is retried (provisioning is
        idempotent): a fresh cluster on a loaded machine sometimes drops the first one."""
        assert self.nc is not None
        for attempt in range(1, attempts + 1):
            try:
                await provision_layout(self.nc.jetstream(timeout=15.0), self.config)
                return
            except TimeoutError:
                if attempt == attempts:
                    raise SetupError(
                        f"creating the JetStream layout timed out {attempts} times; "
                        "Hint: the broker logs in the run's logs/ say why it is not answering"
                    ) from None
                self.event("provision.retry", attempt=attempt)

    async def _close_client(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), timeout=2.0)

    async def close(self) -> None:
        """Stop services, proxies, client and broker (reverse order)."""
        await self._stack.aclose()


    async def _on_disconnect(self) -> None:
        self.event("harness.disconnected")

    async def _on_reconnect(self) -> None:
        self.event("harness.reconnected")

    async def _on_error(self, exc: Exception) -> None:
        # Expected while brokers die; kept for the journal, never raised.
        self.event("harness.client_error", error=type(exc).__name__)

    # ------------------------------------------------------------------ observations

    def load_settings(self) -> NatsSettings:
        """Settings for the load's connection (through ``link:load`` when proxied)."""
        if "load" in self.proxies:
            return self.settings("load", name="qiki-load", servers=[self.proxies["load"].url])
        return self.settings("load", name="qiki-load")

    async def drain_sample(self, t: float) -> tuple[list[LagSample], set[str]] | None:
        """One lag sample per durable of the layout, and the durables something reads
        (delivered at least once, or a pull request waiting), from one ``consumer_info``
        each; None when the broker did not answer for every consumer.

        A consumer no running service reads never drains: waiting for it would only burn
        the drain timeout.
        """
        if self.js is None or self.nc is None or not self.nc.is_connected:
            return None
        samples: list[LagSample] = []
        read: set[str] = set()
        for c in self.config.consumers:
            try:
                info = await self.js.consumer_info(c.stream, c.durable, timeout=1.0)
            except Exception:
                return None
            samples.append(_lag_sample(t, c.stream, c.durable, info))
            if (info.delivered is not None and info.delivered.consumer_seq) or info.num_waiting:
                read.add(c.durable)
        return samples, read

    async def sample_lag(self, t: float) -> list[LagSample]:
        """One lag sample per durable consumer of the layout (answered by its leader)."""
        if self.js is None or self.nc is None or not self.nc.is_connected:
            return []
        out: list[LagSample] = []
        for c in self.config.consumers:
            try:
                info = await self.js.consumer_info(c.stream, c.durable, timeout=1.0)
            except Exception:
                continue
            out.append(_lag_sample(t, c.stream, c.durable, info))
        return out

    async def dead_letter_count(self) -> int:
        """Messages in the dead-letter stream (0 when it does not exist)."""
        assert self.js is not None
        dlq = self.config.dead_letter
        stream = self.config.stream_for(dlq) if dlq else None
        if stream is None:
            return 0
        info = await self.js.stream_info(stream.name)
        return int(info.state.messages)

    async def registrar_records(self, after_seq: int = 0) -> list[RegistrarRecord]:
        """Every record the registrar stored (after ``after_seq``, the store's insertion
        order), paged through its ``/records`` endpoint."""
        # The service whose catalog definition keeps the store (QIKI's: the registrar).
        svc = next((s for n, s in self.services.items()
                    if (ref := reference_service(n)) is not None and ref.keeps_records), None)
        if svc is None or svc.http_url is None:
            return []
        out: list[RegistrarRecord] = []
        after = after_seq
        page = 10_000  # the endpoint's maximum page
        while True:
            data = await asyncio.to_thread(
                http_get_json, f"{svc.http_url}/records?after_seq={after}&limit={page}", 30.0
            )
            rows = data["records"]
            out.extend(record_from_json(r) for r in rows)
            if len(rows) < page:
                return out
            after = int(rows[-1]["seq"])


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _lag_sample(t: float, stream: str, durable: str, info: Any) -> LagSample:
    """A consumer's ``ConsumerInfo`` as a lag sample: lag = pending + awaiting ack."""
    pending = int(info.num_pending or 0)
    ack_pending = int(info.num_ack_pending or 0)
    return LagSample(t=t, stream=stream, consumer=durable, lag=pending + ack_pending,
                     num_pending=pending, num_ack_pending=ack_pending,
                     num_redelivered=int(info.num_redelivered or 0))


def record_from_json(r: dict[str, Any]) -> RegistrarRecord:
    """One ``/records`` row as the checks' :class:`RegistrarRecord`."""
    return RegistrarRecord(
        code=int(r["code"]),
        source=str(r.get("source") or ""),
        event_id=str(r.get("event_id") or ""),
        type=str(r.get("type") or ""),
        subject=str(r.get("nats_subject") or r.get("subject") or ""),
        stored_at=float(r.get("stored_at") or 0.0),
        reason=r.get("reason"),
        seq=int(r.get("seq") or 0),
        event_time=_epoch(r.get("event_time")),
    )
