"""Secret hygiene end to end (issue 10 §3): a run with credentials fails (exit 1) when a
secret shows up in anything it wrote, naming the file and byte offset but never the secret;
the same run without the leak passes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.security]

# A user service that logs its NATS token (the leak), or only that it started.
SERVICE = """
import os, sys, time
if os.environ.get("LEAK") in ("1", "crash"):
    print("connecting with token", os.environ["QIKI_NATS_TOKEN"], flush=True)
if os.environ.get("LEAK") == "crash":
    sys.exit(1)
print("service up", flush=True)
time.sleep(120)
"""

SCENARIO = """
name: secret-scan-{name}
markers: [security]
topology:
  broker: {{backend: process, auth: token}}
  services:
    registrar: {{}}
    chatty:
      command: ["{python}", "svc.py"]
      env: {{LEAK: "{leak}"}}
      ready: {{log: "service up"}}
checks:
  - registrar_codes: {{includes: [101]}}
"""


def _run(qiki: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path, *,
         leak: bool | str, keep: bool = True,
         ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    (tmp_path / "svc.py").write_text(SERVICE)
    flag = leak if isinstance(leak, str) else "1" if leak else "0"
    name = {"1": "leak", "0": "clean"}.get(flag, flag)
    path = tmp_path / f"{name}.yaml"
    path.write_text(SCENARIO.format(name=name, python=sys.executable, leak=flag))
    reports = tmp_path / "reports"
    # --keep-secrets: these tests read the token back to find it in what the run wrote
    r = qiki("run", str(path), "--report-dir", str(reports), *(["--keep-secrets"] if keep else []))
    [run_dir] = [p for p in reports.iterdir() if p.is_dir()]
    return r, json.loads((run_dir / "journal.json").read_text()), run_dir


def test_a_token_in_a_service_log_fails_the_run_without_echoing_it(
        qiki: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    r, j, run_dir = _run(qiki, tmp_path, leak=True)
    assert r.returncode == 1, r.stdout + r.stderr
    [scan] = [c for c in j["checks"] if c["kind"] == "secret_scan"]
    assert not scan["passed"]
    assert scan["details"][0].startswith("logs/chatty.log: byte ")
    token = (run_dir / "secrets" / "token").read_text().strip()
    log = (run_dir / "logs" / "chatty.log").read_bytes()
    offset = int(scan["details"][0].split("byte ")[1].split(":")[0])
    assert log[offset:offset + len(token)] == token.encode()  # the offset is exact
    # ...and the secret is nowhere in what the harness itself says or wrote about it.
    assert token not in r.stdout + r.stderr
    for report in ("journal.json", "junit.xml", "ctrf.json", "report.html"):
        assert token not in (run_dir / report).read_text(), report


def test_the_same_run_without_the_leak_passes(
        qiki: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    r, j, run_dir = _run(qiki, tmp_path, leak=False, keep=False)
    assert r.returncode == 0, r.stdout + r.stderr
    # the credentials are gone with the run, and the report never linked them
    assert not (run_dir / "secrets").exists()
    assert "secrets/" not in (run_dir / "report.html").read_text()
    [scan] = [c for c in j["checks"] if c["kind"] == "secret_scan"]
    assert scan["passed"]
    observed = scan["observed"]
    assert observed["secrets"] >= 1 and observed["files"] > 3 and observed["processes"] >= 2


def test_a_leak_before_a_failed_start_is_still_found(
        qiki: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    r, j, run_dir = _run(qiki, tmp_path, leak="crash")
    assert r.returncode == 2, r.stdout + r.stderr  # the set-up error stays the verdict
    [scan] = [c for c in j["checks"] if c["kind"] == "secret_scan"]
    assert not scan["passed"]
    # The service's own log is the leak; the error quoting its last lines is redacted.
    assert [d.split(":")[0] for d in scan["details"]] == ["logs/chatty.log"]
    assert "connecting with token [REDACTED]" in j["error"]
    token = (run_dir / "secrets" / "token").read_text().strip()
    assert token not in r.stdout + r.stderr
