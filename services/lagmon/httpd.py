"""A tiny asyncio HTTP/1.1 server for service endpoints (``/healthz``, ``/metrics``, ...).

The reference services need three or four GET endpoints on 127.0.0.1; a web framework would be
a heavy dependency of the system under test for that.  One request per connection
(``Connection: close``), GET/HEAD only, bounded request size and read time so a stuck client
cannot pin a task.  Shared by the lag monitor and the radar simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

log = logging.getLogger(__name__)

#: Status line reasons for the codes handlers use.
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_MAX_REQUEST_BYTES = 16 * 1024
_READ_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Response:
    """What a handler returns."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


Handler = Callable[[], Awaitable[Response] | Response]


class HttpServer:
    """Serve ``routes`` (path -> handler) on ``host:port`` (0 = a free port).

    Use as an async context manager; ``.port`` and ``.url`` are set once entered.
    """

    def __init__(
        self, routes: Mapping[str, Handler], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._routes = dict(routes)
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self.port: int = 0

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{self._host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving."""
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting and close the listening socket."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
            self._server = None

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(
                    reader.readuntil(b"\r\n\r\n"), timeout=_READ_TIMEOUT_S
                )
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            if len(head) > _MAX_REQUEST_BYTES:
                await self._send(writer, Response(400, b"request too large\n"), head_only=False)
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3:
                await self._send(writer, Response(400, b"bad request line\n"), head_only=False)
                return
            method, target, _version = parts
            if method not in ("GET", "HEAD"):
                await self._send(writer, Response(405, b"GET only\n"), head_only=False)
                return
            path = target.split("?", 1)[0]
            handler = self._routes.get(path)
            if handler is None:
                body = ("not found; try " + ", ".join(sorted(self._routes)) + "\n").encode()
                await self._send(writer, Response(404, body), head_only=method == "HEAD")
                return
            try:
                result = handler()
                response = await result if isinstance(result, Awaitable) else result
            except Exception:  # a broken handler must not take the service down
                log.exception("handler for %s failed", path)
                response = Response(500, b"internal error\n")
            await self._send(writer, response, head_only=method == "HEAD")
        except (ConnectionError, OSError):
            pass  # client went away; nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, response: Response, *, head_only: bool) -> None:
        reason = _REASONS.get(response.status, "Unknown")
        header = (
            f"HTTP/1.1 {response.status} {reason}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        writer.write(header if head_only else header + response.body)
        await writer.drain()
