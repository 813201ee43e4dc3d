"""A user service in container mode (``build: DIR``), built offline and run next to the
container broker: killed, paused and restarted with nothing lost. Needs a Docker engine
(``docker`` marker)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

ECHO = Path(__file__).resolve().parent / "user_service" / "echo.py"
Qiki = Callable[..., subprocess.CompletedProcess[str]]

#: No registry is reachable: the harness hands the build its offline Python base image.
DOCKERFILE = """\
ARG QIKI_PYTHON_BASE
FROM ${QIKI_PYTHON_BASE}
COPY echo.py /svc/echo.py
CMD ["python", "/svc/echo.py"]
"""

SCENARIO = """\
name: user-echo-container
topology:
  broker: {backend: container}
  services:
    echo:
      build: ./echo
      env: {ECHO_NATS_URL: "{nats_url}", ECHO_OUT: echo.v1.out, ECHO_STATE: "{run_dir}/echo"}
      ready: {log: "listening on"}
      ready_timeout_s: 90
method:
  - load: {at_s: 0, duration_s: 10, rate_per_s: 100, subject: echo.v1.in.load}
  - fault: {at_s: 1, action: kill, target: "service:echo", duration_s: 1}
  - fault: {at_s: 5, action: pause, target: "service:echo", duration_s: 0.5}
  - fault: {at_s: 8, action: restart, target: "service:echo"}
  - wait: {at_s: 10, duration_s: 5}
checks:
  - delivery: {subject: echo.v1.out, max_duplicated: 1000000}
"""


def _run_echo_project(qiki: Qiki, tmp_path: Path, report_dir: Path,
                      scenario: str) -> subprocess.CompletedProcess[str]:
    """A user's project (the echo service with its Dockerfile, and ``scenario``) run with
    ``qiki-harness run`` from its own directory."""
    root = tmp_path / "project"
    (root / "echo").mkdir(parents=True)
    shutil.copy(ECHO, root / "echo" / "echo.py")
    (root / "echo" / "Dockerfile").write_text(DOCKERFILE)
    (root / "scenario.yaml").write_text(scenario)
    return qiki("run", "scenario.yaml", "--report-dir", str(report_dir), "--quiet",
                cwd=root, timeout_s=600)


def test_container_user_service_killed_and_restarted_loses_nothing(
    qiki: Qiki, tmp_path: Path, report_dir: Path
) -> None:
    proc = _run_echo_project(qiki, tmp_path, report_dir, SCENARIO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = next(p for p in report_dir.iterdir() if p.is_dir())
    journal = json.loads((run_dir / "journal.json").read_text())
    assert journal["backend"] == "container"
    delivery = next(c for c in journal["checks"] if c["kind"] == "delivery")["observed"]
    assert delivery["acked"] > 500 and delivery["lost"] == 0, delivery
    started = [e for e in journal["events"] if e["kind"] == "service.started"]
    assert started and started[0]["container"].endswith("-echo")
    summary = next(e for e in journal["events"] if e["kind"] == "evidence.summary")
    assert summary["service_restarts"]["echo"] == 2  # the kill's heal, then the restart
    log = (run_dir / "logs" / "echo.log").read_text()
    assert log.count("listening on") == 3, log
    # {nats_url} is the broker's address on the run's Docker network
    assert "connected to n1:4222" in log


def test_container_user_service_crash_exits_2_quoting_its_log(
    qiki: Qiki, tmp_path: Path, report_dir: Path
) -> None:
    text = SCENARIO.replace("ECHO_OUT: echo.v1.out,", "ECHO_OUT: echo.v1.out, ECHO_CRASH: 1,")
    proc = _run_echo_project(qiki, tmp_path, report_dir, text)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot open the frobnicator" in proc.stdout
    run_dir = next(p for p in report_dir.iterdir() if p.is_dir())
    assert "cannot open the frobnicator" in (run_dir / "logs" / "echo.log").read_text()


#: The same service next to a container broker under mTLS with per-identity passwords: it
#: dials ``n1`` (which the server certificate names) with the CA, its client certificate and
#: key from ``QIKI_NATS_*`` (the files through the run dir mount), never argv.
MTLS_SCENARIO = SCENARIO.replace(
    "name: user-echo-container\n", "name: user-echo-container-mtls\n").replace(
    "  broker: {backend: container}\n",
    "  broker: {backend: container, auth: user, tls: {enabled: true, verify_client: true}}\n")


@pytest.mark.security
def test_container_user_service_under_mtls_loses_nothing(
    qiki: Qiki, tmp_path: Path, report_dir: Path
) -> None:
    assert "verify_client: true" in MTLS_SCENARIO
    proc = _run_echo_project(qiki, tmp_path, report_dir, MTLS_SCENARIO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = next(p for p in report_dir.iterdir() if p.is_dir())
    journal = json.loads((run_dir / "journal.json").read_text())
    assert journal["backend"] == "container"
    sec = journal["broker"]["security"]
    assert sec["tls"] and sec["verify_client"] and sec["auth"] == "user"
    delivery = next(c for c in journal["checks"] if c["kind"] == "delivery")["observed"]
    assert delivery["acked"] > 500 and delivery["lost"] == 0, delivery
    log = (run_dir / "logs" / "echo.log").read_text()
    assert log.count("listening on") == 3, log
    assert "connected to n1:4222 (tls)" in log
    [scan] = [c for c in journal["checks"] if c["kind"] == "secret_scan"]
    assert scan["passed"], scan
