"""The run report and the run history as a user gets them: the CLI writes them, Chromium
renders them (issue 12).

Chromium is Debian's ``chromium``: the tests skip with the reason without it, and fail when
``QIKI_REQUIRE_CHROMIUM=1`` (CI installs it and must not pass by skipping). Each rendered
page leaves a screenshot in ``$QIKI_TEST_ARTIFACTS`` (default ``reports/test-artifacts`` of
the repo): pytest's own tmp dirs are pruned by the next sessions, so CI could not keep them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, SCENARIOS, run_qiki

Qiki = Callable[..., subprocess.CompletedProcess[str]]


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        reason = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("QIKI_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{reason}; QIKI_REQUIRE_CHROMIUM=1", pytrace=False)
        pytest.skip(reason)
    return exe


def artifacts() -> Path:
    """Where screenshots are kept for people and CI to look at."""
    d = Path(os.environ.get("QIKI_TEST_ARTIFACTS", REPO / "reports" / "test-artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def render(page: Path, shot: Path, profile: Path) -> tuple[str, str]:
    """Open ``page`` in headless Chromium: (serialised DOM, console/log output); a
    screenshot goes to ``shot`` and is copied to :func:`artifacts`."""
    exe = _chromium()
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--no-first-run",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
            "--window-size=1200,2400"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    pic = subprocess.run([*base, f"--screenshot={shot}", page.as_uri()], capture_output=True,
                         text=True, timeout=90)
    assert pic.returncode == 0 and shot.stat().st_size > 10_000, pic.stderr[-2000:]
    shutil.copy(shot, artifacts() / f"{page.parent.name}-{shot.name}")
    return dom.stdout, dom.stderr + pic.stderr


def console_errors(log: str) -> list[str]:
    """Console messages and resource errors Chromium logged for the page."""
    return [line for line in log.splitlines()
            if "CONSOLE" in line or "Failed to load resource" in line
            or "Refused to" in line]


class Runs(dict[str, Path]):
    """name -> run dir; ``stdout[name]``: what ``qiki-harness run`` printed for it."""

    def __init__(self, dirs: dict[str, Path], stdout: dict[str, str]) -> None:
        super().__init__(dirs)
        self.stdout = stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """A reports dir with a passed smoke, a failed variant, a chaos run, an errored run and
    a truncated journal; name -> run dir. The CLI's own checks of a passed smoke run and of
    its failing variant use these runs too (they used to make the same two runs again).

    The four runs are independent CLI processes, started together: one after the other they
    held this worker 30-45 s, mostly waiting on servers (each run's dir is the one its
    ``report:`` line names)."""
    reports = tmp_path_factory.mktemp("reports")
    broken = tmp_path_factory.mktemp("variant") / "smoke-failing.yaml"
    broken.write_text((SCENARIOS / "smoke.yaml").read_text()
                      .replace("excludes: [702,", "excludes: [210, 702,"))
    plan: dict[str, tuple[int, tuple[str, ...]]] = {
        "smoke": (0, (str(SCENARIOS / "smoke.yaml"), "--backend", "process")),
        "chaos": (0, (str(SCENARIOS / "chaos-broker-kill.yaml"),)),
        "failed": (1, (str(broken), "--backend", "process")),
        # nothing listens on port 9: the broker cannot be reached, the run errors
        "error": (2, (str(SCENARIOS / "smoke.yaml"), "--nats-url", "nats://127.0.0.1:9")),
    }

    def run(name: str) -> tuple[Path, str]:
        expect, args = plan[name]
        res = run_qiki("run", *args, "--report-dir", str(reports), "-q", timeout_s=180)
        assert res.returncode == expect, res.stdout + res.stderr
        [html] = re.findall(r"report: (\S+report\.html)", res.stdout)
        return Path(html).parent, res.stdout

    with ThreadPoolExecutor(len(plan)) as pool:
        done = dict(zip(plan, pool.map(run, plan), strict=True))
    out = {name: d for name, (d, _) in done.items()}
    trunc = reports / "20990101-000000-smoke-truncated"
    shutil.copytree(out["smoke"], trunc)
    text = (trunc / "journal.json").read_text()
    (trunc / "journal.json").write_text(text[: len(text) // 3])
    out["truncated"] = trunc
    return Runs(out, {name: o for name, (_, o) in done.items()})


def test_run_smoke_passes_and_writes_reports(runs: Runs) -> None:
    """``qiki-harness run smoke.yaml``: exit 0 (the fixture checks it), a result line, the
    journal, the HTML report, JUnit, and the registrar's store for ``registrar query``."""
    assert runs.stdout["smoke"].startswith("PASSED  smoke")
    run = runs["smoke"]
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
    q = run_qiki("registrar", "query", "--db", str(run / "registrar.db"), "--code", "210",
                 "--limit", "3")
    assert q.returncode == 0, q.stderr
    rows = [json.loads(line) for line in q.stdout.splitlines()]
    assert len(rows) == 3 and all(r["code"] == 210 for r in rows)


def test_broken_variant_exits_1_and_names_the_check(runs: Runs) -> None:
    """The smoke variant excluding 210 (which does occur): exit 1 (the fixture checks it),
    that check and no other failed, named on stdout."""
    assert "FAIL registrar.codes" in runs.stdout["failed"]
    journal = json.loads((runs["failed"] / "journal.json").read_text())
    assert journal["verdict"] == "failed"
    failed = [c for c in journal["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["registrar.codes"]
    assert "code 210 excluded but recorded" in failed[0]["details"][0]


def test_run_writes_ctrf_next_to_junit(runs: Runs) -> None:
    for name in ("smoke", "failed", "error"):
        d = runs[name]
        assert (d / "junit.xml").is_file()
        doc = json.loads((d / "ctrf.json").read_text())
        assert doc["reportFormat"] == "CTRF"
        summary = doc["results"]["summary"]
        assert summary["tests"] == len(doc["results"]["tests"]) > 0
        assert (summary["failed"] > 0) == (name != "smoke"), (name, summary)


@pytest.mark.parametrize("name", ["smoke", "chaos"])
def test_report_renders_in_chromium(runs: dict[str, Path], name: str, tmp_path: Path) -> None:
    run_dir = runs[name]
    dom, log = render(run_dir / "report.html", run_dir / "screenshot.png", tmp_path / "prof")
    assert console_errors(log) == [], console_errors(log)
    # charts: availability, latency, lag; every series named in the legend
    assert dom.count('<figure class="chart">') == 3, dom[:2000]
    assert len(re.findall(r"<polyline[^>]*class=\"series\"", dom)) >= 3
    assert "acked publishes per" in dom and "PubAck p99" in dom
    assert re.search(r'<table class="checks">', dom)
    assert re.search(r'<td>210</td><td>RADAR_FRAME_RECEIVED</td><td>2xx sensor/io</td>', dom)
    assert 'href="journal.json"' in dom and re.search(r'href="logs/[^"]+\.log"', dom)
    if name == "chaos":
        journal = json.loads((run_dir / "journal.json").read_text())
        [lag] = [r for r in journal["recoveries"] if r["kind"] == "lag"]
        [check] = [c for c in journal["checks"] if c["name"] == "lag.recovery"]
        # one number: the journal, the check and the header
        assert lag["value_s"] == check["observed"]["recovery_s"] == journal["recovery_s"]
        assert lag["threshold"] == 500 and lag["check"] == "lag.recovery"
        assert f"{lag['value_s']:.2f} s after last fault healed" in dom
        assert "kill broker" in dom  # the fault band's label
        assert any(r["kind"] == "write" for r in journal["recoveries"])
        # the per-interval series counts every PubAck the load got
        acked = sum(p["acked"] for p in journal["availability"]["points"])
        assert acked == sum(r["acked"] for r in journal["load"]) + sum(
            p["acked"] for p in journal["published"]), acked


def test_cli_report_indexes_every_kind_of_run(runs: dict[str, Path], tmp_path: Path) -> None:
    reports = runs["smoke"].parent
    res = run_qiki("report", str(reports))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 runs (1 with a broken or partial journal)" in res.stdout, res.stdout
    assert runs["truncated"].name in res.stdout
    index = reports / "index.html"
    page = index.read_text()
    for verdict in ("PASSED", "FAILED", "ERROR", "BROKEN"):
        assert f'<span class="verdict {verdict.lower()}">{verdict}</span>' in page, verdict
    for name in ("smoke", "chaos", "failed", "error"):
        assert f'href="{runs[name].name}/report.html"' in page
    assert "registrar.codes" in page  # the failed run's failed check
    dom, log = render(index, reports / "index.png", tmp_path / "prof")
    assert console_errors(log) == []
    assert dom.count('<tr class="run') == 5
    assert '<figure class="spark"' in dom  # per-scenario trends


def test_cli_report_on_a_missing_dir_says_so(tmp_path: Path) -> None:
    res = run_qiki("report", str(tmp_path / "nope"))
    assert res.returncode == 2
    assert "does not exist" in res.stderr and "qiki-harness run" in res.stderr
