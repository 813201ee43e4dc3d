"""The plugin under pytest-xdist: per-worker container session labels, ``serial`` tests that
run alone, and one CTRF / JUnit report written by the controller with every worker's tests."""

from __future__ import annotations

import json
import tempfile
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("xdist")

# Each test records (worker, start, end, session label); the serial one must overlap no other.
TESTS = """
import json, os, tempfile, time
from pathlib import Path

import pytest

OUT = Path(os.environ["XDIST_TEST_OUT"])

def record(name, hold_s):
    t0 = time.monotonic()
    time.sleep(hold_s)
    t1 = time.monotonic()
    (OUT / f"{name}.json").write_text(json.dumps({
        "worker": os.environ.get("PYTEST_XDIST_WORKER"), "start": t0, "end": t1,
        "session": os.environ.get("QIKI_HARNESS_SESSION"),
        "gate": (Path(tempfile.gettempdir()) / "qiki-harness-locks"
                 / f"session-{os.environ['PYTEST_XDIST_TESTRUNUID']}" / "gate").exists()}))

@pytest.mark.parametrize("n", range(8))
def test_shared(n):
    record(f"shared{n}", 0.3)

@pytest.mark.serial
def test_alone():
    record("alone", 0.6)

@pytest.mark.soak
def test_soak_alone_too():
    record("soak", 0.3)

def test_fails():
    assert False, "a failure reaches the controller's reports"
"""


def test_workers_label_apart_serial_tests_run_alone_reports_merge(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "records"
    out.mkdir()
    monkeypatch.setenv("XDIST_TEST_OUT", str(out))
    monkeypatch.delenv("QIKI_HARNESS_SESSION", raising=False)
    pytester.makepyfile(test_many=TESTS)
    ctrf, junit = tmp_path / "ctrf.json", tmp_path / "junit.xml"
    uid = uuid.uuid4().hex
    result = pytester.runpytest_subprocess(
        "-n", "2", f"--testrunuid={uid}", "-p", "no:cacheprovider", f"--qiki-ctrf={ctrf}",
        f"--junitxml={junit}")
    result.assert_outcomes(passed=10, failed=1)

    runs = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert len(runs) == 10
    # Workers inherit the controller's environment; each labels its containers apart.
    labels = {r["worker"]: r["session"] for r in runs.values()}
    assert len(labels) >= 2, labels
    assert all(label and label.endswith(f"-{w}") for w, label in labels.items()), labels
    assert len(set(labels.values())) == len(labels)
    for lone in ("alone", "soak"):
        me = runs[lone]
        overlapping = [name for name, r in runs.items() if name != lone
                       and r["start"] < me["end"] and me["start"] < r["end"]]
        assert overlapping == [], f"{lone} ran beside {overlapping}"

    doc = json.loads(ctrf.read_text())
    statuses = {t["name"].split("::")[-1]: t["status"] for t in doc["results"]["tests"]}
    assert len(statuses) == 11 and statuses["test_fails"] == "failed"
    assert statuses["test_alone"] == "passed"
    cases = ET.parse(junit).getroot().iter("testcase")
    assert len(list(cases)) == 11
    # The workers' gate lived in the session's lock dir; the controller removed it.
    assert all(r["gate"] for r in runs.values())
    assert not (Path(tempfile.gettempdir()) / "qiki-harness-locks" / f"session-{uid}").exists()
