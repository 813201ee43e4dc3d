"""``qiki-harness load`` against a server that refuses it: exit 2 naming what was tried.

The injector reconnects endlessly (a broker restart must not end a load), so without a
first connect check a wrong token made ``load`` wait forever, printing ``load 10.0min / 2s``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import OUTSIDE_BASE, outside_nats_server

TOKEN = "tok-load-Qa7781zz"
WRONG = "wrong-load-Pp1290aa"


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[str]:
    with outside_nats_server(tmp_path, OUTSIDE_BASE
                             + f'authorization {{{{ token: "{TOKEN}" }}}}\n') as url:
        yield url


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
