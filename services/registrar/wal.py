"""Keep the registrar's SQLite WAL under a fixed size, off the commit path (issue 13).

Why not SQLite's automatic checkpoint: the commit that crosses ``wal_autocheckpoint`` pages
copies the whole WAL into the database file and fsyncs it, a latency spike for that batch.
Why not only a PASSIVE checkpoint from another connection (what the registrar did before):
the WAL file is reset (written again from its start) only when a write transaction begins
while *every* frame has been copied back, and under continuous writes new frames always
arrive while the checkpoint runs, so that never happens: the file grew to 1.88 GB for a
186 MB database in one minute at 5,000 events/s, and grows for as long as events arrive.

What :class:`WalKeeper` does instead:

* a background thread, on its own connection, runs a PASSIVE checkpoint every
  ``interval_s`` and at once when the writer reports the WAL past ``trigger_bytes``
  (``max_bytes / 2``); PASSIVE never blocks the writer and copies the bulk of the frames;
* when, after that, the WAL is still past the trigger, the *writer thread* runs a RESTART
  checkpoint on its own connection just before its next batch: it only has to copy the
  frames committed since the PASSIVE one (a batch or two), and the next commit writes the
  WAL from its start again, cutting the file to ``journal_size_limit``. Running it in the
  writer thread, between two commits, means no commit waits in SQLite's busy handler (whose
  sleeps of 1, 2, 5, 10 ... ms would overshoot). Why RESTART and not TRUNCATE (issue 13,
  p99 at 1,000 events/s): TRUNCATE also cuts the file to zero bytes and fsyncs that, and
  every commit after it appends (an fsync that must also write the file's new size).
  Measured with 5-row commits and a writer-side checkpoint every second (load 17): TRUNCATE
  took 2.5-68 ms, commits p50 2.6-2.9 ms, max 315-532 ms; RESTART 0.1-0.6 ms, commits p50
  1.1-1.7 ms, max 47-57 ms;
* if the background thread falls behind (the WAL reaches ``hard_bytes``, ``3/4 max_bytes``)
  the writer runs the RESTART checkpoint itself, however many frames that copies: a slower
  batch, never an unbounded file;
* ``PRAGMA journal_size_limit`` (``7/8 trigger_bytes``) shrinks the file whenever the WAL is
  reset (after the writer's RESTART, or on its own after a PASSIVE checkpoint that caught up
  during a lull). Below the trigger: a file cut to exactly the trigger size would look past
  it and cost a needless checkpoint on the commit path after every burst. Close to it: after
  a reset, commits overwrite the file's blocks until the frames pass the limit, and only then
  append; an append's fsync must also write the file's new size, which took the commits of
  the TRUNCATE measurement above from 1.1-1.7 to 2.6-2.9 ms p50. At half the trigger (the
  first choice) half of every cycle's commits appended; at 7/8, one in eight.

So the WAL file stays below ``hard_bytes`` plus the frames of one batch, well under
``max_bytes`` for batches of up to thousands of events.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .store import RegistrarStore, Row

__all__ = ["DEFAULT_WAL_MAX_BYTES", "WalKeeper", "WalStats"]

_log = logging.getLogger(__name__)

#: Default bound of the WAL file (issue 13: "say 64 MB").
DEFAULT_WAL_MAX_BYTES = 64 * 1024 * 1024

#: The writer-side checkpoint that resets the WAL (see the module docstring).
_RESET_MODE: Final = "RESTART"

#: How long the writer's RESTART checkpoint waits for readers (HTTP queries) before giving up
#: until the next batch: short, because the next commit waits for it.
_SOFT_BUSY_MS = 20
#: Past ``hard_bytes`` the bound wins over latency: wait for readers as long as a commit would.
_HARD_BUSY_MS = 5000


@dataclass
class WalStats:
    """What the keeper did (exported as metrics, read by tests and benches)."""

    passive: int = 0  # PASSIVE checkpoints run by the background thread
    truncates: int = 0  # writer-side (RESTART) checkpoints that reset the WAL
    forced: int = 0  # of those, run because the WAL reached hard_bytes
    busy: int = 0  # writer-side attempts that found a reader and were retried later
    wal_max_bytes_seen: int = 0  # largest WAL file size observed after a commit
    truncate_ms_max: float = 0.0  # longest writer-side checkpoint (the writer waits for it)


class WalKeeper:
    """Owns checkpointing for one writer :class:`RegistrarStore` (opened with
    ``autocheckpoint=False``)::

        keeper = WalKeeper(store, max_bytes=64 << 20)
        keeper.start()
        keeper.write_batch(rows)     # instead of store.write_batch, in the writer thread
        keeper.close()

    :meth:`write_batch` must be called from the one thread that writes (the registrar's DB
    thread); the keeper's own thread only runs PASSIVE checkpoints.
    """

    def __init__(
        self,
        store: RegistrarStore,
        *,
        max_bytes: int = DEFAULT_WAL_MAX_BYTES,
        interval_s: float = 1.0,
    ) -> None:
        if max_bytes < 1024 * 1024:
            raise ValueError(f"max_bytes={max_bytes}: expected >= 1 MiB (e.g. 64 MiB)")
        if interval_s <= 0:
            raise ValueError(f"interval_s={interval_s}: expected > 0 (e.g. 1.0)")
        self.store = store
        self.max_bytes = max_bytes
        # Half the bound: a reset pauses the writer for a moment, so not more often than
        # needed; three quarters: room for the frames of one more batch under the bound.
        self.trigger_bytes = max_bytes // 2
        self.hard_bytes = max_bytes * 3 // 4
        self.interval_s = interval_s
        self.stats = WalStats()
        self.wal_path = Path(f"{store.path}-wal")
        self._size = self._wal_size()
        self._truncate_due = False
        self._wake = threading.Event()
        # SQLite takes the checkpoint lock without its busy handler: a RESTART started while
        # the PASSIVE one runs fails at once. This lock makes the writer wait for it instead.
        self._ckpt_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: The WAL file is cut to this size whenever the log is reset (see the module doc).
        self.journal_limit_bytes = self.trigger_bytes * 7 // 8
        store.set_journal_size_limit(self.journal_limit_bytes)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> WalKeeper:
        """Start the background PASSIVE checkpointer (idempotent)."""
        if self._thread is None:
            conn = sqlite3.connect(self.store.path, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=1000")
            self._thread = threading.Thread(
                target=self._run, args=(conn,), name="registrar-ckpt", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the background thread (the store itself is left to its owner)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def __enter__(self) -> WalKeeper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer's side ----------------------------------------------------------------
    def write_batch(self, rows: Sequence[Row]) -> dict[int, int]:
        """:meth:`RegistrarStore.write_batch`, keeping the WAL bounded (writer thread only)."""
        if self._truncate_due or self._size >= self.hard_bytes:
            self._truncate()
        counts = self.store.write_batch(rows)
        size = self._size = self._wal_size()
        if size > self.stats.wal_max_bytes_seen:
            self.stats.wal_max_bytes_seen = size
        if size >= self.trigger_bytes and not self._truncate_due:
            self._wake.set()
        return counts

    def wal_bytes(self) -> int:
        """The WAL file's current size in bytes (0 when there is none)."""
        return self._wal_size()

    def _truncate(self) -> None:
        forced = self._size >= self.hard_bytes
        if forced:
            # Past hard_bytes the bound wins over this batch's latency: wait for a running
            # PASSIVE checkpoint and for readers, and retry until the WAL is reset.
            for attempt in range(1, 13):
                with self._ckpt_lock:
                    if self._truncate_once(_HARD_BUSY_MS):
                        self.stats.forced += 1
                        return
                _log.warning("WAL at %d bytes (bound %d): a reader keeps it from being reset "
                             "(attempt %d)", self._size, self.max_bytes, attempt)
            return  # a reader that never lets go: write on rather than stop storing
        if self._ckpt_lock.acquire(blocking=False):
            try:
                self._truncate_once(_SOFT_BUSY_MS)
            finally:
                self._ckpt_lock.release()

    def _truncate_once(self, busy_ms: int) -> bool:
        t0 = time.perf_counter()
        busy, _frames, _done = self.store.checkpoint_raw(_RESET_MODE, busy_timeout_ms=busy_ms)
        ms = (time.perf_counter() - t0) * 1000
        if ms > self.stats.truncate_ms_max:
            self.stats.truncate_ms_max = ms
        if busy:
            # A reader still uses the WAL; the frames were copied as far as possible and the
            # reset is retried before the next batch.
            self.stats.busy += 1
            return False
        self._truncate_due = False
        self.stats.truncates += 1
        self._size = self._wal_size()
        return True

    def _wal_size(self) -> int:
        try:
            return os.stat(self.wal_path).st_size
        except FileNotFoundError:
            return 0

    # -- the background thread -------------------------------------------------------------
    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while not self._stop.is_set():
                self._wake.wait(self.interval_s)
                self._wake.clear()
                if self._stop.is_set():
                    break
                if self._truncate_due:
                    # The writer has not taken its turn yet (no batch since): a PASSIVE run now
                    # would only make its RESTART wait for the checkpoint lock.
                    continue
                try:
                    with self._ckpt_lock:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.stats.passive += 1
                except sqlite3.Error as exc:  # busy or locked: try again next round
                    _log.debug("passive checkpoint skipped: %s", exc)
                    continue
                if self._wal_size() >= self.trigger_bytes:
                    self._truncate_due = True
        finally:
            conn.close()
