"""Minimal async HTTP/1.0 GET for the nats-server monitoring port (127.0.0.1 only).

The monitoring endpoint is polled many times during startup; a raw asyncio connection keeps
that cheap and adds no HTTP client dependency.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

__all__ = ["HttpError", "get", "get_json", "get_text"]


class HttpError(OSError):
    """The monitoring endpoint could not be reached or answered garbage."""


async def get(host: str, port: int, path: str, *, timeout_s: float = 1.0) -> tuple[int, bytes]:
    """GET ``path``; return (status, body). Raises OSError/TimeoutError when unreachable."""

    async def _do() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode("ascii"))
            data = await reader.read()
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            raise HttpError(f"malformed HTTP answer from {host}:{port}{path}")
        status_line = head.split(b"\r\n", 1)[0].split()
        try:
            status = int(status_line[1])
        except (IndexError, ValueError) as exc:
            raise HttpError(f"malformed HTTP status from {host}:{port}{path}") from exc
        return status, body

    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races
    # with the inner result, leaving a cancelled readiness poller running forever.
    async with asyncio.timeout(timeout_s):
        return await _do()


async def get_json(host: str, port: int, path: str, *, timeout_s: float = 1.0) -> Any:
    """GET ``path`` and decode the JSON body (any status)."""
    _, body = await get(host, port, path, timeout_s=timeout_s)
    try:
        return json.loads(body)
    except ValueError as exc:
        raise HttpError(f"non-JSON answer from {host}:{port}{path}: {body[:200]!r}") from exc


async def get_text(port: int, path: str, *, host: str = "127.0.0.1",
                   timeout_s: float = 10.0) -> tuple[int, str]:
    """GET ``path`` of a local endpoint (a service's health or metrics); (status, text)."""
    status, body = await get(host, port, path, timeout_s=timeout_s)
    return status, body.decode()
