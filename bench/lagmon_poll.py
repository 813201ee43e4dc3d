"""Benchmark of the lag monitor's poll: ``python -m bench.lagmon_poll``.

For 200, 2,000 and 10,000 durable consumers on one stream of a real nats-server, side by side
in one run (median of ``--runs``):

- baseline: N x ``js.consumer_info`` one after the other (how a naive monitor polls);
- N x ``consumer_info`` concurrently (``asyncio.gather``), for reference;
  (both only up to 2,000 consumers: at 10,000 they take seconds a run);
- ``GET /jsz?consumers=true`` on the monitoring port (fetch + JSON parse), for reference: it
  needs the HTTP monitor, and in a cluster answers only for the node asked;
- the server's own time: every ``$JS.API.CONSUMER.LIST`` page of the stream requested at
  once and received, not parsed (``raw LIST``);
- ours: one :meth:`LagMonitor.poll_once` (paged ``$JS.API.CONSUMER.LIST``, exact age lookups,
  threshold evaluation, metrics), the same with ``age_mode="approx"``, the CPU time of this
  process during one poll (the server runs in its own), ``/metrics`` rendering time, and
  the memory the monitor holds per consumer (tracemalloc, after a poll and a render: the
  snapshot, the metric templates and the caches).

Measures run in rotation within each round so a shared, noisy machine slows all alike.

Every consumer has lag (messages published, none consumed) and a threshold, so the poll does
all its work. Goals: poll <= 20 ms for 200 consumers, <= 100 ms for 2,000 (issue 2); at
10,000 a poll <= 500 ms and within 1.2x of raw LIST, ``/metrics`` in <= 50 ms (issue 13).
The table goes to stdout; the last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import api

from harness.broker import NatsServer
from services.lagmon.service import LagMonitor
from services.lagmon.thresholds import Thresholds

GOALS_MS = {200: 20.0, 2000: 100.0, 10000: 500.0}
#: Goals on the poll / raw LIST ratio and the render time, per consumer count (issue 13).
GOAL_RATIO = {10000: 1.2}
GOAL_RENDER_MS = {10000: 50.0}
#: Per-request timeout of the measured monitors (the service's default is 2 s).
TIMEOUT_S = 10.0
#: Above this many consumers the N x consumer_info references are skipped (seconds a run).
INFO_MAX = 2000
STREAM = "BENCH_LAG"


async def _http_get(url: str) -> bytes:
    host, _, rest = url.removeprefix("http://").partition("/")
    h, _, p = host.partition(":")
    reader, writer = await asyncio.open_connection(h, int(p))
    writer.write(f"GET /{rest} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        out, rest_b = b"", body
        while True:
            size_s, _, rest_b = rest_b.partition(b"\r\n")
            size = int(size_s, 16)
            if size == 0:
                return out
            out, rest_b = out + rest_b[:size], rest_b[size + 2 :]
    return body


async def _interleaved_ms(
    fns: dict[str, Callable[[], Awaitable[Any]]], runs: int, slow: set[str]
) -> dict[str, float]:
    """Median ms of each function, run in rotation so shifting machine load hits all alike.

    Functions in ``slow`` (the N x consumer_info baseline) run every other round; each
    round starts the rotation one function later.
    """
    for fn in fns.values():
        await fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for i in range(runs):
        # Each round starts one measure later: none always follows the same one (the server
        # is still busy after a large answer, e.g. collecting garbage).
        k = i % len(names)
        for name in names[k:] + names[:k]:
            fn = fns[name]
            if name in slow and i % 2:
                continue
            t0 = time.perf_counter()
            await fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


async def _grow_consumers(nc: Client, have: int, want: int) -> None:
    js = nc.jetstream(timeout=10)
    names = [f"c{i:05d}" for i in range(have, want)]
    for i in range(0, len(names), 50):
        await asyncio.gather(
            *(
                js.add_consumer(
                    STREAM,
                    api.ConsumerConfig(durable_name=n, ack_policy=api.AckPolicy.EXPLICIT),
                )
                for n in names[i : i + 50]
            )
        )


async def _measure(nc: Client, monitor_url: str, n: int, runs: int) -> dict[str, Any]:
    js = nc.jetstream(timeout=10)
    names = [f"c{i:05d}" for i in range(n)]

    async def seq_info() -> None:
        for name in names:
            await js.consumer_info(STREAM, name)

    async def gather_info() -> None:
        await asyncio.gather(*(js.consumer_info(STREAM, name) for name in names))

    async def jsz() -> None:
        json.loads(await _http_get(f"{monitor_url}/jsz?consumers=true"))

    # A generous per-request timeout: on a busy machine the last of 40 pages asked at once
    # can take seconds, and a timed-out poll would measure nothing.
    monitor = LagMonitor(
        nc, streams=[STREAM], thresholds=Thresholds(default=1_000_000), timeout_s=TIMEOUT_S
    )
    approx = LagMonitor(
        nc,
        streams=[STREAM],
        thresholds=Thresholds(default=1_000_000),
        age_mode="approx",
        timeout_s=TIMEOUT_S,
    )
    snap = await monitor.poll_once()
    if len(snap.consumers) != n or any(c.lag == 0 for c in snap.consumers.values()):
        raise RuntimeError(
            f"poll saw {len(snap.consumers)} consumers, expected {n} with lag "
            f"(stream errors: {snap.stream_errors})"
        )

    render_cpu: list[float] = []

    async def render() -> None:
        t0 = time.process_time()
        monitor.metrics.render()
        render_cpu.append((time.process_time() - t0) * 1e3)

    subject = f"$JS.API.CONSUMER.LIST.{STREAM}"
    offsets = range(0, n, 256)

    async def raw_pages() -> None:
        # The server's own time: every CONSUMER.LIST page asked for at once, not parsed.
        await asyncio.gather(
            *(nc.request(subject, b'{"offset":%d}' % o, timeout=10) for o in offsets)
        )

    cpu: list[float] = []

    async def poll_cpu() -> None:
        t0 = time.process_time()
        await monitor.poll_once()
        cpu.append((time.process_time() - t0) * 1e3)

    fns: dict[str, Callable[[], Awaitable[Any]]] = {
        "consumer_info_seq_ms": seq_info,
        "consumer_info_gather_ms": gather_info,
        "jsz_ms": jsz,
        "raw_list_ms": raw_pages,
        "poll_ms": poll_cpu,
        "poll_approx_ms": approx.poll_once,
        "metrics_render_ms": render,
    }
    if n > INFO_MAX:
        del fns["consumer_info_seq_ms"], fns["consumer_info_gather_ms"]
    med = await _interleaved_ms(
        fns, runs, slow={"consumer_info_seq_ms", "consumer_info_gather_ms"}
    )
    return {
        "consumers": n,
        "consumer_info_seq_ms": None,
        "consumer_info_gather_ms": None,
        **med,
        "poll_cpu_ms": statistics.median(cpu),
        "metrics_render_cpu_ms": statistics.median(render_cpu),
        **await _memory(nc, n),
    }


async def _memory(nc: Client, n: int) -> dict[str, float]:
    """Bytes a fresh monitor holds per consumer after a poll and a render (and its peak)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        monitor = LagMonitor(
            nc, streams=[STREAM], thresholds=Thresholds(default=1_000_000), timeout_s=TIMEOUT_S
        )
        await monitor.poll_once()
        await monitor.poll_once()  # steady state: the previous snapshot is dropped
        monitor.metrics.render()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {
        "bytes_per_consumer": (held - base) / n,
        "peak_bytes_per_consumer": (peak - base) / n,
    }


async def run(sizes: list[int], runs: int, messages: int) -> list[dict[str, Any]]:
    """Measure every size on one server (consumers are added as sizes grow)."""
    results = []
    async with NatsServer() as srv:
        nc = await nats.connect(srv.client_url)
        try:
            js = nc.jetstream()
            await js.add_stream(
                # -1 ("unlimited") gets the server's default cap of 1,000 consumers per stream.
                api.StreamConfig(
                    name=STREAM, subjects=["bench.lag.>"], max_consumers=max(sizes) + 10
                )
            )
            for i in range(messages):
                await js.publish(f"bench.lag.{i % 4}", b"x")
            have = 0
            for n in sorted(sizes):
                await _grow_consumers(nc, have, n)
                have = n
                results.append(await _measure(nc, srv.monitor_url, n, runs))
        finally:
            await nc.close()
    return results


def main() -> None:
    """Run the benchmark, print the table and the RESULT line."""
    p = argparse.ArgumentParser(prog="python -m bench.lagmon_poll", description=__doc__)
    p.add_argument(
        "--sizes", default="200,2000,10000", help="consumer counts (default 200,2000,10000)"
    )
    p.add_argument("--runs", type=int, default=9, help="timed runs per measure (median)")
    p.add_argument("--messages", type=int, default=100, help="messages in the stream")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = asyncio.run(run(sizes, args.runs, args.messages))

    def ms(v: float | None, width: int) -> str:
        return f"{'-':>{width}}" if v is None else f"{v:>{width}.1f}"

    header = (
        f"{'consumers':>9} | {'N x info seq':>12} | {'N x info gather':>15} | "
        f"{'/jsz':>8} | {'raw LIST':>8} | {'lagmon poll':>11} | {'/raw':>5} | "
        f"{'poll CPU':>8} | {'poll approx':>11} | {'/metrics':>8} | {'its CPU':>7} | "
        f"{'B/consumer':>10} | "
        f"{'goal':>6} | ok"
    )
    print("lag poll, median ms (nats-server on 127.0.0.1; lower is better)")
    print(header)
    print("-" * len(header))
    out = []
    for r in rows:
        n = r["consumers"]
        goal = GOALS_MS.get(n)
        ratio = r["poll_ms"] / r["raw_list_ms"]
        checks = []
        if goal is not None:
            checks.append(r["poll_ms"] <= goal)
        if n in GOAL_RATIO:
            checks.append(ratio <= GOAL_RATIO[n])
        if n in GOAL_RENDER_MS:
            checks.append(r["metrics_render_ms"] <= GOAL_RENDER_MS[n])
        ok = all(checks) if checks else None
        print(
            f"{n:>9} | {ms(r['consumer_info_seq_ms'], 12)} | "
            f"{ms(r['consumer_info_gather_ms'], 15)} | {r['jsz_ms']:>8.1f} | "
            f"{r['raw_list_ms']:>8.1f} | {r['poll_ms']:>11.1f} | {ratio:>5.2f} | "
            f"{r['poll_cpu_ms']:>8.1f} | {r['poll_approx_ms']:>11.1f} | "
            f"{r['metrics_render_ms']:>8.1f} | {r['metrics_render_cpu_ms']:>7.1f} | "
            f"{r['bytes_per_consumer']:>10.0f} | "
            f"{'' if goal is None else goal:>6} | "
            f"{'-' if ok is None else ('yes' if ok else 'NO')}"
        )
        seq = r["consumer_info_seq_ms"]
        out.append(
            {
                **{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()},
                "goal_ms": goal,
                "goal_poll_over_raw_list": GOAL_RATIO.get(n),
                "goal_metrics_render_ms": GOAL_RENDER_MS.get(n),
                "speedup_vs_seq_info": None if seq is None else round(seq / r["poll_ms"], 1),
                "poll_over_raw_list": round(ratio, 2),
                "meets_goal": ok,
            }
        )
    print(
        "raw LIST: every CONSUMER.LIST page asked at once, received, not parsed (the server's "
        "own time); /raw: poll / raw LIST;\npoll CPU, its CPU: this process's CPU during a poll, a "
        "render (on a busy machine wall time runs far above it); "
        "B/consumer: memory the monitor holds per consumer (tracemalloc)"
    )
    result = {
        "bench": "lagmon_poll",
        "runs": args.runs,
        "results": out,
        "pass": all(r["meets_goal"] is not False for r in out),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
