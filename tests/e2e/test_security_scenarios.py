"""Least privilege end to end, the way a user runs it (issue 10 §4): the shipped
``least-privilege`` scenario passes with its probes denied and 8xx codes stored, and its
broken variant (authenticated, but every identity may do anything) exits 1 naming the steps
that were allowed."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.security]

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.mark.covers_scenario(SCENARIOS / "least-privilege.yaml")
def test_least_privilege_scenario_passes_with_denials_and_8xx_codes(
        scenario_journal: Callable[[Path], Any]) -> None:
    j = scenario_journal(SCENARIOS / "least-privilege.yaml").model_dump(mode="json")
    failed = [c for c in j["checks"] if not c["passed"]]
    assert j["verdict"] == "passed", (j.get("error"), failed)
    probes = [e for e in j["events"] if e["kind"] == "security.probe"]
    observed = {(e.get("identity"), e.get("action"), e.get("subject") or e["probe"]):
                e["observed"] for e in probes}
    assert observed[(None, None, "anonymous")] == "refused"
    assert observed[("radar_sim", "publish", "qiki.events.v1.registrar")] == "denied"
    assert observed[("radar_sim", "publish", "qiki.radar.v1.frames")] == "allowed"
    assert observed[("radar_sim", "subscribe", "_INBOX.registrar.>")] == "denied"
    # 820 from the server's auth-failure advisories (the two refused probes at least),
    # 830 from each denial the probes saw.
    assert j["registrar_counts"].get("820", 0) >= 2
    assert j["registrar_counts"].get("830", 0) == 7
    assert any(e["kind"] == "security.relay" and e["started"] for e in j["events"])


def test_least_privilege_broken_exits_1_naming_what_was_allowed(
        qiki: Callable[..., subprocess.CompletedProcess[str]], report_dir: Path) -> None:
    r = qiki("run", str(SCENARIOS / "expected-failures" / "least-privilege-broken.yaml"),
             "--report-dir", str(report_dir))
    assert r.returncode == 1, r.stdout + r.stderr
    [run_dir] = [p for p in report_dir.iterdir() if p.is_dir()]
    j = json.loads((run_dir / "journal.json").read_text())
    [sec] = [c for c in j["checks"] if c["kind"] == "security"]
    assert not sec["passed"]
    assert sec["observed"]["radar_sim publish qiki.events.v1.registrar"] == "allowed"
    assert sec["observed"]["load subscribe qiki.events.v1.>"] == "allowed"
    assert sec["observed"]["radar_sim subscribe _INBOX.registrar.>"] == "allowed"
    assert "expected denied, observed allowed" in sec["details"][0]


@pytest.mark.docker
def test_least_privilege_on_the_container_backend(
        qiki: Callable[..., subprocess.CompletedProcess[str]], report_dir: Path) -> None:
    r = qiki("run", str(SCENARIOS / "least-privilege.yaml"), "--backend", "container",
             "--report-dir", str(report_dir), timeout_s=300)
    assert r.returncode == 0, r.stdout + r.stderr
    [run_dir] = [p for p in report_dir.iterdir() if p.is_dir()]
    j = json.loads((run_dir / "journal.json").read_text())
    assert j["backend"] == "container"
    assert j["registrar_counts"].get("820", 0) >= 2 and j["registrar_counts"].get("830") == 7
    [scan] = [c for c in j["checks"] if c["kind"] == "secret_scan"]
    assert scan["passed"] and scan["observed"]["secrets"] > 0


def test_a_probe_as_an_unknown_identity_is_bad_input(
        qiki: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("name: typo\ntopology:\n  broker: {auth: accounts}\n  services:\n"
                    "    registrar: {}\nchecks:\n  - security:\n      permissions:\n"
                    "        - {as: radar-sim, publish: qiki.events.v1.x, expect: denied}\n")
    r = qiki("run", str(path), "--report-dir", str(tmp_path / "reports"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert ("checks[0].security.permissions[0].as: unknown identity 'radar-sim'; expected one "
            "of registrar, harness, load") in r.stdout + r.stderr
