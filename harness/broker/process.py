"""The ``process`` backend: real nats-server processes with JetStream on 127.0.0.1.

:class:`NatsServer` is one node, :class:`NatsCluster` N routed nodes. Both are async context
managers; a failed start and every exit (also on an exception) stop the processes they
spawned and remove the temp dirs they created.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness._process import ManagedProcess, ProcessError
from harness.broker._binary import find_nats_server
from harness.broker._config import HOST, deep_merge, free_ports, render_config
from harness.broker._ready import wait_placement
from harness.broker.base import HEALTHZ_JS, ClusterMonitor, MonitoredNode, NodeSet
from harness.broker.errors import BrokerError, BrokerStartError

if TYPE_CHECKING:
    from harness.security.credentials import RunCredentials

__all__ = ["NatsCluster", "NatsNode", "NatsServer", "RouteUrlFor"]

RouteUrlFor = Callable[[int, int, int], str]
"""``(from_idx, to_idx, peer_route_port) -> route URL`` used by node ``from_idx`` to reach
``to_idx``; lets the chaos layer put a TCP proxy on every route (partitions)."""

_HINT = (
    "the log lines above are nats-server's own (a config error names the field, which may "
    "come from extra_config); set NATS_SERVER_BIN to another nats-server (v2.10+) if this "
    "one is broken, or run a release by version: --nats-server-version X.Y.Z "
    "(topology.broker.version)"
)
_PORT_IN_USE = re.compile(r"address already in use", re.IGNORECASE)
_VERSION_LINE = re.compile(r"Version:\s+(\S+)")
_START_ATTEMPTS = 3  # fresh route ports after a port race with another process
_ANY_PORT = -1  # nats-server's RANDOM_PORT: the server binds a free port itself

# Safety net, like harness._process's PID set: temp dirs of brokers not closed when the
# interpreter exits normally (a test that forgot its ``async with``) are removed then.
_LIVE_DIRS: set[Path] = set()


@atexit.register
def _remove_leftover_dirs() -> None:
    for path in list(_LIVE_DIRS):
        shutil.rmtree(path, ignore_errors=True)
    _LIVE_DIRS.clear()


async def _poll_healthz(node: NatsNode, path: str = HEALTHZ_JS) -> None:
    """Poll the monitoring endpoint until it answers 200; short, growing interval, no sleep."""
    delay = 0.002
    while True:
        if not node.running:
            raise BrokerError(f"{node.name}: exited while waiting for {path}")
        if await node.healthy(path):  # False while not listening yet
            return
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.025)


class NatsNode(MonitoredNode):
    """One nats-server process: ports, store, config file and the process handle.

    Ports and store survive :meth:`restart`, so clients and peers find it again.
    Implements :class:`harness.broker.Node`.
    """

    def __init__(
        self,
        *,
        name: str,
        binary: Path,
        workdir: Path,
        store_dir: Path,
        config: Callable[[NatsNode], dict[str, Any]],
        cluster: bool,
        ready_timeout_s: float = 10.0,
        log_dir: Path | None = None,
        auth_text: str = "",
    ) -> None:
        self._name = name
        #: auth config text appended to the rendered config (issue 10; holds secrets, so the
        #: config file is written 0600)
        self.auth_text = auth_text
        self.binary = binary
        self.workdir = workdir
        self.store_dir = store_dir
        self.config_path = workdir / f"{name}.conf"
        self._config = config
        self._cluster = cluster
        self._ports_dir = workdir
        # 0 until the first start: the server picks its client and monitoring ports itself
        # (``-1``) and reports them in its ports file, so no other process can take them
        # between a pick and the bind (issue 13). Kept for restarts.
        self.client_port = 0
        self.monitor_port = 0
        self.cluster_port: int | None = None
        self.pick_ports()
        self._version: str | None = None
        self.process = ManagedProcess(
            [str(binary), "-c", str(self.config_path)],
            name=f"nats-server {name}",
            ready=self._ready,
            ready_timeout_s=ready_timeout_s,
            log_path=(log_dir / f"{name}.log") if log_dir is not None else None,
            hint=_HINT,
        )

    # -------------------------------------------------------------- identity

    @property
    def name(self) -> str:
        """Server name, also ``server_name`` in the config."""
        return self._name

    @property
    def route_url(self) -> str | None:
        """``nats-route://127.0.0.1:PORT`` for cluster nodes, else None."""
        return f"nats-route://{HOST}:{self.cluster_port}" if self.cluster_port else None

    @property
    def version(self) -> str | None:
        """Server version parsed from its startup log, None before the first start."""
        if self._version is None:
            for line in self.process.log_text(tail=200).splitlines():
                m = _VERSION_LINE.search(line)
                if m:
                    self._version = m.group(1).lstrip("v")
                    break
        return self._version

    def pick_ports(self) -> None:
        """Choose a fresh route port (cluster nodes; only before the first successful start).

        Route ports are chosen up front because every peer's config (and a route proxy) must
        name them before the nodes start; a port taken meanwhile fails the bind and the
        broker retries with a fresh one. Client and monitoring ports are the server's own
        choice (:meth:`read_ports`): they are forgotten here, so a retried start lets the
        server choose again.
        """
        self.client_port = self.monitor_port = 0
        self.cluster_port = free_ports(1)[0] if self._cluster else None

    @property
    def ports_file(self) -> Path | None:
        """The ports file the running server wrote (``<exe>_<pid>.ports``), if any yet."""
        pid = self.process.pid
        if pid is None:
            return None
        return next(iter(self._ports_dir.glob(f"*_{pid}.ports")), None)

    def read_ports(self) -> bool:
        """Take the client and monitoring ports from the server's ports file.

        False while the file is not there (or not completely written) yet.
        """
        path = self.ports_file
        if path is None:
            return False
        try:
            ports = json.loads(path.read_text(encoding="utf-8"))
            client = int(ports["nats"][0].rsplit(":", 1)[1])
            monitor = int(ports["monitoring"][0].rsplit(":", 1)[1])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return False
        self.client_port, self.monitor_port = client, monitor
        return True

    def write_config(self) -> None:
        """(Re)write the config file from the owner's config builder."""
        config = self._config(self)
        # extra_config may move the ports file elsewhere: look where the server writes it.
        self._ports_dir = Path(str(config.get("ports_file_dir") or self.workdir))
        text = render_config(config) + self.auth_text
        if self.auth_text:
            # The auth block carries passwords or the token: owner-only, from the first byte.
            from harness.security.credentials import _write_private

            _write_private(self.config_path, text)
        else:
            self.config_path.write_text(text, encoding="utf-8")

    # ----------------------------------------------------------------- state

    @property
    def pid(self) -> int | None:
        """PID of the current server process."""
        return self.process.pid

    @property
    def running(self) -> bool:
        """True while the server process lives (paused counts as running)."""
        return self.process.running

    @property
    def paused(self) -> bool:
        """True while frozen by :meth:`pause`."""
        return self.process.paused

    @property
    def restarts(self) -> int:
        """How many times :meth:`restart` brought the node back."""
        return self.process.restarts

    @property
    def exit_code(self) -> int | None:
        """Exit status of the last run (negative: killed by that signal)."""
        return self.process.exit_code

    def __repr__(self) -> str:
        return f"<NatsNode {self.name} {self.client_url} pid={self.pid} running={self.running}>"

    # ------------------------------------------------------------- lifecycle

    async def _ready(self, _: ManagedProcess) -> None:
        if not self.client_port or not self.monitor_port:
            await self._wait_ports()
        await _poll_healthz(self)

    async def _wait_ports(self) -> None:
        """Until the server's ports file names the ports it bound (first start only)."""
        delay = 0.002
        while not self.read_ports():
            if not self.running:
                raise BrokerError(f"{self.name}: exited before reporting its ports")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.025)

    async def start(self) -> None:
        """Write the config and start the server; returns when JetStream answers healthz."""
        self.write_config()
        await self.process.start()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Graceful stop: SIGTERM (lame-duck free shutdown), SIGKILL after ``timeout_s``."""
        await self.process.stop(timeout_s)

    async def terminate(self) -> None:
        """Send SIGTERM and wait for the exit (a fault: no escalation)."""
        await self._guard(self.process.terminate())

    async def kill(self) -> None:
        """SIGKILL the server (a crash; un-synced store writes may be lost)."""
        await self._guard(self.process.kill())

    async def pause(self) -> None:
        """SIGSTOP: the server freezes, its sockets stay open (clients notice via PING)."""
        await self._guard(self.process.pause())

    async def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        await self._guard(self.process.resume())

    async def restart(self, timeout_s: float = 5.0) -> None:
        """Stop if running, start on the same ports and store, wait for healthz."""
        self.write_config()
        try:
            await self.process.restart(timeout_s)
        except ProcessError as exc:
            raise BrokerStartError(str(exc)) from exc

    async def _guard(self, op: Any) -> None:
        try:
            await op
        except ProcessError as exc:
            raise BrokerError(str(exc)) from exc

    def log_text(self) -> str:
        """Captured server log (stdout and stderr), across restarts."""
        return self.process.log_text()


def _as_path(value: str | Path | None) -> Path | None:
    return Path(value).expanduser() if value is not None else None


class _ProcessBroker(NodeSet[NatsNode]):
    """Shared lifecycle of :class:`NatsServer` and :class:`NatsCluster`."""

    backend = "process"

    def __init__(
        self,
        *,
        names: list[str],
        cluster: bool,
        store_dir: str | Path | None,
        jetstream: bool,
        binary: str | Path | None,
        sync_always: bool,
        extra_config: Mapping[str, Any] | None,
        log_dir: str | Path | None,
        ready_timeout_s: float,
        credentials: RunCredentials | None = None,
    ) -> None:
        if ready_timeout_s <= 0:
            raise ValueError(f"ready_timeout_s must be > 0, got {ready_timeout_s!r}")
        if extra_config is not None and not isinstance(extra_config, Mapping):
            raise TypeError(
                f"extra_config must be a mapping of nats-server options, got {extra_config!r}"
            )
        self._names = names
        self._cluster = cluster
        self.jetstream = jetstream
        self.sync_always = sync_always
        self.extra_config: dict[str, Any] = dict(extra_config or {})
        self._binary_arg = _as_path(binary)
        self._store_arg = _as_path(store_dir)
        self._log_dir = _as_path(log_dir)
        self._ready_timeout_s = ready_timeout_s
        self._workdir: Path | None = None
        self._own_store = self._store_arg is None
        self._nodes: list[NatsNode] = []
        self._started = False
        self.startup_s: float | None = None
        #: per-run credentials and TLS material (issue 10); None: no auth, plain TCP
        self.credentials = credentials

    # --------------------------------------------------------------- protocol
    # nodes, client_urls, version (read from the startup log), nats_settings, async with:
    # see NodeSet.

    @property
    def store_dir(self) -> Path:
        """JetStream store root (a node's store is ``store_dir/<name>`` in a cluster)."""
        if self._store_arg is not None:
            return self._store_arg
        if self._workdir is None:
            raise BrokerError("store_dir unknown: the broker has not been started")
        return self._workdir / "store"

    @property
    def workdir(self) -> Path | None:
        """Temp dir with config files (and the store unless one was given); None when closed."""
        return self._workdir

    def get_node(self, name: str) -> NatsNode:
        """Node by server name; raises KeyError naming the known names."""
        return self._find_node(name)

    def describe(self) -> dict[str, Any]:
        """Journal-safe description of the deployment."""
        return {
            "backend": self.backend,
            "version": self._nodes[0].version if self._nodes else None,
            "cluster": self._cluster,
            "jetstream": self.jetstream,
            "sync_always": self.sync_always,
            "security": self.credentials.describe() if self.credentials is not None else None,
            "store_dir": str(self.store_dir) if self._store_arg or self._workdir else None,
            "nodes": [
                {
                    "name": n.name,
                    "client_url": n.client_url,
                    "monitor_url": n.monitor_url,
                    "route_url": n.route_url,
                    "pid": n.pid,
                    "running": n.running,
                }
                for n in self._nodes
            ],
        }

    # ---------------------------------------------------------------- config

    def _base_config(self, node: NatsNode) -> dict[str, Any]:
        config: dict[str, Any] = {
            "server_name": node.name,
            # First start: the server binds free ports itself and reports them in its ports
            # file; restarts: the same ports again, so clients and peers find it.
            "listen": f"{HOST}:{node.client_port or _ANY_PORT}",
            "http": f"{HOST}:{node.monitor_port or _ANY_PORT}",
            "ports_file_dir": str(node.workdir),
        }
        if self.jetstream:
            js: dict[str, Any] = {"store_dir": str(node.store_dir)}
            if self.sync_always:
                # fsync after every write: see the Jepsen NATS 2.12.1 report (issue 4).
                js["sync_interval"] = "always"
            config["jetstream"] = js
        return config

    def _node_config(self, node: NatsNode) -> dict[str, Any]:
        config = self._base_config(node)
        if self.credentials is not None:
            config = deep_merge(config, self.credentials.tls_config(cluster=self._cluster))
        return deep_merge(config, self.extra_config)

    # ------------------------------------------------------------- lifecycle

    def prepare(self) -> None:
        """Create the temp dir, the store dirs and the nodes with their ports; spawn nothing.

        ``async with`` does this itself. Call it first only to learn the ports before the
        servers start (e.g. ``node.cluster_port`` to point a route proxy at); after that,
        always ``async with`` (or :meth:`close`) so the temp dir is removed. Idempotent.
        """
        if self._nodes:
            return
        try:
            binary = self._binary_arg or find_nats_server()
            self._workdir = Path(tempfile.mkdtemp(prefix="qiki-nats-"))
            _LIVE_DIRS.add(self._workdir)
            store_root = self.store_dir
            for name in self._names:
                node_store = store_root / name if self._cluster else store_root
                node_store.mkdir(parents=True, exist_ok=True)
                self._nodes.append(
                    NatsNode(
                        name=name,
                        binary=binary,
                        workdir=self._workdir,
                        store_dir=node_store,
                        config=self._node_config,
                        cluster=self._cluster,
                        ready_timeout_s=self._ready_timeout_s,
                        log_dir=self._log_dir,
                        auth_text=(self.credentials.auth_config()
                                   if self.credentials is not None else ""),
                    )
                )
        except BaseException:
            self._nodes = []
            self._remove_workdir()
            raise

    def _remove_workdir(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            _LIVE_DIRS.discard(self._workdir)
            self._workdir = None

    def _can_repick_ports(self) -> bool:
        return True

    async def _wait_formed(self) -> None:
        """Extra readiness after every node answers healthz (the cluster's meta leader)."""

    async def _start_all(self) -> None:
        # Client and monitoring ports are the server's own choice (no race). Route ports are
        # picked before nats-server binds them and another process may win that race, so a
        # bind failure on first start retries with fresh route ports.
        for attempt in range(1, _START_ATTEMPTS + 1):
            results = await asyncio.gather(
                *(n.start() for n in self._nodes), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            if not errors:
                await self._wait_formed()
                return
            await asyncio.gather(*(n.stop(1.0) for n in self._nodes))
            port_race = all(
                isinstance(e, Exception) and _PORT_IN_USE.search(str(e)) for e in errors
            )
            if not port_race or attempt == _START_ATTEMPTS or not self._can_repick_ports():
                first = errors[0]
                if isinstance(first, ProcessError):
                    raise BrokerStartError(str(first)) from first
                raise first
            for n in self._nodes:
                n.pick_ports()

    async def start(self) -> None:
        """Start every node and wait until the deployment is ready."""
        if self._started:
            raise BrokerError(
                f"{type(self).__name__} was already started; create a new one to start again"
            )
        self._started = True
        t0 = time.perf_counter()
        try:
            self.prepare()
            await self._start_all()
        except BaseException:
            await self.close()
            raise
        self.startup_s = time.perf_counter() - t0

    async def close(self) -> None:
        """Stop every node and remove the temp dirs this broker created. Idempotent."""
        try:
            await asyncio.gather(*(n.process.close() for n in self._nodes))
        finally:
            self._remove_workdir()


class NatsServer(_ProcessBroker):
    """A single nats-server with JetStream on free 127.0.0.1 ports.

    ``store_dir``: JetStream file store; default a temp dir removed on close (a given dir is
    kept). ``binary``: nats-server to run (default :func:`find_nats_server`).
    ``sync_always``: ``sync_interval: always`` (fsync every write). ``extra_config``: merged
    over the generated config (nested mappings merge). ``log_dir``: also write the server log
    to ``log_dir/<name>.log`` (kept). ``credentials``: auth mode and TLS of the run
    (:class:`harness.security.credentials.RunCredentials`); :meth:`nats_settings` then carries
    the ``harness`` identity's. Ready when ``/healthz?js-enabled-only=true`` answers ok.
    """

    def __init__(
        self,
        *,
        name: str = "n1",
        store_dir: str | Path | None = None,
        jetstream: bool = True,
        binary: str | Path | None = None,
        sync_always: bool = False,
        extra_config: Mapping[str, Any] | None = None,
        log_dir: str | Path | None = None,
        ready_timeout_s: float = 10.0,
        credentials: RunCredentials | None = None,
    ) -> None:
        super().__init__(
            names=[name],
            cluster=False,
            store_dir=store_dir,
            jetstream=jetstream,
            binary=binary,
            sync_always=sync_always,
            extra_config=extra_config,
            log_dir=log_dir,
            ready_timeout_s=ready_timeout_s,
            credentials=credentials,
        )

    @property
    def node(self) -> NatsNode:
        """The one node."""
        if not self._nodes:
            raise BrokerError("NatsServer has not been started")
        return self._nodes[0]

    @property
    def client_url(self) -> str:
        """``nats://127.0.0.1:PORT``."""
        return self.node.client_url

    @property
    def monitor_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self.node.monitor_url

    def __repr__(self) -> str:
        url = self._nodes[0].client_url if self._nodes else "not started"
        return f"<NatsServer {url}>"


class NatsCluster(ClusterMonitor[NatsNode], _ProcessBroker):
    """``size`` nats-server nodes (n1..nN) routed on 127.0.0.1 with JetStream clustering.

    Ready when every node answers healthz, all agree on an elected JetStream meta leader and
    (``wait_placement``, default) an R``size`` stream can be placed: a probe memory stream is
    created and deleted, since the leader learns its peers' capacity only after the election.
    Clients get no ``connect_urls`` gossip (``cluster.no_advertise``), so a client pointed at
    a proxy stays behind it.

    ``route_url_for(from_idx, to_idx, peer_route_port) -> url`` replaces the route URL node
    ``from_idx`` dials to reach ``to_idx`` (0-based), e.g. a TCP proxy per route for
    partitions. Each node then also advertises a route address nobody can dial (see
    :data:`UNREACHABLE_ROUTE`), so peers never learn a direct address through route gossip
    and cannot bypass the proxies; all routes come from the explicit (proxied) config.
    ``route_url_for`` is called whenever a node's config is written (each start and
    restart), so it must return the same URL for the same arguments. To start the proxies
    before the nodes, call :meth:`prepare` first (ports are then known:
    ``cluster.nodes[j].cluster_port``), start the proxies, then ``async with cluster``.
    Nodes keep retrying explicit routes, so a proxy that comes up late only delays forming.
    """

    UNREACHABLE_ROUTE = "127.0.0.1:1"
    """Advertised route address when ``route_url_for`` is set (port 1: connection refused)."""

    def __init__(
        self,
        size: int = 3,
        *,
        name_prefix: str = "n",
        cluster_name: str = "qiki",
        store_dir: str | Path | None = None,
        binary: str | Path | None = None,
        sync_always: bool = False,
        extra_config: Mapping[str, Any] | None = None,
        route_url_for: RouteUrlFor | None = None,
        log_dir: str | Path | None = None,
        ready_timeout_s: float = 15.0,
        wait_placement: bool = True,
        credentials: RunCredentials | None = None,
    ) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"NatsCluster size must be an int >= 1, got {size!r}")
        super().__init__(
            names=[f"{name_prefix}{i + 1}" for i in range(size)],
            cluster=True,
            store_dir=store_dir,
            jetstream=True,
            binary=binary,
            sync_always=sync_always,
            extra_config=extra_config,
            log_dir=log_dir,
            ready_timeout_s=ready_timeout_s,
            credentials=credentials,
        )
        self.size = size
        self.cluster_name = cluster_name
        self.route_url_for = route_url_for
        self.wait_placement = wait_placement

    def __repr__(self) -> str:
        return f"<NatsCluster {self.cluster_name} size={self.size} urls={self.client_urls}>"

    def node(self, name: str) -> NatsNode:
        """Node by server name (same as :meth:`get_node`; the container backend's spelling)."""
        return self.get_node(name)

    def _can_repick_ports(self) -> bool:
        # Route proxies were set up for the first ports; new ports would strand them.
        return self.route_url_for is None

    def route_urls(self, index: int) -> list[str]:
        """Route URLs node ``index`` dials (through ``route_url_for`` when set)."""
        urls = []
        for j, peer in enumerate(self._nodes):
            if j == index:
                continue
            assert peer.cluster_port is not None
            if self.route_url_for is not None:
                urls.append(self.route_url_for(index, j, peer.cluster_port))
            else:
                urls.append(f"nats-route://{HOST}:{peer.cluster_port}")
        return urls

    def _base_config(self, node: NatsNode) -> dict[str, Any]:
        config = super()._base_config(node)
        index = self._nodes.index(node)
        cluster: dict[str, Any] = {
            "name": self.cluster_name,
            "listen": f"{HOST}:{node.cluster_port}",
            "routes": self.route_urls(index),
            # Clients must not learn other nodes' addresses (they would bypass proxies).
            "no_advertise": True,
        }
        if self.route_url_for is not None:
            cluster["advertise"] = self.UNREACHABLE_ROUTE
        config["cluster"] = cluster
        return config

    async def _wait_formed(self) -> None:
        try:
            async with asyncio.timeout(self._ready_timeout_s):
                await self._wait_meta_agreed()
                if self.wait_placement:
                    await self._wait_placement()
        except TimeoutError:
            leaders = await self._meta_leaders()
            tails = self._log_tails()
            what = (
                f"could not place an R{self.size} stream"
                if leaders[0] is not None and all(ldr == leaders[0] for ldr in leaders)
                else "no JetStream meta leader agreed"
            )
            raise BrokerStartError(
                f"NatsCluster: {what} within "
                f"{self._ready_timeout_s:g} s (each node sees meta leader {leaders}).\n"
                "Last log lines:\n"
                f"{tails}\nHint: check that the routes are reachable (route_url_for/proxies) "
                "and that every node runs the same nats-server version."
            ) from None

    async def _wait_placement(self) -> None:
        """Every node answers JetStream API requests and an R<size> stream fits."""
        await wait_placement([n.client_url for n in self._nodes], self.size,
                             connect_kwargs=self.nats_settings().connect_kwargs())

    def _stream_leader_detail(self, live: set[str]) -> str:
        return f"; running: {sorted(live)}"
