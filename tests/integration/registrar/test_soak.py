"""A one-minute soak, run the way a user runs it (``python -m bench.soak``): the registrar's
WAL stays under its bound for the whole run (issue 13).

The platform is real (nats-server, registrar, lag monitor, radar simulator as processes).
The bound is small (4 MiB) so that one minute at a modest rate pushes many times the bound
through the WAL: the database grows by tens of MB, and without resets the WAL would hold
every page written (before issue 13 it grew for as long as events arrived). Speed and RSS
figures are printed, never asserted (the machine is shared).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BOUND_MB = 4.0


@pytest.mark.soak
@pytest.mark.timeout(240)
def test_one_minute_soak_keeps_the_wal_under_its_bound() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--minutes", "1", "--rate", "1000",
         "--wal-max-mb", str(BOUND_MB), "--warmup-s", "10"],
        cwd=REPO, capture_output=True, text=True, timeout=200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT "), proc.stdout[-2000:]
    result = json.loads(last.removeprefix("RESULT "))
    print(proc.stdout)  # the table, for the log
    assert result["failed"] == 0, result
    assert result["acked"] >= 50_000, result  # the run really loaded the platform
    # Every acked event was stored (201: the sensor events of the load), and the consumer
    # drained once the load stopped.
    assert result["stored_by_code"].get("201", 0) >= result["acked"], result
    assert result["lag_end"] == 0, result
    # The bound itself, at its peak (polled every 50 ms), no margin. (With the WAL never
    # reset, this run's WAL reached 469 MB.)
    assert 0 < result["wal_max_mb"] <= BOUND_MB, result
    # ... while many times the bound went through it: the checkpoints moved the pages into
    # the database, which grew past 3x the bound.
    assert result["db_mb"] >= 3 * BOUND_MB, result
    assert result["goals"]["wal_max_mb<=bound"] is True
