"""``qiki-harness load`` against a server that refuses it: exit 2 naming what was tried.

The injector reconnects endlessly (a broker restart must not end a load), so without a
first connect check a wrong token made ``load`` wait forever, printing ``load 10.0min / 2s``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.broker._binary import find_nats_server
from harness.broker._config import free_ports

TOKEN = "tok-load-Qa7781zz"
WRONG = "wrong-load-Pp1290aa"


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[str]:
    port, http = free_ports(2)
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([str(find_nats_server()), "-a", "127.0.0.1", "-p", str(port),
                             "-m", str(http), "--auth", TOKEN],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "server.log").read_text()) from None
                time.sleep(0.1)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_load_with_a_wrong_token_exits_2_naming_what_was_tried(
        token_server: str, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "qiki-harness"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIKI_")}
    env["QIKI_NATS_TOKEN"] = WRONG
    try:
        res = subprocess.run([str(exe), "load", "--nats-url", token_server, "--rate", "50",
                              "--duration", "1", "--no-progress"],
                             capture_output=True, text=True, timeout=90, env=env,
                             cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("qiki-harness load kept waiting for a server that refuses its token")
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "Authorization Violation" in out and "tried auth: token" in out, out
    assert WRONG not in out and TOKEN not in out
