"""Generic handle on one child process: spawn, readiness, signals, restart, captured log.

Used for nats-server nodes (``harness.broker``) and for service processes (reference and
user services). Only the PID this handle spawned is ever signalled.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from harness._resource import AsyncResource, cancel_and_wait
from harness.errors import HarnessError, SetupError

__all__ = [
    "ManagedProcess",
    "ProcessError",
    "ProcessStartError",
    "ReadyProbe",
]

ReadyProbe = Callable[["ManagedProcess"], Awaitable[object]]
"""Awaited after each spawn; returns once the process is ready (its value is ignored).

It may raise to report a failure; the handle enforces the timeout and notices an early exit.
"""

# Safety net: PIDs spawned by any ManagedProcess and not yet reaped. If the interpreter exits
# while one is still alive (a test forgot its ``async with``), it is killed, so no nats-server
# outlives the test run. Only PIDs we spawned are ever in here.
_LIVE_PIDS: set[int] = set()


def _kill_leftovers() -> None:
    for pid in list(_LIVE_PIDS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _LIVE_PIDS.clear()


atexit.register(_kill_leftovers)

# The atexit net above cannot run when the harness itself is killed with SIGKILL (an OOM
# kill, a CI runner's timeout, kill -9). On Linux a child can ask the kernel for a signal
# when its parent dies: PR_SET_PDEATHSIG. The kernel ties it to the *thread* that forked,
# so it is only asked for when the spawn happens on the main thread (an event loop on a
# worker thread would otherwise kill its children when that thread ends).
_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        # Resolved before any fork: the child must not load libraries or import modules.
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


def _parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with the harness, or None where unsafe."""
    if _prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    prctl = _prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # The parent may have died between fork and prctl: then no signal will ever come.
        if os.getppid() != parent:
            os._exit(1)

    return hook


class ProcessError(HarnessError):
    """A managed process could not be signalled, stopped or restarted as asked."""


class ProcessStartError(ProcessError, SetupError):
    """A managed process did not start or did not become ready; carries the log tail."""


def _proc_state(pid: int) -> str | None:
    """Return the one-letter Linux process state (``R``, ``S``, ``T`` ...) or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: the state follows the last ')'.
    end = data.rfind(")")
    return data[end + 2 : end + 3] if end >= 0 else None


class ManagedProcess(AsyncResource):
    """One child process with captured output, signals, restart and an async readiness probe.

    ``async with ManagedProcess([...], name="x") as p:`` starts it (and waits for ``ready``)
    and always stops it on exit, also when the body raises. A failed start kills what it
    spawned before raising :class:`ProcessStartError` with the last log lines and a hint.

    Output (stdout and stderr, merged, line by line) goes to a ring buffer of ``log_lines``
    lines and, when ``log_path`` is given, is appended to that file across restarts.
    """

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        ready: ReadyProbe | None = None,
        ready_timeout_s: float = 10.0,
        log_path: str | os.PathLike[str] | None = None,
        log_lines: int = 5000,
        hint: str | None = None,
    ) -> None:
        if not argv:
            raise ValueError(f"ManagedProcess {name!r}: argv must not be empty")
        if ready_timeout_s <= 0:
            raise ValueError(
                f"ManagedProcess {name!r}: ready_timeout_s must be > 0, got {ready_timeout_s!r}"
            )
        self.argv: list[str] = [os.fspath(a) for a in argv]
        self.name = name
        self.env: dict[str, str] | None = dict(env) if env is not None else None
        self.cwd = cwd
        self.ready = ready
        self.ready_timeout_s = ready_timeout_s
        self.log_path: Path | None = Path(log_path) if log_path is not None else None
        self.hint = hint
        self.restarts = 0
        self.started_at: float | None = None
        self._lines: deque[str] = deque(maxlen=log_lines)
        self._line_event = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._log_fh: IO[str] | None = None
        self._paused = False
        self._exit_code: int | None = None
        self._spawns = 0
        #: index of the current spawn's first line in the kept lines (``wait_for_log(since=)``)
        self.spawn_mark = 0

    # ----------------------------------------------------------------- state

    @property
    def pid(self) -> int | None:
        """PID of the current (or last) spawn, None before the first start."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the spawned process has not exited (a paused process is running)."""
        return self._proc is not None and self._proc.returncode is None

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume` (or the process exiting)."""
        return self._paused and self.running

    @property
    def exit_code(self) -> int | None:
        """Exit status of the last spawn once it ended (negative = killed by that signal)."""
        if self._proc is not None and self._proc.returncode is not None:
            return self._proc.returncode
        return self._exit_code

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<ManagedProcess {self.name} pid={self.pid} {state} restarts={self.restarts}>"

    # ------------------------------------------------------------------- log

    def log_text(self, tail: int | None = None) -> str:
        """Captured output: the last ``tail`` lines, or all kept lines (the ring buffer)."""
        lines = list(self._lines)
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        return "\n".join(lines) + ("\n" if lines else "")

    def _append_line(self, line: str) -> None:
        self._lines.append(line)
        if self._log_fh is not None:
            with contextlib.suppress(OSError, ValueError):
                self._log_fh.write(line + "\n")
                self._log_fh.flush()
        # Wake waiters of wait_for_log; a fresh event per line keeps it edge-triggered.
        self._line_event.set()
        self._line_event = asyncio.Event()

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:
                # Line longer than the stream limit: take what is buffered, keep going.
                raw = await stream.read(65536)
            if not raw:
                return
            self._append_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))

    async def wait_for_log(self, pattern: str | re.Pattern[str], *, since: int = 0) -> str:
        """Wait until a captured line matches ``pattern`` (``re.search``); return that line.

        Lines already captured count, so call it from a ready probe without racing the child.
        ``since`` skips that many of the lines currently held. Raises :class:`ProcessError`
        if the process exits first. Callers bound it with a timeout.
        """
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        seen = since
        while True:
            event = self._line_event
            lines = list(self._lines)
            for line in lines[seen:]:
                if rx.search(line):
                    return line
            seen = len(lines)
            if not self.running and not any(not t.done() for t in self._readers):
                raise ProcessError(
                    f"{self.name}: exited (code {self.exit_code}) before a log line matched "
                    f"{rx.pattern!r}"
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await event.wait()

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Spawn the process and await the ready probe; on any failure kill it and raise."""
        if self.running:
            raise ProcessError(f"{self.name}: already running (pid {self.pid})")
        self._paused = False
        self._exit_code = None
        if self.log_path is not None and self._log_fh is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            # A local append-mode open is instant; not worth a thread hop.
            self._log_fh = open(self.log_path, "a", encoding="utf-8")  # noqa: ASYNC230
        if self._spawns:
            self._append_line(
                f"--- {self.name}: start #{self._spawns + 1} (restart {self.restarts}) ---"
            )
        mark = self.spawn_mark = len(self._lines)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
                cwd=self.cwd,
                preexec_fn=_parent_death_hook(),
            )
        except OSError as exc:
            self._close_log()
            raise ProcessStartError(
                f"{self.name}: cannot execute {self.argv[0]!r}: {exc}"
                + (f"\nHint: {self.hint}" if self.hint else "")
            ) from exc
        self._spawns += 1
        self.started_at = time.monotonic()
        _LIVE_PIDS.add(self._proc.pid)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._pump(self._proc.stdout), name=f"{self.name}-stdout"),
            asyncio.create_task(self._pump(self._proc.stderr), name=f"{self.name}-stderr"),
        ]
        if self.ready is None:
            return
        try:
            await self._await_ready(mark)
        except BaseException:
            await self._reap(signal.SIGKILL, timeout_s=5.0)
            raise

    async def _await_ready(self, mark: int) -> None:
        assert self._proc is not None
        probe = asyncio.ensure_future(self.ready(self))  # type: ignore[misc]
        exited = asyncio.ensure_future(self._proc.wait())
        try:
            done, _ = await asyncio.wait(
                {probe, exited},
                timeout=self.ready_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            # Let cancelled futures settle so no "Task was destroyed" noise leaks out (and
            # no "exception never retrieved"), but never wait long: a probe that keeps
            # swallowing its cancellation must not hang start().
            with contextlib.suppress(TimeoutError):
                await cancel_and_wait(probe, exited, timeout_s=1.0, suppress_errors=True)
        if exited in done:
            # Checked first: a probe that fails because the process died is less telling.
            await self._drain_readers()
            reason = f"it exited with code {self._proc.returncode} before it was ready"
        elif probe in done and not probe.cancelled() and probe.exception() is None:
            return
        elif probe in done:
            reason = f"its ready probe failed: {probe.exception()!r}"
        else:
            reason = f"it was not ready within {self.ready_timeout_s:g} s"
        raise ProcessStartError(self._start_failure_text(reason, mark))

    def _start_failure_text(self, reason: str, mark: int) -> str:
        lines = list(self._lines)[mark:][-20:]
        log = "\n".join(f"    {ln}" for ln in lines) if lines else "    (no output)"
        text = (
            f"{self.name} (pid {self.pid}) did not start: {reason}.\n"
            f"  command: {' '.join(self.argv)}\n  last log lines:\n{log}"
        )
        if self.hint:
            text += f"\nHint: {self.hint}"
        return text

    async def _drain_readers(self, timeout_s: float = 1.0) -> None:
        # A grandchild may hold the pipes open: never wait for them forever.
        if self._readers:
            _, pending = await asyncio.wait(self._readers, timeout=timeout_s)
            await cancel_and_wait(*pending, suppress_errors=True)
            for task in self._readers:  # mark retrieved: no "exception never retrieved"
                if not task.cancelled():
                    task.exception()
        self._readers = []

    def _send(self, sig: signal.Signals) -> None:
        """Signal our child by PID; a no-op once asyncio has seen it exit.

        Not ``Popen.send_signal``: that first polls with ``waitpid``, which can reap a child
        that just died and steal the exit status from asyncio's child watcher (which then
        reports 255, "Unknown child process"). Until the watcher reaps it, the PID stays ours
        (a zombie), so ``os.kill`` cannot hit another process.
        """
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.returncode is not None:
            raise ProcessError(f"{self.name}: not running, cannot send {sig.name}")
        self._send(sig)

    async def _wait_exit(self, timeout_s: float) -> bool:
        assert self._proc is not None
        try:
            async with asyncio.timeout(timeout_s):
                await self._proc.wait()
        except TimeoutError:
            return False
        return True

    async def _reap(self, first: signal.Signals, timeout_s: float) -> None:
        """Send ``first``; after ``timeout_s`` escalate to SIGKILL; always reap and close pipes."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            self._send(first)
            if self._paused and first != signal.SIGKILL:
                # A stopped process only acts on SIGTERM once continued.
                self._send(signal.SIGCONT)
            if not await self._wait_exit(timeout_s) and proc.returncode is None:
                self._append_line(
                    f"--- {self.name}: no exit {timeout_s:g} s after {first.name}, SIGKILL ---"
                )
                self._send(signal.SIGKILL)
                await proc.wait()
        _LIVE_PIDS.discard(proc.pid)
        self._paused = False
        self._exit_code = proc.returncode
        await self._drain_readers()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Graceful stop: SIGTERM (and SIGCONT if paused), SIGKILL after ``timeout_s``.

        A no-op when the process already exited (it is still reaped).
        """
        await self._reap(signal.SIGTERM, timeout_s)

    async def terminate(self, timeout_s: float = 10.0) -> None:
        """Send SIGTERM (the chaos fault) and wait up to ``timeout_s`` for the exit.

        Unlike :meth:`stop` it never escalates: raises :class:`ProcessError` if the process
        is still alive after ``timeout_s`` (it is left running for the caller to decide).
        """
        self._signal(signal.SIGTERM)
        if self._paused:
            self._signal(signal.SIGCONT)
        if not await self._wait_exit(timeout_s):
            raise ProcessError(f"{self.name}: still running {timeout_s:g} s after SIGTERM")
        await self._reap(signal.SIGKILL, 0)

    async def kill(self) -> None:
        """Send SIGKILL and reap the process (a crash: no graceful shutdown)."""
        self._signal(signal.SIGKILL)
        await self._reap(signal.SIGKILL, 5.0)

    async def pause(self) -> None:
        """Freeze the process with SIGSTOP; returns once the kernel reports it stopped."""
        self._signal(signal.SIGSTOP)
        self._paused = True
        pid = self.pid
        assert pid is not None
        # SIGSTOP is asynchronous: wait (briefly) for state 'T' so a fault is real on return.
        for _ in range(200):
            state = _proc_state(pid)
            if state is None or state in "Tt":
                return
            await asyncio.sleep(0.005)

    async def resume(self) -> None:
        """Continue a paused process with SIGCONT (a no-op signal if it was not paused)."""
        self._signal(signal.SIGCONT)
        self._paused = False

    async def restart(self, timeout_s: float = 5.0) -> None:
        """Stop (gracefully, see :meth:`stop`) if running, then start again and await ready."""
        await self.stop(timeout_s)
        self.restarts += 1
        await self.start()

    def _close_log(self) -> None:
        if self._log_fh is not None:
            with contextlib.suppress(OSError):
                self._log_fh.close()
            self._log_fh = None

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop the process (if running) and close the log file. Safe to call twice."""
        try:
            await self.stop(timeout_s)
        finally:
            self._close_log()

