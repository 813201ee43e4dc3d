"""What a power loss forgets: the write-tracking model of the storage-fault filesystem.

Pure Python over a backing directory, no FUSE, so it is unit-tested on its own; the FUSE
process (:mod:`harness.faults.storage.server`) calls it for every write, truncate, fsync,
create, rename and unlink.

The model (issue 11), stated so a reader knows what a ``drop`` claims:

- Writes reach the backing directory at once (that is the page cache: readers see them).
  For every file, each write or truncate that has not been fsynced since is kept *in order*
  as an undo record (the bytes it overwrote and the size before it). ``fsync``/``fdatasync``
  of a file makes its records durable (forgets them).
- ``drop`` (a power loss) undoes every file's unsynced records, newest first, so each file
  returns to its content at its last fsync. A file created and never fsynced vanishes.
- Namespace operations (mkdir, rename, unlink) are durable at once, i.e. we model a journaled
  filesystem whose metadata commits with the next operation; directory fsync is accepted and
  counted but changes nothing. A file renamed carries its unsynced records (and its
  "never synced" state: rename of an unsynced temp file over a synced one, then a power loss,
  leaves *neither*, which is harsher than ext4's ``auto_da_alloc`` replace-on-rename flush).
  An unlinked file's unsynced records are forgotten (the unlink is durable).
- ``quota``: bytes the files under a path prefix may use; a write or truncate that would grow
  them past it fails with ENOSPC (``disk-full``). ``fsync_latency_s``: fsync sleeps that long
  under a prefix (``slow-disk``). Prefixes let one mount carry every node of a cluster
  (``n1/``, ``n2/``...) and still fail one node alone.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: paths listed per drop in its result (the counters cover the rest)
MAX_LISTED = 20


class _Undo:
    """One unsynced write or truncate: how to put the file back as it was before it.

    A record whose ``old`` is empty only says "truncate to ``old_size``" (an append, or a
    truncate that did not shrink the file). Such records coalesce: see :func:`_record`.
    """

    __slots__ = ("length", "offset", "old", "old_size")

    def __init__(self, offset: int, old: bytes, old_size: int, length: int) -> None:
        self.offset = offset
        self.old = old  # bytes the write overwrote (only those inside the old size)
        self.old_size = old_size
        self.length = length  # bytes written (for the dropped counter); coalesced appends add up


class _FileState:
    __slots__ = ("counters", "never_synced", "pending_bytes", "undo")

    def __init__(self, counters: StorageStats, never_synced: bool = False) -> None:
        self.undo: list[_Undo] = []
        #: created since the last drop and never fsynced: a power loss makes it vanish
        self.never_synced = never_synced
        #: bytes written since the last fsync (kept as a sum: fsync and stats do not walk undo)
        self.pending_bytes = 0
        #: lifetime counters of the file's top-level prefix (looked up once, not per write)
        self.counters = counters


def _record(st: _FileState, offset: int, old: bytes, old_size: int, length: int) -> None:
    """Keep the undo of one write/truncate, coalescing pure extensions of the file.

    Undoing an ``old``-less record is ``truncate(old_size)``. Two such records in a row,
    X then Y, undo as ``truncate(Y.old_size)`` then ``truncate(X.old_size)``; X did not
    shrink the file, so ``X.old_size <= Y.old_size`` and the pair undoes exactly as X alone.
    So an append after an append only adds its length to the previous record: a file that
    only grows keeps one record between fsyncs however many writes it takes (nats-server
    appends every message with its own pwrite).
    """
    undo = st.undo
    if not old and undo and not undo[-1].old:
        undo[-1].length += length
    else:
        undo.append(_Undo(offset, old, old_size, length))
    st.pending_bytes += length


@dataclass
class StorageStats:
    """Counters for the journal: bytes written, made durable by fsync, dropped by a power loss."""

    bytes_written: int = 0
    #: write requests the filesystem served (bytes_written / writes: bytes per request)
    writes: int = 0
    bytes_synced: int = 0
    bytes_dropped: int = 0
    bytes_pending: int = 0
    files_pending: int = 0
    files_vanished: int = 0
    fsyncs: int = 0
    drops: int = 0
    enospc: int = 0
    #: what a drop touched (first few paths): which files vanished, which were rewound
    vanished: list[str] = field(default_factory=list)
    rewound: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON on the control socket, the journal)."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}


def _under(rel: str, prefix: str) -> bool:
    prefix = prefix.strip("/")
    return not prefix or rel == prefix or rel.startswith(prefix + "/")


class WriteTracker:
    """Tracks unsynced writes per file over ``backing`` and can undo them (thread-safe).

    Paths are relative to the backing directory (``"n1/jetstream/..."``). Counters are kept
    per top-level prefix asked for with :meth:`stats` (computed on demand from totals kept
    per file path, so a node's ``n2/`` can be reported alone).
    """

    def __init__(self, backing: str | Path) -> None:
        self.backing = Path(backing)
        self._files: dict[str, _FileState] = {}
        self._lock = threading.RLock()
        # per-path lifetime counters, folded into stats() by prefix
        self._counters: dict[str, StorageStats] = {}
        self._quota: dict[str, int] = {}
        self._used: dict[str, int] = {}
        self._latency: dict[str, float] = {}

    # ------------------------------------------------------------------ helpers

    def _abs(self, rel: str) -> Path:
        return self.backing / rel.lstrip("/")

    def _count(self, rel: str) -> StorageStats:
        top = rel.lstrip("/").split("/", 1)[0]
        return self._counters.setdefault(top, StorageStats())

    def _size(self, rel: str) -> int:
        try:
            return self._abs(rel).stat().st_size
        except FileNotFoundError:
            return 0

    def _grow(self, rel: str, delta: int) -> None:
        """Refuse growth past a quota (ENOSPC), else account it."""
        if delta <= 0:
            for prefix in self._quota:
                if _under(rel, prefix):
                    self._used[prefix] = max(0, self._used[prefix] + delta)
            return
        for prefix, limit in self._quota.items():
            if _under(rel, prefix) and self._used[prefix] + delta > limit:
                self._count(rel).enospc += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), rel)
        for prefix in self._quota:
            if _under(rel, prefix):
                self._used[prefix] += delta

    def _disk_usage(self, prefix: str) -> int:
        root = self._abs(prefix)
        total = 0
        for dirpath, _, files in os.walk(root):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_size
                except FileNotFoundError:
                    pass
        return total

    # ------------------------------------------------------------------ operations

    def _state(self, rel: str) -> _FileState:
        st = self._files.get(rel)
        if st is None:
            st = self._files[rel] = _FileState(self._count(rel))
        return st

    def created(self, rel: str) -> None:
        """A new file exists (create/mknod): it vanishes on a drop until it is fsynced."""
        with self._lock:
            self._files[rel] = _FileState(self._count(rel), never_synced=True)

    def write(self, fd: int, rel: str, data: bytes, offset: int) -> int:
        """Write ``data`` at ``offset`` through ``fd`` (the backing file), keeping the undo.

        The hot path of the filesystem (one call per FUSE write request): no per-call
        allocation for an append, no quota walk when no quota is set.
        """
        with self._lock:
            st = self._files.get(rel)
            if st is None:
                st = self._files[rel] = _FileState(self._count(rel))
            size = os.fstat(fd).st_size
            end = offset + len(data)
            if self._quota and end > size:
                self._grow(rel, end - size)
            old = os.pread(fd, min(end, size) - offset, offset) if offset < size else b""
            n = os.pwrite(fd, data, offset)
            _record(st, offset, old, size, n)
            c = st.counters
            c.bytes_written += n
            c.writes += 1
            return n

    def truncate(self, rel: str, length: int, fd: int | None = None) -> None:
        """Truncate (or extend) a file, keeping what it cut off for a drop."""
        with self._lock:
            path = self._abs(rel)
            size = os.fstat(fd).st_size if fd is not None else self._size(rel)
            self._grow(rel, length - size)
            old = b""
            if length < size:
                with open(path, "rb") as f:
                    f.seek(length)
                    old = f.read(size - length)
            if fd is not None:
                os.ftruncate(fd, length)
            else:
                os.truncate(path, length)
            _record(self._state(rel), length, old, size, 0)

    def fsync(self, rel: str) -> float:
        """The file's writes are durable now; returns the latency to sleep (outside locks)."""
        with self._lock:
            st = self._files.get(rel)
            c = self._count(rel)
            c.fsyncs += 1
            if st is not None:
                c.bytes_synced += st.pending_bytes
                st.undo.clear()
                st.pending_bytes = 0
                st.never_synced = False
            return self.latency_for(rel)

    def latency_for(self, rel: str) -> float:
        """Seconds an fsync under ``rel`` sleeps (``slow-disk``)."""
        with self._lock:
            return max((s for p, s in self._latency.items() if _under(rel, p)), default=0.0)

    def renamed(self, old: str, new: str) -> None:
        """Move tracking state with a rename (of a file or a whole directory)."""
        with self._lock:
            self._files.pop(new, None)
            for rel in [r for r in self._files if _under(r, old)]:
                moved = new + rel[len(old):]
                st = self._files[moved] = self._files.pop(rel)
                st.counters = self._count(moved)

    def unlinked(self, rel: str) -> None:
        """The file is gone for good: forget its unsynced writes."""
        with self._lock:
            self._files.pop(rel, None)

    # ------------------------------------------------------------------ control

    def drop(self, prefix: str = "") -> StorageStats:
        """Power loss under ``prefix``: undo unsynced writes, remove never-synced files.

        Callers stop the writers first (the node is SIGKILLed): a write racing a drop would
        land on a file being rewound. Returns what this drop discarded.
        """
        out = StorageStats(drops=1)
        with self._lock:
            for rel in sorted(r for r in self._files if _under(r, prefix)):
                st = self._files.pop(rel)
                path = self._abs(rel)
                dropped = st.pending_bytes
                if st.never_synced:
                    with _suppress_missing():
                        size = path.stat().st_size
                        path.unlink()
                        self._grow(rel, -size)
                    out.files_vanished += 1
                    if len(out.vanished) < MAX_LISTED:
                        out.vanished.append(rel)
                elif st.undo and path.exists():
                    size_now = path.stat().st_size
                    with open(path, "r+b") as f:
                        for u in reversed(st.undo):
                            if u.old:
                                f.seek(u.offset)
                                f.write(u.old)
                            f.truncate(u.old_size)
                        f.flush()
                        os.fsync(f.fileno())
                    self._grow(rel, st.undo[0].old_size - size_now)
                    if len(out.rewound) < MAX_LISTED:
                        out.rewound.append(rel)
                out.bytes_dropped += dropped
                c = self._count(rel)
                c.bytes_dropped += dropped
                c.files_vanished += int(st.never_synced)
            top = prefix.strip("/").split("/", 1)[0]
            self._counters.setdefault(top, StorageStats()).drops += 1
        return out

    def set_quota(self, limit_bytes: int | None, prefix: str = "") -> int:
        """Cap the bytes files under ``prefix`` may use (None lifts it); returns bytes used.

        ``limit_bytes=0`` with ``relative=True`` semantics are the caller's: ``disk-full``
        passes the current usage, so any growth fails.
        """
        with self._lock:
            prefix = prefix.strip("/")
            used = self._disk_usage(prefix)
            if limit_bytes is None:
                self._quota.pop(prefix, None)
                self._used.pop(prefix, None)
            else:
                self._quota[prefix] = limit_bytes
                self._used[prefix] = used
            return used

    def set_fsync_latency(self, seconds: float, prefix: str = "") -> None:
        """fsync under ``prefix`` sleeps ``seconds`` (0 removes it)."""
        with self._lock:
            prefix = prefix.strip("/")
            if seconds > 0:
                self._latency[prefix] = seconds
            else:
                self._latency.pop(prefix, None)

    def stats(self, prefix: str = "") -> StorageStats:
        """Lifetime counters under ``prefix`` (top-level granularity), plus what is pending."""
        with self._lock:
            out = StorageStats()
            top = prefix.strip("/").split("/", 1)[0]
            for name, c in self._counters.items():
                if not top or name == top:
                    for k, v in c.as_dict().items():
                        if isinstance(v, int):
                            setattr(out, k, getattr(out, k) + v)
            pending = [s for r, s in self._files.items() if _under(r, prefix)]
            out.bytes_pending = sum(s.pending_bytes for s in pending)
            out.files_pending = sum(1 for s in pending if s.undo or s.never_synced)
            return out

    def describe(self) -> dict[str, Any]:
        """Quotas and latencies in force (for the control socket's ``status``)."""
        with self._lock:
            return {"quota": dict(self._quota), "used": dict(self._used),
                    "fsync_latency_s": dict(self._latency)}


class _suppress_missing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> bool:
        return exc_type is not None and issubclass(exc_type, FileNotFoundError)
