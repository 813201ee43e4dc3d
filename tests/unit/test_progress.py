"""The live-progress model and its plain-line view, on a fake clock (no NATS, no terminal)."""

from __future__ import annotations

import io

from harness.checks.observations import LagSample
from harness.progress import (
    LineView,
    LiveView,
    LoadCounters,
    ProgressModel,
    ProgressSink,
    make_view,
    status_line,
)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Load:
    """A probe a test moves by hand (what Injector.counters() returns)."""

    def __init__(self) -> None:
        self.c = LoadCounters()
        self.calls = 0

    def __call__(self) -> LoadCounters:
        self.calls += 1
        return self.c


def test_snapshot_has_phase_rate_lag_and_fault_countdown() -> None:
    clock = Clock()
    m = ProgressModel(title="chaos", clock=clock)
    clock.t += 2
    m.phase("method", "3 step(s)", planned_s=45)
    load = Load()
    m.load_started("L", "Constant(300/s)", load)
    m.fault_applied(1, "kill broker", 5.0)
    m.fault_applied(2, "latency link:registrar", None)
    m.lag([LagSample(t=1, stream="S", consumer="registrar-events", lag=7),
           LagSample(t=1, stream="R", consumer="registrar-radar", lag=0)])
    clock.t += 2
    load.c = LoadCounters(attempted=610, acked=600, failed=3, in_flight=7)
    snap = m.snapshot()
    assert (snap.title, snap.phase, snap.detail, snap.planned_s) == ("chaos", "method",
                                                                      "3 step(s)", 45)
    assert snap.elapsed_s == 4 and snap.phase_elapsed_s == 2
    assert (snap.acked, snap.failed, snap.in_flight, snap.loads) == (600, 3, 7, 1)
    assert snap.acked_rate_per_s == 300  # 600 acked in the 2 s since the load started
    assert snap.lag == {"S/registrar-events": 7, "R/registrar-radar": 0}
    faults = {f.label: f.remaining_s for f in snap.faults}
    assert faults == {"kill broker": 3.0, "latency link:registrar": None}
    line = status_line(snap)
    assert "method 2.0s / 45s" in line
    assert "acked 600 (300/s), failed 3, in flight 7" in line
    assert "lag registrar-events 7, registrar-radar 0" in line
    assert "kill broker (3.0s left)" in line and "(until the rollbacks)" in line
    m.fault_healed(1)
    assert [f.label for f in m.snapshot().faults] == ["latency link:registrar"]


def test_rate_is_over_the_last_seconds_and_finished_loads_keep_counting() -> None:
    clock = Clock()
    m = ProgressModel(clock=clock)
    load = Load()
    m.load_started("L", "l", load)
    for _ in range(10):  # 100/s for 10 s, read every 0.25 s ...
        for _q in range(4):
            clock.t += 0.25
            load.c = LoadCounters(acked=load.c.acked + 25)
            m.snapshot()
    for _ in range(12):  # ... then nothing more is acked for 3 s
        clock.t += 0.25
        snap = m.snapshot()
    assert snap.acked == 1000
    assert snap.acked_rate_per_s == 0  # a recent window, not the average since the start
    m.load_finished("L", LoadCounters(attempted=1000, acked=1000, failed=0, in_flight=5))
    calls = load.calls
    snap = m.snapshot()
    assert load.calls == calls, "a finished load's probe is not called again"
    assert (snap.acked, snap.in_flight, snap.loads) == (1000, 0, 0)


def test_fault_countdown_never_goes_negative() -> None:
    clock = Clock()
    m = ProgressModel(clock=clock)
    m.fault_applied("f", "pause service:registrar", 1.0)
    clock.t += 3
    assert m.snapshot().faults[0].remaining_s == 0.0


def test_line_view_prints_events_and_no_ansi() -> None:
    out = io.StringIO()
    clock = Clock()
    view = LineView("smoke", stream=out, clock=clock, every_s=3600)
    with view:
        view.phase("method", "2 step(s)", planned_s=8)
        view.load_started("L", "Constant(200/s) on s", Load())
        view.fault_applied(7, "kill broker", 1.5)
        clock.t += 1.5
        view.fault_healed(7)
        view.load_finished("L", LoadCounters(attempted=10, acked=9, failed=1))
    text = out.getvalue()
    assert "smoke: [   0.0s] method: 2 step(s)\n" in text
    assert "load started: Constant(200/s) on s" in text
    assert "fault: kill broker for 1.5s" in text
    assert "smoke: [   1.5s] healed: kill broker\n" in text
    assert "load finished: attempted 10, acked 9, failed 1" in text
    assert "\x1b[" not in text


def test_line_view_prints_a_status_line_every_few_seconds() -> None:
    out = io.StringIO()
    view = LineView(stream=out, every_s=0.05)
    with view:
        view.phase("method", planned_s=10)
        import time

        time.sleep(0.4)
    lines = [ln for ln in out.getvalue().splitlines() if "method" in ln and "/ 10s" in ln]
    assert 2 <= len(lines) <= 12, out.getvalue()


def test_make_view_chooses_by_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert type(make_view(False, stream=Tty())) is ProgressSink
    assert isinstance(make_view(True, stream=io.StringIO()), LineView)  # the CLI in CI
    assert type(make_view(None, stream=io.StringIO())) is ProgressSink  # a library call
    assert isinstance(make_view(True, stream=Tty()), LiveView)
    assert isinstance(make_view(None, stream=Tty()), LiveView)


def test_live_view_renders_a_frame() -> None:
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, color_system=None)
    clock = Clock()
    view = LiveView("chaos", console=console, clock=clock)
    view.phase("method", planned_s=45)
    view.fault_applied(1, "kill broker", 4.0)
    view.lag([LagSample(t=1, stream="S", consumer="registrar-events", lag=12)])
    clock.t += 1
    console.print(view.render())
    frame = buf.getvalue()
    assert "method 1.0s / 45s" in frame
    assert "kill broker (3.0s left)" in frame
    assert "registrar-events 12" in frame


def test_live_view_prints_events_verbatim() -> None:
    from rich.console import Console

    buf = io.StringIO()
    view = LiveView(console=Console(file=buf, force_terminal=True, color_system=None,
                                    width=120), clock=Clock())
    view.note("publish [bold]step[/bold] (name [x])")
    assert "publish [bold]step[/bold] (name [x])" in buf.getvalue()
