"""The CLI end to end: exit codes, outputs, error messages."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
Qiki = Callable[..., subprocess.CompletedProcess[str]]


def only_run(report_dir: Path) -> Path:
    runs = [p for p in report_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_run_smoke_passes_and_writes_reports(qiki: Qiki, report_dir: Path) -> None:
    res = qiki("run", str(SCENARIOS / "smoke.yaml"), "--backend", "process",
               "--report-dir", str(report_dir))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("PASSED  smoke")
    run = only_run(report_dir)
    journal = json.loads((run / "journal.json").read_text())
    assert journal["verdict"] == "passed"
    assert journal["backend"] == "process"
    assert journal["nats_server_version"].count(".") == 2
    assert {c["name"] for c in journal["checks"]} == {
        "contract", "registrar.codes", "lag.max", "delivery"}
    assert journal["delivery"]["lost"] == 0 and journal["delivery"]["acked"] > 0
    assert journal["lag_samples"], "lag was sampled during the run"
    kinds = [t["kind"] for t in journal["timeline"]]
    assert kinds.index("steady_state") < kinds.index("load") < kinds.index("drain")
    html = (run / "report.html").read_text()
    assert "PASSED" in html and "<svg" in html
    suite = ET.parse(run / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0" and suite.get("tests") == "6"
    # the registrar's store is left for people: the query command reads it
    q = qiki("registrar", "query", "--db", str(run / "registrar.db"), "--code", "210",
             "--limit", "3")
    assert q.returncode == 0, q.stderr
    rows = [json.loads(line) for line in q.stdout.splitlines()]
    assert len(rows) == 3 and all(r["code"] == 210 for r in rows)


def test_broken_variant_exits_1_and_names_the_check(
    qiki: Qiki, report_dir: Path, tmp_path: Path
) -> None:
    text = (SCENARIOS / "smoke.yaml").read_text()
    broken = tmp_path / "smoke-broken.yaml"
    # 210 does occur (radar frames), so excluding it must fail that check and no other
    broken.write_text(text.replace("excludes: [702,", "excludes: [210, 702,"))
    res = qiki("run", str(broken), "--report-dir", str(report_dir), "-q")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAIL registrar.codes" in res.stdout
    journal = json.loads((only_run(report_dir) / "journal.json").read_text())
    assert journal["verdict"] == "failed"
    failed = [c for c in journal["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["registrar.codes"]
    assert "code 210 excluded but recorded" in failed[0]["details"][0]


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
