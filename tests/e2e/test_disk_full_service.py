"""disk-full on a service's data dir (issue 11 §2), the way a user runs it: the registrar's
SQLite store on the storage-fault filesystem fills up under load, then space returns."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.storage]

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "disk-full-registrar.yaml"
Qiki = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.covers_scenario(SCENARIO)
def test_registrar_disk_full_loses_nothing_acked_and_records_the_episode(
    qiki: Qiki, report_dir: Path
) -> None:
    from harness.faults.storage import list_mounts

    res = qiki("run", str(SCENARIO), "--report-dir", str(report_dir), "-q", timeout_s=240)
    assert res.returncode == 0, res.stdout + res.stderr
    [run_dir] = [p for p in report_dir.iterdir() if p.is_dir()]
    j: dict[str, Any] = json.loads((run_dir / "journal.json").read_text())
    d = j["delivery"]
    assert d["acked"] == d["attempted"] == d["stored"] and d["lost"] == d["duplicated"] == 0
    [space_back] = [e for e in j["events"] if e["kind"] == "storage.space_back"]
    assert space_back["service"] == "registrar" and space_back["enospc"] > 0  # writes refused
    [fault] = j["faults"]
    assert fault["action"] == "disk-full" and "ENOSPC" in fault["detail"]
    # The registrar noticed: 930 once, then 931 once commits held again.
    assert j["registrar_counts"]["930"] == 1 and j["registrar_counts"]["931"] == 1
    # The run dir keeps the store (copied off the filesystem before its unmount).
    with sqlite3.connect(run_dir / "registrar.db") as db:
        rows = dict(db.execute("SELECT code, COUNT(*) FROM records WHERE code IN (930, 931) "
                               "GROUP BY code").fetchall())
    assert rows == {930: 1, 931: 1}
    # published while the disk was full (the store could take it only later)
    [check] = [c for c in j["checks"] if c["name"] == "events"]
    assert check["passed"] and check["observed"]["first_s"] < space_back["t"]
    assert not any(m.run_id == j["run_id"] for m in list_mounts())


def test_disk_full_on_a_service_needs_its_store_on_the_filesystem(
    qiki: Qiki, tmp_path: Path
) -> None:
    text = SCENARIO.read_text().replace("registrar: {store: fuse}", "registrar: {}")
    bad = tmp_path / "no-fuse.yaml"
    bad.write_text(text)
    res = qiki("validate", str(bad))
    assert res.returncode == 2
    assert "needs topology.services.registrar.store: fuse" in res.stderr
