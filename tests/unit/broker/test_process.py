"""ManagedProcess against small Python child processes (no NATS needed)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from harness._process import ManagedProcess, ProcessError, ProcessStartError, _proc_state
from harness.errors import SetupError

PY = sys.executable


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    state = _proc_state(pid)
    return state is not None and state not in "ZX"


def child(code: str) -> list[str]:
    return [PY, "-u", "-c", code]


SLEEPER = child("import time\nprint('READY now', flush=True)\ntime.sleep(60)")
TERM_IGNORER = child(
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('READY', flush=True)\ntime.sleep(60)"
)


async def ready_line(p: ManagedProcess) -> None:
    await p.wait_for_log(r"^READY")


async def test_start_captures_output_and_stops_gracefully(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "sleeper.log"
    async with ManagedProcess(SLEEPER, name="sleeper", ready=ready_line, log_path=log) as p:
        assert p.running and p.pid is not None
        pid = p.pid
        assert "READY now" in p.log_text()
    assert not p.running
    assert not alive(pid)
    assert p.exit_code == -signal.SIGTERM
    assert "READY now" in log.read_text()


async def test_stderr_is_captured_too() -> None:
    code = "import sys\nsys.stderr.write('oops on stderr\\n')\nprint('READY', flush=True)"
    async with ManagedProcess(child(code), name="err", ready=ready_line) as p:
        await p.wait_for_log("oops on stderr")
    assert "oops on stderr" in p.log_text()


async def test_kill_pause_resume_restart() -> None:
    async with ManagedProcess(SLEEPER, name="s", ready=ready_line) as p:
        first = p.pid
        assert first is not None
        await p.pause()
        assert p.paused and _proc_state(first) in ("T", "t")
        await p.resume()
        assert not p.paused and _proc_state(first) not in ("T", "t")
        await p.kill()
        assert not p.running and p.exit_code == -signal.SIGKILL
        assert not alive(first)
        with pytest.raises(ProcessError, match="not running"):
            await p.pause()
        await p.restart()
        assert p.running and p.restarts == 1 and p.pid != first
        assert "restart 1" in p.log_text()
        second = p.pid
        assert second is not None
        await p.restart()  # from running: stop, then start
        assert p.restarts == 2 and not alive(second)


async def test_stop_of_paused_process_is_graceful() -> None:
    async with ManagedProcess(SLEEPER, name="s", ready=ready_line) as p:
        await p.pause()
        await p.stop(timeout_s=5)
        # SIGCONT went with SIGTERM, so it ended by SIGTERM and not by the SIGKILL fallback.
        assert p.exit_code == -signal.SIGTERM


async def test_stop_escalates_to_sigkill_when_sigterm_is_ignored() -> None:
    async with ManagedProcess(TERM_IGNORER, name="stubborn", ready=ready_line) as p:
        pid = p.pid
        assert pid is not None
        with pytest.raises(ProcessError, match="still running"):
            await p.terminate(timeout_s=0.3)
        assert p.running  # terminate never escalates
        await p.stop(timeout_s=0.3)
        assert p.exit_code == -signal.SIGKILL
        assert "SIGKILL" in p.log_text()
    assert not alive(pid)


async def test_ready_timeout_kills_child_and_reports_log_and_hint() -> None:
    code = "import time\nprint('booting slowly', flush=True)\ntime.sleep(60)"
    p = ManagedProcess(
        child(code), name="slow", ready=ready_line, ready_timeout_s=0.5, hint="try harder"
    )
    with pytest.raises(ProcessStartError) as info:
        async with p:
            pytest.fail("body must not run")
    text = str(info.value)
    assert "not ready within 0.5 s" in text
    assert "booting slowly" in text
    assert "Hint: try harder" in text
    assert isinstance(info.value, SetupError)
    assert p.pid is not None and not alive(p.pid)


async def test_early_exit_is_reported_with_exit_code() -> None:
    code = "import sys\nprint('config error: bad field', flush=True)\nsys.exit(3)"
    p = ManagedProcess(child(code), name="broken", ready=ready_line, ready_timeout_s=10)
    with pytest.raises(ProcessStartError) as info:
        await p.start()
    assert "exited with code 3" in str(info.value)
    assert "config error: bad field" in str(info.value)


async def test_failing_probe_is_reported() -> None:
    async def probe(_: ManagedProcess) -> None:
        raise RuntimeError("health endpoint says no")

    p = ManagedProcess(SLEEPER, name="s", ready=probe)
    with pytest.raises(ProcessStartError, match="health endpoint says no"):
        await p.start()
    assert p.pid is not None and not alive(p.pid)


async def test_missing_executable_error_names_it() -> None:
    p = ManagedProcess(["/nonexistent/bin/thing"], name="ghost", hint="install thing")
    with pytest.raises(ProcessStartError, match=r"cannot execute '/nonexistent/bin/thing'"):
        await p.start()


async def test_exception_in_body_reaps_the_child() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with ManagedProcess(SLEEPER, name="s", ready=ready_line) as p:
            pid = p.pid
            raise RuntimeError("boom")
    assert pid is not None and not alive(pid)


async def test_env_and_cwd_are_passed(tmp_path: Path) -> None:
    code = "import os\nprint('READY', os.environ['QIKI_T'], os.getcwd(), flush=True)"
    env = {**os.environ, "QIKI_T": "value-42"}
    async with ManagedProcess(child(code), name="e", env=env, cwd=tmp_path, ready=ready_line) as p:
        line = await p.wait_for_log("READY")
        await asyncio.wait_for(p.wait_for_log("READY"), 1)
    assert "value-42" in line and str(tmp_path) in line
    assert p.exit_code == 0 or p.exit_code == -signal.SIGTERM


async def test_wait_for_log_fails_when_process_exits() -> None:
    async with ManagedProcess(child("print('bye')"), name="short") as p:
        with pytest.raises(ProcessError, match="before a log line matched"):
            await asyncio.wait_for(p.wait_for_log("never printed"), 5)


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="argv must not be empty"):
        ManagedProcess([], name="x")
    with pytest.raises(ValueError, match="ready_timeout_s must be > 0"):
        ManagedProcess(["true"], name="x", ready_timeout_s=0)


def test_log_ring_buffer_keeps_the_tail() -> None:
    p = ManagedProcess(["true"], name="x", log_lines=3)
    for i in range(5):
        p._append_line(f"line {i}")
    assert p.log_text() == "line 2\nline 3\nline 4\n"
    assert p.log_text(tail=1) == "line 4\n"


async def test_kill_reports_sigkill_every_time() -> None:
    # Guards the waitpid race: a second signal sent via Popen.send_signal polls and reaps the
    # child, and asyncio then reports exit code 255 ("Unknown child process").
    p = ManagedProcess(["sleep", "60"], name="sleep")
    try:
        for _ in range(5):
            await p.start()
            await p.kill()
            assert p.exit_code == -signal.SIGKILL
    finally:
        await p.close()


async def test_probe_swallowing_cancellation_does_not_hang_start() -> None:
    async def stubborn(_: ManagedProcess) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(3)  # ignores the first cancel, like a wait_for race on 3.11

    code = "import sys\nsys.exit(4)"
    p = ManagedProcess(child(code), name="dies", ready=stubborn, ready_timeout_s=10)
    with pytest.raises(ProcessStartError, match="exited with code 4"):
        await asyncio.wait_for(p.start(), 5)


REPO = Path(__file__).resolve().parents[3]
_OWNER = """
import asyncio, sys, threading
from harness._process import ManagedProcess

SLEEPER = [sys.executable, "-u", "-c", "import time; print('READY', flush=True); time.sleep(60)"]

async def main() -> None:
    # Ready once it has written its only line: a later write to a dead owner's pipe would
    # kill it by SIGPIPE and hide what this test looks at.
    proc = ManagedProcess(SLEEPER, name="sleeper", ready=lambda p: p.wait_for_log("READY"))
    await proc.start()
    print(proc.pid, flush=True)
    await asyncio.sleep(60)

if sys.argv[1] == "thread":
    # An event loop on a worker thread: PDEATHSIG would fire when that thread ends, so
    # the hook must stay off there (the child outlives a SIGKILL of its owner).
    t = threading.Thread(target=asyncio.run, args=(main(),))
    t.start()
    t.join()
else:
    asyncio.run(main())
"""


@pytest.mark.parametrize("where", ["main", "thread"])
async def test_children_die_with_a_sigkilled_harness_when_spawned_on_the_main_thread(
    where: str,
) -> None:
    """kill -9 of the harness skips every atexit handler: the kernel's parent-death signal
    is what takes the nats-servers and services with it (issue noted in round 2)."""
    owner = await asyncio.create_subprocess_exec(
        PY, "-c", _OWNER, where, stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    assert owner.stdout is not None
    line = await asyncio.wait_for(owner.stdout.readline(), 30)
    pid = int(line)
    try:
        assert alive(pid)
        owner.kill()
        await owner.wait()
        for _ in range(100):
            if not alive(pid):
                break
            await asyncio.sleep(0.05)
        if where == "main":
            assert not alive(pid), "the child outlived its SIGKILLed owner"
        else:
            assert alive(pid), f"a child spawned off the main thread died: {_proc_state(pid)}"
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
