"""The tiny HTTP server (a real socket on 127.0.0.1)."""

from __future__ import annotations

import asyncio

from services.common.http import HttpServer, Response, json_response


async def _get(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


async def test_routes_errors_and_query_params() -> None:
    seen: list[dict[str, str]] = []

    async def records(q: dict[str, str]) -> Response:
        seen.append(q)
        if q.get("limit") == "x":
            raise ValueError("limit='x': expected an integer")
        return json_response({"ok": True})

    async def boom(q: dict[str, str]) -> Response:
        raise RuntimeError("kaput")

    async with HttpServer({"/records": records, "/boom": boom}) as srv:
        assert srv.port > 0 and srv.url.startswith("http://127.0.0.1:")
        status, body = await _get(srv.port, b"GET /records?code=210&id=a%20b HTTP/1.1\r\n\r\n")
        assert (status, body) == (200, b'{"ok": true}')
        assert seen[-1] == {"code": "210", "id": "a b"}
        status, body = await _get(srv.port, b"GET /records?limit=x HTTP/1.1\r\n\r\n")
        assert status == 400 and b"expected an integer" in body
        status, body = await _get(srv.port, b"GET /nope HTTP/1.1\r\n\r\n")
        assert status == 404 and b"/records" in body
        status, _ = await _get(srv.port, b"POST /records HTTP/1.1\r\n\r\n")
        assert status == 405
        status, body = await _get(srv.port, b"GET /boom HTTP/1.1\r\n\r\n")
        assert status == 500 and b"kaput" in body
        status, _ = await _get(srv.port, b"garbage\r\n\r\n")
        assert status == 400
