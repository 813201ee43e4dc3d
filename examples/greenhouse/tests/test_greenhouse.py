"""The greenhouse on its own, against a real nats-server (the qiki-harness plugin's
``nats_server`` fixture): what a team would test before writing any scenario."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from greenhouse.service import (
    ALARMS,
    COMMAND_STREAM,
    DURABLE,
    READINGS,
    RECEIPTS,
    SET_TARGET,
    Config,
    Greenhouse,
)
from nats.aio.client import Client
from nats.aio.msg import Msg

HERE = Path(__file__).resolve().parents[1]


def command(zone: str, target_c: Any, *, ce_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A SetTarget command as binary-mode CloudEvent."""
    ce_id = ce_id or str(uuid.uuid4())
    headers = {"ce-specversion": "1.0", "ce-id": ce_id, "ce-source": "urn:test",
               "ce-type": SET_TARGET, "ce-datacontenttype": "application/json",
               "Nats-Msg-Id": ce_id}
    return json.dumps({"zone": zone, "target_c": target_c}).encode(), headers


async def collect(nc: Client, subject: str) -> list[Msg]:
    """Every message on ``subject`` from now on (appended as they arrive)."""
    got: list[Msg] = []

    async def cb(msg: Msg) -> None:
        got.append(msg)

    await nc.subscribe(subject, cb=cb)
    return got


async def until(pred: Any, timeout_s: float = 10.0) -> None:
    """Poll ``pred()`` until it is true (the service is asynchronous)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not pred():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def greenhouse(nats_server: Any, tmp_path: Path) -> AsyncIterator[Greenhouse]:
    """The controller running in this process, stopped cleanly afterwards."""
    cfg = Config(nats_url=nats_server.client_url, state_dir=tmp_path / "gh", interval_s=0.2)
    gh = Greenhouse(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(gh.run(stop))
    await until(lambda: gh.marker.exists())
    yield gh
    stop.set()
    await asyncio.wait_for(task, 10)


@pytest.mark.smoke
async def test_a_command_is_answered_by_a_reading_once(
    greenhouse: Greenhouse, nats_client: Client
) -> None:
    readings = await collect(nats_client, READINGS)
    receipts = await collect(nats_client, RECEIPTS)
    js = nats_client.jetstream()
    payload, headers = command("house-1", 26.0, ce_id="cmd-1")
    await js.publish("acme.climate.v1.commands.set-target", payload, headers=headers)

    def answered() -> list[dict[str, Any]]:
        return [json.loads(m.data) for m in readings
                if json.loads(m.data).get("command_id") == "cmd-1"]

    await until(lambda: bool(answered()))
    reading = answered()[0]
    assert reading["target_c"] == 26.0 and reading["trigger"] == "command"
    msg = next(m for m in readings if json.loads(m.data).get("command_id") == "cmd-1")
    assert msg.headers is not None
    assert msg.headers["ce-type"] == "acme.climate.v1.Reading"
    assert msg.headers["ce-id"] == msg.headers["Nats-Msg-Id"] == "cmd-1.reading"
    # acked: nothing left pending on the durable
    await until(lambda: greenhouse.handled == 1)
    info = await js.consumer_info(COMMAND_STREAM, DURABLE)
    assert info.num_ack_pending == 0 and info.num_pending == 0
    # the receipt carries the command's own id, also as Nats-Msg-Id (deduplicated if resent)
    assert [(m.headers or {}).get("ce-id") for m in receipts] == ["cmd-1"]
    assert receipts[0].headers is not None and receipts[0].headers["Nats-Msg-Id"] == "cmd-1"
    assert json.loads(receipts[0].data) == {"command_type": SET_TARGET, "outcome": "applied"}
    # the state survives in GH_STATE
    state = json.loads(greenhouse.state_path.read_text())
    assert state["zones"]["house-1"]["target_c"] == 26.0


async def test_drift_raises_one_low_alarm_and_bad_commands_are_rejected(
    greenhouse: Greenhouse, nats_client: Client
) -> None:
    alarms = await collect(nats_client, ALARMS)
    receipts = await collect(nats_client, RECEIPTS)
    js = nats_client.jetstream()
    for zone, target in (("house-1", 40.0), ("house-1", "hot")):
        payload, headers = command(zone, target)
        await js.publish("acme.climate.v1.commands.set-target", payload, headers=headers)
    # another producer's event on the command space: receipted as ignored, not redelivered
    await js.publish("acme.climate.v1.commands.other", b"{}",
                     headers={"ce-id": "other-1", "ce-type": "x.Other", "ce-source": "urn:x",
                              "ce-specversion": "1.0"})
    await until(lambda: len(alarms) >= 2 and len(receipts) == 3)
    await asyncio.sleep(0.5)  # further ticks while drifting must not repeat the alarm
    reasons = sorted(json.loads(m.data)["reason"] for m in alarms)
    assert reasons == ["out-of-range", "rejected-command"]
    outcomes = sorted(json.loads(m.data)["outcome"] for m in receipts)
    assert outcomes == ["applied", "ignored", "rejected"]
    info = await js.consumer_info(COMMAND_STREAM, DURABLE)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_restarts_after_kill_with_a_high_alarm_and_its_state(
    nats_server: Any, nats_client: Client, tmp_path: Path
) -> None:
    """The process as the harness runs it: ``python -m greenhouse`` with env; SIGKILL leaves
    the running marker, so the next start raises a high-severity alarm and keeps targets."""
    env = {**os.environ, "GH_NATS_URL": nats_server.client_url, "GH_STATE": str(tmp_path / "gh"),
           "GH_INTERVAL_S": "0.2", "PYTHONPATH": str(HERE)}
    alarms = await collect(nats_client, ALARMS)
    log = tmp_path / "gh.log"

    async def start() -> asyncio.subprocess.Process:
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "greenhouse", env=env, cwd=tmp_path, stdout=out,
                stderr=asyncio.subprocess.STDOUT)
        await until(lambda: log.read_text().count("listening on") > starts)
        return proc

    starts = 0
    proc = await start()
    try:
        payload, headers = command("house-2", 18.0)
        await nats_client.jetstream().publish("acme.climate.v1.commands.x", payload,
                                              headers=headers)
        state = tmp_path / "gh" / "state.json"
        await until(lambda: state.exists() and "house-2" in state.read_text())
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 5)
        starts = 1
        proc = await start()
        await until(lambda: any(json.loads(m.data)["severity"] == "high" for m in alarms))
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0, log.read_text()
        assert not (tmp_path / "gh" / "running").exists(), "a clean stop removes the marker"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_survives_a_broker_restart(nats_server: Any, tmp_path: Path) -> None:
    """The broker goes away and comes back on the same port: commands still get answers."""
    cfg = Config(nats_url=nats_server.client_url, state_dir=tmp_path / "gh", interval_s=0.2)
    gh = Greenhouse(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(gh.run(stop))
    try:
        await until(lambda: gh.marker.exists())
        await nats_server.node.restart()
        nc = await nats.connect(nats_server.client_url)
        try:
            payload, headers = command("house-1", 22.0, ce_id="after-restart")
            await nc.jetstream().publish("acme.climate.v1.commands.set-target", payload,
                                         headers=headers)
            await until(lambda: gh.handled == 1, timeout_s=20)
        finally:
            await nc.close()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
