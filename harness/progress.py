"""Live progress of a run: the events the runner, the injector and the fault engine report,
and the two views that show them (issue 12 §2).

The producers know nothing about the display: they call a :class:`ProgressSink` at phase
changes, when a load or a fault starts and ends, and once per lag sample. Nothing is
reported per message: a load registers a *probe* (a cheap function returning its counters)
that the view calls when it draws, about four times a second. :class:`ProgressSink` itself
does nothing, so a producer given no sink pays nothing.

:class:`ProgressModel` turns the events into a :class:`Snapshot` (phase, elapsed / planned,
acked rate, failures, in flight, lag per consumer, active faults with their remaining time).
:class:`LiveView` draws snapshots with rich on a terminal; :class:`LineView` prints plain
lines (an event per line, and a status line every few seconds) for CI logs. Both write to
stderr: stdout keeps the run's result lines (and ``qiki-harness load``'s JSON).

Events may come from the event loop's thread while a view draws from its own (rich's
refresh thread, the line view's timer): the model guards its state with a lock.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.checks.observations import LagSample

__all__ = [
    "LineView",
    "LiveView",
    "LoadCounters",
    "ProgressModel",
    "ProgressSink",
    "Snapshot",
    "make_view",
]


@dataclass(frozen=True, slots=True)
class LoadCounters:
    """A load's running totals (what its probe returns)."""

    attempted: int = 0
    acked: int = 0
    failed: int = 0
    in_flight: int = 0


class ProgressSink:
    """What producers report. Every method is cheap and none is called per message; this base
    class ignores everything (the default when progress is off).

    ``key`` identifies a load or a fault between its start and its end (any hashable: the
    injector passes itself, the fault engine its fault's ``id()``). ``with sink:``
    starts and stops a view's drawing (nothing, here).
    """

    def __enter__(self) -> ProgressSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Begin drawing (views)."""

    def stop(self) -> None:
        """Stop drawing (views; idempotent)."""

    def phase(self, name: str, detail: str = "", *, planned_s: float | None = None) -> None:
        """A new phase began (``planned_s``: how long it is planned to take, if known)."""

    def note(self, text: str) -> None:
        """Something worth a line of its own (a step started, the verdict)."""

    def load_started(self, key: object, label: str, probe: Callable[[], LoadCounters]) -> None:
        """A load began; ``probe()`` returns its counters whenever the view draws."""

    def load_finished(self, key: object, final: LoadCounters) -> None:
        """A load ended with these totals."""

    def lag(self, samples: Iterable[LagSample]) -> None:
        """The latest lag sample of each consumer."""

    def fault_applied(self, key: object, label: str, duration_s: float | None) -> None:
        """A fault is in force; healed after ``duration_s`` (None: at the rollbacks)."""

    def fault_healed(self, key: object, error: str | None = None) -> None:
        """A fault was healed (``error``: the heal failed)."""


@dataclass(frozen=True)
class FaultView:
    """An active fault as shown: its label and seconds left (None: until the rollbacks)."""

    label: str
    remaining_s: float | None


@dataclass(frozen=True)
class Snapshot:
    """What a view shows at one instant."""

    title: str
    phase: str
    detail: str
    elapsed_s: float
    phase_elapsed_s: float
    planned_s: float | None
    loads: int
    attempted: int
    acked: int
    failed: int
    in_flight: int
    #: acked per second over the last couple of seconds (None before two readings)
    acked_rate_per_s: float | None
    #: ``stream/consumer`` -> lag of the latest sample
    lag: dict[str, int]
    faults: list[FaultView]


#: acked rate is measured over about this window (smooths the 0.5 s flushes of the injector)
RATE_WINDOW_S = 2.0


@dataclass
class _Load:
    label: str
    probe: Callable[[], LoadCounters] | None
    final: LoadCounters | None = None


@dataclass
class _Fault:
    label: str
    applied: float
    duration_s: float | None


@dataclass
class ProgressModel(ProgressSink):
    """The state the events build; :meth:`snapshot` is what a view draws.

    ``clock`` is injectable for tests (monotonic seconds).
    """

    title: str = ""
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _t0: float = 0.0
    _phase: str = "starting"
    _detail: str = ""
    _phase_t0: float = 0.0
    _planned: float | None = None
    _loads: dict[object, _Load] = field(default_factory=dict)
    _lag: dict[str, int] = field(default_factory=dict)
    _faults: dict[object, _Fault] = field(default_factory=dict)
    _rate: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))

    def __post_init__(self) -> None:
        self._t0 = self._phase_t0 = self.clock()

    # -- events (producers' side) ----------------------------------------------------------

    def phase(self, name: str, detail: str = "", *, planned_s: float | None = None) -> None:
        """Record the phase; subclasses also print it."""
        with self._lock:
            self._phase, self._detail, self._planned = name, detail, planned_s
            self._phase_t0 = self.clock()

    def load_started(self, key: object, label: str, probe: Callable[[], LoadCounters]) -> None:
        """Register the load's probe."""
        with self._lock:
            # a reading at the start, so the first status line already has a rate
            self._rate.append((self.clock(), sum(c.acked for c in self._totals())))
            self._loads[key] = _Load(label, probe)

    def load_finished(self, key: object, final: LoadCounters) -> None:
        """Keep the load's totals (acked counts on across loads); drop its probe."""
        with self._lock:
            load = self._loads.get(key)
            if load is None:
                load = self._loads[key] = _Load("load", None)
            load.probe, load.final = None, LoadCounters(final.attempted, final.acked,
                                                        final.failed, 0)

    def lag(self, samples: Iterable[LagSample]) -> None:
        """Keep the latest lag of each consumer."""
        with self._lock:
            for s in samples:
                self._lag[f"{s.stream}/{s.consumer}"] = s.lag

    def fault_applied(self, key: object, label: str, duration_s: float | None) -> None:
        """Start the fault's countdown."""
        with self._lock:
            self._faults[key] = _Fault(label, self.clock(), duration_s)

    def fault_healed(self, key: object, error: str | None = None) -> None:
        """Forget the fault."""
        with self._lock:
            self._faults.pop(key, None)

    # -- the view's side ---------------------------------------------------------------------

    def fault_label(self, key: object) -> str:
        """The label a fault was applied with ('' when unknown)."""
        with self._lock:
            f = self._faults.get(key)
            return f.label if f else ""

    def snapshot(self) -> Snapshot:
        """The state now (calls each running load's probe once)."""
        with self._lock:
            now = self.clock()
            totals = self._totals()
            running = sum(1 for ld in self._loads.values() if ld.final is None)
            acked = sum(c.acked for c in totals)
            self._rate.append((now, acked))
            while len(self._rate) > 2 and now - self._rate[1][0] >= RATE_WINDOW_S:
                self._rate.popleft()
            rate: float | None = None
            if len(self._rate) >= 2 and now - self._rate[0][0] > 0:
                t_then, acked_then = self._rate[0]
                rate = (acked - acked_then) / (now - t_then)
            faults = [FaultView(f.label, None if f.duration_s is None
                                else max(0.0, f.applied + f.duration_s - now))
                      for f in self._faults.values()]
            return Snapshot(
                title=self.title, phase=self._phase, detail=self._detail,
                elapsed_s=now - self._t0, phase_elapsed_s=now - self._phase_t0,
                planned_s=self._planned, loads=running,
                attempted=sum(c.attempted for c in totals), acked=acked,
                failed=sum(c.failed for c in totals),
                in_flight=sum(c.in_flight for c in totals), acked_rate_per_s=rate,
                lag=dict(self._lag), faults=faults)

    def _totals(self) -> list[LoadCounters]:
        """Each load's counters (lock held)."""
        return [ld.final if ld.final is not None else
                (ld.probe() if ld.probe is not None else LoadCounters())
                for ld in self._loads.values()]

    @property
    def has_load(self) -> bool:
        """Whether any load ran or runs."""
        with self._lock:
            return bool(self._loads)


# ------------------------------------------------------------------------------ formatting


def _num(n: float) -> str:
    return f"{n:,.0f}"


def _secs(s: float) -> str:
    return f"{s:.1f}s" if s < 600 else f"{s / 60:.1f}min"


def phase_text(snap: Snapshot) -> str:
    """``method 12.3s / 45s`` (elapsed in the phase, and planned when known)."""
    text = f"{snap.phase} {_secs(snap.phase_elapsed_s)}"
    if snap.planned_s is not None:
        text += f" / {snap.planned_s:g}s"
    return text


def load_text(snap: Snapshot) -> str:
    """``acked 3,412 (301/s), failed 0, in flight 12``."""
    rate = "" if snap.acked_rate_per_s is None else f" ({_num(snap.acked_rate_per_s)}/s)"
    return (f"acked {_num(snap.acked)}{rate}, failed {_num(snap.failed)}, "
            f"in flight {_num(snap.in_flight)}")


def lag_text(snap: Snapshot) -> str:
    """``registrar-events 0, registrar-radar 12`` (the stream is left out when the consumer
    name is unique)."""
    names = [k.split("/", 1)[-1] for k in snap.lag]
    unique = len(set(names)) == len(names)
    shown = sorted((k.split("/", 1)[-1] if unique else k, v) for k, v in snap.lag.items())
    return ", ".join(f"{name} {_num(v)}" for name, v in shown)


def fault_text(f: FaultView) -> str:
    """``kill broker (2.1s left)`` or ``... (until the rollbacks)``."""
    left = "until the rollbacks" if f.remaining_s is None else f"{f.remaining_s:.1f}s left"
    return f"{f.label} ({left})"


def status_line(snap: Snapshot) -> str:
    """One plain line with everything: what the line view prints every few seconds."""
    parts = [f"[{_secs(snap.elapsed_s):>7}] {phase_text(snap)}"]
    if snap.loads or snap.acked or snap.failed:
        parts.append(load_text(snap))
    if snap.lag:
        parts.append("lag " + lag_text(snap))
    if snap.faults:
        parts.append("faults " + "; ".join(fault_text(f) for f in snap.faults))
    return " | ".join(parts)


# ------------------------------------------------------------------------------ views


class _View(ProgressModel):
    """A model that also prints events; ``with view:`` runs it."""

    def emit(self, text: str) -> None:
        """Print one event line."""

    def phase(self, name: str, detail: str = "", *, planned_s: float | None = None) -> None:
        """Record and print the phase."""
        super().phase(name, detail, planned_s=planned_s)
        self.emit(f"{name}" + (f": {detail}" if detail else ""))

    def note(self, text: str) -> None:
        """Print the note."""
        self.emit(text)

    def load_started(self, key: object, label: str, probe: Callable[[], LoadCounters]) -> None:
        """Record and print the load."""
        super().load_started(key, label, probe)
        self.emit(f"load started: {label}")

    def load_finished(self, key: object, final: LoadCounters) -> None:
        """Record and print the load's totals."""
        super().load_finished(key, final)
        self.emit(f"load finished: attempted {_num(final.attempted)}, acked "
                  f"{_num(final.acked)}, failed {_num(final.failed)}")

    def fault_applied(self, key: object, label: str, duration_s: float | None) -> None:
        """Record and print the fault."""
        super().fault_applied(key, label, duration_s)
        self.emit(f"fault: {label}" + (f" for {duration_s:g}s" if duration_s is not None
                                        else ""))

    def fault_healed(self, key: object, error: str | None = None) -> None:
        """Record and print the heal."""
        label = self.fault_label(key)
        super().fault_healed(key, error)
        if label:
            self.emit(f"healed: {label}" + (f" (heal failed: {error})" if error else ""))


class LineView(_View):
    """Plain lines for logs: one per event, and a status line every ``every_s`` seconds while
    a phase runs (not a flood: a 10-minute run prints about 120 status lines at 5 s)."""

    def __init__(self, title: str = "", *, stream: IO[str] | None = None, every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(title=title, clock=clock)
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out = threading.Lock()

    def emit(self, text: str) -> None:
        """``[  12.3s] text``."""
        snap_t = self.clock() - self._t0
        self._write(f"[{_secs(snap_t):>7}] {text}")

    def _write(self, line: str) -> None:
        with self._out:
            prefix = f"{self.title}: " if self.title else ""
            self.stream.write(f"{prefix}{line}\n")
            self.stream.flush()

    def start(self) -> None:
        """Start the status-line timer."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._tick, name="qiki-progress",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the timer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            self._write(status_line(self.snapshot()))


class LiveView(_View):
    """A rich live panel on a terminal (stderr), redrawn ``refresh_per_second`` times a second
    from rich's own thread; events are printed above it and stay in the scrollback."""

    def __init__(self, title: str = "", *, console: Any = None,
                 refresh_per_second: float = 4.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(title=title, clock=clock)
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True,
                                                                   highlight=False)
        self.refresh_per_second = refresh_per_second
        self._live: Any = None

    def emit(self, text: str) -> None:
        """Print above the panel."""
        from rich.text import Text

        line = Text(f"{_secs(self.clock() - self._t0):>7} ", style="dim")
        line.append(text)  # plain text: a step name with [brackets] is not markup
        self.console.print(line, highlight=False)

    def start(self) -> None:
        """Start drawing."""
        if self._live is not None:
            return
        from rich.live import Live

        self._live = Live(get_renderable=self.render, console=self.console,
                          refresh_per_second=self.refresh_per_second, transient=True,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.start()

    def stop(self) -> None:
        """Stop drawing and remove the panel."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def render(self) -> Any:
        """The panel for the current snapshot."""
        from rich.table import Table
        from rich.text import Text

        snap = self.snapshot()
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        head = Text(snap.title + "  " if snap.title else "", style="bold cyan")
        head.append(phase_text(snap), style="bold")
        head.append(f"   run {_secs(snap.elapsed_s)}", style="dim")
        if snap.detail:
            head.append(f"   {snap.detail}", style="dim")
        grid.add_row("phase", head)
        if snap.loads or snap.acked or snap.failed:
            style = "red" if snap.failed else ""
            grid.add_row("load", Text(load_text(snap), style=style))
        if snap.lag:
            grid.add_row("lag", Text(lag_text(snap)))
        for i, f in enumerate(snap.faults):
            grid.add_row("faults" if i == 0 else "", Text(fault_text(f), style="yellow"))
        return grid


def make_view(enabled: bool | None, title: str = "", *, stream: IO[str] | None = None,
              ) -> ProgressSink:
    """The view for a run: a live panel when ``stream`` (default stderr) is a terminal;
    otherwise plain lines when ``enabled`` is True (the CLI: CI logs) and nothing when it is
    None (a library call stays quiet in a log); nothing at all when ``enabled`` is False.
    ``with make_view(...) as sink:`` draws while the block runs."""
    if enabled is False:
        return ProgressSink()
    out = stream if stream is not None else sys.stderr
    isatty = getattr(out, "isatty", lambda: False)
    if isatty():
        from rich.console import Console

        return LiveView(title, console=Console(file=out, highlight=False))
    return LineView(title, stream=out) if enabled else ProgressSink()
