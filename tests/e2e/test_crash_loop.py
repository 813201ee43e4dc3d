"""The issue 11 §5 case as a user runs it: the registrar crash-loops (six pause-kills, 3 s
apart) while its link carries 1.5 s of latency and load runs. Each restart outlasts the
period, so crashes are postponed (journalled) instead of colliding with a restart: no heal
fails, delivery is exact and the fault proxy prints nothing."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.chaos]

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "chaos-registrar-crash-loop.yaml"
Qiki = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.covers_scenario(SCENARIO)
def test_registrar_crash_loop_through_a_slow_link(qiki: Qiki, report_dir: Path) -> None:
    res = qiki("run", str(SCENARIO), "--report-dir", str(report_dir), "-q", timeout_s=280)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and "Errno" not in res.stderr, res.stderr
    [run_dir] = [p for p in report_dir.iterdir() if p.is_dir()]
    j = json.loads((run_dir / "journal.json").read_text())
    d = j["delivery"]
    assert d["attempted"] == d["acked"] == d["stored"] and d["lost"] == d["duplicated"] == 0
    crashes = [f for f in j["faults"] if f["action"] == "pause-kill"]
    assert len(crashes) == 6
    assert all(f["removed_s"] is not None and "heal failed" not in f["detail"] for f in crashes)
    # one at a time: each crash starts after the previous one healed
    for a, b in itertools.pairwise(crashes):
        assert b["applied_s"] >= a["removed_s"]
    [loop] = [f for f in j["faults"] if f["action"] == "crash-loop"]
    assert "6 crash(es), 0 heal(s) failed" in loop["detail"]
    assert not [e for e in j["events"] if e["kind"] == "fault.heal_failed"]
    postponed = [e for e in j["events"] if e["kind"] == "fault.collision"]
    assert postponed, "restarts through a 1.5 s link outlast every_s: 3"
    assert all(e["waited_s"] > 0 and e["policy"].startswith("postponed") for e in postponed)
    [summary] = [e for e in j["events"] if e["kind"] == "evidence.summary"]
    assert "peers_gone" in summary["link_proxies"]["registrar"]
    assert j["registrar_counts"]["101"] >= 7  # booted once, then after each of six crashes
