"""The storage-fault filesystem on a real FUSE mount: writes, fsync, drop, ENOSPC, latency,
stats, and nothing left mounted after the run or after the harness dies."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.faults.storage import FaultFS, cleanup, list_mounts

pytestmark = [pytest.mark.storage, pytest.mark.timeout(60)]


def _gone(path: Path) -> bool:
    return not path.exists()


def _mounted(path: Path) -> bool:
    return any(m.mountpoint == str(path.resolve()) for m in list_mounts())


@pytest.fixture
async def fs(tmp_path: Path) -> AsyncIterator[FaultFS]:
    async with FaultFS(tmp_path / "backing", tmp_path / "mnt", run_id=f"test-{os.getpid()}",
                       log_path=tmp_path / "fs.log") as mounted:
        yield mounted


def _append(path: Path, data: bytes, *, sync: bool) -> None:
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


async def test_write_fsync_drop_and_stats(fs: FaultFS) -> None:
    synced = fs.mountpoint / "synced.blk"
    _append(synced, b"durable", sync=True)
    _append(synced, b"-volatile", sync=False)
    (fs.mountpoint / "sub").mkdir()
    fresh = fs.mountpoint / "sub" / "fresh.blk"
    _append(fresh, b"never synced", sync=False)
    assert synced.read_bytes() == b"durable-volatile"  # readers see the page cache

    before = await fs.stats()
    assert before["bytes_written"] == 7 + 9 + 12
    assert before["bytes_synced"] == 7
    assert before["bytes_pending"] == 9 + 12
    lost = await fs.drop()
    assert lost["bytes_dropped"] == 9 + 12
    assert lost["vanished"] == ["sub/fresh.blk"]
    # through the mount (no stale kernel cache) and in the backing dir alike
    assert synced.read_bytes() == b"durable"
    assert (fs.backing / "synced.blk").read_bytes() == b"durable"
    assert not fresh.exists()
    assert (fs.mountpoint / "sub").is_dir()  # directories are durable at once (documented)
    after = await fs.stats()
    assert (after["bytes_dropped"], after["bytes_pending"], after["drops"]) == (21, 0, 1)


async def test_enospc_past_quota_then_space_returns(fs: FaultFS) -> None:
    f = fs.mountpoint / "data"
    _append(f, b"x" * 1000, sync=True)
    used = await fs.fill()
    assert used == 1000
    with pytest.raises(OSError) as exc:
        _append(f, b"y" * 10, sync=False)
    assert exc.value.errno == errno.ENOSPC
    assert f.read_bytes() == b"x" * 1000
    assert (await fs.stats())["enospc"] >= 1
    await fs.set_quota(None)
    _append(f, b"y" * 10, sync=True)
    assert f.stat().st_size == 1010


async def test_fsync_latency(fs: FaultFS) -> None:
    f = fs.mountpoint / "slow"
    await fs.set_fsync_latency(0.4)
    t0 = time.monotonic()
    _append(f, b"z", sync=True)
    slowed = time.monotonic() - t0
    await fs.set_fsync_latency(0)
    # a lower bound only (sleeps never end early); no upper bound on a shared machine
    assert slowed >= 0.4


async def test_unmounted_on_close(tmp_path: Path) -> None:
    fs = FaultFS(tmp_path / "b", tmp_path / "m", run_id="test-close")
    async with fs:
        assert _mounted(fs.mountpoint)
        pid = fs.pid
    assert not _mounted(fs.mountpoint)
    assert pid is not None and _gone(Path(f"/proc/{pid}")) and _gone(fs.label)


HARNESS = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from harness.faults.storage import FaultFS

    async def main() -> None:
        root = Path(sys.argv[1])
        async with FaultFS(root / "b", root / "m", run_id=sys.argv[2]):
            print("mounted", flush=True)
            await asyncio.sleep(600)

    asyncio.run(main())
""")


def _crash_harness(tmp_path: Path, run_id: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HARNESS, str(tmp_path), run_id],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "mounted"
    assert _mounted(tmp_path / "m")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc


def _wait_unmounted(path: Path, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _mounted(path):
            return True
        time.sleep(0.1)
    return False


def test_harness_killed_leaves_nothing_mounted(tmp_path: Path) -> None:
    """SIGKILL of the process that mounted: the filesystem notices and unmounts itself."""
    _crash_harness(tmp_path, f"test-crash-{os.getpid()}")
    assert _wait_unmounted(tmp_path / "m")


def test_down_unmounts_what_a_crashed_run_left(tmp_path: Path) -> None:
    """Even when the filesystem process itself died too (kill -9 of both), a stale mount is
    left; ``qiki-harness down --run`` finds it by fsname and removes it."""
    run_id = f"test-down-{os.getpid()}"
    proc = subprocess.Popen([sys.executable, "-c", HARNESS, str(tmp_path), run_id],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "mounted"
    label = tmp_path / "m.qiki-fusefs.json"
    import json

    fs_pid = int(json.loads(label.read_text())["pid"])
    # the filesystem first (so it cannot clean up after itself), then the harness
    os.kill(fs_pid, signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _mounted(tmp_path / "m")  # a dead FUSE mount stays in the mount table
    # A neighbour run's live mount: ``down --run`` must leave it alone. (Not a snapshot of
    # every other mount: under pytest-xdist other tests mount and unmount meanwhile.)
    neighbour = tmp_path / "neighbour"
    neighbour.mkdir()
    other = subprocess.Popen([sys.executable, "-c", HARNESS, str(neighbour), f"{run_id}-other"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "mounted"
        res = subprocess.run([sys.executable, "-m", "harness.cli", "down", "--run", run_id],
                             capture_output=True, text=True, timeout=60)
        assert "unmounted 1 storage-fault filesystem(s)" in res.stdout, res.stdout + res.stderr
        assert not _mounted(tmp_path / "m")
        assert _mounted(neighbour / "m"), "down --run removed another run's mount"
        assert cleanup(run_id).unmounted == []
    finally:
        other.send_signal(signal.SIGKILL)  # its filesystem unmounts itself (test above)
        other.wait()
    assert _wait_unmounted(neighbour / "m")


async def test_direct_io_one_request_per_write_and_no_stale_page_after_drop(fs: FaultFS) -> None:
    # direct_io (the default): a write across a page boundary is one request (through the
    # page cache it would be two), and a file still open after a drop reads the rewound
    # bytes, not a page the kernel kept.
    path = fs.mountpoint / "x.blk"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, b"s" * 4000, 0)
        os.fsync(fd)
        before = await fs.stats()
        os.pwrite(fd, b"u" * 554, 4000)  # straddles the 4 KiB boundary
        after = await fs.stats()
        assert after["writes"] - before["writes"] == 1
        await fs.drop()
        assert os.pread(fd, 8192, 0) == b"s" * 4000
    finally:
        os.close(fd)


async def test_page_cache_mount_splits_writes_at_pages(tmp_path: Path) -> None:
    # The registrar's SQLite (WAL, shared mmap) needs the page cache: direct_io=False.
    async with FaultFS(tmp_path / "b", tmp_path / "m", run_id=f"test-pc-{os.getpid()}",
                       direct_io=False) as fs:
        fd = os.open(fs.mountpoint / "y.blk", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, b"u" * 554, 4000)
        finally:
            os.close(fd)
        assert (await fs.stats())["writes"] == 2
