"""Run Locust as subprocesses (standalone, master, workers) and read its CSV: no locust import.

Locust monkeypatches the process it runs in, so the harness never imports it: it builds a
command line, runs ``python -m locust`` and reads ``<prefix>_stats.csv`` afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.load.gates import LocustGates, LocustStats

__all__ = ["DEFAULT_LOCUSTFILE", "GATES_PLUGIN", "LocustOutcome", "LocustProcessError",
           "locust_argv", "locust_command", "read_locust_csv", "read_locust_rows",
           "run_locust", "run_locust_relaying"]

#: The platform locustfile shipped with the harness.
DEFAULT_LOCUSTFILE = Path(__file__).with_name("locustfile.py")
#: A locustfile without users that adds the ``--qiki-*`` options and gates to any other.
GATES_PLUGIN = Path(__file__).with_name("locust_plugin.py")


def locust_command(args: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """The command line of ``qiki-harness locust ARGS``: ``python -m locust`` under this
    interpreter (so ``harness.load.locust_users`` imports), with the shipped locustfile
    unless ``-f``/``--locustfile`` (or ``LOCUST_LOCUSTFILE``) names the user's own, in which
    case the gates plugin is loaded before it (``--qiki-*`` options and gates work there
    too). Without ``--host``/``-H`` (and ``LOCUST_HOST``), ``QIKI_NATS_URL`` is the host.
    """
    env = os.environ if env is None else env
    out = list(args)
    given: int | None = None  # index of the locustfile value in ``out``
    inline = ""
    for i, a in enumerate(out):
        if a == "--":
            break
        if a in ("-f", "--locustfile") and i + 1 < len(out):
            given = i + 1
            break
        for prefix in ("--locustfile=", "-f"):
            if a.startswith(prefix) and len(a) > len(prefix) and not a.startswith("--f"):
                given, inline = i, prefix
                break
        if given is not None:
            break
    if given is not None:
        value = out[given][len(inline):]
        if value != "-":  # ``-f -``: a worker takes the master's files
            out[given] = f"{inline}{GATES_PLUGIN},{value}"
    elif env.get("LOCUST_LOCUSTFILE"):
        out = ["-f", f"{GATES_PLUGIN},{env['LOCUST_LOCUSTFILE']}", *out]
    else:
        out = ["-f", str(DEFAULT_LOCUSTFILE), *out]
    has_host = any(a in ("-H", "--host") or a.startswith(("--host=", "-H"))
                   for a in out if a != "--")
    if not has_host and not env.get("LOCUST_HOST") and env.get("QIKI_NATS_URL"):
        out += ["--host", env["QIKI_NATS_URL"]]
    return [sys.executable, "-m", "locust", *out]


#: ``si_code`` of a signal the kernel sent itself, as the terminal's Ctrl-C (``SI_KERNEL``)
_SI_KERNEL = 0x80
_STOPS = frozenset({signal.SIGINT, signal.SIGTERM})


def _child_takes_stops() -> None:
    """In the Locust child before exec: SIGINT and SIGTERM unblocked (the mask is inherited),
    and Ctrl-C Python's KeyboardInterrupt even if we were started with SIGINT ignored (a
    background job of a script): Locust stops on it and writes all its reports."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_locust_relaying(argv: Sequence[str]) -> int:
    """Run ``argv`` (a Locust command) in the foreground and return its exit code
    (``128 + N`` if signal N ended it). What ``qiki-harness locust`` does.

    Locust decides what a stop means (it writes its reports and sets the code), so this
    process never dies first:
    - Ctrl-C at the terminal reaches Locust itself (same process group): nothing is relayed,
      or Locust would get it twice and cut its own report writing short;
    - a SIGINT sent to this process alone (``kill -INT``) is relayed as SIGINT;
    - a SIGTERM (``kill``, ``timeout``, a CI job's cancel) is relayed as SIGTERM: before,
      this process died of it and left Locust running with no one to wait for it.
    """
    import subprocess

    # Blocked before the child exists, so no stop can end us between fork and the wait; the
    # child unblocks them. sigtimedwait says who sent each one (the terminal or a kill).
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        proc = subprocess.Popen(list(argv), preexec_fn=_child_takes_stops)
        while proc.poll() is None:
            info = signal.sigtimedwait(_STOPS, 0.2)
            if info is None:
                continue
            if info.si_signo == signal.SIGINT and info.si_code == _SI_KERNEL:
                continue  # the terminal's Ctrl-C: Locust has it too
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(info.si_signo)
        code = proc.returncode
        # A stop that came after Locust ended is spent: it must not kill us on the unblock.
        while signal.sigtimedwait(_STOPS, 0) is not None:
            pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return code if code >= 0 else 128 - code


class LocustProcessError(HarnessError):
    """A Locust process could not run or its output could not be read."""


def locust_argv(
    *,
    host: str,
    users: int = 10,
    spawn_rate: float | None = None,
    run_time_s: float | None = 10,
    locustfile: Path | str = DEFAULT_LOCUSTFILE,
    csv_prefix: Path | str | None = None,
    html: Path | str | None = None,
    gates: LocustGates | None = None,
    report_json: Path | str | None = None,
    master_port: int | None = None,
    expect_workers: int | None = None,
    worker: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``python -m locust`` command line for a headless run, a master
    (``expect_workers``) or a worker (``worker=True``, connecting to ``master_port``).

    Everything binds 127.0.0.1. The web UI is off.
    """
    argv = [sys.executable, "-m", "locust", "-f", str(locustfile)]
    if worker:
        if master_port is None:
            raise ValueError("locust_argv: a worker needs master_port")
        return [*argv, "--worker", "--master-host", "127.0.0.1", "--master-port",
                str(master_port), *extra]
    argv += ["--headless", "--host", host, "-u", str(users),
             "-r", str(spawn_rate if spawn_rate is not None else users), "--only-summary"]
    if run_time_s is not None:
        argv += ["-t", f"{max(1, round(run_time_s))}s"]
    if csv_prefix is not None:
        argv += ["--csv", str(csv_prefix)]
    if html is not None:
        argv += ["--html", str(html)]
    if expect_workers is not None:
        if master_port is None:
            raise ValueError("locust_argv: a master needs master_port")
        argv += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                 str(master_port), "--expect-workers", str(expect_workers),
                 "--expect-workers-max-wait", "60"]
    if gates is not None:
        if gates.max_fail_ratio is not None:
            argv += ["--qiki-max-fail-ratio", str(gates.max_fail_ratio)]
        if gates.max_p95_ms is not None:
            argv += ["--qiki-max-p95-ms", str(gates.max_p95_ms)]
        if gates.min_rps is not None:
            argv += ["--qiki-min-rps", str(gates.min_rps)]
    if report_json is not None:
        argv += ["--qiki-report-json", str(report_json)]
    return [*argv, *extra]


def read_locust_csv(prefix: Path | str) -> LocustStats:
    """The ``Aggregated`` row of ``<prefix>_stats.csv``."""
    path = Path(f"{prefix}_stats.csv")
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise LocustProcessError(f"cannot read Locust stats {path}: {e}") from e
    agg = next((r for r in rows if r.get("Name") == "Aggregated"), None)
    if agg is None:
        columns = list(rows[0]) if rows else "none"
        raise LocustProcessError(
            f"{path}: no 'Aggregated' row (columns: {columns}); is this a Locust --csv file?")

    def num(key: str) -> float | None:
        raw = agg.get(key, "")
        return None if raw in ("", "N/A", None) else float(raw)

    return LocustStats(
        requests=int(num("Request Count") or 0),
        failures=int(num("Failure Count") or 0),
        p50_ms=num("50%"), p95_ms=num("95%"), p99_ms=num("99%"),
        rps=num("Requests/s") or 0.0,
    )


def read_locust_rows(prefix: Path | str) -> dict[tuple[str, str], dict[str, str]]:
    """Every row of ``<prefix>_stats.csv`` keyed by ``(Type, Name)`` (the aggregate is
    ``("", "Aggregated")``)."""
    path = Path(f"{prefix}_stats.csv")
    try:
        with path.open(newline="") as f:
            return {(r.get("Type", ""), r.get("Name", "")): r for r in csv.DictReader(f)}
    except OSError as e:
        raise LocustProcessError(f"cannot read Locust stats {path}: {e}") from e


@dataclass
class LocustOutcome:
    """Exit code and captured output of one Locust process."""

    returncode: int
    output: str


async def run_locust(argv: Sequence[str], *, timeout_s: float, env: Mapping[str, str] | None = None,
                     cwd: Path | str | None = None) -> LocustOutcome:
    """Run one Locust process to completion (reaped, also on timeout or cancellation)."""
    full_env = {**os.environ, **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=full_env, cwd=None if cwd is None else str(cwd))
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except BaseException:
        await _reap(proc)
        raise
    return LocustOutcome(proc.returncode if proc.returncode is not None else -1,
                         out.decode(errors="replace"))


async def _reap(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
