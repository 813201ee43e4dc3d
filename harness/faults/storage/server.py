"""The storage-fault filesystem process: ``python -m harness.faults.storage.server``.

A passthrough FUSE filesystem (libfuse 3 through mfusepy) over a backing directory, whose
every write goes through :class:`~harness.faults.storage.model.WriteTracker`. It runs in its
own process, so nats-server's I/O never waits on the harness's event loop, and is driven over
a unix socket (one JSON object per line each way): ``{"op": "stats", "prefix": "n1"}``,
``drop``, ``quota`` (``bytes``: int or null), ``fsync_latency`` (``seconds``), ``status``,
``unmount``.

It unmounts itself when the process that started it dies (``--parent PID``, polled), so a
harness killed with SIGKILL leaves no mount behind; ``qiki-harness down`` finds any that
remain by their fsname (``qiki-fusefs:<run id>``) and the label file next to the mountpoint.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import mfusepy as fuse

from harness.faults.storage.model import WriteTracker

_pinned = threading.local()


class _FUSE(fuse.FUSE):  # type: ignore[misc]
    """mfusepy's FUSE, with a Python thread state kept per libfuse worker thread.

    libfuse's worker threads are not Python threads: ctypes makes a thread state for each
    callback on such a thread (PyGILState_Ensure) and destroys it when the callback returns,
    which was about half of the cost of a write request (nats-server issues one per message).
    One extra, never released PyGILState_Ensure on a thread's first callback keeps its state
    alive; the workers live as long as the mount (libfuse keeps up to ``max_idle_threads``).
    """

    def _wrapper(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        if not getattr(_pinned, "done", False):
            ctypes.pythonapi.PyGILState_Ensure()
            _pinned.done = True
        return super()._wrapper(func, *args, **kwargs)


class PassthroughOps(fuse.Operations):  # type: ignore[misc]
    """Every operation on the backing dir; writes, truncates and fsyncs via the tracker."""

    use_ns = True

    def __init__(self, backing: Path, tracker: WriteTracker) -> None:
        self.root = str(backing)
        self.t = tracker

    def _p(self, path: str) -> str:
        return self.root + path

    @staticmethod
    def _rel(path: str) -> str:
        return path.lstrip("/")

    # ------------------------------------------------------------------ metadata

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._p(path), amode):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.fstat(fh) if fh is not None else os.lstat(self._p(path))
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns",
                "st_mtime_ns", "st_ctime_ns", "st_blocks")
        out = {k: getattr(st, k) for k in keys}
        for k in ("st_atime", "st_mtime", "st_ctime"):
            out[k] = out.pop(k + "_ns")
        return out

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._p(path))]

    def readlink(self, path: str) -> str:
        return os.readlink(self._p(path))

    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(self._p(path), mode)

    def rmdir(self, path: str) -> None:
        os.rmdir(self._p(path))

    def unlink(self, path: str) -> None:
        os.unlink(self._p(path))
        self.t.unlinked(self._rel(path))

    def rename(self, old: str, new: str, *flags: Any) -> None:
        os.rename(self._p(old), self._p(new))
        self.t.renamed(self._rel(old), self._rel(new))

    def symlink(self, target: str, source: str) -> None:
        os.symlink(source, self._p(target))

    def link(self, target: str, source: str) -> None:
        os.link(self._p(source), self._p(target))

    def chmod(self, path: str, mode: int, *_: Any) -> None:
        os.chmod(self._p(path), mode)

    def chown(self, path: str, uid: int, gid: int, *_: Any) -> None:
        os.chown(self._p(path), uid, gid)

    def utimens(self, path: str, times: tuple[int, int] | None = None, *_: Any) -> None:
        if times is None:
            os.utime(self._p(path))
        else:
            os.utime(self._p(path), ns=times)

    def statfs(self, path: str) -> dict[str, Any]:
        sv = os.statvfs(self._p(path))
        return {k: getattr(sv, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize",
                                            "f_favail", "f_ffree", "f_files", "f_flag",
                                            "f_frsize", "f_namemax")}

    # ------------------------------------------------------------------ files

    def open(self, path: str, flags: int) -> int:
        return os.open(self._p(path), flags & ~os.O_APPEND)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        fd = os.open(self._p(path), os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode)
        self.t.created(self._rel(path))
        return fd

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        try:
            return self.t.write(fh, self._rel(path), bytes(data), offset)
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno or errno.EIO) from None

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        try:
            self.t.truncate(self._rel(path), length, fh)
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno or errno.EIO) from None

    def flush(self, path: str, fh: int) -> None:
        return None

    def fsync(self, path: str, datasync: int, fh: int) -> None:
        # No os.fsync of the backing file: durability is what the tracker says, and a real
        # fsync per nats-server write would make the filesystem slower than what it models.
        delay = self.t.fsync(self._rel(path))
        if delay > 0:
            time.sleep(delay)  # this FUSE worker thread only: other I/O goes on

    def fsyncdir(self, path: str, datasync: int, fh: int) -> None:
        delay = self.t.latency_for(self._rel(path))
        if delay > 0:
            time.sleep(delay)

    def release(self, path: str, fh: int) -> None:
        os.close(fh)


# ---------------------------------------------------------------------- control socket


def _handle(tracker: WriteTracker, req: dict[str, Any], stop: threading.Event) -> Any:
    op = req.get("op")
    prefix = str(req.get("prefix") or "")
    if op == "stats":
        return tracker.stats(prefix).as_dict()
    if op == "drop":
        return tracker.drop(prefix).as_dict()
    if op == "quota":
        limit = req.get("bytes")
        return {"used": tracker.set_quota(None if limit is None else int(limit), prefix)}
    if op == "fsync_latency":
        tracker.set_fsync_latency(float(req.get("seconds") or 0.0), prefix)
        return {}
    if op == "status":
        return {"pid": os.getpid(), **tracker.describe()}
    if op == "unmount":
        stop.set()
        return {}
    raise ValueError(f"unknown op {op!r}; expected stats, drop, quota, fsync_latency, status, "
                     "unmount")


def _serve(sock_path: Path, tracker: WriteTracker, stop: threading.Event) -> None:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(sock_path))
    srv.listen(8)

    def client(conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for line in f:
                try:
                    resp = {"ok": True, "result": _handle(tracker, json.loads(line), stop)}
                except Exception as exc:
                    resp = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                f.write(json.dumps(resp).encode() + b"\n")
                f.flush()

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=client, args=(conn,), daemon=True).start()


def _unmount(mountpoint: Path) -> None:
    # -z: lazily, even while nats-server still holds files open (it is dying with us).
    subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _watch(mountpoint: Path, parent: int | None, stop: threading.Event) -> None:
    while not stop.wait(0.2):
        if parent is not None and os.getppid() != parent:
            break  # the harness died (SIGKILL included): nothing may stay mounted
    _unmount(mountpoint)


def main(argv: list[str] | None = None) -> int:
    """Mount ``backing`` at ``mountpoint`` and serve the control socket until unmounted."""
    ap = argparse.ArgumentParser(prog="python -m harness.faults.storage.server")
    ap.add_argument("backing", type=Path)
    ap.add_argument("mountpoint", type=Path)
    ap.add_argument("--control", type=Path, required=True, help="unix socket path")
    ap.add_argument("--fsname", default="qiki-fusefs")
    ap.add_argument("--direct-io", action="store_true",
                    help="no kernel page cache: one request per write() however it sits "
                         "across pages, and nothing cached can outlive a drop; refuses "
                         "shared mmap (SQLite's WAL needs it)")
    ap.add_argument("--parent", type=int, default=None,
                    help="unmount and exit when this process (the harness) is gone")
    args = ap.parse_args(argv)

    tracker = WriteTracker(args.backing)
    stop = threading.Event()
    threading.Thread(target=_serve, args=(args.control, tracker, stop), daemon=True).start()
    threading.Thread(target=_watch, args=(args.mountpoint, args.parent, stop),
                     daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ops = PassthroughOps(args.backing.resolve(), tracker)
    # attr/entry caching off: after a drop the kernel must not serve the sizes it saw before.
    _FUSE(ops, str(args.mountpoint), foreground=True, nothreads=False,
              fsname=args.fsname, attr_timeout=0, entry_timeout=0, negative_timeout=0,
              default_permissions=True, direct_io=args.direct_io)
    return 0


if __name__ == "__main__":
    sys.exit(main())
