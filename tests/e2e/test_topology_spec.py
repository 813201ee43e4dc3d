"""``topology.spec``: a scenario names its platform's BotSpec; everything follows that spec.

Run the way a user would: the ``qiki-harness`` console script on scenario files in a temp dir.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from services.common.botspec import DEFAULT_BOTSPEC_PATH

Qiki = Callable[..., subprocess.CompletedProcess[str]]

SCENARIO = """\
name: follows-its-spec
topology:
  broker: {backend: process, nodes: 1}
  spec: specs/alt.yaml
  services:
    registrar: {}
    lagmon: {interval_s: 0.25}
    radar_sim: {rate_hz: 50}
steady_state:
  timeout_s: 10
  checks:
    - registrar_codes: {includes: [101, 410]}
method:
  - load: {at_s: 0, duration_s: 1, rate_per_s: 100}
checks:
  - contract: {min_messages: 30}
  - registrar_codes:
      includes: [101, 410, 250, 201]
      excludes: [210, 900, 920, 921, 922, 923, 924, 925, 926, 927]
  - lag: {max: 500, consumer: registrar-scan}
  - delivery: {}
"""


def _alt_spec() -> str:
    """The QIKI spec with other frame subjects, another radar consumer name and frame code."""
    text = DEFAULT_BOTSPEC_PATH.read_text(encoding="utf-8")
    for old, new in (
        ("subjects: [qiki.radar.v1.frames, qiki.radar.v1.frames.lr, qiki.radar.v1.frames.sr]",
         "subjects: [qiki.radar.v1.scan, qiki.radar.v1.scan.lr, qiki.radar.v1.scan.sr]"),
        ("durable: registrar-radar", "durable: registrar-scan"),
        ("code: 210,", "code: 250,"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    return text


def _project(tmp_path: Path, spec_text: str) -> Path:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "alt.yaml").write_text(spec_text, encoding="utf-8")
    # The QIKI spec names its data contracts as ../contracts/*.schema.json.
    shutil.copytree(DEFAULT_BOTSPEC_PATH.parent.parent / "contracts", tmp_path / "contracts")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    return scenario


def test_services_tap_sampler_and_checks_follow_the_scenarios_spec(
        qiki: Qiki, tmp_path: Path, report_dir: Path) -> None:
    scenario = _project(tmp_path, _alt_spec())
    proc = qiki("run", str(scenario), "--report-dir", str(report_dir), timeout_s=240,
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (journal,) = report_dir.glob("*/journal.json")
    j = json.loads(journal.read_text())
    # The registrar coded radar frames by the alternative spec's rule (250, not QIKI's 210).
    assert j["registrar_counts"].get("250", 0) > 0 and "210" not in j["registrar_counts"]
    # The lag sampler watched the alternative spec's consumer.
    lag = next(c for c in j["checks"] if c["name"] == "lag.max")
    assert "QIKI_RADAR_V1/registrar-scan" in lag["observed"]["max_lag_by_consumer"]


@pytest.mark.docker
def test_reference_services_in_containers_follow_the_scenarios_spec(
        qiki: Qiki, tmp_path: Path, report_dir: Path) -> None:
    scenario = _project(tmp_path, _alt_spec())
    scenario.write_text(SCENARIO.replace(
        "  broker: {backend: process, nodes: 1}\n",
        "  broker: {backend: container, nodes: 1}\n  services_in: container\n"))
    proc = qiki("run", str(scenario), "--report-dir", str(report_dir), timeout_s=600,
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (journal,) = report_dir.glob("*/journal.json")
    j = json.loads(journal.read_text())
    assert j["registrar_counts"].get("250", 0) > 0 and "210" not in j["registrar_counts"]


def test_a_spec_with_an_uncaptured_channel_subject_exits_2_before_anything_starts(
        qiki: Qiki, tmp_path: Path, report_dir: Path) -> None:
    bad = _alt_spec().replace("subjects: [qiki.events.v1.sensor]",
                              "subjects: [qiki.sensors.v1.io]")
    scenario = _project(tmp_path, bad)
    proc = qiki("run", str(scenario), "--report-dir", str(report_dir), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    spec_file = (tmp_path / "specs" / "alt.yaml").resolve()
    line = next(i for i, t in enumerate(bad.splitlines(), 1) if "qiki.sensors.v1.io" in t)
    assert "topology.spec" in proc.stderr
    assert f"{spec_file}:{line}: channels[" in proc.stderr
    assert "'qiki.sensors.v1.io'" in proc.stderr and "captured by no stream" in proc.stderr
    assert not list(report_dir.glob("*/journal.json"))  # nothing started


def test_validate_checks_the_spec_a_scenario_names(qiki: Qiki, tmp_path: Path) -> None:
    bad = _alt_spec().replace("code: 250,", "code: 2500,")
    scenario = _project(tmp_path, bad)
    proc = qiki("validate", str(scenario), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "codes.rules[" in proc.stderr and "outside 100..999" in proc.stderr
