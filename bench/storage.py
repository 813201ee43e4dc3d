"""Benchmark of the storage-fault filesystem: ``python -m bench.storage`` (issue 11).

One nats-server with its JetStream store on a plain directory (the baseline) or on our FUSE
filesystem (mfusepy over libfuse 3), lazy fsync and ``sync_always``, side by side in one
run (variants interleaved per round; median of ``--rounds``). The figure is acked msg/s of
the injector at ``MaxRate()`` (1,000 in flight, 256-byte messages with ``Nats-Msg-Id``).
Goal: >= 5,000 acked msg/s on the filesystem with lazy fsync, so power-loss scenarios run
under real load. The table goes to stdout; the last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import nats
from nats.js.api import StreamConfig

from harness.broker import NatsServer
from harness.faults.storage import FaultFS
from harness.load import MaxRate
from harness.load.injector import run_load

STREAM = "BENCH_STORAGE"
SUBJECT = "bench.storage"
GOAL_FUSE_LAZY_PER_S = 5_000


async def _one(store: str, sync_always: bool, duration_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="qiki-bench-storage-") as tmp:
        root = Path(tmp)
        fs: FaultFS | None = None
        store_dir = root / "plain"
        if store == "fuse":
            fs = FaultFS(root / "backing", root / "mnt", run_id="bench-storage")
            await fs.start()
            store_dir = fs.mountpoint
        try:
            async with NatsServer(store_dir=store_dir, sync_always=sync_always) as server:
                nc = await nats.connect(server.client_url)
                await nc.jetstream().add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT]))
                await nc.close()
                res = await run_load(server.client_url, SUBJECT, rate=MaxRate(),
                                     duration_s=duration_s, window=1000)
            stats = await fs.stats() if fs is not None else {}
        finally:
            if fs is not None:
                await fs.close()
    acked = len(res.acked)
    writes = stats.get("writes")
    return {"acked_per_s": res.achieved_rate_per_s, "acked": acked,
            "bytes_written": stats.get("bytes_written"), "bytes_synced": stats.get("bytes_synced"),
            # FUSE write requests per acked message (nats-server: one pwrite per message)
            "writes_per_msg": round(writes / acked, 2) if writes and acked else None}


async def main(rounds: int, duration_s: float) -> dict[str, Any]:
    """Run every variant ``rounds`` times, interleaved; medians per variant."""
    variants = [(s, sa) for s in ("disk", "fuse") for sa in (False, True)]
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(rounds):
        for store, sync_always in variants:
            name = f"{store}/{'sync_always' if sync_always else 'lazy'}"
            runs.setdefault(name, []).append(await _one(store, sync_always, duration_s))
    out = {name: round(statistics.median(r["acked_per_s"] for r in rs), 1)
           for name, rs in runs.items()}
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'store/fsync':<20} {'acked msg/s':>12} {'vs disk':>8}")
    for name, rate in out.items():
        base = out[name.replace("fuse", "disk")]
        print(f"{name:<20} {rate:>12,.0f} {rate / base if base else 0:>8.2f}")
    fuse_lazy = out["fuse/lazy"]
    return {"acked_per_s": out, "load_avg_1m": round(os.getloadavg()[0], 2),
            "goal_fuse_lazy_per_s": GOAL_FUSE_LAZY_PER_S,
            "goal_met": fuse_lazy >= GOAL_FUSE_LAZY_PER_S,
            "fuse_runs": {k: v for k, v in runs.items() if k.startswith("fuse")}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.storage")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration-s", type=float, default=5.0)
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s (a smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration_s = 1, 2.0
    result = asyncio.run(main(args.rounds, args.duration_s))
    print("RESULT " + json.dumps(result))
