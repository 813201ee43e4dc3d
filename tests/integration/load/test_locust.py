"""Locust headless runs (standalone and distributed) against a real nats-server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from nats.aio.client import Client

from harness.broker._config import free_ports
from harness.load.gates import LocustGates
from harness.load.locust_run import locust_argv, read_locust_csv, run_locust

from .conftest import PLATFORM_STREAMS, ensure_platform_streams

pytestmark = pytest.mark.load


async def stream_counts(nc: Client) -> dict[str, int]:
    js = nc.jetstream()
    return {name: (await js.stream_info(name)).state.messages for name in PLATFORM_STREAMS}


@pytest.mark.parametrize("fast", ["1", "0"], ids=["fast-publish", "nats-py"])
async def test_headless_run_publishes_and_writes_reports(nats_url: str, nc: Client,
                                                         tmp_path: Path, fast: str) -> None:
    await ensure_platform_streams(nc)
    prefix = tmp_path / "locust"
    argv = locust_argv(host=nats_url, users=10, run_time_s=5, csv_prefix=prefix,
                       html=tmp_path / "locust.html", gates=LocustGates(max_fail_ratio=0.0),
                       report_json=tmp_path / "locust.json")
    out = await run_locust(argv, timeout_s=90, env={"QIKI_LOCUST_FAST_PUBLISH": fast})
    assert out.returncode == 0, out.output[-3000:]
    stats = read_locust_csv(prefix)
    assert stats.requests > 0
    assert stats.failures == 0
    assert (tmp_path / "locust.html").stat().st_size > 0
    report = json.loads((tmp_path / "locust.json").read_text())
    assert report["passed"] is True
    assert report["stats"]["requests"] == stats.requests  # the CSV holds the final numbers
    # what Locust counted as acked is in the streams (frames and sensor events both); a
    # publish in flight when a user was stopped may be stored without being counted
    counts = await stream_counts(nc)
    assert counts["QIKI_RADAR_V1"] > 0 and counts["QIKI_EVENTS_V1"] > 0
    assert 0 <= sum(counts.values()) - stats.requests <= 10


async def test_impossible_threshold_sets_a_nonzero_exit_code(nats_url: str, nc: Client,
                                                             tmp_path: Path) -> None:
    await ensure_platform_streams(nc)
    argv = locust_argv(host=nats_url, users=2, run_time_s=3, csv_prefix=tmp_path / "l",
                       gates=LocustGates(max_fail_ratio=0.0, min_rps=10_000_000),
                       report_json=tmp_path / "r.json")
    out = await run_locust(argv, timeout_s=90)
    assert out.returncode == 1, out.output[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    gates = {g["name"]: g for g in report["gates"]}
    assert gates["max_fail_ratio"]["passed"] is True
    assert gates["min_rps"]["passed"] is False
    assert "FAIL min_rps" in out.output


async def test_failures_are_counted_when_streams_are_missing(nats_url: str,
                                                             tmp_path: Path) -> None:
    # No streams: every publish gets "no responders"; Locust must report failures, not crash.
    argv = locust_argv(host=nats_url, users=2, run_time_s=3, csv_prefix=tmp_path / "l",
                       gates=LocustGates(max_fail_ratio=0.0))
    out = await run_locust(argv, timeout_s=90)
    assert out.returncode == 1, out.output[-3000:]
    stats = read_locust_csv(tmp_path / "l")
    assert stats.requests > 0
    assert stats.failures == stats.requests


@pytest.mark.serial  # three Locust processes; under a busy machine their counts drift apart
async def test_distributed_run_with_two_workers(nats_url: str, nc: Client,
                                                tmp_path: Path) -> None:
    await ensure_platform_streams(nc)
    [port] = free_ports(1)
    prefix = tmp_path / "dist"
    # 15 s, not 5: Locust's run clock starts when it sends the spawn jobs, and on a loaded
    # machine (load 17-26, 3 runs at once) a worker took over 5 s to make its first request
    # (3 of 3 runs failed "both contributed" at 5 s).
    master = locust_argv(host=nats_url, users=8, run_time_s=15, csv_prefix=prefix,
                         master_port=port, expect_workers=2,
                         gates=LocustGates(max_fail_ratio=0.0),
                         report_json=tmp_path / "dist.json")
    worker = locust_argv(host=nats_url, worker=True, master_port=port)
    outs = await asyncio.gather(
        run_locust(master, timeout_s=120),
        run_locust(worker, timeout_s=120),
        run_locust(worker, timeout_s=120),
    )
    logs = "\n---\n".join(o.output[-2500:] for o in outs)
    assert outs[0].returncode == 0, logs
    stats = read_locust_csv(prefix)
    assert stats.requests > 0 and stats.failures == 0
    report = json.loads((tmp_path / "dist.json").read_text())
    workers = report["workers"]
    assert len(workers) == 2, workers
    assert all(n > 0 for n in workers.values()), workers  # both contributed
    assert sum(workers.values()) == stats.requests
    assert 0 <= sum((await stream_counts(nc)).values()) - stats.requests <= 8


async def test_users_reconnect_after_a_broker_restart(tmp_path: Path) -> None:
    import nats

    from harness.broker import NatsServer

    async with NatsServer(name="locust-restart") as srv:
        admin = await nats.connect(srv.client_url, max_reconnect_attempts=-1,
                                   reconnect_time_wait=0.1)
        try:
            await ensure_platform_streams(admin)
            argv = locust_argv(host=srv.client_url, users=4, run_time_s=9,
                               csv_prefix=tmp_path / "l",
                               gates=LocustGates(max_fail_ratio=0.5),
                               report_json=tmp_path / "r.json")
            locust = asyncio.create_task(run_locust(argv, timeout_s=120))
            # restart once Locust is publishing
            for _ in range(200):
                await asyncio.sleep(0.1)
                if sum((await stream_counts(admin)).values()) > 0:
                    break
            await srv.nodes[0].restart()
            await asyncio.sleep(0.5)
            at_restart = sum((await stream_counts(admin)).values())
            out = await locust
            after = sum((await stream_counts(admin)).values())
        finally:
            await admin.close()
    assert out.returncode == 0, out.output[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["connection_events"]["reconnects"] >= 1
    assert after > at_restart  # publishing went on after the reconnect
    assert report["stats"]["requests"] > 0
