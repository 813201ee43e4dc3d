"""A run-owned mount of the storage-fault filesystem (an async context manager).

``async with FaultFS(backing, mountpoint, run_id=...) as fs`` spawns the filesystem process,
waits for the mount and its control socket, and unmounts and reaps it on exit. The process
watches its parent and unmounts itself if the harness dies (SIGKILL too); :func:`cleanup`
(``qiki-harness down``) removes whatever a crashed run still left, found by fsname.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness._resource import AsyncResource
from harness.errors import HarnessError

#: fsname prefix of our mounts in /proc/self/mounts: ``qiki-fusefs:<run id>``
FSNAME_PREFIX = "qiki-fusefs"
#: written next to the mountpoint: who mounted it (pid, run id, backing dir)
LABEL_SUFFIX = ".qiki-fusefs.json"
#: the platform mounts in a temp dir named so; ``down`` removes those a crash left
ORPHAN_DIR_PREFIX = "qiki-fusefs-"


class FaultFSError(HarnessError):
    """The storage-fault filesystem could not mount or did not answer."""


def fuse_available() -> tuple[bool, str]:
    """Whether a FUSE mount can work here, and why not."""
    if not os.path.exists("/dev/fuse"):
        return False, "/dev/fuse is missing (a container needs --device /dev/fuse)"
    if shutil.which("fusermount3") is None:
        return False, "fusermount3 is missing (apt-get install fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return False, f"mfusepy cannot load libfuse3: {exc}"
    return True, ""


def _is_mounted(path: Path) -> bool:
    target = str(path.resolve())
    return any(m.mountpoint == target for m in list_mounts())


class FaultFS(AsyncResource):
    """One mount of the filesystem: ``backing`` (real files) seen through ``mountpoint``.

    ``direct_io`` (default): the kernel keeps no page cache for the mount, so each write()
    is one request to the filesystem (with the page cache, one that straddles a page
    boundary is two) and no cached page can outlive a drop. It refuses shared mmap: a
    SQLite database in WAL mode (its ``-shm`` file) needs ``direct_io=False``.
    """

    def __init__(self, backing: str | Path, mountpoint: str | Path, *, run_id: str = "adhoc",
                 ready_timeout_s: float = 10.0, log_path: str | Path | None = None,
                 direct_io: bool = True) -> None:
        self.backing = Path(backing)
        self.mountpoint = Path(mountpoint)
        self.run_id = run_id
        self.control = self.mountpoint.parent / f".{self.mountpoint.name}.ctl"
        self.label = self.mountpoint.parent / f"{self.mountpoint.name}{LABEL_SUFFIX}"
        self.ready_timeout_s = ready_timeout_s
        self.log_path = Path(log_path) if log_path else None
        self.direct_io = direct_io
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def fsname(self) -> str:
        """What ``mount`` shows as the source: finds the mount after a crash."""
        return f"{FSNAME_PREFIX}:{self.run_id}"

    @property
    def pid(self) -> int | None:
        """The filesystem process's pid while it runs."""
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Mount, then wait for the control socket to answer."""
        ok, why = fuse_available()
        if not ok:
            raise FaultFSError(f"cannot mount the storage-fault filesystem: {why}")
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.control.unlink(missing_ok=True)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: ASYNC230
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "harness.faults.storage.server",
                str(self.backing), str(self.mountpoint), "--control", str(self.control),
                "--fsname", self.fsname, "--parent", str(os.getpid()),
                *(["--direct-io"] if self.direct_io else []),
                stdout=log, stderr=log, start_new_session=True,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        self.label.write_text(json.dumps({"pid": self._proc.pid, "run_id": self.run_id,
                                          "backing": str(self.backing),
                                          "mountpoint": str(self.mountpoint)}))
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                raise FaultFSError(f"the filesystem process exited with code "
                                   f"{self._proc.returncode} before mounting {self.mountpoint}"
                                   + (f"; see {self.log_path}" if self.log_path else ""))
            if self.control.exists() and _is_mounted(self.mountpoint):
                with contextlib.suppress(OSError):
                    await self.request("status")
                    return
            await asyncio.sleep(0.05)
        raise FaultFSError(f"{self.mountpoint} was not mounted within {self.ready_timeout_s}s")

    async def request(self, op: str, **args: Any) -> Any:
        """One control request; raises FaultFSError with the filesystem's answer on failure."""
        reader, writer = await asyncio.open_unix_connection(str(self.control))
        try:
            writer.write(json.dumps({"op": op, **args}).encode() + b"\n")
            await writer.drain()
            resp = json.loads(await reader.readline())
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if not resp.get("ok"):
            raise FaultFSError(f"filesystem control {op}: {resp.get('error')}")
        return resp["result"]

    async def stats(self, prefix: str = "") -> dict[str, Any]:
        """Bytes written, synced, dropped, pending (under ``prefix``)."""
        result: dict[str, Any] = await self.request("stats", prefix=prefix)
        return result

    async def drop(self, prefix: str = "") -> dict[str, Any]:
        """Power loss: every unsynced write under ``prefix`` is undone; returns what was lost."""
        result: dict[str, Any] = await self.request("drop", prefix=prefix)
        return result

    async def set_quota(self, limit_bytes: int | None, prefix: str = "") -> int:
        """Cap usage under ``prefix`` (None lifts it); returns the bytes in use."""
        result = await self.request("quota", bytes=limit_bytes, prefix=prefix)
        return int(result["used"])

    async def fill(self, prefix: str = "") -> int:
        """Disk full from now: no file under ``prefix`` may grow; returns bytes in use."""
        used = await self.set_quota(0, prefix)
        return await self.set_quota(used, prefix)

    async def set_fsync_latency(self, seconds: float, prefix: str = "") -> None:
        """Every fsync under ``prefix`` takes ``seconds`` longer (0 removes it)."""
        await self.request("fsync_latency", seconds=seconds, prefix=prefix)

    async def close(self) -> None:
        """Unmount and reap the process; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(OSError, FaultFSError, json.JSONDecodeError):
                await asyncio.wait_for(self.request("unmount"), 2.0)
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
                await proc.wait()
        if _is_mounted(self.mountpoint):
            _fusermount_u(self.mountpoint)
        self.control.unlink(missing_ok=True)
        self.label.unlink(missing_ok=True)


def _fusermount_u(path: str | Path) -> bool:
    r = subprocess.run(["fusermount3", "-u", "-z", str(path)], check=False,
                       capture_output=True)
    if r.returncode != 0:  # root can always umount -l
        r = subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
    return r.returncode == 0


@dataclass
class Mount:
    """One of our mounts as /proc/self/mounts lists it."""

    fsname: str
    mountpoint: str

    @property
    def run_id(self) -> str:
        """The run that mounted it (after ``qiki-fusefs:``)."""
        return self.fsname.partition(":")[2]


def list_mounts() -> list[Mount]:
    """Every storage-fault mount on this machine (a crashed run's too)."""
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].startswith(FSNAME_PREFIX):
                # /proc/mounts escapes spaces as \040
                out.append(Mount(parts[0], parts[1].replace("\\040", " ")))
    return out


@dataclass
class CleanupReport:
    """What :func:`cleanup` unmounted and what it could not."""

    unmounted: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    #: temp dirs of crashed runs removed (their stores)
    removed_dirs: list[str] = field(default_factory=list)


def cleanup(run_id: str | None = None) -> CleanupReport:
    """Unmount our mounts (only ``run_id``'s when given) and end their processes."""
    report = CleanupReport()
    for m in list_mounts():
        if run_id is not None and m.run_id != run_id:
            continue
        mp = Path(m.mountpoint)
        label = mp.parent / f"{mp.name}{LABEL_SUFFIX}"
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(json.loads(label.read_text())["pid"])
        if _fusermount_u(mp):
            report.unmounted.append(m.mountpoint)
        else:
            report.errors[m.mountpoint] = "fusermount3 -u and umount -l both failed"
        if pid is not None:
            # Only the pid our own label names, and only if it still is our server.
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"harness.faults.storage.server" in cmd:
                    os.kill(pid, signal.SIGTERM)
        label.unlink(missing_ok=True)
    report.removed_dirs = _remove_orphan_dirs(run_id)
    return report


def _alive(pid: int) -> bool:
    try:
        return b"harness.faults.storage.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _remove_orphan_dirs(run_id: str | None) -> list[str]:
    """The temp dirs (backing store, mountpoint) of runs whose filesystem process is gone and
    whose mount is no longer listed: a crashed run's store would otherwise stay in /tmp."""
    import tempfile

    mounted = {m.mountpoint for m in list_mounts()}
    removed = []
    for label in Path(tempfile.gettempdir()).glob(f"{ORPHAN_DIR_PREFIX}*/*{LABEL_SUFFIX}"):
        try:
            info = json.loads(label.read_text())
        except (OSError, ValueError):
            continue
        if run_id is not None and info.get("run_id") != run_id:
            continue
        if _alive(int(info.get("pid", 0))) or info.get("mountpoint") in mounted:
            continue
        shutil.rmtree(label.parent, ignore_errors=True)
        removed.append(str(label.parent))
    return removed
