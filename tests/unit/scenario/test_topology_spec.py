"""``topology.spec`` in the scenario loader, and what the harness derives from a spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.platform import tap_subjects
from harness.scenario.loader import ScenarioError, load_scenario
from harness.scenario.model import LoadStep
from harness.scenario.runner import _with_default_subject
from services.common.botspec import generate, load_runtime_config, parse_botspec

SPEC = """\
version: "2.0"
kind: BotSpec
metadata: {id: ACME}
streams: [{name: ACME, subjects: ["acme.>"]}]
channels:
  - {name: Readings, subjects: ["acme.readings.>", acme.readings.raw]}
  - {name: Alarms, subjects: [acme.alarms]}
"""

SCENARIO = """\
name: uses-a-spec
topology:
  spec: specs/acme.yaml
  services: {}
"""


def _write(tmp_path: Path, spec: str) -> Path:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "acme.yaml").write_text(spec)
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    return path


def test_a_scenario_names_its_spec_relative_to_its_file(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, SPEC))
    assert scenario.topology.spec == "specs/acme.yaml"


def test_a_bad_spec_is_a_scenario_error_quoting_the_spec_file_path_and_line(
        tmp_path: Path) -> None:
    bad = SPEC.replace("{name: Alarms, subjects: [acme.alarms]}",
                       "{name: Alarms, subjects: [other.alarms]}")
    with pytest.raises(ScenarioError) as info:
        load_scenario(_write(tmp_path, bad))
    (problem,) = info.value.problems
    spec_file = (tmp_path / "specs" / "acme.yaml").resolve()
    assert problem.startswith("topology.spec (line 3): invalid BotSpec: ")
    assert f"{spec_file}:7: channels[1].subjects[0]" in problem
    assert "captured by no stream" in problem


def test_a_missing_spec_file_is_a_scenario_error(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(path)


def test_the_tap_listens_to_every_channel_subject_once() -> None:
    config = generate(parse_botspec(SPEC))
    # acme.readings.raw is inside acme.readings.> : one subscription, no double recording
    assert tap_subjects(config) == ["acme.readings.>", "acme.alarms"]
    qiki = tap_subjects(load_runtime_config())
    assert "qiki.radar.v1.frames.lr" in qiki and "qiki.events.v1.registrar" in qiki
    assert not any(s.startswith("qiki.dlq.") for s in qiki)  # dead letters are not tapped


def test_steps_without_subject_use_the_specs_sensor_channel() -> None:
    step = LoadStep(at_s=0, duration_s=1, rate_per_s=1)
    got = _with_default_subject(step, load_runtime_config())
    assert got.subject == load_runtime_config().subjects.sensor_events != ""
    given = LoadStep(at_s=0, duration_s=1, rate_per_s=1, subject="x.y")
    assert _with_default_subject(given, load_runtime_config()) is given
    with pytest.raises(ConfigError, match="no sensor channel"):
        _with_default_subject(step, generate(parse_botspec(SPEC)))


def test_consumers_and_streams_a_scenario_names_must_be_the_specs(tmp_path: Path) -> None:
    spec = SPEC + "consumers: [{durable: reader, stream: ACME}]\n"
    path = _write(tmp_path, spec)
    path.write_text(SCENARIO.replace("services: {}", "services: {lagmon: {thresholds: {readr: 5}}}")
                    + "checks:\n  - lag: {max: 5, consumer: reader, stream: ACME}\n"
                    + "  - lag_recovery: {threshold: 5, within_s: 1, consumer: registrar-events}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert problems[0].startswith("topology.services.lagmon.thresholds.readr (line 4): "
                                  "unknown consumer 'readr'; the spec's consumers: reader")
    assert problems[1].startswith("checks[1].lag_recovery.consumer (line 7): unknown consumer "
                                  "'registrar-events'")
