"""The fused header + envelope parse (issue 13) decides exactly like the general path.

Every message goes through ``Registrar._build`` twice: as a delivered message with its raw
header block (the fused path takes it when it can) and with the fused path switched off (the
general path: parsed headers, ``from_message``, the contract, the code). Rows and rejections
must be identical, whatever the headers and payload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.botspec import load_runtime_config
from services.common.cloudevents import new_event, to_binary
from services.registrar.envelope import EnvelopeParser
from services.registrar.pull import Delivered
from services.registrar.service import Registrar, RegistrarOptions

_CFG = load_runtime_config()


class _Off:
    """Stands in for the EnvelopeParser: the fused path never applies."""

    @staticmethod
    def parse(raw: bytes | None) -> None:
        return None


def _registrars(tmp: Path) -> tuple[Registrar, Registrar]:
    fused = Registrar(RegistrarOptions(db_path=tmp / "a.db", config=_CFG, max_bytes=4000))
    general = Registrar(RegistrarOptions(db_path=tmp / "b.db", config=_CFG, max_bytes=4000))
    general._envelope = _Off()  # type: ignore[assignment]
    return fused, general


def _block(lines: list[tuple[bytes, bytes]]) -> bytes:
    return b"NATS/1.0\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in lines) + b"\r\n"


def _delivered(raw: bytes | None, data: bytes, seq: int,
               subject: str = "qiki.events.v1.sensor") -> Delivered:
    reply = f"$JS.ACK.QIKI_EVENTS_V1.registrar-events.1.{seq}.{seq}.1795730658010785600.0"
    return Delivered(subject, reply, data, raw)


def _same(fused: Registrar, general: Registrar, msgs: list[Delivered]) -> tuple[Any, Any]:
    # Fresh Delivered objects for each side: headers are parsed lazily and cached.
    again = [Delivered(m.subject, m.reply, m.data, m.raw_headers) for m in msgs]
    rows_a, rej_a = fused._build(msgs)
    rows_b, rej_b = general._build(again)
    # stored_at (index 7) is each call's clock
    assert [r[:7] + r[8:] for r in rows_a] == [r[:7] + r[8:] for r in rows_b]
    assert [(r.code, r.reason, r.stream_seq) for r in rej_a] == [
        (r.code, r.reason, r.stream_seq) for r in rej_b
    ]
    return rows_a, rej_a


def _valid(type_: str = "qiki.sensor.v1.IoStatus", data: Any = None,
           **kw: Any) -> list[tuple[bytes, bytes]]:
    ev = new_event(type_, "urn:qiki:test:sensor",
                   data if data is not None else {"sensor_id": "s1", "status": "ok",
                                                  "timestamp": "2026-01-01T00:00:00Z"}, **kw)
    headers, _ = to_binary(ev)
    return [(k.encode(), v.encode()) for k, v in headers.items()]


def test_the_fused_path_stores_what_the_general_path_stores(tmp_path: Path) -> None:
    fused, general = _registrars(tmp_path)
    data = b'{"sensor_id":"s1","status":"ok","timestamp":"2026-01-01T00:00:00Z","frames_sent":1}'
    msgs = [_delivered(_block(_valid(subject=f"s{i}")), data, i) for i in range(1, 50)]
    rows, rejects = _same(fused, general, msgs)
    assert len(rows) == 49 and not rejects
    assert {r[0] for r in rows} == {201}
    # ... and really took the fused path (the parser cached the repeating lines)
    assert fused._envelope._lines


def test_rejections_are_left_to_the_general_path(tmp_path: Path) -> None:
    fused, general = _registrars(tmp_path)
    good = _valid()
    bad_data = b'{"sensor_id":"s1","status":7}'  # breaks the IoStatus contract
    msgs = [
        _delivered(_block(good), bad_data, 1),
        _delivered(_block(good), b"{not json", 2),
        _delivered(_block([(n, b"0.3" if n == b"ce-specversion" else v) for n, v in good]),
                   b"{}", 3),
        _delivered(_block([*good, (b"ce-id", b"again")]), b"{}", 4),
        _delivered(_block([(b"ce_" + n[3:] if n.startswith(b"ce-") else n, v)
                           for n, v in good]), b"{}", 5),
        _delivered(b"NATS/1.0 408 Request Timeout\r\n\r\n", b"x", 6),
        _delivered(None, b"{}", 7),
        _delivered(_block(good), b'"' + b"x" * 5000 + b'"', 8),
    ]
    rows, rejects = _same(fused, general, msgs)
    # every one a rejection record (rows hold those too)
    assert len(rejects) == len(msgs) and all(r.code >= 920 for r in rejects)
    assert all(r[0] >= 920 for r in rows)


_TIMES = [
    b"2026-01-01T00:00:00.123456Z",  # the producers' form: the fused path's own time check
    b"2026-02-30T00:00:00.123456Z",  # no such date
    b"2026-12-31T23:59:60.500000Z",  # a leap second
    b"2026-01-01T25:00:00.123456Z",  # no such hour
    b"2026-01-01T00:00:00.000000Z",  # a zero fraction: isoformat() drops it
    "2026-01-01T00:00:00.12345\u0663Z".encode(),  # a non-ASCII digit
    b"2026-01-01t00:00:00.123456z", b"2026-01-01T00:00:00Z", b"2026-01-01T00:00:00.1+02:00",
    b"2026-01-01T00:00:00.1234567Z", b"2026-01-01 00:00:00.123456Z", b"x",
]


@pytest.mark.parametrize("time_", _TIMES, ids=lambda t: t.decode("utf-8", "replace"))
def test_event_times_decide_alike_on_both_paths(tmp_path: Path, time_: bytes) -> None:
    fused, general = _registrars(tmp_path)
    data = b'{"sensor_id":"s1","status":"ok","timestamp":"2026-01-01T00:00:00Z","frames_sent":1}'
    lines = [(n, time_ if n == b"ce-time" else v) for n, v in _valid()]
    rows, rejects = _same(fused, general, [_delivered(_block(lines), data, 1)])
    if time_ == _TIMES[0]:
        assert not rejects and rows[0][6] == "2026-01-01T00:00:00.123456+00:00"


_NAMES = st.sampled_from([b"ce-id", b"ce-source", b"ce-type", b"ce-specversion", b"ce-time",
                          b"ce-subject", b"ce-datacontenttype", b"ce-dataschema", b"CE-ID",
                          b"ce-ext1", b"ce-Ext", b"ce-data", b"ce-", b"ce_id", b"Content-Type",
                          b"Nats-Msg-Id", b"X-Other", b" ce-type ", b"ce id"])
_VALUES = st.sampled_from([b"", b"1.0", b"0.3", b"urn:x", b"a b", b"%41", b"caf\xc3\xa9",
                           b"\xff", b"2026-01-01T00:00:00Z", b"2026-01-01T00:00:00.123456Z",
                           b"2026-02-30T00:00:00.123456Z", b"2026-12-31T23:59:60.500000Z",
                           b"2026-01-01T00:00:00.000000Z", b"2026-01-01T25:00:00.123456Z",
                           "2026-01-01T00:00:00.12345\u0663Z".encode(),
                           b"2026-01-01t00:00:00+02:00", b"application/json", b"text/plain",
                           b"application/x+json; charset=utf-8", b"http://s/x", b"rel/x",
                           b"qiki.sensor.v1.IoStatus", b"qiki.sensor.v1.io_failed",
                           b"qiki.radar.v1.Frame", b"unknown.type"])
_PAYLOADS = st.sampled_from([
    b"", b"{}", b"[1]", b"{bad", b'"text"', b"\xef\xbb\xbf{}", b"123456789012345678901234567890",
    b'{"sensor_id":"s1","status":"ok","timestamp":"2026-01-01T00:00:00Z","frames_sent":1}',
    b'{"sensor_id":"s1","status":"failed","timestamp":"2026-01-01T00:00:00Z","frames_sent":2}',
    b'{"sensor_id":"s1","status":"weird","timestamp":"2026-01-01T00:00:00Z"}',
    b'{"frame_id":1,"sensor_id":"r1","timestamp":"2026-01-01T00:00:00Z"}',
])


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registrar, Registrar]:
    # One pair for every example: the caches carry lines from example to example, which is
    # also what the registrar's do.
    return _registrars(tmp_path_factory.mktemp("envelope"))


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.sampled_from(["IoStatus", "io_failed", "Frame"]),
    edits=st.lists(st.tuples(st.integers(0, 9), _NAMES, _VALUES), max_size=4),
    drop=st.sets(st.integers(0, 8), max_size=2),
    payload=_PAYLOADS,
)
def test_fused_and_general_paths_agree_on_generated_messages(
    pair: tuple[Registrar, Registrar], base: str, edits: list[tuple[int, bytes, bytes]],
    drop: set[int], payload: bytes,
) -> None:
    fused, general = pair
    type_ = {"IoStatus": "qiki.sensor.v1.IoStatus", "io_failed": "qiki.sensor.v1.io_failed",
             "Frame": "qiki.radar.v1.Frame"}[base]
    lines = [x for i, x in enumerate(_valid(type_, subject="s")) if i not in drop]
    for pos, name, value in edits:
        lines.insert(min(pos, len(lines)), (name, value))
    # Twice: the second message meets the lines the first one left in the caches.
    msgs = [_delivered(_block(lines), payload, 1), _delivered(_block(lines), payload, 2)]
    _same(fused, general, msgs)


def test_parser_caches_are_bounded() -> None:
    p = EnvelopeParser(max_lines=8, max_distinct=2)
    for i in range(50):
        raw = _block([*_valid(subject=f"s{i}"), (f"ce-x{i}".encode(), b"v")])
        assert p.parse(raw) is not None
    assert len(p._lines) <= 8 and len(p._names) <= 8
    with pytest.raises(ValueError, match="max_lines"):
        EnvelopeParser(max_lines=0)
