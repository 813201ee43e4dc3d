"""The ``container`` backend: nats-server in Docker containers, via testcontainers.

:class:`ContainerBroker` runs one node or a routed cluster (n1..nN) on a user-defined docker
network of its own. Peers route to each other by container DNS alias (``nats-route://n2:6222``);
clients connect through the client and monitoring ports published on **127.0.0.1 only** (host
ports chosen up front so a restarted container gets the same ones; never a 172.x address).
JetStream stores live in the container's own filesystem, so stop/kill/restart keep the data
and removing the container removes the store.

Everything carries the labels ``qiki-harness=1`` and ``qiki-harness.run=<run id>``; closing
the broker (also after a failed start) removes the run's containers and network by that
label, because the testcontainers reaper (ryuk) cannot be pulled offline and is disabled.

Node faults: :meth:`ContainerNode.pause` / ``resume`` (docker pause/unpause: the cgroup
freezes, sockets stay open), ``kill`` (SIGKILL), ``terminate`` (SIGTERM), ``stop``,
``restart`` (same container, ports and store), ``disconnect`` / ``connect`` (leave and rejoin
the network: a partition from the peers; the published client port keeps working).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from harness.broker._config import HOST, deep_merge, free_ports, render_config
from harness.broker._ready import wait_placement
from harness.broker.base import HEALTHZ_JS, ClusterMonitor, MonitoredNode
from harness.broker.errors import BrokerError, BrokerStartError
from harness.containers.engine import (
    LABEL_NAME,
    LABEL_ROLE,
    cleanup,
    container_log_text,
    docker_client,
    new_run_id,
    run_labels,
    run_resource_name,
    run_selector,
)
from harness.containers.images import ImageInfo, ensure_nats_image

if TYPE_CHECKING:
    from harness.security.credentials import RunCredentials, TlsMaterial

__all__ = ["ContainerBroker", "ContainerNode"]

CLIENT_PORT = 4222
MONITOR_PORT = 8222
ROUTE_PORT = 6222
CONFIG_PATH = "/etc/qiki-nats.conf"
STORE_DIR = "/data/jetstream"
#: where a secured broker's TLS files are copied inside its containers (issue 10)
TLS_DIR = "/etc/qiki-tls"
_PORT_TAKEN = re.compile(r"port is already allocated|address already in use", re.IGNORECASE)
_START_ATTEMPTS = 3


def _disable_reaper() -> None:
    """Turn off testcontainers' ryuk: its image cannot be pulled offline; we clean by label."""
    from testcontainers.core.config import testcontainers_config

    testcontainers_config.ryuk_disabled = True
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


class ContainerNode(MonitoredNode):
    """One nats-server container. Implements :class:`harness.broker.Node`.

    State properties (``running``, ``paused``, ``pid``) reflect the last docker operation or
    :meth:`refresh`; the container is only changed through this handle in a run.
    """

    def __init__(self, broker: ContainerBroker, name: str, client_port: int, monitor_port: int):
        self._broker = broker
        self._name = name
        self.client_port = client_port
        self.monitor_port = monitor_port
        self._tc: Any = None  # testcontainers DockerContainer
        self._container: Any = None  # docker.models.containers.Container
        self._running = False
        self._paused = False
        self._connected = False
        self._pid: int | None = None
        self._restarts = 0
        self._version: str | None = None
        self.exit_code: int | None = None

    # -------------------------------------------------------------- identity

    @property
    def name(self) -> str:
        """Server name and network alias, e.g. ``n1``."""
        return self._name

    @property
    def container_name(self) -> str:
        """Docker container name (``qiki-<run id>-<name>``)."""
        return run_resource_name(self._broker.run_id, self._name)

    @property
    def container_id(self) -> str | None:
        """Docker container id, None before start."""
        return cast(str, self._container.id) if self._container is not None else None

    @property
    def internal_client_url(self) -> str:
        """``nats://<name>:4222``: the URL other containers on the network use."""
        return f"nats://{self._name}:{CLIENT_PORT}"

    @property
    def version(self) -> str | None:
        """nats-server version from ``/varz`` once ready (``2.15.1``)."""
        return self._version

    @property
    def pid(self) -> int | None:
        """Host PID of the server in the container (None when not running)."""
        return self._pid

    @property
    def running(self) -> bool:
        """True while the container runs (paused counts as running)."""
        return self._running

    @property
    def paused(self) -> bool:
        """True while frozen by :meth:`pause`."""
        return self._paused

    @property
    def connected(self) -> bool:
        """True while attached to the broker's network (False after :meth:`disconnect`)."""
        return self._connected

    @property
    def restarts(self) -> int:
        """How many times :meth:`restart` brought the node back."""
        return self._restarts

    def __repr__(self) -> str:
        return f"<ContainerNode {self.name} {self.client_url} running={self.running}>"

    # ------------------------------------------------------------- lifecycle

    def _create_and_start(self, image: str, config: bytes,
                          files: Mapping[str, bytes] | None = None) -> None:
        """Blocking: create the container via testcontainers, copy the config, start it."""
        from testcontainers.core.container import DockerContainer

        b = self._broker
        tc = DockerContainer(
            image,
            command=cast(Any, ["nats-server", "-c", CONFIG_PATH]),  # list is accepted at runtime
            name=self.container_name,
            network=b._network,
            network_aliases=[self._name],
            labels=run_labels(b.run_id, **{LABEL_ROLE: "nats", LABEL_NAME: self._name}),
            hostname=self._name,
        )
        # Published on 127.0.0.1 only, on ports fixed now so a restart keeps them
        # (testcontainers' with_bind_ports cannot name the host address).
        tc.ports[f"{CLIENT_PORT}/tcp"] = cast(Any, (HOST, self.client_port))
        tc.ports[f"{MONITOR_PORT}/tcp"] = cast(Any, (HOST, self.monitor_port))
        # 0600: under auth the config holds the token or passwords (issue 10).
        tc.with_copy_into_container(config, CONFIG_PATH, mode=0o600)
        # TLS material (issue 10): copied in (0600 like on the host), not bind-mounted, so
        # the container needs no access to the run's secrets dir.
        for path, data in (files or {}).items():
            tc.with_copy_into_container(data, path, mode=0o600)
        self._tc = tc
        tc.start()
        self._container = tc.get_wrapped_container()
        self._connected = True
        self._refresh_sync()

    def _refresh_sync(self) -> None:
        c = self._container
        if c is None:
            return
        c.reload()
        state = c.attrs.get("State", {})
        self._running = bool(state.get("Running"))
        self._paused = bool(state.get("Paused"))
        self._pid = int(state.get("Pid") or 0) or None
        if not self._running:
            self.exit_code = state.get("ExitCode")

    async def refresh(self) -> None:
        """Re-read running/paused/pid from the engine (e.g. after the server exited by itself)."""
        await asyncio.to_thread(self._refresh_sync)

    async def start(self, image: str, config: bytes,
                    files: Mapping[str, bytes] | None = None) -> None:
        """Create and start the container (first start only), without waiting for ready."""
        await asyncio.to_thread(self._create_and_start, image, config, files)

    async def wait_ready(self, timeout_s: float) -> None:
        """Poll ``/healthz?js-enabled-only=true`` on the published monitoring port."""
        delay = 0.005
        deadline = time.monotonic() + timeout_s
        next_check = time.monotonic() + 0.5
        while True:
            if await self.healthy():  # False while not listening (docker-proxy accepts, closes)
                break
            now = time.monotonic()
            if now >= next_check:
                # a server that exited (bad config, crash) will never answer: fail now
                await self.refresh()
                next_check = now + 0.5
            if now >= deadline or not self._running:
                await self.refresh()
                tail = " | ".join(self.log_text().splitlines()[-5:])
                what = (
                    f"{HEALTHZ_JS} not ok on {self.monitor_url} within {timeout_s:g} s"
                    if self._running
                    else f"nats-server exited with code {self.exit_code} before it was ready"
                )
                raise BrokerStartError(
                    f"container {self.container_name}: {what}. "
                    f"Last log lines: {tail or '(none)'}. "
                    "Hint: `docker logs` the container; check that the image runs nats-server."
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.05)
        if self._version is None:
            with contextlib.suppress(OSError, TimeoutError, ValueError):
                varz = await self.monitor("/varz")
                self._version = str(varz.get("version", "")).lstrip("v") or None

    def _require(self) -> Any:
        if self._container is None:
            raise BrokerError(f"node {self._name}: container not started")
        return self._container

    async def _op(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        c = self._require()
        try:
            await asyncio.to_thread(fn, c, *args, **kwargs)
        except Exception as exc:
            raise BrokerError(f"node {self._name}: docker {what} failed: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):
                await self.refresh()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Graceful stop: SIGTERM, SIGKILL after ``timeout_s`` (docker stop). Store kept."""
        if self._container is None:
            return
        if self._paused:
            await self.resume()
        await self._op("stop", lambda c: c.stop(timeout=max(0, round(timeout_s))))

    async def terminate(self) -> None:
        """SIGTERM and wait for the container to exit."""
        await self._signal("SIGTERM")

    async def kill(self) -> None:
        """SIGKILL (a crash; un-synced store writes may be lost) and wait for the exit."""
        await self._signal("SIGKILL")

    async def _signal(self, sig: str) -> None:
        if not self._running:
            raise BrokerError(f"node {self._name}: cannot send {sig}, container not running")

        def _do(c: Any) -> None:
            if sig != "SIGKILL" and self._paused:
                c.unpause()  # a frozen process cannot handle SIGTERM
            c.kill(signal=sig)
            c.wait(timeout=30)

        await self._op(f"kill --signal {sig}", _do)

    async def pause(self) -> None:
        """docker pause: every process in the container freezes; sockets stay open."""
        if not self._running or self._paused:
            raise BrokerError(
                f"node {self._name}: cannot pause (running={self._running}, paused={self._paused})"
            )
        await self._op("pause", lambda c: c.pause())

    async def resume(self) -> None:
        """docker unpause after :meth:`pause`."""
        if not self._paused:
            raise BrokerError(f"node {self._name}: cannot resume, not paused")
        await self._op("unpause", lambda c: c.unpause())

    async def restart(self, timeout_s: float = 5.0) -> None:
        """Stop if running, start the same container (ports, store, config), wait for ready."""
        c = self._require()
        if self._paused:
            await self.resume()
        if self._running:
            await self.stop(timeout_s)
        try:
            await asyncio.to_thread(c.start)
        except Exception as exc:
            raise BrokerStartError(f"node {self._name}: docker start failed: {exc}") from exc
        await self.refresh()
        await self.wait_ready(self._broker.ready_timeout_s)
        self._restarts += 1

    async def disconnect(self) -> None:
        """Detach from the broker's network: peers lose their routes (a partition).

        The published client port is unaffected only while the container keeps another
        network; here the node has one network, so clients of this node lose it too.
        """
        if not self._connected:
            raise BrokerError(f"node {self._name}: already disconnected")
        net = self._broker._docker_network()
        cid = self._require().id
        try:
            await asyncio.to_thread(net.disconnect, cid, force=True)
        except Exception as exc:
            raise BrokerError(f"node {self._name}: network disconnect failed: {exc}") from exc
        self._connected = False

    async def connect(self) -> None:
        """Re-attach to the broker's network under the same alias (heals :meth:`disconnect`)."""
        if self._connected:
            raise BrokerError(f"node {self._name}: already connected")
        net = self._broker._docker_network()
        cid = self._require().id
        try:
            await asyncio.to_thread(net.connect, cid, aliases=[self._name])
        except Exception as exc:
            raise BrokerError(f"node {self._name}: network connect failed: {exc}") from exc
        self._connected = True

    def log_text(self) -> str:
        """The container's log (stdout and stderr) across restarts; '' before start."""
        return container_log_text(self._container)


class ContainerBroker(ClusterMonitor[ContainerNode]):
    """``size`` nats-server containers with JetStream; an async context manager.

    ``size=1``: a single node (ready on healthz). ``size>1``: a cluster named
    ``cluster_name`` routed over the run's docker network, ready when all nodes agree on a
    JetStream meta leader; clients get no ``connect_urls`` gossip (``no_advertise``), so they
    never learn a container address. ``image``: NATS image (default: :func:`ensure_nats_image`
    picks or builds one). ``extra_config`` merges over the generated nats-server config.
    ``sync_always``: fsync every write. ``credentials``: auth mode and TLS of the run
    (:class:`harness.security.credentials.RunCredentials`; the auth config goes into the
    config file, the server's TLS files are copied into each container, routes use TLS too).
    Implements :class:`harness.broker.Broker`.
    """

    backend = "container"
    _LIVE_WORD = "live"

    def __init__(
        self,
        size: int = 1,
        *,
        image: str | None = None,
        name_prefix: str = "n",
        cluster_name: str = "qiki",
        sync_always: bool = False,
        extra_config: Mapping[str, Any] | None = None,
        ready_timeout_s: float | None = None,
        run_id: str | None = None,
        credentials: RunCredentials | None = None,
    ) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"ContainerBroker size must be an int >= 1, got {size!r}")
        if extra_config is not None and not isinstance(extra_config, Mapping):
            raise TypeError(
                f"extra_config must be a mapping of nats-server options, got {extra_config!r}"
            )
        if ready_timeout_s is not None and ready_timeout_s <= 0:
            raise ValueError(f"ready_timeout_s must be > 0, got {ready_timeout_s!r}")
        self.size = size
        self.cluster = size > 1
        self.cluster_name = cluster_name
        self.sync_always = sync_always
        self.extra_config: dict[str, Any] = dict(extra_config or {})
        self.ready_timeout_s = ready_timeout_s or (30.0 if self.cluster else 15.0)
        self.run_id = run_id or new_run_id()
        self._names = [f"{name_prefix}{i + 1}" for i in range(size)]
        self._image_arg = image
        self.image: str | None = None
        self.image_source: str | None = None
        self._nodes: list[ContainerNode] = []
        self._network: Any = None  # testcontainers Network
        self._client: Any = None
        self.startup_s: float | None = None
        #: per-run credentials and TLS material (issue 10); the server certificate must name
        #: the nodes' network aliases for services in containers (Platform issues it so)
        self.credentials = credentials

    # --------------------------------------------------------------- protocol
    # nodes, client_urls (127.0.0.1 published ports), version (from /varz), nats_settings,
    # async with, meta_leader, stream_leader: see NodeSet and ClusterMonitor.

    @property
    def internal_client_urls(self) -> list[str]:
        """URLs containers on the run's network use (``nats://n1:4222``)."""
        return [n.internal_client_url for n in self._nodes]

    @property
    def network_name(self) -> str:
        """Name of the run's docker network (``qiki-<run id>``)."""
        return run_resource_name(self.run_id)

    def node(self, name: str) -> ContainerNode:
        """Node by server name; raises KeyError naming the known names."""
        return self._find_node(name)

    def describe(self) -> dict[str, Any]:
        """Journal-safe description of the deployment."""
        return {
            "backend": self.backend,
            "version": next((n.version for n in self._nodes if n.version), None),
            "image": self.image,
            "image_source": self.image_source,
            "cluster": self.cluster,
            "cluster_name": self.cluster_name if self.cluster else None,
            "sync_always": self.sync_always,
            "security": self.credentials.describe() if self.credentials is not None else None,
            "run_id": self.run_id,
            "network": self.network_name,
            "nodes": [
                {
                    "name": n.name,
                    "container": n.container_name,
                    "client_url": n.client_url,
                    "monitor_url": n.monitor_url,
                    "running": n.running,
                    "connected": n.connected,
                }
                for n in self._nodes
            ],
        }

    def __repr__(self) -> str:
        return f"<ContainerBroker run={self.run_id} size={self.size} urls={self.client_urls}>"

    # ---------------------------------------------------------------- config

    def node_config(self, node: ContainerNode) -> dict[str, Any]:
        """The nats-server config of ``node`` (container-side addresses)."""
        js: dict[str, Any] = {"store_dir": STORE_DIR}
        if self.sync_always:
            js["sync_interval"] = "always"  # fsync every write (Jepsen NATS 2.12.1, issue 4)
        config: dict[str, Any] = {
            "server_name": node.name,
            "listen": f"0.0.0.0:{CLIENT_PORT}",
            "http": f"0.0.0.0:{MONITOR_PORT}",
            "jetstream": js,
        }
        if self.cluster:
            config["cluster"] = {
                "name": self.cluster_name,
                "listen": f"0.0.0.0:{ROUTE_PORT}",
                "routes": [
                    f"nats-route://{peer}:{ROUTE_PORT}" for peer in self._names if peer != node.name
                ],
                # Clients must only ever see the 127.0.0.1 published URLs.
                "no_advertise": True,
                # A disconnected node's routes go silent (no FIN/RST): short route pings
                # make its peers drop them within ~3 s, so a `disconnect` is a partition
                # the cluster notices (the default route ping is minutes).
                "ping_interval": "1s",
                "ping_max": 3,
            }
        if self.credentials is not None and self.credentials.tls is not None:
            from harness.security.credentials import tls_config

            inside = self.credentials.tls.at(Path(TLS_DIR))
            config = deep_merge(config, tls_config(inside, cluster=self.cluster))
        return deep_merge(config, self.extra_config)

    def _node_files(self) -> dict[str, bytes]:
        """TLS files to copy into every node (container path -> contents)."""
        tls: TlsMaterial | None = self.credentials.tls if self.credentials else None
        if tls is None:
            return {}
        return {f"{TLS_DIR}/{p.name}": p.read_bytes()
                for p in (tls.ca_file, tls.server_cert_file, tls.server_key_file)}

    def _render(self, node: ContainerNode) -> bytes:
        auth = self.credentials.auth_config() if self.credentials is not None else ""
        return (render_config(self.node_config(node)) + auth).encode()

    # ------------------------------------------------------------- lifecycle

    def _docker_network(self) -> Any:
        if self._client is None:
            raise BrokerError("ContainerBroker has not been started")
        return self._client.networks.get(self.network_name)

    def _create_network(self) -> None:
        from testcontainers.core.network import Network

        net = Network(docker_network_kw={"driver": "bridge", "labels": run_labels(self.run_id)})
        net.name = self.network_name
        net.create()
        self._network = net

    async def _start_nodes(self) -> None:
        assert self.image is not None
        for attempt in range(1, _START_ATTEMPTS + 1):
            ports = free_ports(2 * self.size)
            self._nodes = [
                ContainerNode(self, name, ports[2 * i], ports[2 * i + 1])
                for i, name in enumerate(self._names)
            ]
            configs = [self._render(n) for n in self._nodes]
            files = self._node_files()
            results = await asyncio.gather(
                *(n.start(self.image, cfg, files)
                  for n, cfg in zip(self._nodes, configs, strict=True)),
                return_exceptions=True,
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            if not errors:
                return
            # A host port taken between free_ports() and docker's bind: retry with fresh ones.
            if attempt < _START_ATTEMPTS and all(_PORT_TAKEN.search(str(e)) for e in errors):
                await asyncio.to_thread(self._remove_containers)
                continue
            raise BrokerStartError(
                f"ContainerBroker: starting {self.size} container(s) from {self.image} failed: "
                f"{errors[0]}"
            ) from errors[0]

    def _remove_containers(self) -> None:
        for c in self._client.containers.list(
            all=True, filters={"label": [run_selector(self.run_id), f"{LABEL_ROLE}=nats"]}
        ):
            with contextlib.suppress(Exception):
                c.remove(force=True, v=True)

    async def start(self) -> None:
        """Ensure the image, create network and containers, wait until ready."""
        if self._client is not None:
            raise BrokerError("ContainerBroker already started")
        t0 = time.perf_counter()
        try:
            self._client = await asyncio.to_thread(docker_client)
            _disable_reaper()
            # Independent: overlap the image check with the network creation. Both finish
            # before any error propagates, so the cleanup below sees the network if made.
            info, net_error = await asyncio.gather(
                asyncio.to_thread(ensure_nats_image, self._image_arg),
                asyncio.to_thread(self._create_network),
                return_exceptions=True,
            )
            for outcome in (info, net_error):
                if isinstance(outcome, BaseException):
                    raise outcome
            assert isinstance(info, ImageInfo)
            self.image, self.image_source = info.tag, info.source
            await self._start_nodes()
            await asyncio.gather(*(n.wait_ready(self.ready_timeout_s) for n in self._nodes))
            if self.cluster:
                await self._wait_formed()
        except BaseException:
            await self.close()
            raise
        self.startup_s = time.perf_counter() - t0

    async def close(self) -> None:
        """Remove the run's containers and network (by label). Idempotent."""
        if self._client is None:
            return
        client, self._client = self._client, None
        for n in self._nodes:
            if n._tc is not None:
                # its own docker client; the container itself goes with the label cleanup
                with contextlib.suppress(Exception):
                    n._tc.get_docker_client().client.close()
        try:
            report = await asyncio.to_thread(cleanup, run_selector(self.run_id), client=client)
            if report.errors:
                raise BrokerError(
                    f"ContainerBroker: could not remove {sorted(report.errors)}: "
                    f"{report.errors}. Run `qiki-harness down` to retry."
                )
        finally:
            for n in self._nodes:
                n._running = n._paused = n._connected = False
            client.close()

    # ------------------------------------------------------------ clustering

    def _is_live(self, node: ContainerNode) -> bool:
        # A disconnected node is cut off from the cluster: its view does not count.
        return node.running and not node.paused and node.connected

    async def _wait_formed(self) -> None:
        try:
            async with asyncio.timeout(self.ready_timeout_s):
                await self._wait_meta_agreed()
                # Agreed is not yet usable: see wait_placement (shared with the process
                # backend).
                await wait_placement(self.client_urls, len(self._nodes),
                                     connect_kwargs=self.nats_settings().connect_kwargs())
        except TimeoutError:
            leaders = await self._meta_leaders()
            raise BrokerStartError(
                f"ContainerBroker: no JetStream meta leader agreed within "
                f"{self.ready_timeout_s:g} s (each node sees {leaders}).\nLast log lines:\n"
                f"{self._log_tails()}\nHint: check the routes on network {self.network_name}."
            ) from None


def create_broker(*, nodes: int = 1, url: str | None = None, **options: Any) -> ContainerBroker:
    """Factory behind ``open_broker("container", nodes=N, **options)`` (not started yet).

    ``options`` go to :class:`ContainerBroker` (``image=``, ``sync_always=``,
    ``extra_config=``, ``cluster_name=``, ``ready_timeout_s=``, ``run_id=``).
    """
    if url is not None:
        raise ValueError("backend 'container' starts its own servers; url= is for 'external'")
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"nodes must be an int >= 1, got {nodes!r}")
    return ContainerBroker(nodes, **options)
