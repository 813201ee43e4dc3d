"""The registrar's validate-and-code step on real nats-py Msg objects (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.msg import Msg

from services.common.botspec import load_runtime_config
from services.common.cloudevents import new_event, to_binary, to_structured
from services.common.codes import RegistrarCode as C
from services.registrar.service import Registrar, RegistrarOptions


def _msg(headers: dict[str, str] | None, data: bytes, seq: int,
         subject: str = "qiki.events.v1.sensor") -> Msg:
    reply = f"$JS.ACK.QIKI_EVENTS_V1.registrar-events.1.{seq}.{seq}.1795730658010785600.0"
    return Msg(None, subject=subject, reply=reply, data=data, headers=headers)  # type: ignore[arg-type]


@pytest.fixture
def registrar(tmp_path: Path) -> Registrar:
    return Registrar(RegistrarOptions(db_path=tmp_path / "r.db", config=load_runtime_config(),
                                      max_bytes=1000))


def test_valid_binary_and_structured_events(registrar: Registrar) -> None:
    ev = new_event("qiki.radar.v1.Frame", "urn:qiki:q-sim-service:radar",
                   {"frame_id": 1, "sensor_id": "r1", "timestamp": "2026-01-01T00:00:00Z"},
                   subject="lr")
    ev2 = new_event("qiki.sensor.v1.io_failed", "urn:qiki:x", {"n": 2})
    rows, rejects = registrar._build([_msg(*to_binary(ev), 1, "qiki.radar.v1.frames"),
                                      _msg(*to_structured(ev2), 2)])
    assert rejects == []
    (r1, r2) = rows
    assert r1[:6] == (210, ev.source, ev.id, ev.type, "lr", "qiki.radar.v1.frames")
    assert (r1[8], r1[9], r1[10]) == ("QIKI_EVENTS_V1", 1, None)
    assert r2[0] == C.SENSOR_IO_FAILED and r2[2] == ev2.id


def _valid_headers() -> tuple[dict[str, str], bytes]:
    return to_binary(new_event("qiki.sensor.v1.io_ok", "urn:qiki:x", {"a": 1}))


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda h, b: (None, b"hello"), C.REJECTED_NOT_CLOUDEVENT),
        (lambda h, b: ({**h, "ce-specversion": "0.3"}, b), C.REJECTED_SPECVERSION),
        (lambda h, b: ({k: v for k, v in h.items() if k != "ce-source"}, b),
         C.REJECTED_MISSING_ATTRIBUTE),
        (lambda h, b: ({**h, "ce-source": ""}, b), C.REJECTED_MISSING_ATTRIBUTE),
        (lambda h, b: ({**h, "ce-id": ""}, b), C.REJECTED_MISSING_ATTRIBUTE),
        (lambda h, b: (h, b"{not json"), C.REJECTED_BAD_DATA),
        (lambda h, b: (h, b'"' + b"x" * 2000 + b'"'), C.REJECTED_OVERSIZED),
        (lambda h, b: ({**h, "ce-id": "%C0%A0"}, b), C.REJECTED_HEADER_ENCODING),
        (lambda h, b: ({k.replace("ce-", "ce_"): v for k, v in h.items()}, b),
         C.REJECTED_LEGACY_HEADERS),
        (lambda h, b: ({"Content-Type": "application/cloudevents+json"}, b"[1]"),
         C.REJECTED_NOT_CLOUDEVENT),
    ],
)
def test_bad_input_becomes_a_keyed_rejection(registrar: Registrar, mutate, code) -> None:  # type: ignore[no-untyped-def]
    headers, body = mutate(*_valid_headers())
    rows, rejects = registrar._build([_msg(headers, body, 41)])
    assert len(rejects) == 1 and rejects[0].code == code
    (row,) = rows
    assert row[0] == code
    # Keyed by stream position, so a redelivery maps to the same record.
    assert (row[1], row[2]) == ("nats-stream:QIKI_EVENTS_V1", "41")
    assert row[10] and row[10].split(":", 1)[0] in {
        "not-cloudevent", "specversion", "missing-attribute", "bad-data", "oversized",
        "header-encoding", "legacy-underscore-headers"}


def test_data_validator_hook_rejects_with_bad_data(tmp_path: Path) -> None:
    """validate_data (the place for the spec's data contracts) runs on every event that passed
    the envelope checks; raising CloudEventError makes the event a 923 rejection."""
    from services.common.cloudevents import CloudEvent, CloudEventError

    seen: list[str] = []

    def validate(ev: CloudEvent) -> None:
        seen.append(ev.type)
        if b'"a":2' in ev.data.replace(b" ", b""):
            raise CloudEventError("bad-data", "a must be 1", attribute="data")

    reg = Registrar(RegistrarOptions(db_path=tmp_path / "r.db", config=load_runtime_config(),
                                     validate_data=validate))
    good = to_binary(new_event("qiki.sensor.v1.io_ok", "urn:qiki:x", {"a": 1}))
    bad = to_binary(new_event("qiki.sensor.v1.io_ok", "urn:qiki:x", {"a": 2}))
    rows, rejects = reg._build([_msg(*good, 1), _msg(*bad, 2), _msg(None, b"x", 3)])
    assert seen == ["qiki.sensor.v1.io_ok"] * 2  # not called for a non-CloudEvent
    assert [r.code for r in rejects] == [C.REJECTED_BAD_DATA, C.REJECTED_NOT_CLOUDEVENT]
    assert "a must be 1" in rejects[0].reason
    assert rows[0][0] == C.SENSOR_IO_OK
