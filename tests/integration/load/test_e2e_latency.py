"""End-to-end latency: Locust follows published CloudEvents into the registrar's store."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.load.locust_run import locust_argv, read_locust_rows, run_locust

pytestmark = pytest.mark.load


@contextlib.asynccontextmanager
async def registrar(nats_url: str, db: Path) -> AsyncIterator[str]:
    """``python -m services.registrar`` on a free port; yields its base URL; reaped."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.registrar", "--nats-url", nats_url, "--db", str(db),
        "--http-port", "0", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        url = None
        lines: list[str] = []
        async with asyncio.timeout(30):
            while url is None:
                raw = await proc.stdout.readline()
                if not raw:
                    pytest.fail("registrar exited before READY:\n" + "".join(lines))
                line = raw.decode(errors="replace")
                lines.append(line)
                if line.startswith("READY "):
                    url = line.split()[1].strip()
        # keep draining its output so it never blocks on a full pipe
        drain = asyncio.create_task(proc.stdout.read())
        yield url
        drain.cancel()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_e2e_requests_report_time_to_stored(nats_url: str, tmp_path: Path) -> None:
    async with registrar(nats_url, tmp_path / "registrar.db") as url:
        prefix = tmp_path / "locust"
        argv = locust_argv(host=nats_url, users=4, run_time_s=5, csv_prefix=prefix,
                           extra=["--qiki-registrar-url", url])
        out = await run_locust(argv, timeout_s=90)
    assert out.returncode == 0, out.output[-3000:]
    rows = read_locust_rows(prefix)
    e2e = rows[("E2E", "registrar")]
    assert int(e2e["Request Count"]) > 0
    assert int(e2e["Failure Count"]) == 0
    # time to stored is positive and below the poll timeout (5 s)
    assert 0 <= float(e2e["Max Response Time"]) < 5000
    assert int(rows[("JS_PUB", "qiki.radar.v1.frames")]["Failure Count"]) == 0
