"""Helpers of the pull consumer: ack-subject parsing, the fast header parsers, the inbox
fast path."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from services.registrar.pull import (
    Delivered,
    install_fast_header_parser,
    install_inbox_fast_path,
    parse_ack_subject,
    parse_header_lines,
    parse_raw_headers,
    remove_inbox_fast_path,
)


def test_parse_ack_subject_v1_and_v2() -> None:
    v1 = "$JS.ACK.QIKI_EVENTS_V1.registrar-events.3.1234.99.1795730658010785600.7"
    assert parse_ack_subject(v1) == ("QIKI_EVENTS_V1", 1234, 3)
    v2 = "$JS.ACK.hub.ACCHASH.QIKI_RADAR_V1.registrar-radar.1.42.40.1795730658010785600.0.tok"
    assert parse_ack_subject(v2) == ("QIKI_RADAR_V1", 42, 1)
    assert parse_ack_subject(None) == (None, None, 0)
    assert parse_ack_subject("_INBOX.abc") == (None, None, 0)
    assert parse_ack_subject("$JS.ACK.S.C.x.y.z.t.p") == (None, None, 0)


_line = st.tuples(
    st.binary(max_size=12) | st.sampled_from([b"ce-id", b"Nats-Msg-Id", b" ce-type ", b"a b",
                                              b"\xc3\xa9", b"x\x1c", b""]),
    st.sampled_from([b":", b": ", b":\t", b""]),
    st.binary(max_size=16) | st.sampled_from([b"1.0", b" v ", b"\xff\xfe", b"caf\xc3\xa9"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_line, max_size=8))
def test_fast_header_parser_matches_nats_py(lines: list[tuple[bytes, bytes, bytes]]) -> None:
    raw = b"\r\n".join(n + s + v for n, s, v in lines) + b"\r\n\r\n"
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


def test_install_shadows_only_that_client() -> None:
    nc, other = Client(), Client()
    assert install_fast_header_parser(nc)
    assert nc._parse_header_lines is parse_header_lines
    assert other._parse_header_lines is not parse_header_lines


_status = st.sampled_from([b"", b" 408 Request Timeout", b" 404 No Messages", b" 100",
                           b" 409 Exceeded MaxWaiting", b" 100 Idle Heartbeat", b" abc"])


@settings(max_examples=300, deadline=None)
@given(_status, st.lists(_line, max_size=6))
def test_raw_header_blocks_parse_like_nats_py(status: bytes, lines: list[Any]) -> None:
    """parse_raw_headers (the inbox fast path) == nats-py's Client._process_headers."""
    body = b"".join(n + s + v + b"\r\n" for n, s, v in lines)
    raw = b"NATS/1.0" + status + b"\r\n" + body + b"\r\n"
    nc = Client()
    try:
        expected = asyncio.run(nc._process_headers(raw))
    except UnicodeDecodeError:  # a status description that is not UTF-8: same error
        with pytest.raises(UnicodeDecodeError):
            parse_raw_headers(raw)
        return
    assert parse_raw_headers(raw) == expected
    assert Delivered("s", "r", b"", raw).headers == expected
    assert parse_raw_headers(None) is None and parse_raw_headers(b"") is None


def test_inbox_fast_path_takes_only_its_sid() -> None:
    nc = Client()
    got: list[tuple[bytes, bytes, bytes, bytes | None]] = []
    others: list[int] = []

    async def orig(sid: int, *a: Any) -> None:
        others.append(sid)

    nc._process_msg = orig  # type: ignore[method-assign,assignment]
    assert install_inbox_fast_path(nc, 7, lambda *a: got.append(a))

    async def feed() -> None:
        process: Any = nc._process_msg  # nats-py's parser passes None for "no headers"
        await process(7, b"in.x", b"$JS.ACK.a", b"{}", b"NATS/1.0\r\na: b\r\n\r\n")
        await process(8, b"other", b"", b"x", None)
        remove_inbox_fast_path(nc, 7)
        await process(7, b"in.x", b"", b"late", None)

    asyncio.run(feed())
    assert got == [(b"in.x", b"$JS.ACK.a", b"{}", b"NATS/1.0\r\na: b\r\n\r\n")]
    assert others == [8, 7]
    assert nc.stats["in_msgs"] == 1


def test_line_cache_keeps_repeating_lines_only() -> None:
    from services.registrar.pull import _LineCache

    cache = _LineCache(max_lines=100, max_misses=8)
    import services.registrar.pull as pull

    old = pull._LINES
    pull._LINES = cache
    try:
        for i in range(500):
            raw = (f"ce-id: {i}\r\nce-source: urn:x\r\nce-type: t{i % 3}\r\n\r\n").encode()
            assert parse_header_lines(raw) == Client._parse_header_lines(raw)
    finally:
        pull._LINES = old
    # ids stopped being cached after 8 distinct values; source and the 3 types stay.
    assert sum(1 for line in cache.lines if line.startswith(b"ce-id")) <= 8
    assert b"ce-source: urn:x" in cache.lines and b"ce-type: t2" in cache.lines
    assert len(cache.lines) <= 100


_wire_msg = st.tuples(
    st.sampled_from([1, 2]),  # sid 1 takes the fast path, 2 goes through nats-py
    st.booleans(),  # with a reply subject
    st.binary(max_size=12).filter(lambda b: b"\r\n" not in b),  # header block body
    st.binary(max_size=20),  # payload
    st.booleans(),  # followed by +OK
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_wire_msg, max_size=12), st.lists(st.integers(1, 40), max_size=20))
def test_batch_parser_delivers_like_nats_py(msgs: list[Any], cuts: list[int]) -> None:
    """Any protocol stream, cut into reads anywhere: each message reaches its handler once, in
    order, with the same parts nats-py's own parser gives."""
    from nats.protocol.parser import Parser

    wire = b""
    expected: list[tuple[Any, ...]] = []
    for sid, has_reply, hbody, payload, ok in msgs:
        headers = b"NATS/1.0\r\n" + (b"X: " + hbody.replace(b"\n", b"") + b"\r\n" if hbody
                                     else b"") + b"\r\n"
        reply = b"_INBOX.r" if has_reply else b""
        line = b"HMSG in.x %d %s%d %d\r\n" % (sid, reply + b" " if reply else b"",
                                              len(headers), len(headers) + len(payload))
        wire += line + headers + payload + b"\r\n" + (b"+OK\r\n" if ok else b"")
        expected.append((sid, b"in.x", reply, payload, headers))
    got: list[tuple[Any, ...]] = []
    nc = Client()
    nc._ps = Parser(nc)

    async def slow(sid: int, subject: bytes, reply: bytes, data: bytes, hdr: Any) -> None:
        got.append((sid, subject, reply, data, hdr))

    nc._process_msg = slow  # type: ignore[method-assign,assignment]
    assert install_inbox_fast_path(nc, 1, lambda *a: got.append((1, *a)))

    async def feed() -> None:
        pos = 0
        for c in cuts:
            await nc._ps.parse(wire[pos : pos + c])
            pos += c
        await nc._ps.parse(wire[pos:])

    asyncio.run(feed())
    assert got == expected
    assert nc.stats["in_msgs"] == sum(1 for m in msgs if m[0] == 1)
