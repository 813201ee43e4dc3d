"""The chaos suite end to end: each scenario passes AND its journal proves the fault happened.

A passing chaos run is only worth something if the fault really hit: the journal's
``fault.evidence`` events (before/during/after), the ``evidence.summary`` counters and the
registrar's codes are checked here. When the scenario item of the same file already ran in
this pytest session, its journal is reused instead of running the scenario a second time.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.report.html import to_html

pytestmark = pytest.mark.chaos

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
Qiki = Callable[..., subprocess.CompletedProcess[str]]
Journal = dict[str, Any]

_journals: dict[Path, Journal] = {}


@pytest.fixture
def chaos_run(scenario_journal: Callable[[Path], Any]) -> Callable[[str], Journal]:
    """``chaos_run("chaos-broker-kill")`` -> its journal as JSON, with ``_html`` its report.

    The plugin's ``scenario_journal`` reuses the run of the scenario's collected item when it
    already ran in this session; the journals of runs made here are kept for the other tests
    of this file (several inspect the same run).
    """

    def run(name: str) -> Journal:
        path = SCENARIOS / f"{name}.yaml"
        if path not in _journals:
            journal = scenario_journal(path)
            out: Journal = journal.model_dump(mode="json")
            out["_html"] = to_html(journal)
            _journals[path] = out
        return _journals[path]

    return run


def passed(j: Journal) -> None:
    """The run passed, with exact delivery of a real number of acked events."""
    failed = [c for c in j["checks"] if not c["passed"]]
    assert j["verdict"] == "passed", (j.get("error"), failed)
    d = j["delivery"]
    assert d["lost"] == 0 and d["duplicated"] == 0 and d["acked"] > 100, d
    assert j["recovery_s"] is not None, "the journal records the recovery time"
    [fault] = j["faults"]
    assert fault["removed_s"] is not None and fault["removed_s"] > fault["applied_s"]


def evidence(j: Journal) -> dict[str, dict[str, Any]]:
    """``fault.evidence`` events by phase (the first of each)."""
    out: dict[str, dict[str, Any]] = {}
    for e in j["events"]:
        if e["kind"] == "fault.evidence":
            out.setdefault(e["phase"], e)
    assert set(out) == {"before", "during", "after"}, [e["kind"] for e in j["events"]]
    return out


def summary(j: Journal) -> dict[str, Any]:
    [s] = [e for e in j["events"] if e["kind"] == "evidence.summary"]
    return s


def codes(j: Journal) -> dict[int, int]:
    return {int(k): v for k, v in j["registrar_counts"].items()}


def reconnected(j: Journal) -> None:
    """The registrar recorded NATS disconnected, then connected again and recovered."""
    c = codes(j)
    assert c.get(411, 0) >= 1, c
    assert c.get(410, 0) >= 2, c  # at boot and after the fault
    assert c.get(910, 0) >= 1 and c.get(911, 0) >= 1, c
    [order] = [ch for ch in j["checks"] if ch["name"] == "registrar.codes"]
    assert order["passed"] and order["expected"]["order"][:2] == [410, 411]


# ------------------------------------------------------------------ broker process faults


@pytest.mark.covers_scenario(SCENARIOS / "chaos-broker-kill.yaml")
def test_broker_kill_restarts_the_server_and_the_registrar_reconnects(
    chaos_run: Callable[[str], Journal],
) -> None:
    j = chaos_run("chaos-broker-kill")
    passed(j)
    ev = evidence(j)
    assert ev["before"]["state"]["nodes"]["n1"]["running"] is True
    assert ev["during"]["state"]["nodes"]["n1"]["running"] is False
    after = ev["after"]["state"]["nodes"]["n1"]
    assert after["restarts"] == 1 and after["pid"] != ev["before"]["state"]["nodes"]["n1"]["pid"]
    s = summary(j)
    assert s["node_restarts"] == {"n1": 1}
    assert s["harness_disconnects"] >= 1 and s["harness_reconnects"] >= 1
    reconnected(j)


@pytest.mark.covers_scenario(SCENARIOS / "chaos-broker-kill-sync-always.yaml")
def test_broker_kill_with_sync_always(chaos_run: Callable[[str], Journal]) -> None:
    j = chaos_run("chaos-broker-kill-sync-always")
    passed(j)
    assert j["broker"]["sync_always"] is True
    assert summary(j)["node_restarts"] == {"n1": 1}
    assert "power loss" in j["description"], "the limitation is stated, not hidden"
    reconnected(j)


@pytest.mark.covers_scenario(SCENARIOS / "chaos-broker-pause.yaml")
def test_broker_pause_freezes_and_resumes(chaos_run: Callable[[str], Journal]) -> None:
    j = chaos_run("chaos-broker-pause")
    passed(j)
    ev = evidence(j)
    assert ev["during"]["state"]["nodes"]["n1"]["paused"] is True
    assert ev["after"]["state"]["nodes"]["n1"]["paused"] is False
    assert summary(j)["node_restarts"] == {"n1": 0}, "a pause is not a restart"
    assert summary(j)["harness_reconnects"] >= 1
    c = codes(j)
    assert c.get(411, 0) >= 1 and c.get(410, 0) >= 2, c


# ------------------------------------------------------------------ service and link faults


@pytest.mark.covers_scenario(SCENARIOS / "chaos-registrar-kill.yaml")
def test_registrar_kill_mid_batch_is_exact(chaos_run: Callable[[str], Journal]) -> None:
    j = chaos_run("chaos-registrar-kill")
    passed(j)
    ev = evidence(j)
    assert ev["during"]["state"]["running"] is False
    assert ev["after"]["state"]["restarts"] == 1
    assert ev["after"]["state"]["pid"] != ev["before"]["state"]["pid"]
    assert summary(j)["service_restarts"]["registrar"] == 1
    assert codes(j)[101] == 2, "booted twice"


@pytest.mark.covers_scenario(SCENARIOS / "chaos-link-latency.yaml")
def test_link_latency_slows_the_registrar_link(chaos_run: Callable[[str], Journal]) -> None:
    j = chaos_run("chaos-link-latency")
    passed(j)
    [fault] = j["faults"]
    assert fault["detail"].startswith("Latency(latency_ms=500.0) both on nats://127.0.0.1:")
    ev = evidence(j)
    # traffic kept flowing through the proxy during and after the fault
    assert ev["after"]["state"]["bytes_downstream"] > ev["before"]["state"]["bytes_downstream"]


@pytest.mark.covers_scenario(SCENARIOS / "chaos-link-blackhole.yaml")
def test_link_blackhole_drops_bytes_and_the_registrar_reconnects(
    chaos_run: Callable[[str], Journal],
) -> None:
    j = chaos_run("chaos-link-blackhole")
    passed(j)
    ev = evidence(j)
    before, after = ev["before"]["state"], ev["after"]["state"]
    assert before["bytes_dropped"] == 0 and after["bytes_dropped"] > 0
    # the registrar noticed through PING/PONG and connected again through the proxy
    assert after["connections_accepted"] > before["connections_accepted"]
    reconnected(j)


# ------------------------------------------------------------------ cluster faults


@pytest.mark.covers_scenario(SCENARIOS / "chaos-stream-leader-kill.yaml")
def test_stream_leader_kill_moves_the_leader(chaos_run: Callable[[str], Journal]) -> None:
    j = chaos_run("chaos-stream-leader-kill")
    passed(j)
    ev = evidence(j)
    killed = ev["before"]["node"]
    assert ev["before"]["state"]["stream_leaders"]["QIKI_EVENTS_V1"] == killed
    during = ev["during"]
    assert during["settled"] is True, during
    new_leader = during["state"]["stream_leaders"]["QIKI_EVENTS_V1"]
    assert new_leader not in (None, killed)
    assert during["state"]["nodes"][killed]["running"] is False
    restarts = summary(j)["node_restarts"]
    assert restarts[killed] == 1 and sum(restarts.values()) == 1


@pytest.mark.covers_scenario(SCENARIOS / "chaos-partition-minority.yaml")
def test_minority_partition_cuts_and_restores_routes(
    chaos_run: Callable[[str], Journal],
) -> None:
    j = chaos_run("chaos-partition-minority")
    passed(j)
    ev = evidence(j)
    assert ev["before"]["node"] == "n3"
    assert all(n["routes"] == 2 for n in ev["before"]["state"]["nodes"].values())
    during = ev["during"]
    assert during["settled"] is True, during
    routes = {name: n["routes"] for name, n in during["state"]["nodes"].items()}
    assert routes == {"n1": 1, "n2": 1, "n3": 0}
    after = ev["after"]
    assert after["settled"] is True
    assert all(n["routes"] == 2 for n in after["state"]["nodes"].values())
    s = summary(j)
    assert s["node_restarts"] == {"n1": 0, "n2": 0, "n3": 0}, "no process fault involved"
    assert not any(r["down"] for r in s["route_proxies"].values())
    assert len(s["route_proxies"]) == 6


# ------------------------------------------------------------------ the checker catches loss


def test_memory_storage_broker_kill_loses_acked_events_and_fails(
    qiki: Qiki, tmp_path: Path
) -> None:
    path = SCENARIOS / "expected-failures" / "chaos-memory-loss.yaml"
    res = qiki("run", str(path), "--backend", "process", "--report-dir", str(tmp_path), "-q",
               timeout_s=180)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAIL delivery" in res.stdout
    [run_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    j = json.loads((run_dir / "journal.json").read_text())
    assert j["verdict"] == "failed"
    assert j["delivery"]["lost"] > 0 and j["delivery"]["acked"] > 0
    assert summary(j)["node_restarts"] == {"n1": 1}
    [failed] = [c for c in j["checks"] if not c["passed"]]
    assert failed["name"] == "delivery" and "lost" in failed["details"][0]


# ------------------------------------------------------------------ report


def test_report_draws_the_fault_over_the_lag_chart(chaos_run: Callable[[str], Journal]) -> None:
    j = chaos_run("chaos-broker-kill")
    html = j["_html"]
    [fault] = j["faults"]
    label = f"kill broker: {fault['applied_s']:.2f}s to {fault['removed_s']:.2f}s"
    lag_svg = html.split('aria-label="Consumer lag"', 1)[1].split("</svg>", 1)[0]
    band = re.search(r'<rect class="band" x="([0-9.]+)"[^>]*><title>' + re.escape(label), lag_svg)
    assert band is not None, f"no band {label!r} in the lag chart"
    # The band starts where the fault was applied, on the time axis the lag samples use: the
    # x ticks map seconds to pixels linearly from the first (0 s) to the last tick.
    ticks = [(float(x), float(t)) for x, t in re.findall(
        r'<text class="xtick" x="([0-9.]+)"[^>]*>([0-9.]+)s</text>', lag_svg)]
    assert len(ticks) >= 2, lag_svg[:500]
    (x_first, t_first), (x_last, t_last) = ticks[0], ticks[-1]
    assert t_first == 0 and t_last >= max(p["t"] for p in j["lag_samples"])
    expected = x_first + (x_last - x_first) * fault["applied_s"] / t_last
    assert abs(float(band.group(1)) - expected) <= 0.2, (band.group(1), expected)
