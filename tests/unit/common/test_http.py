"""The one HTTP server of the services: the parts both handler styles share (real socket)."""

from __future__ import annotations

import asyncio

import pytest

from services.common.http import HttpServer, Response, http_host, json_response


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def test_head_sends_no_body_for_either_handler_style() -> None:
    async def records(q: dict[str, str]) -> Response:
        return json_response({"q": q})

    def plain() -> Response:
        return Response(200, b"hello\n")

    async with HttpServer({"/records": records, "/plain": plain}) as srv:
        for path, length in ((b"/records?a=1", b"17"), (b"/plain", b"6")):
            head = await _raw(srv.port, b"HEAD " + path + b" HTTP/1.1\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"Content-Length: " + length + b"\r\n" in head
            assert head.endswith(b"\r\n\r\n")  # headers only
        got = await _raw(srv.port, b"GET /records?a=1&a=2&b= HTTP/1.1\r\n\r\n")
        assert got.endswith(b'{"q": {"a": "2", "b": ""}}')


async def test_value_error_is_400_only_where_the_query_is_read() -> None:
    async def strict(q: dict[str, str]) -> Response:
        raise ValueError("limit='x': expected an integer")

    def buggy() -> Response:
        raise ValueError("a bug, not the client's fault")

    async with HttpServer({"/strict": strict, "/buggy": buggy}) as srv:
        strict_resp = await _raw(srv.port, b"GET /strict?limit=x HTTP/1.1\r\n\r\n")
        assert strict_resp.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"expected an integer" in strict_resp
        buggy_resp = await _raw(srv.port, b"GET /buggy HTTP/1.1\r\n\r\n")
        assert buggy_resp.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")


def test_http_host_defaults_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QIKI_HTTP_HOST", raising=False)
    assert http_host() == "127.0.0.1"
    monkeypatch.setenv("QIKI_HTTP_HOST", "0.0.0.0")
    assert http_host() == "0.0.0.0"
