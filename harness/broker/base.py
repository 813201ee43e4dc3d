"""The protocols every broker backend implements (process, container, external).

Below them, the implementation the process and container backends share (node URLs and
monitoring, the node list, meta and stream leader polling over ``/jsz``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar, runtime_checkable

from harness._resource import AsyncResource
from harness.broker import _http
from harness.broker._config import HOST
from harness.broker.errors import BrokerError

if TYPE_CHECKING:
    from services.common.settings import NatsSettings

__all__ = [
    "HEALTHZ_JS",
    "Broker",
    "ClusterMonitor",
    "MonitoredNode",
    "Node",
    "NodeSet",
    "StartClose",
]


@runtime_checkable
class Node(Protocol):
    """One controllable NATS server: the target of process faults."""

    @property
    def name(self) -> str:
        """Server name (``server_name`` in its config), e.g. ``n1``."""
        ...

    @property
    def client_url(self) -> str:
        """``nats://127.0.0.1:PORT`` of this node."""
        ...

    @property
    def monitor_url(self) -> str:
        """``http://127.0.0.1:PORT`` of this node's monitoring endpoint."""
        ...

    @property
    def pid(self) -> int | None:
        """PID of the running server, None if never started."""
        ...

    @property
    def running(self) -> bool:
        """True while the server process lives (paused counts as running)."""
        ...

    @property
    def paused(self) -> bool:
        """True while frozen by :meth:`pause`."""
        ...

    @property
    def restarts(self) -> int:
        """How many times :meth:`restart` brought the node back."""
        ...

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Graceful stop: SIGTERM, SIGKILL after ``timeout_s``."""
        ...

    async def terminate(self) -> None:
        """SIGTERM and wait for the exit."""
        ...

    async def kill(self) -> None:
        """SIGKILL (crash) and reap."""
        ...

    async def pause(self) -> None:
        """SIGSTOP: the server freezes, its sockets stay open."""
        ...

    async def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        ...

    async def restart(self) -> None:
        """Stop if running, start again on the same ports and store, wait until ready."""
        ...

    def log_text(self) -> str:
        """The server's captured log."""
        ...


@runtime_checkable
class Broker(Protocol):
    """A NATS deployment the harness runs scenarios against; an async context manager."""

    backend: str

    @property
    def nodes(self) -> Sequence[Node]:
        """Controllable nodes, a list (empty for an external broker)."""
        ...

    @property
    def client_urls(self) -> list[str]:
        """Client URLs to connect to (credentials never embedded)."""
        ...

    @property
    def version(self) -> str:
        """nats-server version, e.g. ``2.15.1``."""
        ...

    def nats_settings(self, **overrides: Any) -> NatsSettings:
        """Connection settings (servers and credentials) for services and clients."""
        ...

    def describe(self) -> dict[str, Any]:
        """Journal-safe description: never contains a secret."""
        ...

    def secret_values(self) -> tuple[str, ...]:
        """Every secret value clients of this broker use (tokens, passwords, seeds): what the
        secret scan looks for in everything a run wrote (issue 10). Empty without any."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# ----------------------------------------------------------------------------------------
# Shared implementation of the process and container backends (the external broker has no
# nodes). The protocols above stay the contract; these classes only hold the logic both
# backends had written out twice.

HEALTHZ_JS = "/healthz?js-enabled-only=true"
"""The readiness probe: 200 once JetStream is enabled and current."""


class MonitoredNode:
    """Mixin: URLs and monitoring calls of a node reachable on 127.0.0.1 ports.

    The class sets ``client_port`` and ``monitor_port`` (host ports: a process's own, a
    container's published ones).
    """

    client_port: int
    monitor_port: int

    @property
    def client_url(self) -> str:
        """``nats://127.0.0.1:PORT``."""
        return f"nats://{HOST}:{self.client_port}"

    @property
    def monitor_url(self) -> str:
        """``http://127.0.0.1:PORT`` (monitoring: /healthz, /varz, /jsz, /routez ...)."""
        return f"http://{HOST}:{self.monitor_port}"

    async def monitor(self, path: str, *, timeout_s: float = 1.0) -> Any:
        """GET a monitoring endpoint (e.g. ``/jsz?streams=true``) and return its JSON."""
        return await _http.get_json(HOST, self.monitor_port, path, timeout_s=timeout_s)

    async def healthy(self, path: str = HEALTHZ_JS, *, timeout_s: float = 1.0) -> bool:
        """True if ``path`` (a /healthz variant) answers 200 right now."""
        try:
            status, _ = await _http.get(HOST, self.monitor_port, path, timeout_s=timeout_s)
        except (OSError, TimeoutError):
            return False
        return status == 200


class ServerNode(Node, Protocol):
    """What the shared broker logic needs of a node: :class:`Node` plus version and /jsz."""

    @property
    def version(self) -> str | None:
        """Server version once known."""
        ...

    async def monitor(self, path: str, *, timeout_s: float = 1.0) -> Any:
        """GET a monitoring endpoint and return its JSON."""
        ...


N = TypeVar("N", bound=ServerNode)


#: The broker modules' name for :class:`harness._resource.AsyncResource`.
StartClose = AsyncResource


class NodeSet(StartClose, Generic[N]):
    """Base of a broker made of nodes it controls: the node-list half of :class:`Broker`."""

    _nodes: list[N]

    @property
    def nodes(self) -> list[N]:
        """The server nodes."""
        return list(self._nodes)

    @property
    def client_urls(self) -> list[str]:
        """Client URL of every node (127.0.0.1 ports)."""
        return [n.client_url for n in self._nodes]

    @property
    def version(self) -> str:
        """nats-server version (``2.15.1``) of the first node that knows it."""
        for node in self._nodes:
            if node.version:
                return node.version
        raise BrokerError("nats-server version unknown: the broker has not been started")

    def _find_node(self, name: str) -> N:
        for n in self._nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}; nodes are {[n.name for n in self._nodes]}")

    @property
    def account(self) -> str:
        """The account the platform's streams live in (``$G`` unless ``auth: accounts``)."""
        creds = getattr(self, "credentials", None)
        return str(creds.account) if creds is not None else "$G"

    def nats_settings(self, **overrides: Any) -> NatsSettings:
        """:class:`NatsSettings` with every node's client URL and, for a secured broker, the
        ``harness`` identity's credentials and TLS files (``overrides`` win)."""
        from services.common.settings import NatsSettings

        fields: dict[str, Any] = {"servers": self.client_urls}
        creds = getattr(self, "credentials", None)
        if creds is not None:
            fields.update(creds.client_fields("harness"))
        fields.update(overrides)
        return NatsSettings(**fields)

    def secret_values(self) -> tuple[str, ...]:
        """The run's secrets (per-run credentials), for the secret scan; empty without."""
        creds = getattr(self, "credentials", None)
        return tuple(creds.secret_values()) if creds is not None else ()

    def _log_tails(self, lines: int = 3) -> str:
        """Every node's last log lines, one node a line (for start errors)."""
        return "\n".join(
            f"  {n.name}: " + " | ".join(n.log_text().splitlines()[-lines:]) for n in self._nodes
        )


class ClusterMonitor(NodeSet[N]):
    """JetStream cluster state (meta leader, stream leaders) asked of the nodes via ``/jsz``.

    ``_is_live`` says which nodes count (a container backend also drops disconnected ones);
    ``_LIVE_WORD`` names them in error messages.
    """

    _LIVE_WORD: ClassVar[str] = "running"

    def _is_live(self, node: N) -> bool:
        return node.running and not node.paused

    def _stream_leader_detail(self, live: set[str]) -> str:
        """Extra text at the end of the no-stream-leader error ('' for none)."""
        return ""

    async def _meta_leaders(self) -> list[str | None]:
        """The meta leader each node reports (None: not running, paused or no answer)."""

        async def one(node: N) -> str | None:
            if not node.running or node.paused:
                return None
            try:
                jsz = await node.monitor("/jsz", timeout_s=0.5)
            except (OSError, TimeoutError):
                return None
            leader = (jsz.get("meta_cluster") or {}).get("leader")
            return leader if isinstance(leader, str) and leader else None

        return list(await asyncio.gather(*(one(n) for n in self._nodes)))

    async def _wait_meta_agreed(self) -> None:
        """Until every node reports the same meta leader (callers bound it with a timeout)."""
        delay = 0.005
        while True:
            leaders = await self._meta_leaders()
            if leaders[0] is not None and all(ldr == leaders[0] for ldr in leaders):
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.05)

    async def meta_leader(self, *, timeout_s: float = 10.0) -> str:
        """Name of the JetStream meta leader agreed by the live nodes.

        Waits (up to ``timeout_s``) for an election if there is no leader now, e.g. right
        after the leader was killed.
        """
        deadline = time.monotonic() + timeout_s
        delay = 0.01
        while True:
            reports = await self._meta_leaders()
            live = {n.name for n in self._nodes if self._is_live(n)}
            leaders = [
                ldr
                for n, ldr in zip(self._nodes, reports, strict=True)
                if ldr is not None and n.name in live
            ]
            if leaders and leaders[0] in live and all(ldr == leaders[0] for ldr in leaders):
                return leaders[0]
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"no JetStream meta leader among {self._LIVE_WORD} nodes {sorted(live)} "
                    f"after {timeout_s:g} s (nodes report {leaders})"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    async def stream_leader(
        self, stream: str, *, account: str | None = None, timeout_s: float = 10.0
    ) -> N:
        """The node leading ``stream`` (asked of the live nodes via ``/jsz``).

        ``account``: where the stream lives (default: the broker's :attr:`account`, ``$G``
        unless ``auth: accounts``).

        Waits up to ``timeout_s`` for an elected leader that is live (after a leader kill
        the stream elects a new one). Raises :class:`BrokerError` naming what was seen.
        """
        account = account or self.account
        deadline = time.monotonic() + timeout_s
        delay = 0.01
        while True:
            seen: dict[str, str | None] = {}
            for node in [n for n in self._nodes if self._is_live(n)]:
                with contextlib.suppress(OSError, TimeoutError):
                    jsz = await node.monitor(
                        f"/jsz?accounts=true&streams=true&acc={account}", timeout_s=0.5
                    )
                    for acc in jsz.get("account_details") or []:
                        for sd in acc.get("stream_detail") or []:
                            if sd.get("name") == stream:
                                seen[node.name] = (sd.get("cluster") or {}).get("leader")
            # Asked again after the poll: a node may have died while it ran.
            live = {n.name for n in self._nodes if self._is_live(n)}
            votes = {ldr for ldr in seen.values() if ldr}
            if len(votes) == 1:
                (leader,) = votes
                if leader in live:
                    return self._find_node(leader)
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"stream {stream!r}: no {self._LIVE_WORD} leader after {timeout_s:g} s "
                    f"(nodes report {seen or 'no such stream'}"
                    f"{self._stream_leader_detail(live)})"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.1)
