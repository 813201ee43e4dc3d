"""``qiki-harness locust`` as a user runs it: from a directory outside the repository,
headless, against a real nats-server (issue 12 §2)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import sys
import termios
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig

from harness.broker import NatsServer
from harness.load.locust_run import read_locust_csv, run_locust

from .conftest import REPO

pytestmark = pytest.mark.load

EXE = Path(sys.executable).parent / "qiki-harness"
#: the streams the shipped locustfile publishes to (the QIKI spec's radar and events)
STREAMS = {"QIKI_RADAR_V1": ["qiki.radar.v1.>"], "QIKI_EVENTS_V1": ["qiki.events.v1.>"]}

USER_LOCUSTFILE = """\
from locust import constant, task

from harness.load.locust_users import JetStreamUser


class Pinger(JetStreamUser):
    wait_time = constant(0.01)

    @task
    def ping(self) -> None:
        self.js_publish("qiki.events.v1.mine", b"hello")
"""


async def _streams(nc: Client) -> None:
    js = nc.jetstream()
    for name, subjects in STREAMS.items():
        await js.add_stream(StreamConfig(name=name, subjects=subjects,
                                         storage=StorageType.MEMORY))


async def _counts(nc: Client) -> dict[str, int]:
    js = nc.jetstream()
    return {n: (await js.stream_info(n)).state.messages for n in STREAMS}


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("QIKI_", "LOCUST_"))}


async def test_shipped_locustfile_from_outside_the_repo(
    nats_server: NatsServer, nats_client: Client, tmp_path: Path
) -> None:
    await _streams(nats_client)
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert REPO not in work.parents
    out = await run_locust(
        [str(EXE), "locust", "--headless", "-u", "4", "-r", "4", "-t", "3s",
         "--host", nats_server.client_url, "--csv", "run/locust", "--html", "run/locust.html",
         "--qiki-max-fail-ratio", "0", "--qiki-min-rps", "1",
         "--qiki-report-json", "run/locust.json"],
        timeout_s=120, cwd=work, env=_env())
    assert out.returncode == 0, out.output[-3000:]
    stats = read_locust_csv(work / "run" / "locust")
    assert stats.requests > 0 and stats.failures == 0
    report = json.loads((work / "run" / "locust.json").read_text())
    assert report["passed"] is True
    assert {g["name"] for g in report["gates"]} == {"max_fail_ratio", "min_rps"}
    assert (work / "run" / "locust.html").stat().st_size > 0
    counts = await _counts(nats_client)
    assert counts["QIKI_RADAR_V1"] > 0 and counts["QIKI_EVENTS_V1"] > 0


async def test_own_locustfile_with_a_failing_gate_exits_1(
    nats_server: NatsServer, nats_client: Client, tmp_path: Path
) -> None:
    """The user's locustfile never calls ``register``: the gates still apply."""
    await _streams(nats_client)
    (tmp_path / "mine.py").write_text(USER_LOCUSTFILE)
    args = ["locust", "-f", "mine.py", "--headless", "-u", "2", "-r", "2", "-t", "2s",
            "--host", nats_server.client_url, "--qiki-max-fail-ratio", "0",
            "--qiki-report-json", "r.json"]
    failing = await run_locust([str(EXE), *args, "--qiki-min-rps", "10000000"],
                               timeout_s=120, cwd=tmp_path, env=_env())
    assert failing.returncode == 1, failing.output[-3000:]
    assert "FAIL min_rps" in failing.output
    report = json.loads((tmp_path / "r.json").read_text())
    gates = {g["name"]: g["passed"] for g in report["gates"]}
    assert gates == {"max_fail_ratio": True, "min_rps": False}
    assert report["stats"]["requests"] > 0
    # only the user's users ran: everything went to their subject
    js = nats_client.jetstream()
    info = await js.stream_info("QIKI_EVENTS_V1", subjects_filter=">")
    assert set((info.state.subjects or {}).keys()) == {"qiki.events.v1.mine"}
    assert (await _counts(nats_client))["QIKI_RADAR_V1"] == 0

    passing = await run_locust([str(EXE), *args], timeout_s=120, cwd=tmp_path, env=_env())
    assert passing.returncode == 0, passing.output[-3000:]


def _sigint_ignored() -> None:
    """What a non-interactive shell does to a background job (``qiki-harness locust ... &``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _on_a_terminal(slave: int) -> Callable[[], None]:
    """A new session whose controlling terminal is the pty ``slave``, as a user's shell."""

    def setup() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    return setup


async def _publishing(nc: Client) -> None:
    """Until Locust's users have published (generous; not a timing)."""
    async with asyncio.timeout(90):
        while True:
            if sum((await _counts(nc)).values()) > 0:
                return
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("how", ["ctrl-c at the terminal", "kill -INT", "kill -TERM"])
async def test_a_stop_ends_locust_with_its_reports_and_leaves_nothing_running(
    nats_server: NatsServer, nats_client: Client, tmp_path: Path, how: str
) -> None:
    """A 10-minute run stopped after its first publishes: Locust itself stops, writes its
    reports and exits 0, and is gone when ``qiki-harness locust`` returns. Before, a SIGINT
    sent to ``qiki-harness locust`` was ignored, and a SIGTERM killed it and left Locust
    running (the kill cases are started as a script's background job: SIGINT ignored)."""
    await _streams(nats_client)
    argv = [str(EXE), "locust", "--headless", "-u", "2", "-r", "2", "-t", "600s",
            "--host", nats_server.client_url, "--csv", "run/locust",
            "--html", "run/locust.html"]
    master = slave = -1
    if how == "ctrl-c at the terminal":
        master, slave = os.openpty()
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=tmp_path, env=_env(), stdin=slave, stdout=slave, stderr=slave,
            preexec_fn=_on_a_terminal(slave))
        os.close(slave)
        drained = bytearray()
        loop = asyncio.get_running_loop()

        def drain() -> None:  # the pty's buffer must not fill up and block Locust
            with contextlib.suppress(OSError):
                drained.extend(os.read(master, 65536))

        loop.add_reader(master, drain)
    else:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=tmp_path, env=_env(), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, preexec_fn=_sigint_ignored)
    locust: list[psutil.Process] = []
    try:
        await _publishing(nats_client)
        locust = psutil.Process(proc.pid).children()
        assert len(locust) == 1 and "locust" in " ".join(locust[0].cmdline())
        if how == "ctrl-c at the terminal":
            os.write(master, b"\x03")  # the terminal sends SIGINT to its foreground group
        else:
            proc.send_signal(signal.SIGINT if how == "kill -INT" else signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 90)  # Locust would run for 10 minutes
        gone = [not p.is_running() for p in locust]
    finally:
        if master >= 0:
            asyncio.get_running_loop().remove_reader(master)
            os.close(master)
        for p in [*locust, psutil.Process(proc.pid)] if proc.returncode is None else locust:
            with contextlib.suppress(psutil.Error):
                p.kill()
        await proc.wait()
    assert gone == [True], "Locust outlived qiki-harness locust"
    assert proc.returncode == 0
    stats = read_locust_csv(tmp_path / "run" / "locust")
    assert stats.requests > 0 and stats.failures == 0
    if how != "kill -TERM":  # Locust writes its HTML report on a Ctrl-C, not on SIGTERM
        assert (tmp_path / "run" / "locust.html").stat().st_size > 0
