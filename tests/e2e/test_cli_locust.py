"""``qiki-harness locust`` as a user runs it: from a directory outside the repository,
headless, against a real nats-server (issue 12 §2)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

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
