"""The registrar validates every event's data against its type's contract from the spec.

A real nats-server and a real ``python -m services.registrar``: data that breaks its
contract is stored as 923 (REJECTED_BAD_DATA) with a reason naming the type, the JSON
pointer, the keyword and the value, and copied to the dead-letter subject; valid data and
types without a contract are stored under their normal codes; ``--no-validate-data`` and the
spec's ``runtime.registrar.validate_data: false`` switch the check off.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.broker import NatsServer
from services.common.cloudevents import CloudEvent, new_event
from services.common.codes import RegistrarCode as C

from .conftest import REPO, RegistrarProcess
from .test_registrar import publish, read, wait_drained, wait_for

pytestmark = pytest.mark.timeout(120)

SUBJECT = "qiki.events.v1.sensor"
TYPE = "qiki.sensor.v1.IoStatus"  # contract: scenarios/contracts/sensor-io-status.schema.json
SOURCE = "urn:qiki:contract-test"


def _status(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"sensor_id": "s1", "status": "ok",
                            "timestamp": datetime.now(UTC).isoformat(), "frames_sent": 7}
    data.update(over)
    return data


async def _publish_cases(js: Any) -> tuple[CloudEvent, CloudEvent, CloudEvent, int]:
    """A valid event, one whose data breaks the contract, one of a type without a contract;
    returns them and the stream sequence of the bad one."""
    good = new_event(TYPE, SOURCE, _status())
    bad = new_event(TYPE, SOURCE, _status(frames_sent=-5, detail="y" * 40))
    free = new_event("qiki.sensor.v1.io_ok", SOURCE, {"anything": ["goes"]})
    await publish(js, SUBJECT, good)
    bad_seq = await publish(js, SUBJECT, bad)
    await publish(js, SUBJECT, free)
    return good, bad, free, bad_seq


async def _stored(js: Any, db: Path) -> dict[str, Any]:
    await wait_for("the events", lambda: len(read(db, source=SOURCE)) >= 2)
    await wait_drained(js, "QIKI_EVENTS_V1", "registrar-events")
    return {r.event_id: r for r in read(db)}


async def test_data_breaking_its_contract_is_923_with_the_pointer_and_dead_lettered(
    server: NatsServer, js_conn: tuple[Any, Any], db_path: Path
) -> None:
    _, js = js_conn
    reg = RegistrarProcess(server.client_url, db_path)
    async with reg.proc:
        good, bad, free, bad_seq = await _publish_cases(js)
        by_id = await _stored(js, db_path)
        metrics = await reg.aget("/metrics")
    assert reg.proc.exit_code == 0

    assert by_id[good.id].code == C.SENSOR_IO_OK and by_id[good.id].reason is None
    assert by_id[free.id].code == C.SENSOR_IO_OK, "a type without a contract passes"
    assert bad.id not in by_id, "a rejected event is keyed by its stream position"
    rejected = by_id[str(bad_seq)]
    assert rejected.code == C.REJECTED_BAD_DATA == 923
    reason = rejected.reason or ""
    assert reason.startswith("bad-data: "), reason
    for part in (TYPE, "/frames_sent", "[minimum]", "-5"):
        assert part in reason, (part, reason)
    assert rejected.type == TYPE and rejected.data == bad.data
    assert 'qiki_registrar_rejected_total{code="923"} 1.0' in metrics

    # Copied, unchanged, to the dead-letter subject with its code and reason.
    sub = await js.subscribe("qiki.dlq.v1.>", ordered_consumer=True)
    try:
        msg = await sub.next_msg(timeout=10)
    finally:
        await sub.unsubscribe()
    h = msg.headers or {}
    assert msg.subject == "qiki.dlq.v1.registrar"
    assert msg.data == bad.data
    assert int(h["Qiki-Dlq-Seq"]) == bad_seq and int(h["Qiki-Dlq-Code"]) == 923
    assert "/frames_sent" in h.get("Qiki-Dlq-Reason", ""), h
    assert (await js.stream_info("QIKI_DLQ_V1")).state.messages == 1


async def test_no_validate_data_stores_the_bad_event_under_its_normal_code(
    server: NatsServer, js_conn: tuple[Any, Any], db_path: Path
) -> None:
    _, js = js_conn
    reg = RegistrarProcess(server.client_url, db_path, extra_args=["--no-validate-data"])
    async with reg.proc:
        good, bad, free, _ = await _publish_cases(js)
        await wait_for("the events", lambda: len(read(db_path, source=SOURCE)) >= 3)
        by_id = await _stored(js, db_path)
    assert {by_id[e.id].code for e in (good, bad, free)} == {C.SENSOR_IO_OK}
    assert not [r for r in by_id.values() if r.code == C.REJECTED_BAD_DATA]
    assert (await js.stream_info("QIKI_DLQ_V1")).state.messages == 0


def _spec_without_validation(tmp_path: Path) -> Path:
    """The shipped spec with ``runtime.registrar.validate_data: false`` (contracts copied
    alongside, where its relative paths point)."""
    shutil.copytree(REPO / "scenarios" / "contracts", tmp_path / "contracts")
    (tmp_path / "specs").mkdir()
    text = (REPO / "scenarios" / "specs" / "BotSpec.yaml").read_text(encoding="utf-8")
    marker = "  registrar:\n    batch_size: 1000\n"
    assert marker in text, "the shipped spec's runtime.registrar section moved"
    spec = tmp_path / "specs" / "BotSpec.yaml"
    spec.write_text(text.replace(marker, marker + "    validate_data: false\n"), "utf-8")
    return spec


async def test_spec_runtime_key_switches_validation_off(
    server: NatsServer, js_conn: tuple[Any, Any], db_path: Path, tmp_path: Path
) -> None:
    _, js = js_conn
    spec = _spec_without_validation(tmp_path)
    reg = RegistrarProcess(server.client_url, db_path, extra_args=["--botspec", str(spec)])
    async with reg.proc:
        _, bad, _, _ = await _publish_cases(js)
        await wait_for("the events", lambda: len(read(db_path, source=SOURCE)) >= 3)
        by_id = await _stored(js, db_path)
    assert by_id[bad.id].code == C.SENSOR_IO_OK
