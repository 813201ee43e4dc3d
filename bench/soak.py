"""Soak: the reference platform under steady load for minutes (issue 13).

``python -m bench.soak [--minutes 5] [--rate 5000] [--sample-s 10] [--wal-max-mb 64]``

Brings the platform up the way ``qiki-harness up`` does (a real nats-server process with file
storage; registrar, lag monitor and radar simulator as processes; ``harness.platform``), then
publishes CloudEvents on ``qiki.events.v1.sensor`` at ``--rate`` per second with the injector
(``harness.load``, wire engine) for ``--minutes``. Every ``--sample-s`` it records:

* the registrar's WAL and database file sizes (the WAL is also polled every 50 ms, and the
  window's peak is what counts: a bound that only holds at sample times is no bound);
* the RSS of every service process and of nats-server (``/proc/<pid>/status``);
* consumer lag (num_pending + num_ack_pending, the largest over the durables; polled every
  second, the window's peak);
* PubAck latency of the window's messages (p99, from the injector's per-message figures).

Then a table and ``RESULT {json}`` with ``wal_max_mb``, ``rss_growth_pct`` per service (mean
RSS of the last minute vs the first minute after ``--warmup-s``; for short runs both windows
shrink to fit), ``lag_max``, ``puback_p99_ms`` and whether each goal is met: WAL <= the bound
(64 MB), RSS growth <= 10 % for the reference services (nats-server's is shown, not judged:
its file store caches the growing stream), lag bounded (the last minute's peak within twice
the first minute's, or two seconds of events, and drained at the end). Before issue 13 the
WAL reached 1.88 GB within one minute at 5,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WAL_GOAL_MB = 64.0
RSS_GROWTH_GOAL_PCT = 10.0
LAG_GOAL_S = 2.0  # lag bounded: the last minute's peak within max(2x first, 2 s of events)
SUBJECT = "qiki.events.v1.sensor"
MiB = 1024 * 1024


@dataclass
class Sample:
    """One row of the table: the state at ``t`` and the peaks since the previous row."""

    t: float
    wal_mb: float
    wal_peak_mb: float
    db_mb: float
    rss_mb: dict[str, float]
    lag: int
    lag_peak: int
    puback_p99_ms: float | None = None
    sent: int = 0


@dataclass
class _Peaks:
    wal: int = 0
    lag: int = 0
    wal_all: int = 0
    lag_all: int = 0
    lag_now: int = 0
    errors: list[str] = field(default_factory=list)

    def take(self) -> tuple[int, int]:
        out = (self.wal, self.lag)
        self.wal = self.lag = 0
        return out


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


async def _watch_wal(wal: Path, peaks: _Peaks, stop: asyncio.Event) -> None:
    while not stop.is_set():
        size = _size(wal)
        peaks.wal = max(peaks.wal, size)
        peaks.wal_all = max(peaks.wal_all, size)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def _watch_lag(platform: Any, peaks: _Peaks, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            samples = await platform.sample_lag(platform.now())
            lag = max((s.lag for s in samples), default=0)
            peaks.lag_now = lag
            peaks.lag = max(peaks.lag, lag)
            peaks.lag_all = max(peaks.lag_all, lag)
        except Exception as exc:  # a slow answer on a loaded machine: try again
            peaks.errors.append(f"lag: {type(exc).__name__}: {exc}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def _pids(platform: Any) -> dict[str, int | None]:
    pids: dict[str, int | None] = {n: s.proc.pid for n, s in platform.services.items()}
    nodes = getattr(platform.broker, "nodes", None) or []
    for node in nodes:
        pids[f"nats-server:{node.name}" if len(nodes) > 1 else "nats-server"] = node.pid
    return pids


def _window_means(samples: list[Sample], name: str, warmup_s: float,
                  window_s: float) -> tuple[float | None, float | None]:
    end = samples[-1].t if samples else 0.0
    first = [s.rss_mb[name] for s in samples
             if name in s.rss_mb and warmup_s <= s.t < warmup_s + window_s]
    last = [s.rss_mb[name] for s in samples if name in s.rss_mb and s.t > end - window_s]
    return (statistics.fmean(first) if first else None,
            statistics.fmean(last) if last else None)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak; return the RESULT dict (and print the table)."""
    from harness.load import Constant
    from harness.load.injector import Injector
    from harness.platform import Platform, http_get_json
    from harness.scenario.model import Topology

    duration_s = args.minutes * 60.0
    warmup_s = min(args.warmup_s, duration_s / 4)
    window_s = min(60.0, (duration_s - warmup_s) / 2)
    run_dir = Path(tempfile.mkdtemp(prefix="qiki-soak-"))
    # The registrar is started by the platform; its WAL bound travels in its environment.
    os.environ["QIKI_REGISTRAR_WAL_MAX_MB"] = str(args.wal_max_mb)
    wal = run_dir / "registrar.db-wal"
    db = run_dir / "registrar.db"
    peaks = _Peaks()
    samples: list[Sample] = []
    async with Platform(Topology(), run_dir=run_dir, tap=False) as p:
        import nats

        pids = _pids(p)
        nc = await nats.connect(**p.load_settings().connect_kwargs())
        stop = asyncio.Event()
        watchers = [asyncio.create_task(_watch_wal(wal, peaks, stop)),
                    asyncio.create_task(_watch_lag(p, peaks, stop))]
        injector = Injector(nc, SUBJECT, rate=Constant(args.rate), duration_s=duration_s,
                            window=4000)
        t0 = time.monotonic()
        load = asyncio.create_task(injector.run())
        print(f"soak: {args.minutes} min at {args.rate}/s, WAL bound {args.wal_max_mb} MiB, "
              f"sampling every {args.sample_s} s; run dir {run_dir}", file=sys.stderr)
        next_t = args.sample_s
        while not load.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(load), max(0.0, t0 + next_t -
                                                                  time.monotonic()))
            if load.done():
                break
            wal_peak, lag_peak = peaks.take()
            s = Sample(
                t=round(time.monotonic() - t0, 1),
                wal_mb=_size(wal) / MiB,
                wal_peak_mb=wal_peak / MiB,
                db_mb=_size(db) / MiB,
                rss_mb={n: r for n, pid in pids.items() if (r := _rss_mb(pid)) is not None},
                lag=peaks.lag_now,
                lag_peak=lag_peak,
            )
            samples.append(s)
            print(f"  t={s.t:6.1f}s wal={s.wal_peak_mb:6.1f}MB db={s.db_mb:7.1f}MB "
                  f"lag={s.lag_peak:6d} rss=" + " ".join(f"{n}:{r:.0f}"
                                                          for n, r in s.rss_mb.items()),
                  file=sys.stderr, flush=True)
            next_t += args.sample_s
        res = load.result()
        # Drained: the registrar catches up once the load stops.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lag_end = max((x.lag for x in await p.sample_lag(p.now())), default=0)
            if lag_end == 0:
                break
            await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*watchers)
        await nc.close()
        registrar_url = p.services["registrar"].http_url
        assert registrar_url is not None, "the soak runs the registrar as a process"
        counts = await asyncio.to_thread(http_get_json, registrar_url + "/counts", 10.0)

    # PubAck latency per window: a message's id ends in its sequence number, and the
    # injector sent seq n at n / rate seconds.
    per_window: dict[int, list[float]] = {}
    for mid, lat in zip(res.acked, res.latencies_ms, strict=False):
        seq = int(mid.rpartition("-")[2])
        per_window.setdefault(int(seq / args.rate // args.sample_s), []).append(lat)
    for i, s in enumerate(samples):
        s.puback_p99_ms = _p99(per_window.get(i, []))
        s.sent = len(per_window.get(i, []))

    names = sorted({n for s in samples for n in s.rss_mb})
    growth: dict[str, float | None] = {}
    rss_windows: dict[str, list[float | None]] = {}
    for n in names:
        first, last = _window_means(samples, n, warmup_s, window_s)
        rss_windows[n] = [None if first is None else round(first, 1),
                          None if last is None else round(last, 1)]
        growth[n] = None if not first or last is None else round(100 * (last / first - 1), 2)
    service_growth = [g for n, g in growth.items() if g is not None
                      and not n.startswith("nats-server")]
    summary = res.summary()
    wal_max_mb = round(peaks.wal_all / MiB, 2)
    # Bounded = not trending up: the last window's peak within twice the first window's (or
    # two seconds of events, whichever is larger), and drained once the load stops.
    lag_first = max((s.lag_peak for s in samples if warmup_s <= s.t < warmup_s + window_s),
                    default=0)
    lag_last = max((s.lag_peak for s in samples if samples and s.t > samples[-1].t - window_s),
                   default=0)
    lag_goal = max(2 * lag_first, int(args.rate * LAG_GOAL_S))
    result: dict[str, Any] = {
        "minutes": args.minutes,
        "rate_per_s": args.rate,
        "achieved_rate_per_s": summary["achieved_rate_per_s"],
        "acked": summary["acked"],
        "failed": summary["failed"],
        "stored_by_code": counts,
        "wal_bound_mb": args.wal_max_mb,
        "wal_max_mb": wal_max_mb,
        "db_mb": round(samples[-1].db_mb, 1) if samples else round(_size(db) / MiB, 1),
        "rss_mb_first_last": rss_windows,
        "rss_growth_pct": growth,
        "warmup_s": warmup_s,
        "window_s": window_s,
        "lag_max": peaks.lag_all,
        "lag_first_window_max": lag_first,
        "lag_last_window_max": lag_last,
        "lag_end": lag_end,
        "puback_p99_ms": summary["p99_ms"],
        "puback_p50_ms": summary["p50_ms"],
        "errors": peaks.errors[:5],
        "goals": {
            "wal_max_mb<=bound": wal_max_mb <= args.wal_max_mb,
            "rss_growth_pct<=10": bool(service_growth)
            and max(service_growth) <= RSS_GROWTH_GOAL_PCT,
            "lag_bounded_and_drained": lag_last <= lag_goal and lag_end == 0,
        },
    }
    _print_table(samples, names)
    if args.keep_run_dir:
        print(f"run dir kept: {run_dir}", file=sys.stderr)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _print_table(samples: list[Sample], names: list[str]) -> None:
    short = {n: n.replace("nats-server", "nats").replace("radar_sim", "radar") for n in names}
    head = (f"{'t_s':>6} {'sent':>6} {'wal_mb':>7} {'db_mb':>7} {'lag':>7} {'p99_ms':>7} "
            + " ".join(f"{'rss_' + short[n]:>10}" for n in names))
    print(head)
    print("-" * len(head))
    for s in samples:
        p99 = "-" if s.puback_p99_ms is None else f"{s.puback_p99_ms:.1f}"
        print(f"{s.t:6.0f} {s.sent:6d} {s.wal_peak_mb:7.1f} {s.db_mb:7.1f} {s.lag_peak:7d} "
              f"{p99:>7} " + " ".join(f"{s.rss_mb.get(n, float('nan')):10.1f}" for n in names))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="how long to load (default 5)")
    p.add_argument("--rate", type=int, default=5000, help="events per second (default 5000)")
    p.add_argument("--sample-s", type=float, default=10.0, help="seconds between table rows")
    p.add_argument("--warmup-s", type=float, default=60.0,
                   help="RSS growth is measured from here (at most a quarter of the run)")
    p.add_argument("--wal-max-mb", type=float, default=WAL_GOAL_MB,
                   help="the registrar's WAL bound (its --wal-max-mb), also the goal")
    p.add_argument("--keep-run-dir", action="store_true",
                   help="keep the run directory (database, service logs) for a look afterwards")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: table on stdout, then ``RESULT {json}``."""
    args = _parser().parse_args(argv)
    for name, v in (("minutes", args.minutes), ("rate", args.rate), ("sample-s", args.sample_s),
                    ("wal-max-mb", args.wal_max_mb)):
        if not v > 0:
            raise SystemExit(f"--{name}={v}: expected a number > 0")
    if args.wal_max_mb < 1:
        raise SystemExit(f"--wal-max-mb={args.wal_max_mb}: expected >= 1 (MiB)")
    try:
        import uvloop

        result = uvloop.run(soak(args))
    except ImportError:
        result = asyncio.run(soak(args))
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
