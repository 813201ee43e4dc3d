"""``python -m services.lagmon``: the JetStream consumer lag monitor as a process.

Prints ``READY http://127.0.0.1:PORT`` on stdout after the first poll; serves ``/healthz``,
``/metrics`` and ``/lag`` there; SIGTERM or SIGINT stops it with exit code 0.  Bad arguments or
configuration exit 2 with a message naming what is wrong; no broker within the connect timeout
exits 1.  Credentials come from ``QIKI_NATS_*`` (see ``services.common.settings``).
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
from services.lagmon.service import LagMonitor
from services.lagmon.thresholds import (
    Thresholds,
    ThresholdSpec,
    ThresholdSpecError,
)

log = logging.getLogger("services.lagmon")


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m services.lagmon",
        description="Poll JetStream durable consumer lag; export Prometheus metrics; publish "
        "qiki.lagmon.v1.ThresholdCrossed/ThresholdCleared CloudEvents on threshold crossings.",
    )
    add_common_arguments(p)
    p.add_argument("--interval-s", type=float, help="poll interval (default: from the BotSpec)")
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
    return p


async def _amain(args: argparse.Namespace) -> int:
    try:
        config = load_runtime_config(args.botspec)
    except (BotSpecError, OSError) as exc:
        raise UsageError(str(exc)) from exc
    if not config.subjects.health_events:
        raise UsageError("the BotSpec has no channel for the lag monitor's events: name one "
                         "in runtime.lagmon.health")
    lag_cfg = config.lagmon
    interval_s = args.interval_s if args.interval_s is not None else lag_cfg.poll_interval_s or 1.0
    if interval_s <= 0:
        raise UsageError(f"--interval-s {interval_s}: expected seconds > 0")
    if args.timeout_s <= 0:
        raise UsageError(f"--timeout-s {args.timeout_s}: expected seconds > 0")
    check_http_port(args.http_port)
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
        raise UsageError(str(exc)) from exc

    streams = list(dict.fromkeys([w.stream for w in lag_cfg.watch]))
    if not streams and not args.stream:
        raise UsageError(
            "nothing to watch: the BotSpec configures no consumers and no --stream given"
        )
    # Configured consumers, plus every consumer of each --stream (or of every stream with
    # --all-consumers).
    watch: list[tuple[str, str]] | None = [(w.stream, w.durable) for w in lag_cfg.watch]
    if args.all_consumers:
        watch = None
        streams = list(dict.fromkeys([*streams, *args.stream]))

    settings = nats_settings(args.nats_url, name="qiki-lagmon")
    async with nats_connection(settings) as nc:
        stop = asyncio.Event()
        stop_on_signals(stop.set)
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
        async with HttpServer(routes, host=http_host(), port=args.http_port) as http:
            try:
                await monitor.poll_once()
            except Exception as exc:  # the broker may still be coming up: keep going
                log.warning("first poll failed: %s: %s", type(exc).__name__, exc)
            print_ready(http.url)
            log.info(
                "watching %s on %s every %.3g s; thresholds %s",
                "all consumers" if watch is None else f"{len(watch)} consumers",
                ", ".join(streams),
                interval_s,
                thresholds.as_dict(),
            )
            await monitor.run(stop)
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return run_main("lagmon", build_parser(), _amain, argv)


if __name__ == "__main__":
    sys.exit(main())
