"""The protocols every broker backend implements (process, container, external)."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from services.common.settings import NatsSettings

__all__ = ["Broker", "Node"]


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

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
