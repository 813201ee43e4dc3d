"""A token-protected NATS server run by someone else (started here, outside the harness),
reached the way the README says: ``QIKI_NATS_TOKEN=... qiki-harness run S --nats-url URL``.

Every client of the run must authenticate: the harness's own connection (tap, lag sampler,
load injector and its wire engine), the reference services and a user service (both through
``QIKI_NATS_*`` in their environment). A wrong token is a set-up error (exit 2) that never
echoes the token, and no file the run writes carries it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import OUTSIDE_BASE, outside_nats_server

REPO = Path(__file__).resolve().parents[2]
TOKEN = "tok-e2e-Zq81xV7pLm3"  # distinctive, so a scan cannot miss or falsely find it

# The user service connects with the credentials it finds in QIKI_NATS_* (no URL on argv
# carries them) and says so; a bare `python` is the harness's interpreter.
USER_SERVICE = (
    "import asyncio\n"
    "from services.common.settings import NatsSettings, connect\n"
    "async def main():\n"
    "    nc = await connect(NatsSettings.from_env())\n"
    "    print('user service connected', flush=True)\n"
    "    await asyncio.sleep(3600)\n"
    "asyncio.run(main())\n"
)


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[str]:
    """nats-server with ``authorization { token }`` and JetStream on 127.0.0.1: its URL."""
    with outside_nats_server(tmp_path, OUTSIDE_BASE
                             + f'authorization {{{{ token: "{TOKEN}" }}}}\n') as url:
        yield url


def _scenario(tmp_path: Path) -> Path:
    """The shipped smoke scenario plus a user service that connects with QIKI_NATS_*."""
    import yaml

    data = yaml.safe_load((REPO / "scenarios" / "smoke.yaml").read_text())
    data["topology"]["services"]["authprobe"] = {
        "command": ["python", "-c", USER_SERVICE],
        "env": {"PYTHONPATH": str(REPO)},
        "ready": {"log": "user service connected"},
        "ready_timeout_s": 20,
    }
    path = tmp_path / "smoke-auth.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(scenario: Path, url: str, token: str, report_dir: Path
         ) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "qiki-harness"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIKI_")}
    env["QIKI_NATS_TOKEN"] = token
    return subprocess.run(
        [str(exe), "run", str(scenario), "--backend", "external", "--nats-url", url,
         "--report-dir", str(report_dir), "-q"],
        capture_output=True, text=True, timeout=180, env=env, cwd=REPO,
    )


def _files_with(report_dir: Path, secret: str) -> list[str]:
    needle = secret.encode()
    files = [p for p in report_dir.rglob("*") if p.is_file()]
    assert files, "the run wrote nothing"
    return [str(p.relative_to(report_dir)) for p in files if needle in p.read_bytes()]


def _run_dir(report_dir: Path) -> Path:
    (run,) = [p for p in report_dir.iterdir() if p.is_dir()]
    return run


def test_token_from_env_reaches_every_client(token_server: str, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    res = _run(_scenario(tmp_path), token_server, TOKEN, reports)
    assert res.returncode == 0, res.stdout + res.stderr
    run = _run_dir(reports)
    journal = json.loads((run / "journal.json").read_text())
    assert journal["verdict"] == "passed" and journal["backend"] == "external"
    assert journal["delivery"]["acked"] > 0 and journal["delivery"]["lost"] == 0
    assert journal["lag_samples"], "the lag sampler reached the server"
    assert {"journal.json", "report.html", "junit.xml"} <= {p.name for p in run.iterdir()}
    assert (run / "logs" / "authprobe.log").is_file()
    assert _files_with(reports, TOKEN) == []
    assert TOKEN not in res.stdout + res.stderr


def test_wrong_token_is_a_setup_error_that_never_echoes_it(token_server: str,
                                                           tmp_path: Path) -> None:
    wrong = "wrong-Kk42ppQ0zz"
    reports = tmp_path / "reports"
    res = _run(_scenario(tmp_path), token_server, wrong, reports)
    assert res.returncode == 2, res.stdout + res.stderr
    out = res.stdout + res.stderr
    assert "auth: token" in out, out
    assert wrong not in out and TOKEN not in out
    assert _files_with(reports, wrong) == []
    journal = json.loads((_run_dir(reports) / "journal.json").read_text())
    assert journal["verdict"] == "error"
