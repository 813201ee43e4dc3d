"""End-to-end helpers: run the real ``qiki-harness`` console script."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scenarios"


def run_qiki(
    *args: str, timeout_s: float = 120, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run ``qiki-harness ARGS`` as a user would (same interpreter's console script)."""
    exe = Path(sys.executable).parent / "qiki-harness"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIKI_")}
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout_s, cwd=cwd, env=env
    )


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    """A fresh report directory."""
    d = tmp_path / "reports"
    d.mkdir()
    return d


@pytest.fixture
def qiki() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``qiki("run", ...)`` -> CompletedProcess (text output, 120 s timeout)."""
    return run_qiki


@contextlib.contextmanager
def outside_nats_server(tmp_path: Path, config: str) -> Iterator[str]:
    """A nats-server the harness did not start (an "existing deployment"), from ``config``
    (nats-server config text; ``{port}``, ``{http}`` and ``{store}`` are filled in), with
    JetStream on 127.0.0.1: yields its client URL once /healthz answers; stopped on exit."""
    from harness.broker._binary import find_nats_server
    from harness.broker._config import free_ports

    port, http = free_ports(2)
    conf = tmp_path / "server.conf"
    conf.write_text(config.format(port=port, http=http, store=tmp_path / "js"))
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([str(find_nats_server()), "-c", str(conf)], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{http}/healthz?js-enabled-only=true", timeout=1):
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


#: The listen/http/jetstream lines of an outside server's config (see outside_nats_server).
OUTSIDE_BASE = ('listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\n'
                'jetstream {{ store_dir: "{store}" }}\n')
