"""Deliberately broken messages, one builder per rejection the registrar must handle."""

from __future__ import annotations

import uuid

from harness.scenario.model import MalformedKind

#: Larger than the registrar's default ``--max-bytes`` and under NATS's 1 MiB max_payload.
OVERSIZED_BYTES = 600_000


def malformed_message(kind: MalformedKind, n: int) -> tuple[dict[str, str], bytes]:
    """Headers and payload of malformed message ``n`` of ``kind``.

    Every one carries a unique ``Nats-Msg-Id`` so JetStream's duplicate window does not
    swallow them and each one really reaches the registrar.
    """
    mid = f"malformed-{kind}-{n}-{uuid.uuid4().hex[:8]}"
    base = {
        "Nats-Msg-Id": mid,
        "ce-specversion": "1.0",
        "ce-id": mid,
        "ce-source": "urn:qiki:harness:malformed",
        "ce-type": "qiki.harness.v1.Malformed",
        "ce-datacontenttype": "application/json",
    }
    payload = b'{"n": %d}' % n
    if kind == "not-cloudevent":
        return {"Nats-Msg-Id": mid}, b"just some bytes, no envelope"
    if kind == "specversion":
        base["ce-specversion"] = "0.3"
    elif kind == "missing-attribute":
        del base["ce-type"]
    elif kind == "bad-data":
        payload = b'{"n": '
    elif kind == "oversized":
        payload = b'{"pad": "' + b"x" * OVERSIZED_BYTES + b'"}'
    elif kind == "header-encoding":
        base["ce-source"] = "urn:qiki:%zz:broken"
    elif kind == "legacy-underscore-headers":
        # the original QIKI platform's spelling
        base = {"Nats-Msg-Id": mid, "ce_specversion": "1.0", "ce_id": mid,
                "ce_source": "urn:qiki:legacy", "ce_type": "qiki.harness.v1.Legacy"}
    return base, payload
