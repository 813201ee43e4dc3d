"""Interop with the official CloudEvents Python SDK, both of its APIs, in both directions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as CoreCloudEvent
from cloudevents.v1.conversion import to_structured as sdk_to_structured
from cloudevents.v1.http import CloudEvent as SdkCloudEvent
from cloudevents.v1.http import from_json as sdk_from_json

from services.common.cloudevents import (
    STRUCTURED_CONTENT_TYPE,
    check_message,
    from_message,
    new_event,
    to_structured,
)

ATTRS = {
    "id": "sdk-1",
    "source": "urn:qiki:q-sim-service:radar",
    "type": "qiki.radar.v1.Frame",
    "subject": "Euro \u20ac",
    "time": "2026-01-31T12:00:00.250000Z",
    "datacontenttype": "application/json",
    "dataschema": "https://qiki.example/schemas/frame.json",
    "traceid": "abc123",
}
DATA = {"frame_id": 1, "detections": [{"range_m": 10.0, "bearing_deg": 90.0}]}


def _nats_headers(sdk_headers: dict[str, str]) -> dict[str, str]:
    # The SDK speaks HTTP; on NATS the same Content-Type header selects structured mode.
    assert sdk_headers["content-type"].startswith(STRUCTURED_CONTENT_TYPE)
    return {"Content-Type": sdk_headers["content-type"]}


def test_sdk_v1_structured_event_decodes_to_the_same_attributes() -> None:
    event = SdkCloudEvent(dict(ATTRS), DATA)
    headers, body = sdk_to_structured(event)
    ev = from_message(_nats_headers(headers), body)

    assert ev.id == "sdk-1"
    assert ev.source == ATTRS["source"]
    assert ev.type == ATTRS["type"]
    assert ev.specversion == "1.0"
    assert ev.subject == "Euro \u20ac"
    assert ev.time == datetime(2026, 1, 31, 12, 0, 0, 250000, tzinfo=UTC)
    assert ev.datacontenttype == "application/json"
    assert ev.dataschema == ATTRS["dataschema"]
    assert ev.extensions == {"traceid": "abc123"}
    assert ev.json() == DATA
    # The SDK sets no Nats-Msg-Id (it is an HTTP library); everything else is in contract.
    assert [v.rule for v in check_message(_nats_headers(headers), body)] == ["nats-msg-id"]


def test_sdk_v1_binary_data_round_trips_through_data_base64() -> None:
    attrs = ATTRS | {"datacontenttype": "application/octet-stream"}
    headers, body = sdk_to_structured(SdkCloudEvent(attrs, b"\x00\x01\xff"))
    assert "data_base64" in json.loads(body)
    assert from_message(_nats_headers(headers), body).data == b"\x00\x01\xff"


def test_sdk_core_json_format_decodes_to_the_same_attributes() -> None:
    attrs = {k: v for k, v in ATTRS.items() if k != "time"}
    attrs["time"] = datetime(2026, 1, 31, 12, 0, 0, 250000, tzinfo=UTC)
    fmt = JSONFormat()
    body = fmt.write(CoreCloudEvent(attrs, DATA))
    ev = from_message({"Content-Type": fmt.get_content_type()}, body)
    assert (ev.id, ev.source, ev.type, ev.subject, ev.dataschema) == (
        "sdk-1",
        ATTRS["source"],
        ATTRS["type"],
        "Euro \u20ac",
        ATTRS["dataschema"],
    )
    assert ev.time == attrs["time"]
    assert ev.extensions == {"traceid": "abc123"}
    assert ev.json() == DATA


def test_our_structured_event_reads_back_in_the_sdk() -> None:
    ours = new_event(
        ATTRS["type"],
        ATTRS["source"],
        DATA,
        id="ours-1",
        subject="Euro \u20ac",
        time=datetime(2026, 1, 31, 12, tzinfo=UTC),
        extensions={"traceid": "abc123"},
    )
    _, body = to_structured(ours)
    event = sdk_from_json(body)
    assert event["id"] == "ours-1"
    assert event["source"] == ATTRS["source"]
    assert event["subject"] == "Euro \u20ac"
    assert event["traceid"] == "abc123"
    assert event.data == DATA

    core = JSONFormat().read(None, body)
    assert core.get_id() == "ours-1"
    assert core.get_time() == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert core.get_data() == DATA
