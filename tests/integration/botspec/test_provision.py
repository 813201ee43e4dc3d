"""provision() against a real nats-server: layout, idempotency, updates, coverage."""

from __future__ import annotations

import pytest
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import NoStreamResponseError

from services.common.botspec import (
    ProvisionError,
    RuntimeConfig,
    load_runtime_config,
    provision,
)


@pytest.fixture(scope="module")
def config() -> RuntimeConfig:
    return load_runtime_config()


async def test_provision_creates_the_layout_then_is_idempotent(
        js: JetStreamContext, config: RuntimeConfig) -> None:
    first = await provision(js, config)
    assert first.created_streams == ["QIKI_RADAR_V1", "QIKI_EVENTS_V1", "QIKI_DLQ_V1"]
    assert first.created_consumers == ["registrar-events", "registrar-radar"]
    assert first.changed

    second = await provision(js, config)
    assert not second.changed
    assert second.unchanged_streams == first.created_streams
    assert second.unchanged_consumers == first.created_consumers

    for s in config.streams:
        info = await js.stream_info(s.name)
        assert info.config.subjects == s.subjects
        assert info.config.storage == api.StorageType.FILE
        assert info.config.duplicate_window == pytest.approx(120.0)
        assert info.config.num_replicas == 1
    for c in config.consumers:
        cinfo = await js.consumer_info(c.stream, c.durable)
        assert cinfo.config.durable_name == c.durable
        assert cinfo.config.ack_policy == api.AckPolicy.EXPLICIT
        assert cinfo.config.deliver_subject is None  # pull consumer
        assert cinfo.config.max_deliver == c.max_deliver
        assert cinfo.config.ack_wait == pytest.approx(c.ack_wait_s)


async def test_provision_updates_what_changed(js: JetStreamContext, config: RuntimeConfig) -> None:
    await provision(js, config)
    radar = config.stream("QIKI_RADAR_V1").model_copy(update={"max_age_s": 3600.0})
    consumer = config.consumer("registrar-events").model_copy(update={"max_deliver": 9})
    changed = config.model_copy(update={
        "streams": [radar if s.name == radar.name else s for s in config.streams],
        "consumers": [consumer if c.durable == consumer.durable else c
                      for c in config.consumers],
    })
    result = await provision(js, changed)
    assert result.updated_streams == ["QIKI_RADAR_V1"]
    assert result.updated_consumers == ["registrar-events"]
    assert (await js.stream_info("QIKI_RADAR_V1")).config.max_age == pytest.approx(3600.0)
    cinfo = await js.consumer_info("QIKI_EVENTS_V1", "registrar-events")
    assert cinfo.config.max_deliver == 9
    assert not (await provision(js, changed)).changed


async def test_storage_cannot_change_in_place(js: JetStreamContext, config: RuntimeConfig) -> None:
    await provision(js, config.with_overrides(storage="memory"))
    assert (await js.stream_info("QIKI_EVENTS_V1")).config.storage == api.StorageType.MEMORY
    with pytest.raises(ProvisionError, match="storage cannot change in place"):
        await provision(js, config)


async def test_every_published_subject_is_stored_by_the_expected_stream(
        js: JetStreamContext, config: RuntimeConfig) -> None:
    await provision(js, config)
    for subject in config.all_publish_subjects():
        expected = config.stream_for(subject)
        assert expected is not None
        ack = await js.publish(subject, b"{}", headers={"Nats-Msg-Id": f"id-{subject}"})
        assert ack.stream == expected.name, subject


async def test_lr_frames_reach_the_registrar_consumer(
        js: JetStreamContext, config: RuntimeConfig) -> None:
    await provision(js, config)
    await js.publish(config.subjects.radar_frames_lr, b"lr", headers={"Nats-Msg-Id": "f1"})
    # Same id inside the 120 s window: JetStream drops it as a duplicate.
    dup = await js.publish(config.subjects.radar_frames_lr, b"lr", headers={"Nats-Msg-Id": "f1"})
    assert dup.duplicate
    sub = await js.pull_subscribe_bind("registrar-radar", stream="QIKI_RADAR_V1")
    msgs = await sub.fetch(1, timeout=5)
    assert [(m.subject, m.data) for m in msgs] == [("qiki.radar.v1.frames.lr", b"lr")]
    await msgs[0].ack_sync()
    info = await js.consumer_info("QIKI_RADAR_V1", "registrar-radar")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)
    await sub.unsubscribe()


async def test_a_star_bound_stream_really_loses_lr_frames(js: JetStreamContext) -> None:
    # The original QIKI bug, reproduced on a real server: nothing captures frames.lr.
    await js.add_stream(api.StreamConfig(name="OLD_RADAR", subjects=["qiki.radar.v1.*"]))
    ok = await js.publish("qiki.radar.v1.frames", b"x")
    assert ok.stream == "OLD_RADAR"
    with pytest.raises(NoStreamResponseError):
        await js.publish("qiki.radar.v1.frames.lr", b"x", timeout=1)



async def test_consumers_only_leaves_streams_alone(
        js: JetStreamContext, config: RuntimeConfig) -> None:
    first = await provision(js, config.with_overrides(storage="memory"), consumers=False)
    assert first.created_consumers == []
    assert await js.consumers_info("QIKI_EVENTS_V1") == []
    # A file-storage config would conflict on the streams; consumers only does not touch them.
    result = await provision(js, config, streams=False)
    assert result.created_consumers == ["registrar-events", "registrar-radar"]
    assert result.created_streams == result.updated_streams == result.unchanged_streams == []
    assert (await js.stream_info("QIKI_EVENTS_V1")).config.storage == api.StorageType.MEMORY
