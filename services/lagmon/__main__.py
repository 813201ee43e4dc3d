"""``python -m services.lagmon``: the JetStream consumer lag monitor as a process.

Prints ``READY http://127.0.0.1:PORT`` on stdout after the first poll; serves ``/healthz``,
``/metrics`` and ``/lag`` there; SIGTERM or SIGINT stops it with exit code 0.  Bad arguments or
configuration exit 2 with a message naming what is wrong; no broker within the connect timeout
exits 1.  Credentials come from ``QIKI_NATS_*`` (see ``services.common.settings``).
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
from services.lagmon.service import LagMonitor
from services.lagmon.thresholds import (
    Thresholds,
    ThresholdSpec,
    ThresholdSpecError,
)

log = logging.getLogger("services.lagmon")


def _http_host() -> str:
    """Bind address: 127.0.0.1 unless $QIKI_HTTP_HOST says otherwise (a container: 0.0.0.0)."""
    return os.environ.get("QIKI_HTTP_HOST") or "127.0.0.1"


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m services.lagmon",
        description="Poll JetStream durable consumer lag; export Prometheus metrics; publish "
        "qiki.lagmon.v1.ThresholdCrossed/ThresholdCleared CloudEvents on threshold crossings.",
    )
    p.add_argument("--nats-url", help="NATS URL(s), comma-separated (default: QIKI_NATS_URL)")
    p.add_argument("--botspec", type=Path, help="BotSpec path (default: QIKI_BOTSPEC or shipped)")
    p.add_argument("--interval-s", type=float, help="poll interval (default: from the BotSpec)")
    p.add_argument("--http-port", type=int, default=0, help="HTTP port on 127.0.0.1 (0 = free)")
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="[STREAM:]CONSUMER=N",
        help="lag threshold override, repeatable (wins over the BotSpec)",
    )
    p.add_argument(
        "--default-threshold",
        type=int,
        help="threshold of consumers with none configured (default: none)",
    )
    p.add_argument(
        "--clear-ratio",
        type=float,
        default=1.0,
        help="cleared once lag <= threshold * ratio (default 1.0; < 1 adds hysteresis)",
    )
    p.add_argument(
        "--stream",
        action="append",
        default=[],
        help="also watch every consumer of this stream (repeatable)",
    )
    p.add_argument(
        "--all-consumers",
        action="store_true",
        help="watch every consumer of the configured streams, not only the configured ones",
    )
    p.add_argument("--age-mode", choices=("exact", "approx"), default="exact")
    p.add_argument("--timeout-s", type=float, default=2.0, help="per request (default 2.0)")
    p.add_argument("--log-level", default="INFO")
    return p


def _fail(msg: str) -> int:
    print(f"lagmon: error: {msg}", file=sys.stderr)
    return 2


async def _amain(args: argparse.Namespace) -> int:
    try:
        config = load_runtime_config(args.botspec)
    except (BotSpecError, OSError) as exc:
        return _fail(str(exc))
    lag_cfg = config.lagmon
    interval_s = args.interval_s if args.interval_s is not None else lag_cfg.poll_interval_s or 1.0
    if interval_s <= 0:
        return _fail(f"--interval-s {interval_s}: expected seconds > 0")
    if args.timeout_s <= 0:
        return _fail(f"--timeout-s {args.timeout_s}: expected seconds > 0")
    if not 0 <= args.http_port <= 65535:
        return _fail(f"--http-port {args.http_port}: expected 0..65535")
    try:
        specs = [
            ThresholdSpec(consumer=w.durable, threshold=w.lag_threshold, stream=w.stream)
            for w in lag_cfg.watch
        ]
        specs += [ThresholdSpec.parse(t) for t in args.threshold]
        thresholds = Thresholds(
            specs, default=args.default_threshold, clear_ratio=args.clear_ratio
        )
    except (ThresholdSpecError, ValueError) as exc:
        return _fail(str(exc))

    streams = list(dict.fromkeys([w.stream for w in lag_cfg.watch]))
    if not streams and not args.stream:
        return _fail("nothing to watch: the BotSpec configures no consumers and no --stream given")
    # Configured consumers, plus every consumer of each --stream (or of every stream with
    # --all-consumers).
    watch: list[tuple[str, str]] | None = [(w.stream, w.durable) for w in lag_cfg.watch]
    if args.all_consumers:
        watch = None
        streams = list(dict.fromkeys([*streams, *args.stream]))

    try:
        settings = NatsSettings.from_env()
        if settings.name is None:
            settings = settings.with_overrides(name="qiki-lagmon")
        if args.nats_url:
            settings = settings.with_overrides(
                servers=[u.strip() for u in args.nats_url.split(",") if u.strip()]
            )
    except ValueError as exc:
        return _fail(str(exc))

    try:
        nc = await connect(settings)
    except ConnectionError as exc:
        print(f"lagmon: {exc}", file=sys.stderr)
        return 1

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        monitor = LagMonitor(
            nc,
            streams=streams,
            watch=watch,
            watch_all_of=args.stream,
            thresholds=thresholds,
            health_subject=config.subjects.health_events,
            interval_s=interval_s,
            age_mode=args.age_mode,
            timeout_s=args.timeout_s,
        )
        routes = {
            "/healthz": monitor.healthz,
            "/metrics": monitor.metrics_view,
            "/lag": monitor.lag_view,
        }
        async with HttpServer(routes, host=_http_host(), port=args.http_port) as http:
            try:
                await monitor.poll_once()
            except Exception as exc:  # the broker may still be coming up: keep going
                log.warning("first poll failed: %s: %s", type(exc).__name__, exc)
            print(f"READY {http.url}", flush=True)
            log.info(
                "watching %s on %s every %.3g s; thresholds %s",
                "all consumers" if watch is None else f"{len(watch)} consumers",
                ", ".join(streams),
                interval_s,
                thresholds.as_dict(),
            )
            await monitor.run(stop)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.drain(), timeout=2.0)
        with contextlib.suppress(Exception):
            await nc.close()
    log.info("stopped")
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
