"""Storage faults end to end, the way a user runs them (the CLI on the shipped scenarios).

Single node, store on the storage-fault filesystem, registrar frozen so acked events wait in
the stream, then a power loss (SIGKILL, unsynced writes dropped, restart):
- default lazy fsync: acked events are lost, the run fails (exit 1) - an expected failure,
  asserted here so a nats-server that stops losing them turns this test red;
- ``sync_always: true``: nothing acked is lost, the run passes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.storage]

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
Qiki = Callable[..., subprocess.CompletedProcess[str]]


Runner = Callable[[str], dict[str, Any]]


@pytest.fixture
def run_shipped(scenario_journal: Callable[[Path], Any]) -> Runner:
    """``run_shipped("power-loss-sync-always")`` -> its journal (JSON), asserted passed; the
    run of the scenario's collected item is reused when it already ran in this session."""

    def run(name: str) -> dict[str, Any]:
        j: dict[str, Any] = scenario_journal(SCENARIOS / f"{name}.yaml").model_dump(mode="json")
        failed = [c for c in j["checks"] if not c["passed"]]
        assert j["verdict"] == "passed", (j.get("error"), failed)
        return j

    return run


def _journal(tmp_path: Path) -> dict[str, Any]:
    [run_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    j: dict[str, Any] = json.loads((run_dir / "journal.json").read_text())
    return j


def _power_losses(j: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in j["events"] if e["kind"] == "storage.power_loss"]


def _no_mount_left(run_id: str) -> bool:
    from harness.faults.storage import list_mounts

    return not any(m.run_id == run_id for m in list_mounts())


def test_lazy_fsync_power_loss_loses_acked_events(qiki: Qiki, tmp_path: Path) -> None:
    path = SCENARIOS / "expected-failures" / "power-loss-lazy-fsync.yaml"
    res = qiki("run", str(path), "--report-dir", str(tmp_path), "-q", timeout_s=180)
    assert res.returncode == 1, res.stdout + res.stderr
    j = _journal(tmp_path)
    assert j["delivery"]["acked"] > 0
    assert j["delivery"]["lost"] > 0, j["delivery"]
    [loss] = _power_losses(j)
    assert loss["node"] == "n1" and loss["bytes_dropped"] > 0
    [failed] = [c for c in j["checks"] if not c["passed"]]
    assert failed["name"] == "delivery"
    assert _no_mount_left(j["run_id"])


@pytest.mark.covers_scenario(SCENARIOS / "power-loss-sync-always.yaml")
def test_sync_always_power_loss_loses_nothing_acked(run_shipped: Runner) -> None:
    j = run_shipped("power-loss-sync-always")
    assert j["delivery"]["acked"] > 0 and j["delivery"]["lost"] == 0
    [loss] = _power_losses(j)
    # the fault really hit: the node wrote and fsynced through our filesystem, was killed
    assert loss["node"] == "n1" and loss["bytes_synced"] > 0
    assert _no_mount_left(j["run_id"])


def test_disk_full_fails_publishes_and_the_stream_does_not_recover(
    qiki: Qiki, tmp_path: Path
) -> None:
    """Measured on nats-server 2.15.1 (see the scenario's description)."""
    path = SCENARIOS / "expected-failures" / "disk-full-no-recovery.yaml"
    res = qiki("run", str(path), "--report-dir", str(tmp_path), "-q", timeout_s=180)
    assert res.returncode == 1, res.stdout + res.stderr
    j = _journal(tmp_path)
    assert j["delivery"]["lost"] == 0  # refused, never acked then lost
    during, after = j["load"]
    assert during["acked"] > 0 and during["failed"] > 0  # writes failed visibly, as no acks
    [back] = [e for e in j["events"] if e["kind"] == "storage.space_back"]
    assert back["enospc"] > 0  # the filesystem really refused writes
    # space came back 2.5 s before this load started, yet nothing it sent was acked
    assert after["attempted"] > 0 and after["acked"] == 0, after
    [failed] = [c for c in j["checks"] if not c["passed"]]
    assert failed["name"] == "load.gates"
    assert _no_mount_left(j["run_id"])


@pytest.mark.covers_scenario(SCENARIOS / "slow-disk-sync-always.yaml")
def test_slow_disk_stalls_acks_and_loses_nothing(run_shipped: Runner) -> None:
    j = run_shipped("slow-disk-sync-always")
    assert j["delivery"]["lost"] == 0 and j["delivery"]["acked"] == j["delivery"]["attempted"]
    [load] = j["load"]
    # every publish waits for an fsync; 200 ms were added to each for 2 s: acks stalled
    assert load["max_ms"] >= 200, load
    [fault] = j["faults"]
    assert fault["action"] == "slow-disk" and "200.0 ms" in fault["detail"]


@pytest.mark.covers_scenario(SCENARIOS / "power-loss-r3-minority.yaml")
def test_r3_minority_power_loss_loses_nothing(run_shipped: Runner) -> None:
    j = run_shipped("power-loss-r3-minority")
    assert j["delivery"]["acked"] > 0 and j["delivery"]["lost"] == 0
    [loss] = _power_losses(j)
    assert loss["node"] == "n2" and loss["bytes_dropped"] > 0  # it did lose its unsynced data
    assert j["replicas"]["divergent"] == 0  # n2 caught up: every replica holds the same


def test_r3_all_nodes_power_loss_loses_acked_events(qiki: Qiki, tmp_path: Path) -> None:
    path = SCENARIOS / "expected-failures" / "power-loss-r3-all.yaml"
    res = qiki("run", str(path), "--report-dir", str(tmp_path), "-q", timeout_s=240)
    assert res.returncode == 1, res.stdout + res.stderr
    j = _journal(tmp_path)
    assert j["delivery"]["lost"] > 0, j["delivery"]
    losses = _power_losses(j)
    assert sorted(e["node"] for e in losses) == ["n1", "n2", "n3"]  # bytes dropped per node
    assert all(e["bytes_dropped"] > 0 for e in losses)
    # the stream itself is the loss: every replica's own store lacks acked events
    assert all(n > 0 for n in j["replicas"]["lost"].values()), j["replicas"]
    assert _no_mount_left(j["run_id"])


def _event(j: dict[str, Any], kind: str) -> dict[str, Any]:
    [e] = [e for e in j["events"] if e["kind"] == kind]
    return e


@pytest.mark.covers_scenario(SCENARIOS / "power-loss-r3-stream-leader.yaml")
def test_r3_stream_leader_power_loss_hits_the_leader_and_loses_nothing(
    run_shipped: Runner,
) -> None:
    j = run_shipped("power-loss-r3-stream-leader")
    assert j["delivery"]["acked"] > 0 and j["delivery"]["lost"] == 0
    # the leader was resolved when the fault fired, and the journal says which node it was
    chosen = _event(j, "fault.nodes")
    assert chosen["target"] == "broker:stream-leader:QIKI_EVENTS_V1"
    [leader] = chosen["nodes"]
    [loss] = _power_losses(j)
    assert loss["node"] == leader and loss["bytes_dropped"] > 0
    before = next(e for e in j["events"] if e["kind"] == "fault.evidence"
                  and e["phase"] == "before" and e["action"] == "power-loss")
    assert before["state"]["stream_leaders"]["QIKI_EVENTS_V1"] == leader
    r = j["replicas"]
    assert r["divergent"] == 0 and set(r["messages"]) == {"n1", "n2", "n3"}
    assert all(n > 0 for n in r["messages"].values())


@pytest.mark.covers_scenario(SCENARIOS / "corrupt-r3-truncate.yaml")
def test_corrupt_truncate_is_repaired_from_the_peers(run_shipped: Runner) -> None:
    j = run_shipped("corrupt-r3-truncate")
    cut = _event(j, "storage.corrupt")
    assert cut["node"] == "n2" and cut["mode"] == "truncate" and cut["stopped"]
    assert cut["size_after"] == cut["offset"] < cut["size_before"]
    assert cut["file"].endswith(".blk") and "/QIKI_EVENTS_V1/msgs/" in cut["file"]
    assert j["delivery"]["lost"] == 0
    r = j["replicas"]
    assert r["divergent"] == 0 and r["missing"] == {"n1": 0, "n2": 0, "n3": 0}


def test_corrupt_bitflip_leaves_a_diverged_replica(qiki: Qiki, tmp_path: Path) -> None:
    """Measured on nats-server 2.15.1 (see the scenario's description): the cluster loses
    nothing acked, but n2's own store lacks what follows the flipped record.

    Not every run diverges: when the restarted n2 catches up from the leader by a snapshot,
    it repairs (seen in 1 of 3 CI runs on a loaded machine). The outcome is a probability,
    so it is measured as one: up to three runs, each must lose nothing acked, and at least
    one must diverge. A server that never diverges turns this red, as it should."""
    path = SCENARIOS / "expected-failures" / "corrupt-r3-bitflip.yaml"
    outcomes: list[dict[str, Any]] = []
    for attempt in range(3):
        reports = tmp_path / f"attempt{attempt}"
        res = qiki("run", str(path), "--report-dir", str(reports), "-q", timeout_s=240)
        assert res.returncode in (0, 1), res.stdout + res.stderr
        j = _journal(reports)
        flip = _event(j, "storage.corrupt")
        assert flip["node"] == "n2" and flip["mode"] == "bitflip" and flip["seed"] == 0
        assert flip["byte_before"] ^ flip["byte_after"] == 1 << flip["bit"]
        assert j["delivery"]["lost"] == 0  # the cluster still serves every acked event
        r = j["replicas"]
        outcomes.append({"exit": res.returncode, "divergent": r["divergent"],
                         "missing": r["missing"], "offset": flip["offset"]})
        if res.returncode == 1:
            break
        assert r["divergent"] == 0, r  # exit 0: the replicas agree (n2 repaired)
    else:
        pytest.fail(f"the bit flip never left a diverged replica in 3 runs: {outcomes}")
    assert r["divergent"] > 0, r
    assert r["missing"]["n2"] > 0 and r["missing"]["n1"] == r["missing"]["n3"] == 0
    assert r["lost"]["n2"] > 0 and r["lost"]["n1"] == r["lost"]["n3"] == 0
    [failed] = [c for c in j["checks"] if not c["passed"]]
    assert failed["name"] == "replicas" and failed["observed"]["split_brain"] is True
    assert failed["details"][0].startswith("split-brain: ")


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for k in map(int, kids):
        out += [k, *_descendants(k)]
    return out


def test_killed_harness_leaves_no_mount_and_down_cleans(qiki: Qiki, tmp_path: Path) -> None:
    """kill -9 of a real ``qiki-harness run`` while the broker runs on the filesystem: the
    mount goes away by itself, and ``qiki-harness down --run`` then finds nothing left."""
    from harness.faults.storage import list_mounts

    exe = Path(sys.executable).parent / "qiki-harness"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIKI_")}
    proc = subprocess.Popen([str(exe), "run", str(SCENARIOS / "power-loss-sync-always.yaml"),
                             "--report-dir", str(tmp_path), "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids: list[int] = []
    run_id = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run_id is None:
            runs = {p.name for p in tmp_path.iterdir() if p.is_dir()}
            run_id = next((m.run_id for m in list_mounts() if m.run_id in runs), None)
            time.sleep(0.1)
        assert run_id is not None, "the run never mounted its store"
        time.sleep(2)  # the broker is up on it by now
        kids = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not _no_mount_left(run_id):
            time.sleep(0.1)
        assert _no_mount_left(run_id), "the mount outlived the harness"
        # nats-server and the services outlive a SIGKILLed harness (nothing reaps them) and
        # keep the detached filesystem busy; end them as an operator would, then clean up.
        _kill(kids)
        import tempfile

        left = list(Path(tempfile.gettempdir()).glob(f"qiki-fusefs-{run_id[:40]}-*"))
        assert left, "the crashed run's store dir should still be there before down"
        res = qiki("down", "--run", run_id, timeout_s=60)
        assert res.returncode == 0, res.stdout + res.stderr
        assert _no_mount_left(run_id)
        assert "removed 1 store dir(s)" in res.stdout, res.stdout
        assert not any(p.exists() for p in left)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _kill(kids)


def _kill(pids: list[int]) -> None:
    """SIGKILL the processes a killed harness could not reap (ours, by pid)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.05)


def test_doctor_says_whether_storage_faults_work(qiki: Qiki) -> None:
    res = qiki("doctor", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["storage_faults"] == {"available": True,
                                                       "reason": "FUSE mounts work"}
