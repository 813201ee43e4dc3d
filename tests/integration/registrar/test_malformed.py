"""Hypothesis-generated bad input at the running registrar, interleaved with valid events.

Issue 2, "Done when": it stays up, each malformed message is stored with a rejection code and
dead-lettered, every valid one is stored exactly once.

Hypothesis generates the corpus (>= 1,000 malformed messages of every kind) up front; the
messages are then published to one running registrar process, so its I/O stays out of
Hypothesis' example loop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from harness.broker import NatsServer
from services.common.cloudevents import new_event, to_binary
from services.common.codes import RegistrarCode as C

from .conftest import RegistrarProcess
from .test_registrar import read, wait_drained, wait_for

pytestmark = pytest.mark.timeout(240)

MAX_BYTES = 2048
N_MALFORMED = 1000
SUBJECT = "qiki.events.v1.sensor"

# (kind, headers or None, payload, allowed codes); allowed is empty for a valid event.
Item = tuple[str, dict[str, str] | None, bytes, frozenset[int]]

_printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
_value = st.text(alphabet=_printable, max_size=24)
_name = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,14}", fullmatch=True).filter(
    lambda n: not n.lower().startswith(("ce-", "ce_", "content-type", "nats-"))
)
_json_data = st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=12),
                             max_size=4)


def _valid_headers(data: Any = None) -> tuple[dict[str, str], bytes]:
    headers, body = to_binary(new_event("qiki.sensor.v1.io_ok", "urn:qiki:fuzz:bad", data))
    headers.pop("Nats-Msg-Id")  # malformed messages must not be deduplicated by JetStream
    return headers, body


@st.composite
def valid(draw: st.DrawFn) -> Item:
    headers, body = to_binary(new_event("qiki.sensor.v1.io_ok", "urn:qiki:fuzz",
                                        draw(_json_data)))
    return ("valid", headers, body, frozenset())


@st.composite
def not_cloudevent(draw: st.DrawFn) -> Item:
    headers = draw(st.dictionaries(_name, _value, max_size=4))
    return ("not-cloudevent", headers or None, draw(st.binary(max_size=300)),
            frozenset({C.REJECTED_NOT_CLOUDEVENT}))


@st.composite
def wrong_specversion(draw: st.DrawFn) -> Item:
    headers, body = _valid_headers(draw(_json_data))
    headers["ce-specversion"] = draw(st.from_regex(r"[02-9]\.[0-9]{1,2}|v[0-9]|1\.0\.[0-9]|0\.3",
                                                   fullmatch=True))
    return ("specversion", headers, body, frozenset({C.REJECTED_SPECVERSION}))


@st.composite
def missing_attribute(draw: st.DrawFn) -> Item:
    headers, body = _valid_headers(draw(_json_data))
    names = draw(st.sets(st.sampled_from(["ce-id", "ce-source", "ce-type", "ce-specversion"]),
                         min_size=1))
    empty = draw(st.booleans())
    for n in names:
        if empty:
            headers[n] = ""
        else:
            del headers[n]
    return ("missing-attribute", headers, body, frozenset({C.REJECTED_MISSING_ATTRIBUTE}))


@st.composite
def bad_data(draw: st.DrawFn) -> Item:
    headers, _ = _valid_headers()
    body = b"{" + draw(st.binary(max_size=200))  # never valid JSON: an unclosed object
    return ("bad-data", headers, body, frozenset({C.REJECTED_BAD_DATA}))


@st.composite
def oversized(draw: st.DrawFn) -> Item:
    headers, _ = _valid_headers()
    n = draw(st.integers(MAX_BYTES + 1, MAX_BYTES + 3000))
    body = json.dumps("x" * n).encode()
    return ("oversized", headers, body, frozenset({C.REJECTED_OVERSIZED}))


@st.composite
def bad_header_encoding(draw: st.DrawFn) -> Item:
    headers, body = _valid_headers(draw(_json_data))
    bad = draw(st.sampled_from(["%", "%G", "%zz", "%C0%A0", "%FF", "%E2%82", "%ED%A0%80", "%1"]))
    attr = draw(st.sampled_from(["ce-id", "ce-source", "ce-type", "ce-subject"]))
    prefix = draw(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True))
    headers[attr] = prefix + bad
    return ("header-encoding", headers, body, frozenset({C.REJECTED_HEADER_ENCODING}))


@st.composite
def legacy_headers(draw: st.DrawFn) -> Item:
    headers, body = _valid_headers(draw(_json_data))
    legacy = {(k.replace("ce-", "ce_", 1) if k.startswith("ce-") else k): v
              for k, v in headers.items()}
    keep_one = draw(st.booleans())  # some producers mixed both styles
    if keep_one:
        legacy["ce-subject"] = "mixed"
    return ("legacy-headers", legacy, body, frozenset({C.REJECTED_LEGACY_HEADERS}))


@st.composite
def structured_garbage(draw: st.DrawFn) -> Item:
    obj = draw(st.dictionaries(st.text(max_size=8).filter(lambda k: k != "id"),
                               _value, max_size=5))
    body = draw(st.sampled_from([
        b"not json at all",
        b"[1, 2, 3]",
        b"42",
        json.dumps(obj).encode(),
        json.dumps({**obj, "specversion": "1.0", "source": "urn:x", "type": "t"}).encode(),
    ]))
    headers = {"Content-Type": "application/cloudevents+json"}
    return ("structured", headers, body, frozenset({
        C.REJECTED_NOT_CLOUDEVENT, C.REJECTED_MISSING_ATTRIBUTE, C.REJECTED_SPECVERSION,
        C.REJECTED_INVALID_ATTRIBUTE, C.REJECTED_BAD_DATA}))


ANY_MESSAGE = st.one_of(valid(), not_cloudevent(), wrong_specversion(), missing_attribute(),
                        bad_data(), oversized(), bad_header_encoding(), legacy_headers(),
                        structured_garbage())


def generate_corpus(n_malformed: int) -> list[Item]:
    """Let Hypothesis generate message lists until there are ``n_malformed`` bad ones."""
    corpus: list[Item] = []

    @settings(max_examples=40, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(ANY_MESSAGE, min_size=20, max_size=40))
    def collect(items: list[Item]) -> None:
        corpus.extend(items)

    while sum(1 for i in corpus if i[0] != "valid") < n_malformed:
        collect()
    return corpus


async def test_malformed_messages_are_rejected_dead_lettered_and_valid_ones_stored_once(
    server: NatsServer, js_conn: tuple[Any, Any], db_path: Path
) -> None:
    nc, js = js_conn
    corpus = generate_corpus(N_MALFORMED)
    kinds = {k for k, *_ in corpus}
    assert kinds >= {"valid", "not-cloudevent", "specversion", "missing-attribute", "bad-data",
                     "oversized", "header-encoding", "legacy-headers", "structured"}

    reg = RegistrarProcess(server.client_url, db_path,
                           extra_args=["--max-bytes", str(MAX_BYTES), "--batch", "200"])
    async with reg.proc:
        malformed: dict[int, Item] = {}
        valid_ids: set[str] = set()
        for item in corpus:
            kind, headers, body, _ = item
            ack = await js.publish(SUBJECT, body, headers=headers)
            if kind == "valid":
                assert headers is not None
                valid_ids.add(headers["ce-id"])
            else:
                malformed[int(ack.seq)] = item
        assert len(malformed) >= N_MALFORMED

        await wait_drained(js, "QIKI_EVENTS_V1", "registrar-events")
        assert reg.proc.running, "the registrar must stay up"
        assert (await reg.aget("/healthz"))["status"] == "ok"

        # Every malformed message: one rejection record, keyed by its stream sequence,
        # with a code its kind allows and a reason.
        rejects = {int(r.event_id): r for r in read(db_path, source="nats-stream:QIKI_EVENTS_V1")}
        missing = sorted(set(malformed) - set(rejects))
        if missing:
            by_seq = {r.stream_seq: r for r in read(db_path) if r.stream_seq in set(missing)}
            detail = [(s, malformed[s][0], malformed[s][1], malformed[s][2][:80], by_seq.get(s))
                      for s in missing[:5]]
            raise AssertionError(f"{len(missing)} malformed messages not rejected: {detail}")
        wrong = [(seq, kind, rejects[seq].code, rejects[seq].reason)
                 for seq, (kind, _, _, allowed) in malformed.items()
                 if rejects[seq].code not in allowed]
        assert not wrong, wrong[:5]
        assert all(r.reason for r in rejects.values())

        # Every valid event: exactly once, as 201.
        stored = read(db_path, source="urn:qiki:fuzz")
        assert len(stored) == len(valid_ids)
        assert {r.event_id for r in stored} == valid_ids
        assert {r.code for r in stored} == {C.SENSOR_IO_OK}

        # Every malformed message was dead-lettered once, outside qiki.events.v1.>.
        dlq = await js.stream_info("QIKI_DLQ_V1")
        assert dlq.state.messages == len(malformed)
        sub = await js.subscribe("qiki.dlq.v1.>", ordered_consumer=True)
        seen: dict[int, dict[str, str]] = {}
        while len(seen) < len(malformed):
            msg = await sub.next_msg(timeout=10)
            assert msg.subject == "qiki.dlq.v1.registrar"
            h = msg.headers or {}
            seq = int(h["Qiki-Dlq-Seq"])
            seen[seq] = h
            assert msg.data == malformed[seq][2], "the raw payload is copied unchanged"
            assert h["Qiki-Dlq-Subject"] == SUBJECT
            assert int(h["Qiki-Dlq-Code"]) == rejects[seq].code
        await sub.unsubscribe()
        assert set(seen) == set(malformed)

        # Per-code metrics add up.
        metrics = await reg.aget("/metrics")
        total = sum(float(line.split()[1]) for line in metrics.splitlines()
                    if line.startswith("qiki_registrar_rejected_total{"))
        assert total == len(malformed)
        _ = nc
    assert reg.proc.exit_code == 0
    await wait_for("nothing", lambda: True)
