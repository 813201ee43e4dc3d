"""Radar simulator against a real nats-server: what lands in the streams, and survival."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from harness._process import ManagedProcess
from harness.broker import NatsServer
from harness.broker._http import get_text
from services.common.botspec import RuntimeConfig, load_runtime_config, provision
from services.common.cloudevents import CloudEvent, from_message
from services.radar_sim import events
from services.radar_sim.models import EnergyStatus, RadarFrame, SensorIoStatus
from services.radar_sim.service import RadarSimulator, SimSubjects


def _subjects(config: RuntimeConfig) -> SimSubjects:
    s = config.subjects
    return SimSubjects(
        frames=s.radar_frames,
        frames_lr=s.radar_frames_lr,
        frames_sr=s.radar_frames_sr,
        sensor=s.sensor_events,
        power=s.power_events,
    )


async def _read_stream(nc: Client, stream: str) -> list[tuple[str, CloudEvent, str]]:
    """Every message of a stream: (subject, decoded event, Nats-Msg-Id)."""
    js = nc.jetstream()
    info = await js.stream_info(stream)
    n = info.state.messages
    if n == 0:
        return []
    sub = await js.pull_subscribe(
        "", stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    out: list[tuple[str, CloudEvent, str]] = []
    while len(out) < n:
        for m in await sub.fetch(min(256, n - len(out)), timeout=2):
            ev = from_message(m.headers, m.data)
            out.append((m.subject, ev, (m.headers or {}).get("Nats-Msg-Id", "")))
            await m.ack()
    await sub.unsubscribe()
    return out


async def test_frames_and_status_events_land_as_valid_cloudevents(
    nc: Client, provisioned: RuntimeConfig
) -> None:
    sim = RadarSimulator(
        nc, subjects=_subjects(provisioned), rate_hz=500, count=25, status_interval_s=0.01, seed=4
    )
    await sim.run(asyncio.Event())
    assert sim.ticks == 25

    radar = await _read_stream(nc, "QIKI_RADAR_V1")
    assert len(radar) == 25
    ids = set()
    for subject, ev, msg_id in radar:
        assert subject == "qiki.radar.v1.frames"
        assert (ev.type, ev.source, ev.specversion) == (
            events.FRAME_TYPE,
            events.RADAR_SOURCE,
            "1.0",
        )
        assert msg_id == ev.id
        ids.add(ev.id)
        RadarFrame.model_validate(ev.json())
    assert len(ids) == 25
    assert [RadarFrame.model_validate(e.json()).frame_id for _, e, _ in radar] == list(range(25))

    platform = await _read_stream(nc, "QIKI_EVENTS_V1")
    by_type: dict[str, list[CloudEvent]] = {}
    for subject, ev, _ in platform:
        by_type.setdefault(ev.type, []).append(ev)
        if ev.type == events.SENSOR_IO_STATUS_TYPE:
            assert subject == "qiki.events.v1.sensor" and ev.source == events.SENSOR_SOURCE
            SensorIoStatus.model_validate(ev.json())
        else:
            assert ev.type == events.POWER_ENERGY_STATUS_TYPE
            assert subject == "qiki.events.v1.power" and ev.source == events.POWER_SOURCE
            EnergyStatus.model_validate(ev.json())
    assert by_type.keys() == {events.SENSOR_IO_STATUS_TYPE, events.POWER_ENERGY_STATUS_TYPE}
    metrics = sim.metrics.render().decode()
    assert 'qiki_radar_sim_published_total{type="qiki.radar.v1.Frame"} 25.0' in metrics


async def test_split_frames_on_lr_and_sr_are_captured(
    nc: Client, provisioned: RuntimeConfig
) -> None:
    # The original platform's stream bound qiki.radar.v1.* and silently lost .lr/.sr.
    sim = RadarSimulator(
        nc,
        subjects=_subjects(provisioned),
        rate_hz=500,
        count=5,
        frame_mode="split",
        status_interval_s=0,
        targets=30,
    )
    await sim.run(asyncio.Event())
    radar = await _read_stream(nc, "QIKI_RADAR_V1")
    seen = sorted((s, e.type) for s, e, _ in radar)
    assert seen == sorted(
        [("qiki.radar.v1.frames.lr", events.FRAME_LR_TYPE)] * 5
        + [("qiki.radar.v1.frames.sr", events.FRAME_SR_TYPE)] * 5
    )
    for _, ev, _ in radar:
        frame = RadarFrame.model_validate(ev.json())
        band = "LR" if ev.type == events.FRAME_LR_TYPE else "SR"
        assert all(d.range_band == band for d in frame.detections)


async def test_no_stream_counts_errors_and_keeps_going(nc: Client) -> None:
    # Nothing provisioned: every publish fails; the simulator must count, not crash.
    sim = RadarSimulator(nc, rate_hz=500, count=4, status_interval_s=0, timeout_s=0.5)
    await sim.run(asyncio.Event())
    assert sim.ticks == 4
    metrics = sim.metrics.render().decode()
    assert (
        'qiki_radar_sim_publish_errors_total{reason="no_responders",'
        'type="qiki.radar.v1.Frame"} 4.0' in metrics
    )


async def _until(cond: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20) -> None:
    """Wait for a condition (a wait with a generous bound, not a timing assertion)."""
    async def loop() -> None:
        while not await cond():  # noqa: ASYNC110 - polling a remote endpoint, no local event
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(loop(), timeout_s)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def _metric(text: str, prefix: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


async def test_cli_survives_a_broker_restart_and_exits_0_on_sigterm() -> None:
    async with NatsServer() as srv:
        nc = await nats.connect(srv.client_url)
        try:
            await provision(nc.jetstream(), load_runtime_config())  # file storage: survives
        finally:
            await nc.close()
        ready: list[str] = []

        async def probe(p: ManagedProcess) -> None:
            ready.append(await p.wait_for_log(r"^READY http://127\.0\.0\.1:\d+$"))

        argv = [sys.executable, "-m", "services.radar_sim", "--nats-url", srv.client_url,
                "--rate-hz", "50", "--http-port", "0", "--timeout-s", "0.5",
                "--status-interval-s", "0.2"]
        async with ManagedProcess(argv, name="radar_sim", ready=probe) as proc:
            port = int(ready[0].rsplit(":", 1)[1])
            status, body = await get_text(port, "/healthz")
            assert (status, body) == (200, "ok\n")

            async def published() -> float:
                _, text = await get_text(port, "/metrics")
                return _metric(text, "qiki_radar_sim_published_total")

            await _until(lambda: _gt(published, 0), "first frames")
            await srv.node.restart()
            after_restart = await published()
            await _until(lambda: _gt(published, after_restart + 10), "frames after restart")
            text = (await get_text(port, "/metrics"))[1]
            assert _metric(text, "qiki_radar_sim_reconnects_total") >= 1
            assert proc.running
            await proc.terminate()
            assert proc.exit_code == 0, proc.log_text()


async def _gt(f: Callable[[], Awaitable[float]], bound: float) -> bool:
    return await f() > bound


async def test_cli_count_limit_and_bad_input() -> None:
    async with NatsServer() as srv:
        argv = [sys.executable, "-m", "services.radar_sim", "--nats-url", srv.client_url,
                "--rate-hz", "0", "--http-port", "0"]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 2
        assert b"rate_hz must be > 0, got 0.0" in err

        argv[argv.index("--rate-hz") + 1] = "200"
        proc = await asyncio.create_subprocess_exec(
            *argv, "--count", "3", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert out.decode().startswith("READY http://127.0.0.1:")
