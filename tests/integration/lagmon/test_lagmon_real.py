"""Lag monitor against a real nats-server: a consumer really falls behind and catches up."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from services.common.botspec import RuntimeConfig
from services.common.cloudevents import from_message
from services.lagmon.events import SOURCE, THRESHOLD_CLEARED, THRESHOLD_CROSSED
from services.lagmon.service import LagMonitor
from services.lagmon.thresholds import Thresholds, ThresholdSpec

STREAM = "LAGT"


async def _stream_with_consumer(nc: Client, durable: str = "worker", **cfg: Any) -> None:
    js = nc.jetstream()
    await js.add_stream(
        api.StreamConfig(name=STREAM, subjects=["lagt.>"], storage=api.StorageType.MEMORY)
    )
    await js.add_consumer(
        STREAM,
        api.ConsumerConfig(durable_name=durable, ack_policy=api.AckPolicy.EXPLICIT, **cfg),
    )


async def _publish(nc: Client, n: int) -> None:
    js = nc.jetstream()
    for i in range(n):
        await js.publish(f"lagt.m.{i % 3}", f"m{i}".encode())


class _Tap:
    """Collects the health events (core subscription on the health subject)."""

    def __init__(self) -> None:
        self.events: list[Msg] = []

    async def cb(self, msg: Msg) -> None:
        self.events.append(msg)

    def decoded(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for m in self.events:
            ev = from_message(m.headers, m.data)
            assert ev.source == SOURCE
            assert m.headers is not None and m.headers.get("Nats-Msg-Id") == ev.id
            out.append((ev.type, ev.json()))
        return out


async def test_consumer_falls_behind_and_catches_up(
    nc: Client, provisioned: RuntimeConfig
) -> None:
    await _stream_with_consumer(nc, ack_wait=30)
    tap = _Tap()
    health = provisioned.subjects.health_events
    await nc.subscribe(health, cb=tap.cb)
    monitor = LagMonitor(
        nc,
        streams=[STREAM],
        watch=[(STREAM, "worker")],
        thresholds=Thresholds([ThresholdSpec("worker", 5, STREAM)]),
        health_subject=health,
    )

    snap = await monitor.poll_once()
    assert snap.consumers[(STREAM, "worker")].lag == 0
    await nc.flush()
    assert tap.events == []

    await _publish(nc, 12)
    snap = await monitor.poll_once()
    c = snap.consumers[(STREAM, "worker")]
    assert (c.num_pending, c.num_ack_pending, c.lag) == (12, 0, 12)
    metrics = monitor.metrics.render().decode()
    assert 'qiki_jetstream_consumer_lag{consumer="worker",stream="LAGT"} 12.0' in metrics
    assert 'qiki_jetstream_consumer_num_pending{consumer="worker",stream="LAGT"} 12.0' in metrics
    assert 'qiki_jetstream_consumer_over_threshold{consumer="worker",stream="LAGT"} 1.0' in metrics
    # The event is on JetStream (PubAck) and reached the tap.
    stream_info = await nc.jetstream().stream_info("QIKI_EVENTS_V1")
    assert stream_info.state.messages == 1

    # Still over on the next polls: no second event.
    await monitor.poll_once()
    await monitor.poll_once()
    await nc.flush()
    assert tap.decoded() == [
        (
            THRESHOLD_CROSSED,
            {
                "stream": STREAM,
                "consumer": "worker",
                "lag": 12,
                "threshold": 5,
                "num_pending": 12,
                "num_ack_pending": 0,
                "num_redelivered": 0,
            },
        )
    ]

    # Deliver 4 without acking: pending moves to ack-pending, lag unchanged; nak one so it is
    # redelivered.
    sub = await nc.jetstream().pull_subscribe_bind("worker", STREAM)
    got = await sub.fetch(4, timeout=2)
    await got[0].nak()
    await asyncio.sleep(0)  # let the nak go out
    await nc.flush()
    redelivered = await sub.fetch(1, timeout=2)
    assert redelivered[0].metadata.num_delivered == 2
    snap = await monitor.poll_once()
    c = snap.consumers[(STREAM, "worker")]
    # The redelivered message is one of the four: still 4 ack-pending, 8 not delivered.
    assert (c.num_pending, c.num_ack_pending, c.lag) == (8, 4, 12)
    assert c.num_redelivered == 1
    assert c.oldest_unacked_age_s >= 0.0 and c.age_exact
    metrics = monitor.metrics.render().decode()
    assert 'qiki_jetstream_consumer_num_ack_pending{consumer="worker",stream="LAGT"} 4.0' in metrics
    assert 'qiki_jetstream_consumer_num_redelivered{consumer="worker",stream="LAGT"} 1.0' in metrics

    # Catch up: ack everything delivered, then fetch and ack the rest.
    for m in [*got[1:], *redelivered]:
        await m.ack_sync()
    rest = await sub.fetch(8, timeout=2)
    assert len(rest) == 8
    for m in rest:
        await m.ack_sync()
    snap = await monitor.poll_once()
    c = snap.consumers[(STREAM, "worker")]
    assert (c.num_pending, c.num_ack_pending, c.lag, c.oldest_unacked_age_s) == (0, 0, 0, 0.0)
    await monitor.poll_once()
    await nc.flush()
    decoded = tap.decoded()
    assert [t for t, _ in decoded] == [THRESHOLD_CROSSED, THRESHOLD_CLEARED]
    assert decoded[1][1]["lag"] == 0 and decoded[1][1]["threshold"] == 5
    metrics = monitor.metrics.render().decode()
    assert 'qiki_jetstream_consumer_lag{consumer="worker",stream="LAGT"} 0.0' in metrics
    assert 'qiki_jetstream_consumer_over_threshold{consumer="worker",stream="LAGT"} 0.0' in metrics
    assert (
        'qiki_lagmon_threshold_events_total{type="qiki.lagmon.v1.ThresholdCrossed"} 1.0'
        in metrics
    )
    assert (
        'qiki_lagmon_threshold_events_total{type="qiki.lagmon.v1.ThresholdCleared"} 1.0'
        in metrics
    )
    body = json.loads(monitor.lag_view().body)
    assert body["snapshot"]["consumers"][0]["lag"] == 0
    assert body["over_threshold"] == []


async def test_exact_age_reads_the_oldest_unacked_publish_time(
    nc: Client, provisioned: RuntimeConfig
) -> None:
    await _stream_with_consumer(nc)
    await _publish(nc, 1)
    await asyncio.sleep(0.3)  # the message is at least this old when polled
    await _publish(nc, 1)
    exact = LagMonitor(nc, streams=[STREAM], age_mode="exact")
    approx = LagMonitor(nc, streams=[STREAM], age_mode="approx")
    e = (await exact.poll_once()).consumers[(STREAM, "worker")]
    a = (await approx.poll_once()).consumers[(STREAM, "worker")]
    assert e.age_exact and e.oldest_unacked_age_s >= 0.3
    assert not a.age_exact and a.oldest_unacked_age_s > 0.0
    # Once the first is acked the oldest unacked is the second, younger message.
    sub = await nc.jetstream().pull_subscribe_bind("worker", STREAM)
    (first,) = await sub.fetch(1, timeout=2)
    await first.ack_sync()
    e2 = (await exact.poll_once()).consumers[(STREAM, "worker")]
    assert e2.lag == 1 and e2.age_exact
    assert e2.oldest_unacked_age_s < e.oldest_unacked_age_s + 10  # sane, not since epoch


async def test_failed_event_publish_is_retried_not_lost(
    nc: Client, provisioned: RuntimeConfig
) -> None:
    await _stream_with_consumer(nc)
    await _publish(nc, 3)
    # No stream captures this subject: JetStream publish fails (no responders).
    monitor = LagMonitor(
        nc,
        streams=[STREAM],
        thresholds=Thresholds(default=1),
        health_subject="nowhere.health",
        timeout_s=0.5,
    )
    await monitor.poll_once()
    assert not monitor.tracker.is_over(STREAM, "worker")
    await monitor.poll_once()
    metrics = monitor.metrics.render().decode()
    assert "qiki_lagmon_event_publish_errors_total 2.0" in metrics
    # The subject becomes captured: the same event (same id) goes out on the next poll.
    pending_id = monitor._pending[(STREAM, "worker")][1].id
    await nc.jetstream().add_stream(
        api.StreamConfig(name="NOWHERE", subjects=["nowhere.>"], storage=api.StorageType.MEMORY)
    )
    await monitor.poll_once()
    assert monitor.tracker.is_over(STREAM, "worker")
    msg = await nc.jetstream().get_msg("NOWHERE", 1)
    assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == pending_id


async def test_pages_beyond_one_list_response_and_missing_watch(nc: Client) -> None:
    js = nc.jetstream()
    await js.add_stream(
        api.StreamConfig(name=STREAM, subjects=["lagt.>"], storage=api.StorageType.MEMORY)
    )
    n = 300  # > 256, the server's page size
    for i in range(n):
        await js.add_consumer(
            STREAM,
            api.ConsumerConfig(
                durable_name=f"c{i:03d}",
                ack_policy=api.AckPolicy.EXPLICIT,
                mem_storage=True,
            ),
        )
    await _publish(nc, 2)
    everything = LagMonitor(nc, streams=[STREAM])
    snap = await everything.poll_once()
    assert len(snap.consumers) == n
    assert {c.lag for c in snap.consumers.values()} == {2}

    watched = LagMonitor(nc, streams=[STREAM], watch=[(STREAM, "c007"), (STREAM, "ghost")])
    snap = await watched.poll_once()
    assert list(snap.consumers) == [(STREAM, "c007")]
    assert watched.missing_consumers() == [(STREAM, "ghost")]
    assert "qiki_lagmon_consumers_missing 1.0" in watched.metrics.render().decode()


async def test_listing_follows_consumers_added_and_deleted_between_polls(nc: Client) -> None:
    # The poller requests the pages the previous poll saw up front: growing past them, or
    # shrinking below them, must still list exactly the consumers that exist.
    js = nc.jetstream()
    await js.add_stream(
        api.StreamConfig(name=STREAM, subjects=["lagt.>"], storage=api.StorageType.MEMORY)
    )

    async def add(names: range) -> None:
        for i in names:
            await js.add_consumer(
                STREAM,
                api.ConsumerConfig(
                    durable_name=f"c{i:03d}", ack_policy=api.AckPolicy.EXPLICIT,
                    mem_storage=True,
                ),
            )

    monitor = LagMonitor(nc, streams=[STREAM])
    await add(range(0, 270))
    assert len((await monitor.poll_once()).consumers) == 270
    await add(range(270, 600))  # two pages more than last time
    snap = await monitor.poll_once()
    assert sorted(c for _, c in snap.consumers) == [f"c{i:03d}" for i in range(600)]
    for i in range(100, 600):
        await js.delete_consumer(STREAM, f"c{i:03d}")
    snap = await monitor.poll_once()
    assert sorted(c for _, c in snap.consumers) == [f"c{i:03d}" for i in range(100)]
    assert snap.missing == [] and snap.stream_errors == {}


async def test_unknown_stream_is_reported_not_fatal(nc: Client) -> None:
    await _stream_with_consumer(nc)
    monitor = LagMonitor(nc, streams=[STREAM, "NO_SUCH_STREAM"])
    snap = await monitor.poll_once()
    assert (STREAM, "worker") in snap.consumers
    assert "NO_SUCH_STREAM" in snap.stream_errors
    assert "stream not found" in snap.stream_errors["NO_SUCH_STREAM"]
    ok, reason = monitor.healthy()
    assert not ok and "NO_SUCH_STREAM" in reason


def _monitor(nc: Client, health: str, **kw: Any) -> LagMonitor:
    return LagMonitor(
        nc,
        streams=[STREAM],
        watch=[(STREAM, "worker")],
        thresholds=Thresholds([ThresholdSpec("worker", 5, STREAM)]),
        health_subject=health,
        **kw,
    )


async def _poll_until_events(monitor: LagMonitor, nc: Client, tap: _Tap, n: int) -> None:
    """Poll until the tap holds ``n`` threshold events (at most 10 s): the consumer's pending
    count follows the PubAck or the acks by a moment, so one poll right after may still see
    the old lag (seen on a loaded CI run). Extra polls must not add events: the caller polls
    once more and asserts the exact list."""
    async with asyncio.timeout(10):
        while len(tap.decoded()) < n:
            await monitor.poll_once()
            await nc.flush()
            await asyncio.sleep(0.05)


async def _catch_up(nc: Client, n: int) -> None:
    sub = await nc.jetstream().pull_subscribe_bind("worker", STREAM)
    for m in await sub.fetch(n, timeout=2):
        await m.ack_sync()


async def _worker_over_threshold(nc: Client, provisioned: RuntimeConfig) -> tuple[str, _Tap]:
    """The worker consumer 12 behind (threshold 5); the health subject and a tap on it."""
    await _stream_with_consumer(nc, ack_wait=30)
    health = provisioned.subjects.health_events
    tap = _Tap()
    await nc.subscribe(health, cb=tap.cb)
    await _publish(nc, 12)
    return health, tap


async def test_restart_while_over_announces_no_second_crossing(
    nc: Client, provisioned: RuntimeConfig
) -> None:
    """Issue 13: the crossing state is read back from the published events on restart."""
    health, tap = await _worker_over_threshold(nc, provisioned)
    first = _monitor(nc, health)
    await first.poll_once()
    await first.poll_once()
    await nc.flush()
    assert [t for t, _ in tap.decoded()] == [THRESHOLD_CROSSED]

    # "Restart": a new monitor with no memory of the first, the consumer still over.
    second = _monitor(nc, health)
    await second.poll_once()
    await second.poll_once()
    await nc.flush()
    assert [t for t, _ in tap.decoded()] == [THRESHOLD_CROSSED]
    assert second.tracker.is_over(STREAM, "worker")
    assert json.loads(second.lag_view().body)["over_threshold"] == [
        {"stream": STREAM, "consumer": "worker"}
    ]

    # It falls back under: cleared, once, by the restarted monitor.
    await _catch_up(nc, 12)
    await _poll_until_events(second, nc, tap, 2)
    await second.poll_once()
    await nc.flush()
    assert [t for t, _ in tap.decoded()] == [THRESHOLD_CROSSED, THRESHOLD_CLEARED]

    # A third start reads "cleared" back: over again later is a new crossing, announced.
    third = _monitor(nc, health)
    await third.poll_once()
    await _publish(nc, 6)
    await _poll_until_events(third, nc, tap, 3)
    await third.poll_once()
    await nc.flush()
    assert [t for t, _ in tap.decoded()] == [
        THRESHOLD_CROSSED,
        THRESHOLD_CLEARED,
        THRESHOLD_CROSSED,
    ]
    # The read-back consumers are gone (ephemeral, deleted after reading).
    names = [c.name for c in await nc.jetstream().consumers_info("QIKI_EVENTS_V1")]
    assert sorted(names) == sorted(
        c.durable for c in provisioned.consumers if c.stream == "QIKI_EVENTS_V1"
    )


async def test_without_restore_a_restart_duplicates_the_crossing(
    nc: Client, provisioned: RuntimeConfig
) -> None:
    """The failure the restore guards against (so the test above can fail)."""
    health, tap = await _worker_over_threshold(nc, provisioned)
    await _monitor(nc, health).poll_once()
    await _monitor(nc, health, restore_state=False).poll_once()
    await nc.flush()
    assert [t for t, _ in tap.decoded()] == [THRESHOLD_CROSSED, THRESHOLD_CROSSED]


async def test_restore_ignores_other_sources_and_consumers(
    nc: Client, provisioned: RuntimeConfig
) -> None:
    from services.common.cloudevents import new_event, publish_event
    from services.lagmon.state import read_over_threshold

    health = provisioned.subjects.health_events
    js = nc.jetstream()
    data = {"stream": STREAM, "consumer": "worker"}
    # A crossing from someone else, then ours crossed and cleared, another consumer crossed.
    await publish_event(js, health, new_event(THRESHOLD_CROSSED, "urn:other", data,
                                              subject=f"{STREAM}/worker"))
    for kind, subj in [
        (THRESHOLD_CROSSED, f"{STREAM}/worker"),
        (THRESHOLD_CLEARED, f"{STREAM}/worker"),
        (THRESHOLD_CROSSED, f"{STREAM}/other"),
    ]:
        await publish_event(js, health, new_event(kind, SOURCE, data, subject=subj))
    assert await read_over_threshold(nc, health) == {(STREAM, "other")}
    # No stream stores the subject: nothing was announced durably.
    assert await read_over_threshold(nc, "nowhere.health") == set()


async def test_unreadable_state_holds_announcements_then_gives_up(nc: Client) -> None:
    """The state cannot be read back (a work-queue stream refuses the read-back consumer):
    nothing is announced for RESTORE_ATTEMPTS - 1 polls, then the monitor goes on without it
    rather than never announcing."""
    from services.lagmon.service import RESTORE_ATTEMPTS

    js = nc.jetstream()
    await js.add_stream(
        api.StreamConfig(
            name="HEALTHQ",
            subjects=["healthq.>"],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.MEMORY,
        )
    )
    await js.add_consumer(
        "HEALTHQ",
        api.ConsumerConfig(durable_name="reader", filter_subject="healthq.events",
                           ack_policy=api.AckPolicy.EXPLICIT),
    )
    await _stream_with_consumer(nc)
    await _publish(nc, 12)
    monitor = _monitor(nc, "healthq.events", timeout_s=0.5)
    for _ in range(RESTORE_ATTEMPTS - 1):
        await monitor.poll_once()
        assert not monitor.tracker.is_over(STREAM, "worker")
    assert (await js.stream_info("HEALTHQ")).state.messages == 0
    await monitor.poll_once()
    assert monitor.tracker.is_over(STREAM, "worker")
    assert (await js.stream_info("HEALTHQ")).state.messages == 1
