"""Container faults as values: pause, kill, terminate, stop, restart, disconnect (partition).

A :class:`ContainerFault` names a kind and a target node; it checks both at once and has a
readable repr, so a scenario step can be built, validated and journalled before anything
runs. ``async with fault.applied(broker):`` applies it and always heals it on exit (also
when the body fails):

    ==========  ============================  ==========================
    kind        apply                         heal
    ==========  ============================  ==========================
    pause       docker pause                  docker unpause
    kill        SIGKILL (crash)               start again, wait ready
    terminate   SIGTERM                       start again, wait ready
    stop        docker stop (TERM, then KILL) start again, wait ready
    restart     stop + start, wait ready      (nothing: instantaneous)
    disconnect  leave the run's network       rejoin under the same alias
    ==========  ============================  ==========================

:func:`run_fault` applies one for ``duration_s`` and returns a
:class:`harness.checks.observations.FaultRecord`-compatible tuple of times.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from harness.broker.container import ContainerBroker, ContainerNode

__all__ = ["FAULT_KINDS", "ContainerFault", "ContainerFaultKind", "FaultTimes", "run_fault"]

ContainerFaultKind = Literal["pause", "kill", "terminate", "stop", "restart", "disconnect"]
#: Every container fault kind, in documentation order.
FAULT_KINDS: tuple[str, ...] = get_args(ContainerFaultKind)


@dataclass(frozen=True)
class FaultTimes:
    """When a fault was applied and healed (``time.monotonic()`` seconds; None if never)."""

    applied_at: float
    removed_at: float | None


@dataclass(frozen=True)
class ContainerFault:
    """One container fault on node ``target`` (e.g. ``ContainerFault("pause", "n2")``)."""

    kind: ContainerFaultKind
    target: str

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"container fault kind {self.kind!r} is not one of {', '.join(FAULT_KINDS)}"
            )
        if not isinstance(self.target, str) or not self.target:
            raise ValueError(f"container fault target must be a node name, got {self.target!r}")

    def __repr__(self) -> str:
        return f"ContainerFault({self.kind!r}, {self.target!r})"

    @property
    def heals(self) -> bool:
        """False for instantaneous faults (``restart``) that leave nothing to undo."""
        return self.kind != "restart"

    def _node(self, broker: ContainerBroker) -> ContainerNode:
        try:
            return broker.node(self.target)
        except KeyError as exc:
            raise ValueError(f"{self!r}: {exc.args[0]}") from None

    async def apply(self, broker: ContainerBroker) -> None:
        """Break the target node as this fault's kind says."""
        node = self._node(broker)
        if self.kind == "pause":
            await node.pause()
        elif self.kind == "kill":
            await node.kill()
        elif self.kind == "terminate":
            await node.terminate()
        elif self.kind == "stop":
            await node.stop()
        elif self.kind == "restart":
            await node.restart()
        else:
            await node.disconnect()

    async def heal(self, broker: ContainerBroker) -> None:
        """Undo :meth:`apply` (idempotent: a node already healed is left alone)."""
        node = self._node(broker)
        await node.refresh()
        if self.kind == "pause":
            if node.paused:
                await node.resume()
        elif self.kind in ("kill", "terminate", "stop"):
            if not node.running:
                await node.restart()
        elif self.kind == "disconnect" and not node.connected:
            await node.connect()

    @asynccontextmanager
    async def applied(self, broker: ContainerBroker) -> AsyncIterator[ContainerNode]:
        """Apply on enter, heal on exit (always); yields the target node."""
        node = self._node(broker)
        await self.apply(broker)
        try:
            yield node
        finally:
            await self.heal(broker)


async def run_fault(
    fault: ContainerFault, broker: ContainerBroker, duration_s: float = 0.0
) -> FaultTimes:
    """Apply ``fault``, keep it for ``duration_s`` seconds, heal it; return the times."""
    if duration_s < 0:
        raise ValueError(f"duration_s must be >= 0, got {duration_s!r}")
    async with fault.applied(broker):
        applied_at = time.monotonic()
        await asyncio.sleep(duration_s)
    return FaultTimes(applied_at=applied_at, removed_at=time.monotonic() if fault.heals else None)
