"""A machine-wide readers-writer gate for test sessions split over processes (pytest-xdist).

Most tests share the machine: they hold the gate *shared*. A test that must run alone (a
soak, a benchmark, a CPU-heavy run whose figures or timeouts another test would disturb)
holds it *exclusive*: it waits until the tests running on the other workers end, and they
start nothing new meanwhile. One session of workers, so one JUnit / CTRF report, and no
second pass that collects the suite again.

Two ``flock`` files: ``gate`` (shared by every running test, exclusive for a lone one) and
``turnstile``, which a lone test holds while it waits for ``gate``: without it, workers that
keep starting tests always hold some shared lock and the lone test would wait forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["SerialGate"]


class SerialGate:
    """``with gate.shared():`` around an ordinary test, ``with gate.exclusive():`` around one
    that must run alone. ``lock_dir`` is the same for every process of one session."""

    def __init__(self, lock_dir: Path) -> None:
        lock_dir.mkdir(parents=True, exist_ok=True)
        self.lock_dir = lock_dir
        self._gate = os.open(lock_dir / "gate", os.O_RDWR | os.O_CREAT, 0o644)
        self._turnstile = os.open(lock_dir / "turnstile", os.O_RDWR | os.O_CREAT, 0o644)

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Run alongside the other workers' tests (not beside a lone one)."""
        # Pass the turnstile: blocks while a lone test is waiting or running.
        fcntl.flock(self._turnstile, fcntl.LOCK_SH)
        fcntl.flock(self._turnstile, fcntl.LOCK_UN)
        fcntl.flock(self._gate, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Run alone: wait for the running tests to end; no new one starts meanwhile."""
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._gate, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._gate, fcntl.LOCK_UN)
        finally:
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release the files (the locks go with them)."""
        for fd in (self._gate, self._turnstile):
            with contextlib.suppress(OSError):
                os.close(fd)
