"""The registrar process against a real nats-server: storing, dedup, crash, lifecycle, HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.broker import NatsServer
from services.common.cloudevents import CloudEvent, new_event, to_binary
from services.common.codes import RegistrarCode as C
from services.registrar.service import CRASH_AFTER_COMMIT_ENV
from services.registrar.store import Record, RegistrarStore

from .conftest import RegistrarProcess

pytestmark = pytest.mark.timeout(120)

WAIT_S = 30.0  # generous: the machine is shared; no assertion depends on speed


async def wait_for(what: str, probe: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    """Poll ``probe`` (sync, run in a thread) until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(probe)
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


async def wait_drained(js: Any, stream: str, durable: str) -> None:
    """Wait until ``durable`` has nothing pending and nothing unacknowledged."""
    deadline = time.monotonic() + WAIT_S
    while True:
        info = await js.consumer_info(stream, durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        assert time.monotonic() < deadline, f"{durable} never drained: {info}"
        await asyncio.sleep(0.1)


def read(db: Path, **query: Any) -> list[Record]:
    if not db.exists():
        return []
    with RegistrarStore(db, readonly=True) as st:
        return st.query(limit=None, **query)


async def publish(js: Any, subject: str, ev: CloudEvent, **extra_headers: str) -> int:
    headers, body = to_binary(ev)
    headers.update(extra_headers)
    ack = await js.publish(subject, body, headers=headers)
    return int(ack.seq)


def _frame(frame_id: int) -> dict[str, Any]:
    """Radar frame data that keeps its contract (the registrar validates data)."""
    return {"frame_id": frame_id, "sensor_id": "radar-1",
            "timestamp": datetime.now(UTC).isoformat()}


async def test_valid_events_stored_once_with_their_codes(
    server: NatsServer, js_conn: tuple[Any, Any], db_path: Path
) -> None:
    _, js = js_conn
    reg = RegistrarProcess(server.client_url, db_path)
    async with reg.proc:
        cases = [
            ("qiki.radar.v1.frames", "qiki.radar.v1.Frame", _frame(1), 210),
            ("qiki.radar.v1.frames.lr", "qiki.radar.v1.FrameLR", _frame(2), 210),
            ("qiki.radar.v1.tracks", "qiki.radar.v1.TrackSet", {"tracks": []}, 211),
            ("qiki.events.v1.sensor", "qiki.sensor.v1.io_ok", {"sensor": "a"}, 201),
            ("qiki.events.v1.sensor", "qiki.sensor.v1.io_failed", {"sensor": "b"}, 202),
            ("qiki.events.v1.power", "qiki.power.v1.status", {"level": "ok"}, 601),
            ("qiki.events.v1.power", "qiki.power.v1.status", {"level": "low"}, 602),
            ("qiki.events.v1.power", "qiki.power.v1.status", {"level": "critical"}, 603),
            ("qiki.events.v1.health", "qiki.lagmon.v1.threshold_crossed", {"lag": 5000}, 702),
            ("qiki.events.v1.health", "qiki.lagmon.v1.threshold_cleared", {"lag": 3}, 701),
        ]
        events = []
        for subject, type_, data, code in cases:
            ev = new_event(type_, "urn:qiki:test", data)
            await publish(js, subject, ev)
            events.append((ev, code))
        # The same event again under another Nats-Msg-Id: JetStream stores it a second time
        # (no dedup), so only the registrar's (source, id) key keeps it from being stored twice.
        dup_ev = events[0][0]
        await publish(js, "qiki.radar.v1.frames", dup_ev, **{"Nats-Msg-Id": "other-id"})

        await wait_for("all events", lambda: len(read(db_path, source="urn:qiki:test")) >= 10)
        await wait_drained(js, "QIKI_RADAR_V1", "registrar-radar")
        stored = read(db_path, source="urn:qiki:test")
        assert len(stored) == len(cases)
        by_id = {r.event_id: r for r in stored}
        for ev, code in events:
            rec = by_id[ev.id]
            assert rec.code == code, (ev.type, rec)
            assert rec.type == ev.type and rec.stream_seq is not None and rec.reason is None
        # Lifecycle of a normal start.
        codes = [r.code for r in read(db_path, source="urn:qiki:registrar")]
        assert codes[:3] == [C.BOOT_START, C.NATS_CONNECTED, C.BOOT_OK]

        # Query interface.
        body = await reg.aget("/records?code=210&limit=10")
        assert {r["event_id"] for r in body["records"]} == {
            ev.id for ev, code in events if code == 210}
        one = await reg.aget(f"/records?source=urn:qiki:test&id={dup_ev.id}")
        assert one["count"] == 1 and one["records"][0]["code"] == 210
        metrics = await reg.aget("/metrics")
        assert 'qiki_registrar_stored_total{code="210"} 2.0' in metrics
        assert "qiki_registrar_batch_seconds_bucket" in metrics
        assert (await reg.aget("/healthz"))["status"] == "ok"
        with pytest.raises(Exception, match="400"):
            await reg.aget("/records?code=abc")
    assert reg.proc.exit_code == 0  # SIGTERM drains and exits 0


async def test_crash_between_commit_and_ack_loses_nothing_and_stores_nothing_twice(
    server: NatsServer, js_conn: tuple[Any, Any], db_path: Path
) -> None:
    _, js = js_conn
    n = 1500
    ids = set()
    for i in range(n):
        ev = new_event("qiki.sensor.v1.io_ok", "urn:qiki:crash", {"i": i})
        ids.add(ev.id)
        await publish(js, "qiki.events.v1.sensor", ev)

    # Crash right after the first committed batch, before its acks.
    crashing = RegistrarProcess(server.client_url, db_path, env={CRASH_AFTER_COMMIT_ENV: "1"},
                                extra_args=["--batch", "400"])
    crashing.proc.ready = None  # it may die before printing READY
    await crashing.proc.start()
    try:
        await wait_for("the crash", lambda: not crashing.proc.running)
    finally:
        await crashing.proc.close()
    assert crashing.proc.exit_code == 137
    committed = read(db_path, source="urn:qiki:crash")
    assert 0 < len(committed) < n, "the crash must come after a commit and before the end"
    info = await js.consumer_info("QIKI_EVENTS_V1", "registrar-events")
    assert info.num_ack_pending > 0, "the committed batch must still be unacknowledged"

    reg = RegistrarProcess(server.client_url, db_path)
    async with reg.proc:
        await wait_for("every event", lambda: len(read(db_path, source="urn:qiki:crash")) >= n)

        await wait_drained(js, "QIKI_EVENTS_V1", "registrar-events")
        metrics = await reg.aget("/metrics")
    stored = read(db_path, source="urn:qiki:crash")
    assert len(stored) == n
    assert {r.event_id for r in stored} == ids
    # The committed-but-unacked batch really came back and was recognised.
    dups = next(line for line in metrics.splitlines()
                if line.startswith("qiki_registrar_duplicates_total"))
    assert float(dups.split()[1]) >= len(committed)


async def test_lifecycle_across_a_broker_restart(
    server: NatsServer, js_conn: tuple[Any, Any], db_path: Path
) -> None:
    nc, js = js_conn
    reg = RegistrarProcess(server.client_url, db_path)
    async with reg.proc:
        await wait_for("boot", lambda: any(r.code == C.BOOT_OK for r in read(db_path)))
        await server.nodes[0].restart()
        await wait_for("recovery", lambda: any(r.code == C.RECOVERY_OK for r in read(db_path)))
        lifecycle = [r.code for r in read(db_path, source="urn:qiki:registrar")]
        assert lifecycle[:3] == [C.BOOT_START, C.NATS_CONNECTED, C.BOOT_OK]
        after = lifecycle[3:]
        assert after[:4] == [C.NATS_DISCONNECTED, C.NATS_CONNECTED, C.RECOVERY_START,
                             C.RECOVERY_OK], after
        # Consumers usable again: a new event is stored.
        ev = new_event("qiki.radar.v1.Frame", "urn:qiki:after", _frame(9))
        deadline = time.monotonic() + WAIT_S
        while True:  # the test's own client may still be reconnecting
            try:
                await publish(js, "qiki.radar.v1.frames", ev)
                break
            except Exception:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        await wait_for("post-restart event", lambda: read(db_path, event_id=ev.id))
        # Lifecycle events were also published (the 411 only once NATS was back).
        lc = {r.event_id: r.code for r in read(db_path, source="urn:qiki:registrar")}
        psub = await js.subscribe("qiki.events.v1.registrar", ordered_consumer=True)
        published: dict[str, int] = {}
        deadline = time.monotonic() + WAIT_S
        while not {C.NATS_DISCONNECTED, C.RECOVERY_OK} <= set(published.values()):
            assert time.monotonic() < deadline, published
            try:
                msg = await psub.next_msg(timeout=1.0)
            except Exception:
                continue
            ce_id = (msg.headers or {}).get("ce-id", "")
            if ce_id in lc:
                published[ce_id] = lc[ce_id]
        await psub.unsubscribe()
        _ = nc
    assert reg.proc.exit_code == 0
