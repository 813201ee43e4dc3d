"""Stimulus and expectation, run the way a user would: the ``qiki-harness`` console script on
a project in a temp dir (their spec, their service, a data file). Each scenario passes, and a
twin changed in one place fails with exit 1 and a journal that says why."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Qiki = Callable[..., subprocess.CompletedProcess[str]]
DATA = Path(__file__).resolve().parent / "events_data"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of events_data outside the repo; services run with this interpreter."""
    dst = tmp_path / "project"
    shutil.copytree(DATA, dst)
    kill = dst / "greenhouse-kill.yaml"
    kill.write_text(kill.read_text().replace("command: [python,", f'command: ["{sys.executable}",'))
    return dst


def run(qiki: Qiki, scenario: Path, report_dir: Path) -> tuple[int, dict[str, Any], str]:
    proc = qiki("run", str(scenario), "--report-dir", str(report_dir), "-q", timeout_s=180,
                cwd=scenario.parent)
    (journal,) = report_dir.glob(f"*-{scenario.stem.removesuffix('-twin')}-*/journal.json")
    return proc.returncode, json.loads(journal.read_text()), proc.stdout + proc.stderr


def check(journal: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in journal["checks"] if c["name"] == name)


def twin(src: Path, old: str, new: str) -> Path:
    text = src.read_text()
    assert old in text, f"{src.name} changed: update this test's edit"
    dst = src.with_name(f"{src.stem}-twin.yaml")
    dst.write_text(text.replace(old, new))
    return dst


def test_custom_events_are_published_and_expected(
        qiki: Qiki, project: Path, tmp_path: Path) -> None:
    rc, j, out = run(qiki, project / "publish-and-expect.yaml", tmp_path / "r1")
    assert rc == 0, out
    readings, alarm = j["published"]
    assert (readings["step"], readings["sent"], readings["acked"]) == ("readings", 10, 10)
    assert readings["type"] == "acme.climate.v1.Reading" and len(readings["first_ids"]) == 10
    assert (alarm["step"], alarm["acked"]) == ("alarm", 1)
    assert check(j, "events.readings")["observed"]["matched"] == 10
    assert check(j, "events.alarm")["observed"]["matched"] == 1
    assert [t["step"] for t in j["timeline"] if t["kind"] == "publish"] == ["readings", "alarm"]

    broken = twin(project / "publish-and-expect.yaml", "where: {severity: high,",
                  "where: {severity: critical,")
    rc, j, out = run(qiki, broken, tmp_path / "r2")
    assert rc == 1, out
    failed = [c for c in j["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["events.alarm"]
    details = failed[0]["details"]
    said = re.fullmatch(
        r"0 acme\.climate\.v1\.\* on acme\.> matched after the step 'alarm' "
        r"\(t=([0-9.]+)s\) within 2s, expected at least 1", details[0])
    assert said is not None, details[0]
    # the window starts at the step's start; the timeline takes its own clock reading a few
    # microseconds later, which can round to the next millisecond
    assert abs(float(said.group(1)) - j["timeline"][1]["started_s"]) <= 0.01, details[0]
    # what came close: the alarm itself, and the readings the type wildcard also selects
    assert "1 acme.climate.v1.* on acme.> failed where: severity eq 'critical': got 'high'" \
        in details
    assert "10 acme.climate.v1.* on acme.> failed where: severity eq 'critical': got missing" \
        in details


def test_an_alarm_after_the_user_service_is_killed_and_restarted(
        qiki: Qiki, project: Path, tmp_path: Path) -> None:
    rc, j, out = run(qiki, project / "greenhouse-kill.yaml", tmp_path / "r1")
    assert rc == 0, out
    after = check(j, "events.alarm-after-restart")
    assert after["observed"]["matched"] == 1
    # the alarm of the first start came before the window: only the restart's counts
    assert after["observed"]["before_window"] == 1

    # A window long enough to reach the restart: the "no alarm while down" expectation fails.
    broken = twin(project / "greenhouse-kill.yaml", "after: kill-gh, within_s: 0.9}",
                  "after: kill-gh, within_s: 10}")
    rc, j, out = run(qiki, broken, tmp_path / "r2")
    assert rc == 1, out
    failed = [c for c in j["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["events.quiet-while-down"]
    assert "expected at most 0" in failed[0]["details"][0]
    assert any(d.startswith("matched t=") and "'reason': 'restarted'" in d
               for d in failed[0]["details"])


def test_load_carries_the_users_type_and_data(qiki: Qiki, project: Path, tmp_path: Path) -> None:
    """A load step on a user subject sends the user's type and data; the same load without
    them sends the harness's sensor status, which the user's checks must reject."""
    rc, j, out = run(qiki, project / "load-user-type.yaml", tmp_path / "r1")
    assert rc == 0, out
    (load,) = j["load"]
    matched = check(j, "events.readings")["observed"]["matched"]
    assert matched == load["acked"] >= 150, j["checks"]

    default = twin(project / "load-user-type.yaml",
                   "type: acme.climate.v1.Reading, source: \"urn:acme:greenhouse:load\",\n"
                   "           data_file: data/reading.json}", "}")
    rc, j, out = run(qiki, default, tmp_path / "r2")
    assert rc == 1, out
    assert check(j, "events.readings")["observed"]["matched"] == 0
    assert j["load"][0]["acked"] >= 150  # the events were there, of the harness's type


def test_the_drain_waits_for_a_user_services_consumer(
        qiki: Qiki, project: Path, tmp_path: Path) -> None:
    """No registrar in the run: the drain waits for the durable the user's service reads;
    without the drain the check runs while most readings are still unanswered."""
    rc, j, out = run(qiki, project / "drain-user-service.yaml", tmp_path / "r1")
    assert rc == 0, out
    (drain,) = [e for e in j["timeline"] if e["kind"] == "drain"]
    assert drain["ok"] and drain["name"] == "consumers caught up (climate-reader)", drain
    assert check(j, "events.answers")["observed"]["matched"] == 200

    no_drain = twin(project / "drain-user-service.yaml", "drain_timeout_s: 30",
                    "drain_timeout_s: 0")
    rc, j, out = run(qiki, no_drain, tmp_path / "r2")
    assert rc == 1, out
    assert check(j, "events.answers")["observed"]["matched"] < 200
