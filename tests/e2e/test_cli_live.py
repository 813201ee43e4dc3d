"""Live progress and Ctrl-C, end to end: ``qiki-harness run`` under a terminal (pty), with
a pipe, and interrupted by SIGINT (issue 12 §2)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nats.aio.client import Client

from harness.broker import NatsServer

EXE = Path(sys.executable).parent / "qiki-harness"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

#: short: a load, and a fault with a countdown the view must show
LIVE_SCENARIO = """\
name: live-view
topology:
  broker: {backend: process, nodes: 1}
  services:
    registrar: {}
    lagmon: {interval_s: 0.25}
    radar_sim: {rate_hz: 10}
method:
  - load: {at_s: 0, duration_s: 4, rate_per_s: 100}
  - fault: {at_s: 0.5, duration_s: 3, action: pause, target: "service:registrar"}
checks:
  - delivery: {}
"""

#: long: interrupted well before its end
LONG_SCENARIO = LIVE_SCENARIO.replace("name: live-view", "name: live-interrupt").replace(
    "duration_s: 4, rate_per_s: 100", "duration_s: 45, rate_per_s: 100").replace(
    "duration_s: 3, action: pause", "duration_s: 40, action: pause")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIKI_")}
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
    return env


def _run_in_pty(argv: list[str], cwd: Path, timeout_s: float = 180) -> tuple[int, str]:
    """Run ``argv`` with stdin/stdout/stderr on a pseudo-terminal; (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once (nothing of pytest's runs here)
        try:
            os.chdir(cwd)
            os.execve(argv[0], argv, _env())
        finally:
            os._exit(127)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def test_live_view_on_a_terminal(tmp_path: Path) -> None:
    scenario = tmp_path / "live.yaml"
    scenario.write_text(LIVE_SCENARIO)
    code, out = _run_in_pty([str(EXE), "run", str(scenario), "--report-dir",
                             str(tmp_path / "reports")], cwd=tmp_path)
    assert code == 0, out[-3000:]
    assert ANSI.search(out), "a terminal gets a live panel (ANSI control sequences)"
    assert "\x1b[2K" in out, "the panel is redrawn in place (erase line)"
    plain = ANSI.sub("", out)
    # frames show the phase with elapsed / planned, load figures, lag, the fault's countdown
    assert re.search(r"method \d+\.\ds / 4s", plain), plain[-3000:]
    assert re.search(r"acked [\d,]+ \(\d+/s\), failed 0, in flight \d+", plain)
    assert re.search(r"registrar-events [\d,]+", plain)
    countdowns = re.findall(r"pause service:registrar \((\d+\.\d)s left\)", plain)
    assert len(set(countdowns)) >= 2, "the remaining time counts down across frames"
    # events stay in the scrollback above the panel
    for event in ("steady state (before)", "fault: pause service:registrar for 3s",
                  "healed: pause service:registrar", "checks"):
        assert event in plain
    assert "PASSED  live-view" in plain


def test_plain_lines_when_not_a_terminal(tmp_path: Path) -> None:
    scenario = tmp_path / "live.yaml"
    scenario.write_text(LIVE_SCENARIO.replace("duration_s: 4, rate", "duration_s: 7, rate")
                        .replace("duration_s: 3, action", "duration_s: 6, action"))
    res = subprocess.run([str(EXE), "run", str(scenario), "--report-dir",
                          str(tmp_path / "reports")], capture_output=True, text=True,
                         timeout=180, cwd=tmp_path, env=_env())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "\x1b[" not in res.stderr and "\x1b[" not in res.stdout
    assert res.stdout.startswith("PASSED  live-view"), "stdout keeps the result lines only"
    lines = res.stderr.splitlines()
    assert all(ln.startswith("live-view: [") for ln in lines), lines
    text = res.stderr
    for event in ("start-up:", "steady state (before)", "method: 2 step(s)",
                  "load started: Constant(100/s)", "fault: pause service:registrar for 6s",
                  "healed: pause service:registrar", "load finished: attempted 700",
                  "rollbacks", "drain", "checks", "teardown"):
        assert event in text, (event, text)
    # a status line every 5 s while the 7 s method runs: readable, not a flood
    status = [ln for ln in lines if re.search(r"\] method \d+\.\ds / 7s \|", ln)]
    assert status, text
    assert any(re.search(r"pause service:registrar \(\d+\.\ds left\)", ln) for ln in status)
    assert len(lines) < 40, text


def test_no_progress_flag_silences_the_view(tmp_path: Path) -> None:
    scenario = tmp_path / "live.yaml"
    scenario.write_text(LIVE_SCENARIO)
    res = subprocess.run([str(EXE), "run", str(scenario), "--no-progress", "--report-dir",
                          str(tmp_path / "reports")], capture_output=True, text=True,
                         timeout=180, cwd=tmp_path, env=_env())
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr == ""
    assert res.stdout.startswith("PASSED  live-view")


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc), e.g. nats-server and the services."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                kids = Path(f"/proc/{p}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for k in map(int, kids):
                if k not in out:
                    out.add(k)
                    todo.append(k)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


@pytest.mark.parametrize("to", ["process", "group"])
def test_ctrl_c_mid_run(tmp_path: Path, to: str) -> None:
    """SIGINT to the harness (``kill -INT``), or to its whole process group as a terminal's
    Ctrl-C sends it (nats-server and the services get it too)."""
    scenario = tmp_path / "long.yaml"
    scenario.write_text(LONG_SCENARIO)
    reports = tmp_path / "reports"
    proc = subprocess.Popen([str(EXE), "run", str(scenario), "--report-dir", str(reports)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=_env(), start_new_session=True)
    children: set[int] = set()
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        for line in proc.stderr:  # plain progress lines (a pipe is not a terminal)
            seen.append(line)
            if "fault: pause service:registrar" in line or time.monotonic() > deadline:
                break
        assert any("fault: pause" in ln for ln in seen), "".join(seen)
        time.sleep(1.0)  # well inside the method (45 s)
        children = _descendants(proc.pid)
        assert len(children) >= 4, children  # nats-server, registrar, lagmon, radar_sim
        if to == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = "".join(seen) + err
    assert proc.returncode == 130, out + err
    assert re.search(r"^qiki-harness: interrupted during method \(t=\d+\.\ds of 45s; "
                     r"running: load 100/s, fault pause service:registrar\)$", err, re.M), err
    [run_dir] = [p for p in reports.iterdir() if p.is_dir()]
    assert f"qiki-harness: partial journal: {run_dir / 'journal.json'}" in err
    assert f"qiki-harness: partial report:  {run_dir / 'report.html'}" in err
    # stdout: the one result line a script reads, as for any run
    assert re.fullmatch(r"ERROR +\S+ +\(interrupted during method \(t=.*\)\) +report: "
                        + re.escape(str(run_dir / "report.html")) + "\n", out), out
    journal = json.loads((run_dir / "journal.json").read_text())
    assert journal["verdict"] == "error"
    assert journal["error"].startswith("interrupted during method (t="), journal["error"]
    assert "checks did not run" in journal["error"]
    assert journal["faults"] and journal["faults"][0]["removed_s"] is not None, "healed"
    assert journal["lag_samples"], "what was observed before the interruption is kept"
    # healed by the teardown, not the scenario: no "never recovered" figure
    assert journal["recoveries"] == [] and journal["recovery_s"] is None, journal["recoveries"]
    [load] = journal["load"]  # the load cut short: what it sent until then
    assert 0 < load["acked"] <= load["attempted"] < 4500, load
    assert any(t["kind"] == "load" for t in journal["timeline"])
    report = (run_dir / "report.html").read_text()
    assert "interrupted during method" in report
    deadline = time.monotonic() + 10
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = {c for c in children if _alive(c)}
    assert not survivors, f"child processes outlived the harness: {survivors}"



async def test_load_progress_on_a_terminal_and_in_a_pipe(nats_server: NatsServer,
                                                         nats_client: Client,
                                                         tmp_path: Path) -> None:
    """``qiki-harness load``: live frames on a terminal, plain lines in a pipe, nothing with
    ``--no-progress``; the JSON summary on stdout stays parseable in a pipe."""
    import asyncio

    await nats_client.jetstream().add_stream(name="LIVE", subjects=["live.>"])
    base = [str(EXE), "load", "--nats-url", nats_server.client_url, "--subject", "live.x",
            "--rate", "200", "--duration", "2"]
    code, out = await asyncio.to_thread(_run_in_pty, base, tmp_path)
    assert code == 0, out[-3000:]
    assert "\x1b[2K" in out
    assert re.search(r"load \d\.\ds / 2s", ANSI.sub("", out)), out[-2000:]
    assert re.search(r"acked [\d,]+ \(\d+/s\)", ANSI.sub("", out))

    async def piped(*extra: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *base, *extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
            env=_env())
        o, e = await asyncio.wait_for(proc.communicate(), 120)
        return proc.returncode or 0, o.decode(), e.decode()

    code, stdout, stderr = await piped()
    assert code == 0, stdout + stderr
    assert json.loads(stdout)["acked"] == 400
    assert "\x1b[" not in stderr
    assert "load: [" in stderr and "load finished: attempted 400, acked 400, failed 0" in stderr
    code, stdout, stderr = await piped("--no-progress")
    assert code == 0 and json.loads(stdout)["acked"] == 400
    assert stderr == ""


def test_ctrl_c_during_start_up(tmp_path: Path) -> None:
    """Start-up is not cut short (the broker and services come up, then are torn down): the
    run stops before the method and says where it was interrupted."""
    scenario = tmp_path / "long.yaml"
    scenario.write_text(LONG_SCENARIO)
    reports = tmp_path / "reports"
    proc = subprocess.Popen([str(EXE), "run", str(scenario), "--report-dir", str(reports)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=_env(), start_new_session=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "start-up:" in first, first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = first + err
    assert proc.returncode == 130, out + err
    assert "qiki-harness: interrupted during start-up\n" in err
    assert "] method" not in err, "the method never started"
    [run_dir] = [p for p in reports.iterdir() if p.is_dir()]
    journal = json.loads((run_dir / "journal.json").read_text())
    assert journal["verdict"] == "error"
    assert journal["error"].startswith("interrupted during start-up;")
    assert (run_dir / "report.html").exists()


#: exec argv[1:] with SIGINT ignored (the disposition survives exec, as a shell's would)
_EXEC_WITH_SIGINT_IGNORED = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


async def test_ctrl_c_during_load_prints_the_partial_result(nats_server: NatsServer,
                                                            nats_client: Client,
                                                            tmp_path: Path) -> None:
    """``qiki-harness load`` interrupted: exit 130, and stdout still carries the JSON
    summary of what was sent until then, marked interrupted.

    Started with SIGINT ignored, as everything launched in the background by a
    non-interactive shell is (``make test &`` from a script): the load used to rely on
    ``asyncio.run``'s handler, which is not installed then, and ran its whole 60 s through
    the Ctrl-C. With the default disposition the same handler of ours runs."""
    import asyncio

    await nats_client.jetstream().add_stream(name="LIVEINT", subjects=["liveint.>"])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _EXEC_WITH_SIGINT_IGNORED,
        str(EXE), "load", "--nats-url", nats_server.client_url, "--subject", "liveint.x",
        "--rate", "200", "--duration", "60", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=tmp_path, env=_env())
    assert proc.stderr is not None
    seen = ""
    async with asyncio.timeout(60):
        while "acked" not in seen:  # a status line with acked events: the load is running
            seen += (await proc.stderr.readline()).decode()
    await asyncio.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 130, seen + err.decode()
    summary = json.loads(out)
    assert summary["interrupted"] is True
    assert 0 < summary["acked"] < 200 * 60, summary
