"""CloudEvents over NATS: encoding, decoding, validation, mode detection, legacy headers."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from services.common.cloudevents import (
    NATS_MSG_ID,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    CloudEventError,
    Rule,
    check_message,
    detect_mode,
    format_time,
    from_message,
    new_event,
    parse_time,
    to_binary,
    to_message,
    to_structured,
)

SOURCE = "urn:qiki:q-sim-service:radar"
T0 = datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)


def frame_event(**overrides: Any) -> CloudEvent:
    fields: dict[str, Any] = {
        "type": "qiki.radar.v1.Frame",
        "source": SOURCE,
        "data": {"frame_id": 7, "detections": [{"range_m": 120.5, "bearing_deg": 359.9}]},
        "subject": "sensor-1",
        "id": "evt-0001",
        "time": T0,
        "extensions": {"traceid": "abc123"},
    }
    fields.update(overrides)
    return new_event(**fields)


def valid_binary_headers(**changes: str | None) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": SOURCE,
        "ce-type": "qiki.radar.v1.Frame",
        NATS_MSG_ID: "evt-1",
    }
    for key, value in changes.items():
        name = "ce-" + key if key != "msgid" else NATS_MSG_ID
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return headers


def rule_of(headers: dict[str, str] | None, payload: bytes = b"", **kw: Any) -> str:
    with pytest.raises(CloudEventError) as info:
        from_message(headers, payload, **kw)
    return info.value.rule


# ---------------------------------------------------------------- building events


def test_new_event_defaults() -> None:
    before = datetime.now(UTC)
    ev = new_event("qiki.events.v1.Power", "urn:qiki:power", {"soc": 0.5})
    assert uuid.UUID(ev.id).version == 4
    assert ev.specversion == "1.0"
    assert ev.time is not None and ev.time.tzinfo is not None
    assert before - timedelta(seconds=1) <= ev.time <= datetime.now(UTC) + timedelta(seconds=1)
    assert ev.datacontenttype == "application/json"
    assert ev.data == b'{"soc":0.5}'
    assert ev.json() == {"soc": 0.5}


def test_new_event_data_kinds() -> None:
    class Frame(BaseModel):
        frame_id: int

    assert new_event("t", SOURCE, Frame(frame_id=3)).json() == {"frame_id": 3}
    raw = new_event("t", SOURCE, b"\x00\xff", datacontenttype="application/octet-stream")
    assert raw.data == b"\x00\xff"
    text = new_event("t", SOURCE, "h\u00e9", datacontenttype="text/plain")
    assert text.data == "h\u00e9".encode()
    assert new_event("t", SOURCE, "s").data == b'"s"'  # JSON content type: a JSON string
    assert new_event("t", SOURCE).data == b""


def test_new_event_extension_values_become_canonical_strings() -> None:
    ev = new_event("t", SOURCE, extensions={"n": 42, "flag": True, "off": False, "s": "x"})
    assert ev.extensions == {"n": "42", "flag": "true", "off": "false", "s": "x"}
    with pytest.raises(CloudEventError) as info:
        new_event("t", SOURCE, extensions={"ratio": 0.5})
    assert info.value.rule == "attribute-type"


@pytest.mark.parametrize(
    ("kwargs", "rule", "attribute"),
    [
        ({"type": ""}, "missing-attribute", "type"),
        ({"source": ""}, "missing-attribute", "source"),
        ({"id": ""}, "missing-attribute", "id"),
        ({"source": "not a uri"}, "invalid-uri", "source"),
        ({"subject": ""}, "empty-attribute", "subject"),
        ({"subject": "bell\x07"}, "invalid-string", "subject"),
        ({"dataschema": "schemas/frame.json"}, "invalid-uri", "dataschema"),
        ({"datacontenttype": "json"}, "invalid-media-type", "datacontenttype"),
        ({"extensions": {"TraceId": "x"}}, "extension-name", "TraceId"),
        ({"extensions": {"a" * 21: "x"}}, "extension-name", "a" * 21),
        ({"extensions": {"trace_id": "x"}}, "extension-name", "trace_id"),
        ({"extensions": {"data": "x"}}, "extension-name", "data"),
        ({"extensions": {"subject": "x"}}, "extension-name", "subject"),
        ({"time": datetime(2026, 1, 1)}, "invalid-time", "time"),
    ],
)
def test_new_event_rejects_invalid_attributes(
    kwargs: dict[str, Any], rule: str, attribute: str
) -> None:
    with pytest.raises(CloudEventError) as info:
        frame_event(**kwargs)
    assert info.value.rule == rule
    assert info.value.attribute == attribute


def test_hash_is_identity_and_equality_is_full() -> None:
    a = frame_event()
    b = frame_event(subject="other")
    assert hash(a) == hash(b)
    assert a != b
    assert len({a, frame_event()}) == 1


def test_json_of_non_json_data_is_bad_data() -> None:
    ev = new_event("t", SOURCE, b"{oops", datacontenttype="application/octet-stream")
    with pytest.raises(CloudEventError) as info:
        ev.json()
    assert info.value.rule == "bad-data"


# ---------------------------------------------------------------- time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31T12:00:00Z", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31t12:00:00z", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31T12:00:00.5+02:00", datetime(2026, 1, 31, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2026-01-31T12:00:00.123456789Z", datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_time_accepts_rfc3339(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-31",
        "2026-01-31 12:00:00Z",
        "2026-01-31T12:00:00",  # no offset
        "2026-02-30T00:00:00Z",
        "2026-01-31T12:00:00+25:00",
        "yesterday",
        "",
    ],
)
def test_parse_time_rejects_non_rfc3339(text: str) -> None:
    with pytest.raises(ValueError, match="time"):
        parse_time(text)


def test_format_time() -> None:
    assert format_time(T0) == "2026-01-31T12:00:00.123456Z"
    assert format_time(datetime(2026, 1, 31, tzinfo=timezone(timedelta(hours=-5)))) == (
        "2026-01-31T00:00:00-05:00"
    )
    with pytest.raises(CloudEventError):
        format_time(datetime(2026, 1, 31))


# ---------------------------------------------------------------- binary mode


def test_binary_headers_follow_the_binding() -> None:
    ev = frame_event(
        subject="Euro \u20ac \U0001f600",
        dataschema="https://qiki.example/schemas/frame.json",
    )
    headers, payload = to_binary(ev)
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": "evt-0001",
        "ce-source": SOURCE,
        "ce-type": "qiki.radar.v1.Frame",
        "ce-time": "2026-01-31T12:00:00.123456Z",
        "ce-subject": "Euro%20%E2%82%AC%20%F0%9F%98%80",
        "ce-datacontenttype": "application/json",
        "ce-dataschema": "https://qiki.example/schemas/frame.json",
        "ce-traceid": "abc123",
        "Nats-Msg-Id": "evt-0001",
    }
    # datacontenttype travels as ce-datacontenttype, never Content-Type: a Content-Type of
    # application/cloudevents* would switch the receiver to structured mode.
    assert not any(k.lower() == "content-type" for k in headers)
    assert payload == ev.data
    assert from_message(headers, payload) == ev


def test_binary_header_names_are_case_insensitive() -> None:
    headers = {"CE-SpecVersion": "1.0", "Ce-Id": "1", "ce-SOURCE": "/s", "CE-TYPE": "t"}
    headers["CE-TraceId"] = "x"
    ev = from_message(headers, b"")
    assert (ev.id, ev.source, ev.type, ev.extensions) == ("1", "/s", "t", {"traceid": "x"})


def test_binary_accepts_content_type_when_ce_datacontenttype_is_absent() -> None:
    ev = from_message(valid_binary_headers() | {"Content-Type": "text/plain"}, b"hi")
    assert ev.datacontenttype == "text/plain"


event_strings = st.text(
    alphabet=st.characters(categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=30
)


@st.composite
def events(draw: st.DrawFn) -> CloudEvent:
    kind = draw(st.sampled_from(["json", "bytes", "text", "none"]))
    if kind == "json":
        data: Any = draw(
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                ),
                max_leaves=8,
            )
        )
        content_type: str | None = "application/json"
    elif kind == "bytes":
        data, content_type = draw(st.binary(min_size=1, max_size=40)), "application/octet-stream"
    elif kind == "text":
        data, content_type = draw(event_strings), "text/plain; charset=utf-8"
    else:
        data, content_type = None, None
    return new_event(
        draw(event_strings),
        draw(st.sampled_from([SOURCE, "/qiki/radar", "https://qiki.example/x?y=1#z"])),
        data,
        id=draw(event_strings),
        subject=draw(st.none() | event_strings),
        time=draw(
            st.datetimes(
                min_value=datetime(1970, 1, 1),
                max_value=datetime(2200, 1, 1),
                timezones=st.just(UTC),
            )
        ),
        datacontenttype=content_type,
        extensions=draw(
            st.dictionaries(
                st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True).filter(
                    lambda n: (
                        n
                        not in {"id", "source", "type", "specversion", "time", "subject", "data"}
                        | {"datacontenttype", "dataschema"}
                    )
                ),
                event_strings,
                max_size=3,
            )
        ),
    )


@settings(max_examples=150, deadline=None)
@given(events(), st.sampled_from(["binary", "structured"]))
def test_any_valid_event_round_trips(ev: CloudEvent, mode: str) -> None:
    headers, payload = to_message(ev, mode)  # type: ignore[arg-type]
    assert headers[NATS_MSG_ID] == ev.id
    assert detect_mode(headers) == mode
    assert from_message(headers, payload) == ev
    assert check_message(headers, payload) == []


# ---------------------------------------------------------------- structured mode


def test_structured_json_data_is_embedded() -> None:
    ev = frame_event()
    headers, payload = to_structured(ev)
    assert headers == {"Content-Type": STRUCTURED_CONTENT_TYPE, NATS_MSG_ID: "evt-0001"}
    body = json.loads(payload)
    assert body["data"] == {"frame_id": 7, "detections": [{"range_m": 120.5, "bearing_deg": 359.9}]}
    assert "data_base64" not in body
    assert body["traceid"] == "abc123"
    assert body["time"] == "2026-01-31T12:00:00.123456Z"
    assert from_message(headers, payload) == ev


def test_structured_binary_data_uses_data_base64() -> None:
    ev = new_event("t", SOURCE, b"\x00\x01\xfe", datacontenttype="application/octet-stream")
    headers, payload = to_structured(ev)
    body = json.loads(payload)
    assert body["data_base64"] == base64.b64encode(b"\x00\x01\xfe").decode()
    assert "data" not in body
    assert from_message(headers, payload).data == b"\x00\x01\xfe"


def test_structured_text_data_is_a_string() -> None:
    ev = new_event("t", SOURCE, "caf\u00e9", datacontenttype="text/plain")
    body = json.loads(to_structured(ev)[1])
    assert body["data"] == "caf\u00e9"


def _structured(
    body: Any, content_type: str = STRUCTURED_CONTENT_TYPE
) -> tuple[dict[str, str], bytes]:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {"Content-Type": content_type}, payload


BODY = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}


def test_structured_extension_numbers_and_booleans_are_canonical_strings() -> None:
    ev = from_message(*_structured(BODY | {"n": 5, "ok": True, "subject": None}))
    assert ev.extensions == {"n": "5", "ok": "true"}
    assert ev.subject is None


def test_structured_content_type_matches_case_insensitively_with_parameters() -> None:
    headers, payload = _structured(BODY, "Application/CloudEvents+JSON; charset=utf-8")
    assert detect_mode(headers) == "structured"
    assert from_message(headers, payload).id == "1"


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b"not json", "not-cloudevent"),
        ([1, 2], "not-cloudevent"),
        (BODY | {"data": 1, "data_base64": "AA=="}, "bad-data"),
        (BODY | {"data_base64": "***"}, "bad-data"),
        (BODY | {"id": 17}, "attribute-type"),
        (BODY | {"ratio": 0.5}, "attribute-type"),
        (BODY | {"specversion": "0.3"}, "specversion"),
        ({k: v for k, v in BODY.items() if k != "type"}, "missing-attribute"),
        (BODY | {"time": "noon"}, "invalid-time"),
    ],
)
def test_structured_errors(body: Any, rule: str) -> None:
    assert rule_of(*_structured(body)) == rule


def test_structured_batch_is_not_supported() -> None:
    headers, payload = _structured([BODY], "application/cloudevents-batch+json")
    assert rule_of(headers, payload) == "not-cloudevent"


# ---------------------------------------------------------------- mode detection


@pytest.mark.parametrize(
    ("headers", "mode"),
    [
        (None, "none"),
        ({}, "none"),
        ({"Nats-Msg-Id": "1"}, "none"),
        ({"Content-Type": "application/json"}, "none"),
        ({"ce-id": "1"}, "binary"),
        ({"CE-ID": "1", "Content-Type": "application/json"}, "binary"),
        ({"Content-Type": "application/cloudevents+json"}, "structured"),
        ({"content-type": "APPLICATION/CLOUDEVENTS+JSON", "ce-id": "1"}, "structured"),
        ({"ce_id": "1", "ce_type": "t"}, "legacy"),
        ({"ce_id": "1", "ce-id": "1"}, "binary"),
    ],
)
def test_detect_mode(headers: dict[str, str] | None, mode: str) -> None:
    assert detect_mode(headers) == mode


# ---------------------------------------------------------------- decoder errors


@pytest.mark.parametrize(
    ("changes", "rule", "attribute"),
    [
        ({"id": None}, "missing-attribute", "id"),
        ({"source": None}, "missing-attribute", "source"),
        ({"type": None}, "missing-attribute", "type"),
        ({"specversion": None}, "missing-attribute", "specversion"),
        ({"id": ""}, "missing-attribute", "id"),
        ({"specversion": "0.3"}, "specversion", "specversion"),
        ({"subject": "%C0%A0"}, "header-encoding", "subject"),
        ({"subject": "%G1"}, "header-encoding", "subject"),
        ({"subject": "%0A"}, "invalid-string", "subject"),
        ({"subject": ""}, "empty-attribute", "subject"),
        ({"time": "2026-01-31"}, "invalid-time", "time"),
        ({"source": "%20has%20space"}, "invalid-uri", "source"),
        ({"dataschema": "relative/schema.json"}, "invalid-uri", "dataschema"),
        ({"datacontenttype": "not-a-media-type"}, "invalid-media-type", "datacontenttype"),
        ({"averyveryverylongextension": "x"}, "extension-name", "averyveryverylongextension"),
        ({"trace_id": "x"}, "extension-name", "trace_id"),
    ],
)
def test_binary_decoder_errors_name_rule_and_attribute(
    changes: dict[str, str | None], rule: str, attribute: str
) -> None:
    with pytest.raises(CloudEventError) as info:
        from_message(valid_binary_headers(**changes), b"")
    err = info.value
    assert (err.rule, err.attribute) == (rule, attribute)
    assert err.violation.rule == rule
    assert isinstance(err, ValueError)


def test_not_a_cloudevent() -> None:
    assert rule_of(None, b"{}") == "not-cloudevent"
    with pytest.raises(CloudEventError, match="Nats-Msg-Id"):
        from_message({"Nats-Msg-Id": "1"}, b"{}")  # names the headers it did see


def test_bad_json_data_is_bad_data_unless_not_checked() -> None:
    headers = valid_binary_headers(datacontenttype="application/json")
    assert rule_of(headers, b"{not json") == "bad-data"
    assert from_message(headers, b"{not json", check_data=False).data == b"{not json"
    # Without a JSON content type the payload is opaque bytes.
    assert from_message(valid_binary_headers(), b"{not json").data == b"{not json"


def test_oversized() -> None:
    assert rule_of(valid_binary_headers(), b"x" * 11, max_size=10) == "oversized"
    assert from_message(valid_binary_headers(), b"x" * 10, max_size=10).data == b"x" * 10


def test_duplicate_attribute_in_different_case() -> None:
    headers = valid_binary_headers() | {"CE-ID": "other"}
    assert rule_of(headers) == "duplicate-attribute"


# ---------------------------------------------------------------- legacy underscore headers

LEGACY = {
    "ce_specversion": "1.0",
    "ce_id": "legacy-1",
    "ce_source": "urn:qiki:q-core-agent",
    "ce_type": "qiki.events.v1.Sensor",
    "ce_subject": "hull%20temp",
}


def test_legacy_headers_are_rejected_with_explanation() -> None:
    with pytest.raises(CloudEventError) as info:
        from_message(LEGACY, b"")
    err = info.value
    assert err.rule == "legacy-underscore-headers"
    assert "original QIKI platform" in str(err)
    assert "ce-" in str(err) and "ce_id" in str(err)


def test_legacy_headers_decode_when_allowed() -> None:
    ev = from_message(LEGACY, b"", legacy_ok=True)
    assert (ev.id, ev.source, ev.type, ev.subject) == (
        "legacy-1",
        "urn:qiki:q-core-agent",
        "qiki.events.v1.Sensor",
        "hull temp",
    )


def test_legacy_check_reports_one_violation_not_missing_attributes() -> None:
    found = check_message(LEGACY | {NATS_MSG_ID: "legacy-1"}, b"")
    assert [v.rule for v in found] == ["legacy-underscore-headers"]
    assert found[0].value is not None and "ce_id" in found[0].value
    assert check_message(LEGACY | {NATS_MSG_ID: "legacy-1"}, b"", legacy_ok=True) == []


def test_mixed_headers_ce_dash_wins_and_underscores_are_still_reported() -> None:
    headers = valid_binary_headers() | {"ce_id": "old"}
    assert rule_of(headers) == "legacy-underscore-headers"
    assert from_message(headers, b"", legacy_ok=True).id == "evt-1"


# ---------------------------------------------------------------- check_message


def test_check_message_of_a_valid_event_is_empty() -> None:
    assert check_message(*to_binary(frame_event())) == []


def test_check_message_reports_every_violation() -> None:
    headers = {
        "ce-specversion": "0.3",
        "ce-id": "",
        "ce-source": "1bad:source",
        "ce-time": "yesterday",
        "ce-subject": "%zz",
        "ce-Bad_Ext": "x",
        "ce-datacontenttype": "application/json",
        "ce_type": "legacy",
    }
    found = check_message(headers, b"{nope")
    rules = {(v.rule, v.attribute) for v in found}
    assert rules == {
        ("specversion", "specversion"),
        ("missing-attribute", "id"),
        ("missing-attribute", "type"),
        ("invalid-uri", "source"),
        ("invalid-time", "time"),
        ("header-encoding", "subject"),
        ("extension-name", "bad_ext"),
        ("legacy-underscore-headers", "ce_type"),
        ("bad-data", "data"),
        ("nats-msg-id", "Nats-Msg-Id"),
    }
    for v in found:
        assert v.message and isinstance(v.rule, str)
        assert set(v.to_dict()) == {"rule", "attribute", "value", "message"}
    assert next(v for v in found if v.attribute == "time").value == "yesterday"


def test_check_message_nats_msg_id() -> None:
    headers, payload = to_binary(frame_event())
    missing = {k: v for k, v in headers.items() if k != NATS_MSG_ID}
    assert [v.rule for v in check_message(missing, payload)] == ["nats-msg-id"]
    assert check_message(missing, payload, require_msg_id=False) == []
    wrong = headers | {NATS_MSG_ID: "something-else"}
    [violation] = check_message(wrong, payload)
    assert violation.rule == "nats-msg-id" and violation.value == "something-else"


def test_check_message_of_a_non_cloudevent() -> None:
    [violation] = check_message({"foo": "bar"}, b"hello")
    assert violation.rule == "not-cloudevent"


def test_check_message_and_from_message_agree_on_the_first_rule() -> None:
    headers = valid_binary_headers(specversion="2.0", time="bad")
    first = check_message(headers, b"")[0]
    assert rule_of(headers) == first.rule == "specversion"


# ---------------------------------------------------------------- encoding guards


def test_to_binary_refuses_an_invalid_event_unless_told() -> None:
    bad = CloudEvent(id="1", source="/s", type="t", specversion="0.3")
    with pytest.raises(CloudEventError) as info:
        to_binary(bad)
    assert info.value.rule == Rule.SPECVERSION
    headers, _ = to_binary(bad, validate=False)
    assert headers["ce-specversion"] == "0.3"
    assert rule_of(headers) == "specversion"


def test_to_message_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="binary"):
        to_message(frame_event(), "batch")  # type: ignore[arg-type]


# ---------------------------------------------------------------- fast path == general decoder

_NAMES = [
    "ce-id", "ce-source", "ce-type", "ce-specversion", "ce-time", "ce-subject",
    "ce-datacontenttype", "ce-dataschema", "ce-traceid", "CE-ID", "ce-Bad_Name",
    "ce-" + "a" * 21, "ce-data", "ce_id", "content-type", "Nats-Msg-Id",
]  # fmt: skip
_VALUES = [
    "1.0", "0.3", "", "evt-1", "urn:qiki:x", "/qiki/radar", "1bad:source", "not a uri",
    "2026-01-31T12:00:00Z", "2026-13-01T00:00:00Z", "yesterday", "application/json",
    "text/plain", "json", "https://qiki.example/s.json", "relative/s.json", "%C0%A0", "%zz",
    "a%20b", '"quoted"', "%0A", "application/cloudevents+json",
]  # fmt: skip
_BASE = {"ce-id": "evt-1", "ce-source": "/s", "ce-type": "t", "ce-specversion": "1.0"}


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(_NAMES), st.sampled_from(_VALUES) | st.text(max_size=8), max_size=8
    ),
    st.booleans(),
    st.sampled_from([b"", b"{}", b"[1, 2]", b"{bad", b"\xff\xfe"]),
    st.booleans(),
)
def test_fast_path_agrees_with_the_general_decoder(
    changes: dict[str, str], start_valid: bool, payload: bytes, check_data: bool
) -> None:
    from services.common import cloudevents as ce

    headers = (dict(_BASE) if start_valid else {}) | changes
    fast = ce._fast_binary(headers, payload, check_data)
    try:
        general: CloudEvent | None = ce._decode(headers, payload, None, False, check_data, None)
    except CloudEventError:
        general = None
    if fast is not None:
        assert general == fast  # the fast path never accepts what the general one rejects
    found = check_message(headers, payload, check_data=check_data, require_msg_id=False)
    if general is None:
        assert found, "a rejected message has at least one violation"
        with pytest.raises(CloudEventError) as info:
            from_message(headers, payload, check_data=check_data)
        assert info.value.rule in {v.rule for v in found}
    else:
        assert found == []
        assert from_message(headers, payload, check_data=check_data) == general


def test_undecodable_required_header_is_reported_once() -> None:
    found = check_message(valid_binary_headers(id="%zz"), b"", require_msg_id=False)
    assert [(v.rule, v.attribute) for v in found] == [("header-encoding", "id")]


@pytest.mark.parametrize("source", [None, ""])
def test_binary_event_without_source_is_rejected(source: str | None) -> None:
    # The fast binary path once accepted an empty or missing ce-source (found by the
    # registrar's hypothesis test); both decoders must name the missing attribute.
    headers = {"ce-specversion": "1.0", "ce-id": "e1", "ce-type": "t.x",
               "ce-datacontenttype": "application/json", "Nats-Msg-Id": "e1"}
    if source is not None:
        headers["ce-source"] = source
    with pytest.raises(CloudEventError) as info:
        from_message(headers, b"{}")
    assert info.value.attribute == "source"
    assert any(v.attribute == "source" for v in check_message(headers, b"{}"))
