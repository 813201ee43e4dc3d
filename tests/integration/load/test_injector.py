"""The injector against a real nats-server: delivery accounting, failures, no hangs."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, StreamConfig

from harness.errors import ConfigError
from harness.load import (
    Burst,
    Constant,
    Injector,
    LoadGates,
    MaxRate,
    Ramp,
    bytes_factory,
    cloudevent_factory,
    inject,
    run_load,
)
from harness.load.injector import REASON_NO_STREAM, REASON_TIMEOUT, Engine

pytestmark = pytest.mark.load


async def stream_msg_ids(nc: Client, stream: str, subject: str) -> list[str]:
    """Every ``Nats-Msg-Id`` stored in ``stream`` (read back with an ephemeral consumer)."""
    js = nc.jetstream()
    info = await js.stream_info(stream)
    sub = await js.pull_subscribe(subject, stream=stream)
    ids: list[str] = []
    while len(ids) < info.state.messages:
        for m in await sub.fetch(min(1000, info.state.messages - len(ids)), timeout=5):
            ids.append((m.headers or {})["Nats-Msg-Id"])
            await m.ack()
    await sub.unsubscribe()
    return ids


@pytest.mark.parametrize("engine", ["wire", "nats-py"])
async def test_all_messages_acked_unique_and_stored(nc: Client, engine: Engine) -> None:
    await nc.jetstream().add_stream(StreamConfig(name="LOADT", subjects=["loadt.>"]))
    res = await inject(nc, "loadt.a", rate=Constant(2000), count=3000, window=200,
                       engine=engine)
    assert res.engine == engine
    assert res.failed == {}
    assert len(res.attempted) == 3000
    assert len(set(res.attempted)) == 3000
    assert sorted(res.acked) == sorted(res.attempted)
    assert len(res.latencies_ms) == 3000 and min(res.latencies_ms) >= 0
    assert res.duplicates == 0
    stored = await stream_msg_ids(nc, "LOADT", "loadt.>")
    assert sorted(stored) == sorted(res.attempted)
    s = res.summary()
    assert s["acked"] == 3000 and s["failed"] == 0
    assert s["p50_ms"] is not None and s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"]
    # count mode: the plan is 3000 messages at 2000/s -> 1.5 s and a 2000/s target
    assert res.target_rate_per_s == pytest.approx(2000)
    assert all(g.passed for g in LoadGates(min_rate_ratio=None).evaluate(res))


async def test_cloudevent_payloads_carry_their_id(nc: Client) -> None:
    await nc.jetstream().add_stream(StreamConfig(name="LOADCE", subjects=["loadce.>"]))
    res = await inject(nc, "loadce.x", rate=MaxRate(), count=200,
                       factory=cloudevent_factory(event_type="qiki.test.v1.Load"))
    assert len(res.acked) == 200 and not res.failed
    js = nc.jetstream()
    sub = await js.pull_subscribe("loadce.>", stream="LOADCE")
    msgs = await sub.fetch(200, timeout=5)
    for m in msgs:
        h = m.headers or {}
        assert h["ce-id"] == h["Nats-Msg-Id"]
        assert h["ce-type"] == "qiki.test.v1.Load"
    assert {(m.headers or {})["ce-id"] for m in msgs} == set(res.attempted)


async def test_republished_ids_are_reported_as_duplicates(nc: Client) -> None:
    await nc.jetstream().add_stream(StreamConfig(name="LOADDUP", subjects=["loaddup.>"]))
    factory = bytes_factory(64, run_id="fixed")
    await inject(nc, "loaddup.a", rate=MaxRate(), count=50, factory=factory)
    again = await inject(nc, "loaddup.a", rate=MaxRate(), count=50, factory=factory)
    assert again.duplicates == 50  # JetStream de-duplicated them by Nats-Msg-Id
    info = await nc.jetstream().stream_info("LOADDUP")
    assert info.state.messages == 50


@pytest.mark.parametrize("engine", ["wire", "nats-py"])
async def test_subject_without_stream_fails_every_id_without_hanging(nc: Client,
                                                                     engine: Engine) -> None:
    res = await asyncio.wait_for(
        inject(nc, "nostream.here", rate=Constant(500), count=100, ack_timeout_s=1.0,
               engine=engine), 30)
    assert res.acked == []
    assert set(res.failed) == set(res.attempted)
    assert len(res.attempted) == 100
    # nats-server answers "no responders" at once; a server without that would time out
    assert set(res.failed.values()) <= {REASON_NO_STREAM, REASON_TIMEOUT}
    gates = {g.name: g for g in LoadGates().evaluate(res)}
    assert not gates["max_error_ratio"].passed
    assert not gates["min_rate_ratio"].passed


@pytest.mark.parametrize("engine", ["wire", "nats-py"])
async def test_server_error_in_puback_is_recorded(nc: Client, engine: Engine) -> None:
    # A stream limited to 10 messages that refuses new ones: PubAcks carry {"error": ...}
    await nc.jetstream().add_stream(StreamConfig(
        name=f"LOADFULL{engine[0]}", subjects=["loadfull.>"], max_msgs=10,
        discard=DiscardPolicy.NEW))
    res = await inject(nc, "loadfull.a", rate=MaxRate(), count=30, window=5, engine=engine)
    assert len(res.acked) == 10
    assert len(res.failed) == 20
    reason = next(iter(res.failed.values()))
    assert reason.startswith("server error 503/10077")  # "maximum messages exceeded"


async def test_ack_timeout_frees_the_window(nc: Client) -> None:
    # Something answers nothing: a plain subscriber swallows the publishes (no stream).
    await nc.subscribe("blackhole.>", cb=_ignore)
    res = await asyncio.wait_for(
        inject(nc, "blackhole.a", rate=MaxRate(), count=20, window=5, ack_timeout_s=0.3), 30)
    # with a window of 5 and no acks, every slot had to be freed by the timeout sweep
    assert len(res.attempted) == 20
    assert set(res.failed.values()) == {REASON_TIMEOUT}


async def _ignore(_msg: object) -> None:
    return None


async def test_stop_ends_a_long_run(nc: Client) -> None:
    await nc.jetstream().add_stream(StreamConfig(name="LOADSTOP", subjects=["loadstop.>"]))
    inj = Injector(nc, "loadstop.a", rate=Constant(200), duration_s=60)
    task = asyncio.create_task(inj.run())
    await asyncio.sleep(0.5)
    inj.stop()
    res = await asyncio.wait_for(task, 10)
    assert 0 < len(res.attempted) < 200 * 60
    assert len(res.acked) + len(res.failed) == len(res.attempted)


async def test_ramp_and_burst_runs_deliver(nc: Client) -> None:
    await nc.jetstream().add_stream(StreamConfig(name="LOADSHAPE", subjects=["loadshape.>"]))
    ramp = await inject(nc, "loadshape.r", rate=Ramp(100, 1000, 1), duration_s=1.0)
    assert ramp.failed == {}
    assert len(ramp.attempted) == Ramp(100, 1000, 1).count_before(1.0)
    burst = await inject(nc, "loadshape.b", rate=Burst(5000, 100, 0.5), duration_s=1.0)
    assert burst.failed == {}
    assert len(burst.attempted) == 200


async def test_run_load_connects_and_closes(nats_url: str, nc: Client) -> None:
    await nc.jetstream().add_stream(StreamConfig(name="LOADRL", subjects=["loadrl.>"]))
    res = await run_load(nats_url, "loadrl.a", rate=Constant(1000), duration_s=0.5)
    assert len(res.acked) == 500 and not res.failed


async def test_bad_arguments_are_config_errors(nc: Client) -> None:
    with pytest.raises(ConfigError, match="duration_s or count"):
        Injector(nc, "x.y")
    with pytest.raises(ConfigError, match="window must be an int >= 1"):
        Injector(nc, "x.y", count=1, window=0)
    with pytest.raises(ConfigError, match="literal NATS subject"):
        Injector(nc, "x.*", count=1)
    with pytest.raises(ConfigError, match="engine must be"):
        Injector(nc, "x.y", count=1, engine="fast")  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["wire", "nats-py"])
async def test_keeps_going_through_a_broker_restart(engine: Engine) -> None:
    from harness.broker import NatsServer

    async with NatsServer(name="load-restart") as srv:
        import nats

        admin = await nats.connect(srv.client_url, max_reconnect_attempts=-1,
                                   reconnect_time_wait=0.1)
        try:
            await admin.jetstream().add_stream(
                StreamConfig(name="LOADRS", subjects=["loadrs.>"]))
            load = asyncio.create_task(run_load(
                srv.client_url, "loadrs.a", rate=Constant(300), duration_s=4.0,
                ack_timeout_s=1.0, engine=engine, connect_kwargs={"reconnect_time_wait": 0.1}))
            await asyncio.sleep(1.0)
            await srv.nodes[0].restart()
            res = await asyncio.wait_for(load, 60)
        finally:
            await admin.close()
    # every id is accounted for, the run went on after the restart and acks resumed
    assert len(res.acked) + len(res.failed) == len(res.attempted)
    assert len(res.attempted) == 1200
    assert len(res.acked) > 300  # more than the first second's worth: it resumed
    assert any("reconnected" in e for e in res.errors)
