"""``python -m services.radar_sim``: the radar simulator as a process.

Prints ``READY http://127.0.0.1:PORT`` on stdout once connected and serving ``/healthz`` and
``/metrics``; publishes until SIGTERM/SIGINT (exit 0) or until ``--count`` frame ticks are done
(exit 0).  Bad arguments or configuration exit 2; no broker within the connect timeout exits 1.
Credentials come from ``QIKI_NATS_*`` (see ``services.common.settings``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from services.common.botspec import BotSpecError, load_runtime_config
from services.common.http import HttpServer, http_host
from services.common.runner import (
    UsageError,
    add_common_arguments,
    check_http_port,
    nats_connection,
    nats_settings,
    print_ready,
    run_main,
    stop_on_signals,
)
from services.radar_sim.service import RadarSimulator, SimMetrics, SimSubjects

log = logging.getLogger("services.radar_sim")


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m services.radar_sim",
        description="Publish simulated radar frames, sensor and power status as CloudEvents "
        "over JetStream.",
    )
    add_common_arguments(p)
    p.add_argument("--rate-hz", type=float, help="frame ticks per second (default: BotSpec)")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    p.add_argument("--count", type=int, help="stop after this many frame ticks")
    p.add_argument(
        "--frames",
        choices=("combined", "split"),
        default="combined",
        help="combined: qiki.radar.v1.Frame on .frames; split: FrameLR/FrameSR on .lr/.sr",
    )
    p.add_argument(
        "--status-interval-s",
        type=float,
        default=1.0,
        help="period of sensor and power status events (0 = none; default 1.0)",
    )
    p.add_argument("--sensor-id", default="radar-1")
    p.add_argument("--targets", type=int, default=8, help="targets in the scene (default 8)")
    p.add_argument("--timeout-s", type=float, default=2.0, help="PubAck timeout (default 2.0)")
    return p


async def _amain(args: argparse.Namespace) -> int:
    try:
        config = load_runtime_config(args.botspec)
    except (BotSpecError, OSError) as exc:
        raise UsageError(str(exc)) from exc
    rate_hz = args.rate_hz if args.rate_hz is not None else config.radar_sim.rate_hz or 10.0
    check_http_port(args.http_port)
    if args.timeout_s <= 0:
        raise UsageError(f"--timeout-s {args.timeout_s}: expected seconds > 0")
    if args.targets < 0:
        raise UsageError(f"--targets {args.targets}: expected >= 0")
    try:
        subjects = SimSubjects.from_config(config)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    settings = nats_settings(args.nats_url, name="qiki-radar-sim")
    metrics = SimMetrics()
    cbs = metrics.connection_callbacks()
    async with nats_connection(
        settings,
        disconnected_cb=cbs["disconnected_cb"],
        reconnected_cb=cbs["reconnected_cb"],
    ) as nc:
        stop = asyncio.Event()
        stop_on_signals(stop.set)
        try:
            sim = RadarSimulator(
                nc,
                subjects=subjects,
                rate_hz=rate_hz,
                seed=args.seed,
                count=args.count,
                frame_mode=args.frames,
                status_interval_s=args.status_interval_s,
                sensor_id=args.sensor_id,
                targets=args.targets,
                timeout_s=args.timeout_s,
                metrics=metrics,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        routes = {"/healthz": sim.healthz, "/metrics": sim.metrics_view}
        async with HttpServer(routes, host=http_host(), port=args.http_port) as http:
            print_ready(http.url)
            log.info(
                "publishing %s frames at %.3g Hz (seed %d%s) to %s",
                args.frames,
                rate_hz,
                args.seed,
                "" if args.count is None else f", {args.count} ticks",
                subjects.frames if args.frames == "combined" else "frames.lr/.sr",
            )
            await sim.run(stop)
            log.info("stopped after %d ticks", sim.ticks)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return run_main("radar_sim", build_parser(), _amain, argv)


if __name__ == "__main__":
    sys.exit(main())
