"""End-to-end helpers: run the real ``qiki-harness`` console script."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
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
