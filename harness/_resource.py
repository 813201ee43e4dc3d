"""One shape for every resource: ``async with x`` is ``await x.start()`` ... ``await x.close()``."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

#: Seconds between repeated cancellations of a task that has not stopped yet.
CANCEL_RETRY_S = 0.5


class AsyncResource:
    """Mixin for the harness's resources (processes, brokers, the platform, containers).

    A failed ``start`` is followed by ``close`` before the error propagates, so nothing a
    half-finished start spawned outlives it (as testcontainers' ``__enter__`` does).
    ``close`` must therefore be idempotent and safe on a resource that never started.
    """

    async def start(self) -> None:
        """Bring the resource up."""
        raise NotImplementedError

    async def close(self) -> None:
        """Take the resource down; idempotent."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def cancel_and_wait(
    *tasks: asyncio.Future[Any],
    retry_s: float = CANCEL_RETRY_S,
    timeout_s: float | None = None,
    suppress_errors: bool = False,
) -> None:
    """Cancel ``tasks`` and wait until every one has stopped, cancelling again every
    ``retry_s`` seconds while one is still running.

    Why not ``task.cancel(); await task``: Python 3.11's ``asyncio.wait_for`` (used inside
    nats-py) can swallow a cancellation that lands just as the awaitable it wraps completes;
    the task then runs on and a plain ``await`` never returns (a CI run hung 290 s after its
    checks awaiting the lag sampler, commit 8f55ae8). A second cancellation stops it.

    The tasks' cancellation is not an error here. A task that ended with another exception
    re-raises it (the first one, after all have stopped), as ``await task`` would, unless
    ``suppress_errors``. ``timeout_s`` bounds the whole wait: TimeoutError naming the tasks
    still running (still cancelled; nothing awaits them any more). Cancelling the caller
    propagates at once; the tasks stay cancelled.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        wait_s = retry_s if deadline is None else min(retry_s, deadline - loop.time())
        if wait_s <= 0:
            names = ", ".join(sorted(_name(t) for t in pending))
            raise TimeoutError(f"{names} still running {timeout_s} s after being cancelled")
        _, pending = await asyncio.wait(pending, timeout=wait_s)
    first: BaseException | None = None
    for t in tasks:
        if t.cancelled():
            continue
        exc = t.exception()  # also marks it retrieved: no "never retrieved" warning
        if exc is not None and first is None:
            first = exc
    if first is not None and not suppress_errors:
        raise first


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)
