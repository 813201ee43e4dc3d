"""``python -m services.lagmon`` as a process against a real server."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable

import nats
from nats.js import JetStreamContext, api

from harness._process import ManagedProcess
from harness.broker import NatsServer
from harness.broker._http import get_text
from services.common.botspec import RuntimeConfig, load_runtime_config, provision
from services.common.cloudevents import from_message
from services.lagmon.events import THRESHOLD_CLEARED, THRESHOLD_CROSSED
from tests.js_retry import until_answered


async def _events_behind(nc: nats.NATS) -> tuple[RuntimeConfig, JetStreamContext]:
    """The platform's layout (memory storage) with registrar-events 5 messages behind."""
    config = load_runtime_config().with_overrides(storage="memory")
    await provision(nc.jetstream(), config)
    js = nc.jetstream()
    for i in range(5):
        await js.publish("qiki.events.v1.test", f"{i}".encode())
    return config, js


def _ready_probe(ready: list[str]) -> Callable[[ManagedProcess], Awaitable[None]]:
    """A readiness probe that keeps each start's ``READY http://...`` line in ``ready``."""

    async def probe(p: ManagedProcess) -> None:
        ready.append(await p.wait_for_log(r"^READY http://127\.0\.0\.1:\d+$"))

    return probe


async def test_cli_serves_lag_and_publishes_crossing() -> None:
    async with NatsServer() as srv:
        nc = await nats.connect(srv.client_url)
        try:
            config, js = await _events_behind(nc)
            ready: list[str] = []
            probe = _ready_probe(ready)

            argv = [
                sys.executable, "-m", "services.lagmon", "--nats-url", srv.client_url,
                "--interval-s", "0.2", "--http-port", "0",
                "--threshold", "QIKI_EVENTS_V1:registrar-events=3",
            ]
            async with ManagedProcess(argv, name="lagmon", ready=probe) as proc:
                port = int(ready[0].rsplit(":", 1)[1])
                # READY comes after the first poll, which saw the 5 messages and published.
                status, body = await get_text(port, "/lag")
                assert status == 200
                lag = json.loads(body)
                rows = {(c["stream"], c["consumer"]): c for c in lag["snapshot"]["consumers"]}
                assert rows[("QIKI_EVENTS_V1", "registrar-events")]["lag"] >= 5
                assert rows[("QIKI_RADAR_V1", "registrar-radar")]["lag"] == 0
                assert lag["over_threshold"] == [
                    {"stream": "QIKI_EVENTS_V1", "consumer": "registrar-events"}
                ]
                status, text = await get_text(port, "/metrics")
                assert status == 200
                assert (
                    'qiki_jetstream_consumer_lag{consumer="registrar-radar",'
                    'stream="QIKI_RADAR_V1"} 0.0' in text
                )
                assert "qiki_lagmon_poll_duration_seconds_count" in text
                assert await get_text(port, "/healthz") == (200, "ok\n")
                assert (await get_text(port, "/nope"))[0] == 404

                msg = await js.get_last_msg("QIKI_EVENTS_V1", config.subjects.health_events)
                ev = from_message(msg.headers, msg.data or b"")
                assert ev.type == THRESHOLD_CROSSED
                assert ev.json()["consumer"] == "registrar-events"
                assert ev.json()["threshold"] == 3
                await proc.terminate()
                assert proc.exit_code == 0, proc.log_text()
            # One crossing, one event, however many polls ran.
            info = await js.stream_info(
                "QIKI_EVENTS_V1", subjects_filter=config.subjects.health_events
            )
            assert info.state.subjects == {config.subjects.health_events: 1}
        finally:
            await nc.close()


async def test_cli_rejects_bad_threshold_with_exit_2() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.lagmon", "--nats-url", "nats://127.0.0.1:1",
        "--threshold", "registrar-events=lots",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"'lots' is not an integer" in err


async def test_cluster_counts_each_consumer_once_from_its_leader() -> None:
    from harness.broker import NatsCluster
    from services.lagmon.poller import LagSnapshot
    from services.lagmon.service import LagMonitor

    async with NatsCluster(3) as cluster:
        nc = await nats.connect(cluster.client_urls)
        try:
            js = nc.jetstream()
            await js.add_stream(
                api.StreamConfig(name="R3", subjects=["r3.>"], num_replicas=3)
            )
            # the create answers before the stream's Raft group has a leader: wait for it
            await cluster.stream_leader("R3", timeout_s=30)
            await js.add_consumer(
                "R3",
                api.ConsumerConfig(
                    durable_name="w", ack_policy=api.AckPolicy.EXPLICIT, num_replicas=3
                ),
            )
            for i in range(4):
                await until_answered(
                    lambda i=i: js.publish(
                        "r3.x", str(i).encode(), headers={"Nats-Msg-Id": str(i)}
                    ),
                    f"publish {i} to the new stream",
                )
            monitor = LagMonitor(nc, streams=["R3"])

            async def settled() -> LagSnapshot:
                # The consumer leader learns of new messages through replication, just after
                # the stream leader's PubAck: its num_pending converges, it is not instant.
                while True:
                    snap = await monitor.poll_once()
                    if snap.consumers[("R3", "w")].lag == 4:
                        return snap
                    await asyncio.sleep(0.05)

            snap = await asyncio.wait_for(settled(), 10)
            assert list(snap.consumers) == [("R3", "w")]
            c = snap.consumers[("R3", "w")]
            assert c.lag == 4
            assert c.leader in {n.name for n in cluster.nodes}
            assert not c.leaderless
            text = monitor.metrics.render().decode()
            assert text.count("qiki_jetstream_consumer_lag{") == 1
        finally:
            await nc.close()


async def test_cli_keeps_polling_across_a_broker_restart() -> None:
    async with NatsServer() as srv:
        nc = await nats.connect(srv.client_url)
        try:
            await provision(nc.jetstream(), load_runtime_config())  # file storage: survives
        finally:
            await nc.close()
        ready: list[str] = []
        probe = _ready_probe(ready)

        argv = [sys.executable, "-m", "services.lagmon", "--nats-url", srv.client_url,
                "--interval-s", "0.1", "--http-port", "0", "--timeout-s", "0.5"]
        async with ManagedProcess(argv, name="lagmon", ready=probe) as proc:
            port = int(ready[0].rsplit(":", 1)[1])

            async def polls() -> float:
                text = (await get_text(port, "/metrics"))[1]
                return sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("qiki_lagmon_polls_total ")
                )

            await srv.node.restart()
            before = await polls()

            async def advanced() -> None:
                # Polling a remote endpoint: there is no local event to wait on.
                while await polls() < before + 3 or (  # noqa: ASYNC110
                    await get_text(port, "/healthz")
                )[0] != 200:
                    await asyncio.sleep(0.1)

            # A bounded wait for recovery, not a timing assertion.
            await asyncio.wait_for(advanced(), 30)
            assert proc.running
            await proc.terminate()
            assert proc.exit_code == 0, proc.log_text()


async def test_cli_restart_while_over_sends_no_second_crossing() -> None:
    """Issue 13, as a user runs it: lagmon restarted while a consumer is still over its
    threshold announces nothing new; the clear comes once when the consumer catches up."""
    async with NatsServer() as srv:
        nc = await nats.connect(srv.client_url)
        try:
            config, js = await _events_behind(nc)
            health = config.subjects.health_events

            async def stored() -> list[str]:
                """Types of the threshold events in the stream, oldest first."""
                sub = await js.subscribe(health, ordered_consumer=True)
                info = await js.stream_info("QIKI_EVENTS_V1", subjects_filter=health)
                n = (info.state.subjects or {}).get(health, 0)
                types = []
                for _ in range(n):
                    msg = await sub.next_msg(timeout=2)
                    types.append((msg.headers or {})["ce-type"])
                await sub.unsubscribe()
                return types

            ready: list[str] = []
            probe = _ready_probe(ready)

            async def polls(port: int) -> float:
                text = (await get_text(port, "/metrics"))[1]
                return sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("qiki_lagmon_polls_total ")
                )

            async def after_polls(port: int, n: float) -> None:
                async def wait() -> None:
                    while await polls(port) < n:  # noqa: ASYNC110 - a remote endpoint
                        await asyncio.sleep(0.05)

                await asyncio.wait_for(wait(), 30)  # bounded wait, not a timing assertion

            argv = [
                sys.executable, "-m", "services.lagmon", "--nats-url", srv.client_url,
                "--interval-s", "0.1", "--http-port", "0",
                "--threshold", "QIKI_EVENTS_V1:registrar-events=3",
            ]
            async with ManagedProcess(argv, name="lagmon", ready=probe) as proc:
                await after_polls(int(ready[-1].rsplit(":", 1)[1]), 3)
                await proc.terminate()
            assert await stored() == [THRESHOLD_CROSSED]

            async with ManagedProcess(argv, name="lagmon", ready=probe) as proc:
                port = int(ready[-1].rsplit(":", 1)[1])
                await after_polls(port, 5)
                assert await stored() == [THRESHOLD_CROSSED]
                assert "restored threshold state: 1 consumers over" in proc.log_text()
                lag = json.loads((await get_text(port, "/lag"))[1])
                assert lag["over_threshold"] == [
                    {"stream": "QIKI_EVENTS_V1", "consumer": "registrar-events"}
                ]
                # Catch up: the clear is announced once.
                sub = await js.pull_subscribe_bind("registrar-events", "QIKI_EVENTS_V1")
                for msg in await sub.fetch(100, timeout=2):
                    await msg.ack_sync()
                seen = await polls(port)
                await after_polls(port, seen + 5)
                await proc.terminate()
                assert proc.exit_code == 0, proc.log_text()
            assert await stored() == [THRESHOLD_CROSSED, THRESHOLD_CLEARED]
        finally:
            await nc.close()
