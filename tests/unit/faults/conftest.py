"""Local TCP peers for the fault proxy's unit tests (no NATS)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest


@dataclass
class Upstream:
    """A TCP server on 127.0.0.1 that echoes (or, with close_after, replies once and closes)."""

    port: int = 0
    reads: list[int] = field(default_factory=list)
    """Size of every read the server did, across connections (to see slicing)."""
    close_after_reply: bytes | None = None
    server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.reads.append(len(data))
                if self.close_after_reply is not None:
                    writer.write(self.close_after_reply)
                    await writer.drain()
                    break
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """An echo server; tests may set `close_after_reply` before connecting."""
    up = Upstream()
    up.server = await asyncio.start_server(up._handle, "127.0.0.1", 0)
    up.port = up.server.sockets[0].getsockname()[1]
    try:
        yield up
    finally:
        up.server.close()
        await up.server.wait_closed()
