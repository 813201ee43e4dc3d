"""``python -m services.registrar``: run the registrar until SIGTERM/SIGINT.

Prints ``READY http://127.0.0.1:PORT`` as the first stdout line once the consumers are bound
and the HTTP endpoint serves; logs go to stderr. Exit codes: 0 after a clean drain,
2 for bad arguments or configuration, 1 if startup fails (e.g. NATS unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m services.registrar",
        description="QIKI registrar: JetStream CloudEvents -> coded SQLite audit records.",
    )
    p.add_argument("--nats-url", help="NATS server URL(s), comma-separated "
                   "(default: $QIKI_NATS_URL or nats://127.0.0.1:4222); credentials come from "
                   "QIKI_NATS_TOKEN / QIKI_NATS_USER + QIKI_NATS_PASSWORD / QIKI_NATS_CREDS")
    p.add_argument("--db", required=True, type=Path, help="SQLite store path (created if missing)")
    p.add_argument("--botspec", type=Path, default=None,
                   help="BotSpec YAML (default: $QIKI_BOTSPEC or scenarios/specs/BotSpec.yaml)")
    p.add_argument("--http-port", type=int, default=0, help="query/metrics port on 127.0.0.1 "
                   "(or $QIKI_HTTP_HOST; 0 = any free port; printed in the READY line)")
    p.add_argument("--batch", type=int, default=None,
                   help="max messages per stored batch (default: the BotSpec's, 1000)")
    p.add_argument("--max-bytes", type=int, default=None,
                   help="reject messages larger than this (default: the BotSpec's, 1 MiB)")
    p.add_argument("--max-data-bytes", type=int, default=65536,
                   help="payload bytes kept per record; longer ones are truncated")
    p.add_argument("--expires", type=float, default=5.0, help="pull request expiry in seconds")
    p.add_argument("--provision", choices=["auto", "always", "never"], default="auto",
                   help="create the streams/consumers: if missing (auto), always, or never")
    p.add_argument("--log-level", default=os.environ.get("QIKI_LOG_LEVEL", "INFO"))
    return p


def _crash_after_commit() -> int | None:
    from services.registrar.service import CRASH_AFTER_COMMIT_ENV

    raw = os.environ.get(CRASH_AFTER_COMMIT_ENV)
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        raise SystemExit(
            f"{CRASH_AFTER_COMMIT_ENV}={raw!r}: expected a batch number such as 1"
        ) from None
    return n if n > 0 else None


async def _run(args: argparse.Namespace) -> int:
    from services.common.botspec import BotSpecError, load_runtime_config
    from services.common.settings import NatsSettings
    from services.registrar.service import Registrar, RegistrarOptions

    log = logging.getLogger("services.registrar")
    try:
        config = load_runtime_config(args.botspec)
        overrides: dict[str, Any] = {}
        if args.nats_url:
            overrides["servers"] = [u.strip() for u in args.nats_url.split(",") if u.strip()]
        settings = NatsSettings.from_env(**overrides)
        if settings.name is None:
            settings = settings.with_overrides(name="qiki-registrar")
        options = RegistrarOptions(
            db_path=args.db,
            config=config,
            nats=settings,
            http_port=args.http_port,
            # A container publishes the port: it asks for 0.0.0.0 here (default 127.0.0.1).
            http_host=os.environ.get("QIKI_HTTP_HOST") or "127.0.0.1",
            batch=args.batch,
            max_bytes=args.max_bytes,
            max_data_bytes=args.max_data_bytes,
            expires_s=args.expires,
            provision=args.provision,
            crash_after_commit=_crash_after_commit(),
        )
    except (BotSpecError, ValueError, OSError) as exc:
        print(f"registrar: {exc}", file=sys.stderr)
        return 2

    registrar = Registrar(options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, registrar.request_stop)
    try:
        async with registrar:
            print(f"READY {registrar.http_url}", flush=True)
            log.info("registrar ready: %s, db %s, nats %s", registrar.http_url, args.db,
                     settings.describe()["servers"])
            await registrar.wait_stopped()
            log.info("stopping: draining")
    except ConnectionError as exc:
        print(f"registrar: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        log.exception("registrar failed: %s", exc)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but optional here
        return asyncio.run(_run(args))
    return uvloop.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
