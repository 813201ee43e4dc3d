"""A tiny HTTP/1.1 server on asyncio for ``/healthz``, ``/metrics`` and ``/records``.

aiohttp is not a dependency of the services, and the stdlib ``http.server`` would need a
thread; the registrar only answers a few small GETs from people and checks, so a minimal
``asyncio.start_server`` handler (one request per connection, ``Connection: close``) does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["HttpServer", "Response", "json_response"]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip
_MAX_HEADER_BYTES = 16384


@dataclass(frozen=True)
class Response:
    """An HTTP response."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


def json_response(obj: Any, status: int = 200) -> Response:
    """A JSON response."""
    return Response(status, json.dumps(obj).encode(), "application/json")


#: A route: (query parameters, each the last value given) -> Response.
Handler = Callable[[dict[str, str]], Awaitable[Response]]


class HttpServer:
    """Serves GET routes on ``host:port`` (port 0 = a free port; see :attr:`port`)."""

    def __init__(self, routes: dict[str, Handler], *, host: str = "127.0.0.1", port: int = 0):
        self.routes = routes
        self.host = host
        self.port = port
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> HttpServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            if len(head) > _MAX_HEADER_BYTES:
                resp = Response(400, b"request header too large\n")
            else:
                resp = await self._dispatch(head)
            reason = _REASONS.get(resp.status, "OK")
            writer.write(
                f"HTTP/1.1 {resp.status} {reason}\r\nContent-Type: {resp.content_type}\r\n"
                f"Content-Length: {len(resp.body)}\r\nConnection: close\r\n\r\n".encode()
                + resp.body
            )
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dispatch(self, head: bytes) -> Response:
        try:
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        except ValueError:
            return Response(400, b"malformed request line\n")
        if method not in ("GET", "HEAD"):
            return Response(405, b"only GET is supported\n")
        parts = urlsplit(target)
        handler = self.routes.get(parts.path)
        if handler is None:
            known = ", ".join(sorted(self.routes))
            return Response(404, f"no route {parts.path}; routes: {known}\n".encode())
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            return await handler(query)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        except Exception as exc:  # a bad query must not take the service down
            return json_response({"error": f"{type(exc).__name__}: {exc}"}, 500)
