"""Locust command lines and CSV reading (no Locust import, no processes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.load.gates import LocustGates
from harness.load.locust_run import (
    DEFAULT_LOCUSTFILE,
    LocustProcessError,
    locust_argv,
    read_locust_csv,
    read_locust_rows,
)

HEADER = ("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
          "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
          "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%")


def test_headless_argv_carries_gates_and_outputs(tmp_path: Path) -> None:
    argv = locust_argv(host="nats://127.0.0.1:4222", users=50, run_time_s=30,
                       csv_prefix=tmp_path / "l", html=tmp_path / "l.html",
                       gates=LocustGates(max_fail_ratio=0.01, max_p95_ms=20, min_rps=1000),
                       report_json=tmp_path / "r.json")
    assert argv[:5] == [sys.executable, "-m", "locust", "-f", str(DEFAULT_LOCUSTFILE)]
    joined = " ".join(argv)
    for part in ("--headless", "-u 50", "-r 50", "-t 30s", f"--csv {tmp_path / 'l'}",
                 f"--html {tmp_path / 'l.html'}", "--qiki-max-fail-ratio 0.01",
                 "--qiki-max-p95-ms 20", "--qiki-min-rps 1000",
                 f"--qiki-report-json {tmp_path / 'r.json'}"):
        assert part in joined
    assert "--master" not in argv


def test_master_and_worker_argv_bind_localhost() -> None:
    master = locust_argv(host="nats://h:1", users=4, master_port=5999, expect_workers=2)
    assert "--master" in master and "--expect-workers" in master
    assert master[master.index("--master-bind-host") + 1] == "127.0.0.1"
    worker = locust_argv(host="nats://h:1", worker=True, master_port=5999)
    assert "--worker" in worker and "--headless" not in worker
    assert worker[worker.index("--master-host") + 1] == "127.0.0.1"
    with pytest.raises(ValueError, match="worker needs master_port"):
        locust_argv(host="nats://h:1", worker=True)
    with pytest.raises(ValueError, match="master needs master_port"):
        locust_argv(host="nats://h:1", expect_workers=2)


def test_read_csv_takes_the_aggregated_row(tmp_path: Path) -> None:
    (tmp_path / "l_stats.csv").write_text(
        HEADER + "\n"
        "JS_PUB,qiki.radar.v1.frames,900,0,1,1.2,0,12,300,450.5,0,1,1,1,1,2,3,5,7,12,12,12\n"
        ",Aggregated,1000,10,1,1.3,0,14,300,500.25,5,1,1,1,1,2,4,6,8,14,14,14\n")
    stats = read_locust_csv(tmp_path / "l")
    assert (stats.requests, stats.failures) == (1000, 10)
    assert stats.fail_ratio == pytest.approx(0.01)
    assert (stats.p50_ms, stats.p95_ms, stats.p99_ms) == (1.0, 4.0, 8.0)
    assert stats.rps == pytest.approx(500.25)
    rows = read_locust_rows(tmp_path / "l")
    assert rows[("JS_PUB", "qiki.radar.v1.frames")]["Request Count"] == "900"


def test_read_csv_with_no_requests_has_no_percentiles(tmp_path: Path) -> None:
    (tmp_path / "l_stats.csv").write_text(
        HEADER + "\n,Aggregated,0,0,0,0,0,0,0,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n")
    stats = read_locust_csv(tmp_path / "l")
    assert stats.requests == 0 and stats.p95_ms is None


def test_read_csv_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(LocustProcessError, match="cannot read Locust stats"):
        read_locust_csv(tmp_path / "missing")
    (tmp_path / "x_stats.csv").write_text("a,b\n1,2\n")
    with pytest.raises(LocustProcessError, match=r"x_stats\.csv: no 'Aggregated' row"):
        read_locust_csv(tmp_path / "x")
