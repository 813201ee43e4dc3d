"""The one tiny asyncio HTTP/1.1 server of the reference services (``/healthz``, ``/metrics``, ...).

The services need a few GET endpoints on 127.0.0.1; a web framework would be a heavy dependency
of the system under test for that, and the stdlib ``http.server`` would need a thread.  One
request per connection (``Connection: close``), GET/HEAD only, bounded request head and read
time so a stuck client cannot pin a task.  Used by the registrar, the lag monitor and the radar
simulator.

A handler is called either with no arguments or, if it declares a parameter, with the query
parameters (each the last value given).  It may be sync or async.  A ``ValueError`` from a
handler that reads the query is the client's fault (400 with ``{"error": ...}``); any other
exception is a bug in the handler (500 with ``{"error": ...}``, logged) and does not take the
service down.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "METRICS_CONTENT_TYPE",
    "Handler",
    "HttpServer",
    "Response",
    "http_host",
    "json_response",
]

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
#: Prometheus text exposition format 0.0.4 (what ``/metrics`` answers with).
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_READ_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Response:
    """What a handler returns."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


def json_response(obj: Any, status: int = 200) -> Response:
    """A JSON response (``application/json``)."""
    return Response(status, json.dumps(obj).encode(), "application/json")


def http_host() -> str:
    """Bind address: 127.0.0.1 unless $QIKI_HTTP_HOST says otherwise (a container: 0.0.0.0)."""
    return os.environ.get("QIKI_HTTP_HOST") or "127.0.0.1"


#: ``() -> Response`` or ``(query) -> Response``, sync or async.
Handler = (
    Callable[[], Awaitable[Response] | Response]
    | Callable[[dict[str, str]], Awaitable[Response] | Response]
)


def _takes_query(handler: Handler) -> bool:
    try:
        return bool(inspect.signature(handler).parameters)
    except (TypeError, ValueError):  # a builtin without a signature: call it bare
        return False


class HttpServer:
    """Serve ``routes`` (path -> handler) on ``host:port`` (0 = a free port).

    Use as an async context manager (or :meth:`start` / :meth:`close`); ``.port`` and ``.url``
    are the bound ones once started.
    """

    def __init__(
        self, routes: Mapping[str, Handler], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        # Decide once per route whether it wants the query, not on every request.
        self.routes = {path: (h, _takes_query(h)) for path, h in routes.items()}
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting and close the listening socket. Idempotent."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2.0)
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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(
                    reader.readuntil(b"\r\n\r\n"), timeout=_READ_TIMEOUT_S
                )
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            head_only = False
            if len(head) > _MAX_REQUEST_BYTES:
                response = Response(400, b"request too large\n")
            else:
                parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
                if len(parts) != 3:
                    response = Response(400, b"bad request line\n")
                elif parts[0] not in ("GET", "HEAD"):
                    response = Response(405, b"GET only\n")
                else:
                    head_only = parts[0] == "HEAD"
                    response = await self._dispatch(parts[1])
            reason = _REASONS.get(response.status, "Unknown")
            writer.write(
                f"HTTP/1.1 {response.status} {reason}\r\n"
                f"Content-Type: {response.content_type}\r\n"
                f"Content-Length: {len(response.body)}\r\n"
                "Connection: close\r\n\r\n".encode("latin-1")
            )
            if not head_only:
                writer.write(response.body)  # a separate write: no copy of a large body
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # client went away; nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dispatch(self, target: str) -> Response:
        url = urlsplit(target)
        route = self.routes.get(url.path)
        if route is None:
            known = ", ".join(sorted(self.routes))
            return Response(404, f"no route {url.path}; routes: {known}\n".encode())
        handler, takes_query = route
        try:
            if takes_query:
                query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                result = cast(Callable[[dict[str, str]], Any], handler)(query)
            else:
                result = cast(Callable[[], Any], handler)()
            return cast(Response, await result if inspect.isawaitable(result) else result)
        except ValueError as exc:
            if not takes_query:
                log.exception("handler for %s failed", url.path)
                return json_response({"error": f"{type(exc).__name__}: {exc}"}, 500)
            return json_response({"error": str(exc)}, 400)  # a bad query parameter
        except Exception as exc:  # a broken handler must not take the service down
            log.exception("handler for %s failed", url.path)
            return json_response({"error": f"{type(exc).__name__}: {exc}"}, 500)
