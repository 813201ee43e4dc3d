"""One shape for every resource: ``async with x`` is ``await x.start()`` ... ``await x.close()``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


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
