"""The CLI end to end: exit codes, outputs, error messages.

A passed smoke run and its failing variant are checked in ``test_report_render.py``, on the
runs its module fixture makes for the report tests (the same two runs were made here too)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
Qiki = Callable[..., subprocess.CompletedProcess[str]]


def only_run(report_dir: Path) -> Path:
    runs = [p for p in report_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_bad_scenario_exits_2_before_anything_starts(
    qiki: Qiki, report_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntopology:\n  broker: {nodes: 2}\nchecks:\n  - lagg: {max: 1}\n")
    res = qiki("run", str(SCENARIOS / "smoke.yaml"), str(bad), "--report-dir", str(report_dir))
    assert res.returncode == 2
    assert f"{bad}: invalid scenario" in res.stderr
    assert "topology.broker.nodes (line 3): Input should be 1 or 3 (got 2)" in res.stderr
    assert "checks[0] (line 5): a check is one of contract" in res.stderr
    assert not any(report_dir.iterdir()), "nothing ran: the valid file is not run either"


def test_validate(qiki: Qiki, tmp_path: Path) -> None:
    ok = qiki("validate", *map(str, sorted(SCENARIOS.glob("*.yaml"))))
    assert ok.returncode == 0, ok.stderr
    missing = qiki("validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read file" in missing.stderr


def test_wrong_flag_exits_2(qiki: Qiki) -> None:
    res = qiki("run", "--backend", "kubernetes", str(SCENARIOS / "smoke.yaml"))
    assert res.returncode == 2
    assert "invalid choice: 'kubernetes'" in res.stderr


def test_external_backend_needs_url(qiki: Qiki) -> None:
    res = qiki("run", "--backend", "external", str(SCENARIOS / "smoke.yaml"))
    assert res.returncode == 2 and "--nats-url" in res.stderr


def test_unreachable_external_broker_is_a_setup_error(qiki: Qiki, report_dir: Path) -> None:
    res = qiki("run", "--nats-url", "nats://127.0.0.1:1", str(SCENARIOS / "smoke.yaml"),
               "--report-dir", str(report_dir), "-q")
    assert res.returncode == 2, res.stdout + res.stderr
    journal = json.loads((only_run(report_dir) / "journal.json").read_text())
    assert journal["verdict"] == "error" and journal["backend"] == "external"
    assert "127.0.0.1:1" in journal["error"]


def test_botspec_commands(qiki: Qiki, tmp_path: Path) -> None:
    gen = qiki("botspec", "generate", "--format", "json")
    assert gen.returncode == 0, gen.stderr
    cfg = json.loads(gen.stdout)
    assert {s["name"] for s in cfg["streams"]} >= {"QIKI_RADAR_V1", "QIKI_EVENTS_V1"}
    bad = tmp_path / "BotSpec.yaml"
    bad.write_text((SCENARIOS / "specs" / "BotSpec.yaml").read_text() + "surprise: 1\n")
    res = qiki("botspec", "validate", str(bad))
    assert res.returncode == 2 and "surprise" in res.stderr and str(bad) in res.stderr


def test_doctor_reports_backends(qiki: Qiki) -> None:
    res = qiki("doctor", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert "process" in json.dumps(report)
