"""publish_event against a real nats-server JetStream stream: both modes, dedup by event id."""

from __future__ import annotations

from typing import Literal

import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from services.common.cloudevents import (
    NATS_MSG_ID,
    check_message,
    detect_mode,
    from_message,
    new_event,
    publish_event,
)

STREAM = "CE_TEST"  # created by the js fixture in conftest.py

SOURCE = "urn:qiki:q-sim-service:radar"


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_event_survives_jetstream_in_both_modes(
    js: JetStreamContext, mode: Literal["binary", "structured"]
) -> None:
    ev = new_event(
        "qiki.radar.v1.Frame",
        SOURCE,
        {"frame_id": 1, "detections": []},
        subject='Euro \u20ac \U0001f600 "quoted" 100%',
        extensions={"traceid": "t-1", "seq": 7},
    )
    ack = await publish_event(js, "ce.test.frames", ev, mode=mode)
    assert ack.stream == STREAM and not ack.duplicate

    stored = await js.get_msg(STREAM, ack.seq)
    headers = dict(stored.headers or {})
    assert headers[NATS_MSG_ID] == ev.id
    assert detect_mode(headers) == mode
    if mode == "binary":
        # What crossed the wire is the percent-encoded ASCII form.
        assert headers["ce-subject"] == ("Euro%20%E2%82%AC%20%F0%9F%98%80%20%22quoted%22%20100%25")
        assert headers["ce-datacontenttype"] == "application/json"
    assert check_message(headers, stored.data or b"") == []
    assert from_message(headers, stored.data or b"") == ev


async def test_same_event_published_twice_is_stored_once(js: JetStreamContext) -> None:
    ev = new_event("qiki.events.v1.Power", "urn:qiki:power", {"soc": 0.42})
    first = await publish_event(js, "ce.test.power", ev)
    again = await publish_event(js, "ce.test.power", ev)  # a retried publish
    assert not first.duplicate
    assert again.duplicate and again.seq == first.seq
    other = await publish_event(js, "ce.test.power", new_event("t", "urn:qiki:power", {}))
    assert not other.duplicate

    info = await js.stream_info(STREAM)
    assert info.state.messages == 2


async def test_dedup_applies_across_modes(js: JetStreamContext) -> None:
    # Same event id: the structured resend of a binary publish is the same event.
    ev = new_event("t", "urn:qiki:power", {"soc": 1.0})
    await publish_event(js, "ce.test.power", ev, mode="binary")
    again = await publish_event(js, "ce.test.power", ev, mode="structured")
    assert again.duplicate
    assert (await js.stream_info(STREAM)).state.messages == 1


async def test_core_subscriber_sees_binary_headers(nc: Client, js: JetStreamContext) -> None:
    # The harness taps subjects with a plain subscription: the contract check must hold there.
    sub = await nc.subscribe("ce.test.tap")
    ev = new_event("t", SOURCE, {"x": 1}, extensions={"traceid": "abc"})
    await publish_event(js, "ce.test.tap", ev)
    msg = await sub.next_msg(timeout=5)
    await sub.unsubscribe()
    assert check_message(msg.headers, msg.data) == []
    assert from_message(msg.headers, msg.data).extensions == {"traceid": "abc"}
