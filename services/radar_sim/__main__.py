"""``python -m services.radar_sim``: the radar simulator as a process.

Prints ``READY http://127.0.0.1:PORT`` on stdout once connected and serving ``/healthz`` and
``/metrics``; publishes until SIGTERM/SIGINT (exit 0) or until ``--count`` frame ticks are done
(exit 0).  Bad arguments or configuration exit 2; no broker within the connect timeout exits 1.
Credentials come from ``QIKI_NATS_*`` (see ``services.common.settings``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from services.common.botspec import BotSpecError, load_runtime_config
from services.common.http import HttpServer
from services.common.settings import NatsSettings, connect
from services.radar_sim.service import RadarSimulator, SimMetrics, SimSubjects

log = logging.getLogger("services.radar_sim")


def _http_host() -> str:
    """Bind address: 127.0.0.1 unless $QIKI_HTTP_HOST says otherwise (a container: 0.0.0.0)."""
    return os.environ.get("QIKI_HTTP_HOST") or "127.0.0.1"


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m services.radar_sim",
        description="Publish simulated radar frames, sensor and power status as CloudEvents "
        "over JetStream.",
    )
    p.add_argument("--nats-url", help="NATS URL(s), comma-separated (default: QIKI_NATS_URL)")
    p.add_argument("--botspec", type=Path, help="BotSpec path (default: QIKI_BOTSPEC or shipped)")
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
    p.add_argument("--http-port", type=int, default=0, help="HTTP port on 127.0.0.1 (0 = free)")
    p.add_argument("--timeout-s", type=float, default=2.0, help="PubAck timeout (default 2.0)")
    p.add_argument("--log-level", default="INFO")
    return p


def _fail(msg: str) -> int:
    print(f"radar_sim: error: {msg}", file=sys.stderr)
    return 2


async def _amain(args: argparse.Namespace) -> int:
    try:
        config = load_runtime_config(args.botspec)
    except (BotSpecError, OSError) as exc:
        return _fail(str(exc))
    rate_hz = args.rate_hz if args.rate_hz is not None else config.radar_sim.rate_hz or 10.0
    if not 0 <= args.http_port <= 65535:
        return _fail(f"--http-port {args.http_port}: expected 0..65535")
    if args.timeout_s <= 0:
        return _fail(f"--timeout-s {args.timeout_s}: expected seconds > 0")
    if args.targets < 0:
        return _fail(f"--targets {args.targets}: expected >= 0")
    s = config.subjects
    subjects = SimSubjects(
        frames=s.radar_frames,
        frames_lr=s.radar_frames_lr,
        frames_sr=s.radar_frames_sr,
        sensor=s.sensor_events,
        power=s.power_events,
    )
    try:
        settings = NatsSettings.from_env()
        if settings.name is None:
            settings = settings.with_overrides(name="qiki-radar-sim")
        if args.nats_url:
            settings = settings.with_overrides(
                servers=[u.strip() for u in args.nats_url.split(",") if u.strip()]
            )
    except ValueError as exc:
        return _fail(str(exc))

    metrics = SimMetrics()
    try:
        cbs = metrics.connection_callbacks()
        nc = await connect(
            settings,
            disconnected_cb=cbs["disconnected_cb"],
            reconnected_cb=cbs["reconnected_cb"],
        )
    except ConnectionError as exc:
        print(f"radar_sim: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
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
            return _fail(str(exc))
        routes = {"/healthz": sim.healthz, "/metrics": sim.metrics_view}
        async with HttpServer(routes, host=_http_host(), port=args.http_port) as http:
            print(f"READY {http.url}", flush=True)
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
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.drain(), timeout=2.0)
        with contextlib.suppress(Exception):
            await nc.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(_amain(args))


if __name__ == "__main__":
    sys.exit(main())
