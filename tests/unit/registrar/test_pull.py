"""Helpers of the pull consumer: ack-subject parsing and the fast header parser."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from services.registrar.pull import (
    install_fast_header_parser,
    parse_ack_subject,
    parse_header_lines,
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
