"""``python -m services.registrar``: run the registrar until SIGTERM/SIGINT.

Prints ``READY http://127.0.0.1:PORT`` as the first stdout line once the consumers are bound
and the HTTP endpoint serves; logs go to stderr. Exit codes: 0 after a clean drain,
2 for bad arguments or configuration, 1 if startup fails (e.g. NATS unreachable).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from services.common.runner import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_common_arguments,
    check_http_port,
    nats_settings,
    print_ready,
    run_main,
    stop_on_signals,
)

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m services.registrar",
        description="QIKI registrar: JetStream CloudEvents -> coded SQLite audit records.",
    )
    add_common_arguments(p)
    p.add_argument("--db", required=True, type=Path, help="SQLite store path (created if missing)")
    p.add_argument("--batch", type=int, default=None,
                   help="max messages per stored batch (default: the BotSpec's, 1000)")
    p.add_argument("--max-bytes", type=int, default=None,
                   help="reject messages larger than this (default: the BotSpec's, 1 MiB)")
    p.add_argument("--max-data-bytes", type=int, default=65536,
                   help="payload bytes kept per record; longer ones are truncated")
    p.add_argument("--expires", type=float, default=5.0, help="pull request expiry in seconds")
    p.add_argument("--provision", choices=["auto", "always", "never"], default="auto",
                   help="create the streams/consumers: if missing (auto), always, or never")
    p.add_argument("--wal-max-mb", type=float, default=None,
                   help=f"bound of the SQLite WAL file in MiB, at least 1 (default: "
                        f"${WAL_MAX_MB_ENV} or 64)")
    p.add_argument("--no-validate-data", dest="validate_data", action="store_false",
                   default=None,
                   help="do not validate event data against the BotSpec's contracts (default: "
                        "validate, unless the spec says runtime.registrar.validate_data: false)")
    return p


#: Default of ``--wal-max-mb`` (so a harness can set it for services it starts).
WAL_MAX_MB_ENV = "QIKI_REGISTRAR_WAL_MAX_MB"


def _wal_max_bytes(flag: float | None) -> int:
    raw = os.environ.get(WAL_MAX_MB_ENV) if flag is None else None
    if raw:
        try:
            flag = float(raw)
        except ValueError:
            raise ValueError(
                f"{WAL_MAX_MB_ENV}={raw!r}: expected a size in MiB such as 64"
            ) from None
    return int((64.0 if flag is None else flag) * 1024 * 1024)


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
    from services.common.http import http_host
    from services.registrar.service import Registrar, RegistrarOptions

    log = logging.getLogger("services.registrar")
    try:
        config = load_runtime_config(args.botspec)
        if not config.subjects.registrar_events or not config.dead_letter:
            raise ValueError(
                "the BotSpec gives the registrar no subject for its own events "
                "(runtime.registrar.events names a channel) or no dead_letter.subject")
        check_http_port(args.http_port)
        settings = nats_settings(args.nats_url, name="qiki-registrar")
        options = RegistrarOptions(
            db_path=args.db,
            config=config,
            nats=settings,
            http_port=args.http_port,
            # A container publishes the port: it asks for 0.0.0.0 here (default 127.0.0.1).
            http_host=http_host(),
            batch=args.batch,
            max_bytes=args.max_bytes,
            max_data_bytes=args.max_data_bytes,
            expires_s=args.expires,
            provision=args.provision,
            crash_after_commit=_crash_after_commit(),
            wal_max_bytes=_wal_max_bytes(args.wal_max_mb),
            contracts=args.validate_data,
        )
        # Compiles the spec's contracts: a broken one (ContractError) is a usage error.
        registrar = Registrar(options)
    except (BotSpecError, ValueError, OSError) as exc:
        raise UsageError(str(exc)) from exc

    # Fewer young-generation collections (issue 13): the ingest makes several short-lived
    # containers per event (a delivery, its row, decoded data), so CPython's default of a
    # collection every 700 allocations ran one every few dozen events, each walking what the
    # buffered batches hold. Passes ~30x rarer (still young objects only) cost less per object and
    # saved ~7 % of the registrar's CPU per event (interleaved drains, 4 of 4 pairs better).
    gc.set_threshold(20_000, 50, 100)
    # The store's thread gives up the GIL in every SQLite call (each statement, the commit's
    # fsync) and must take it back from the event loop thread, which is busy validating the
    # next batch: with CPython's default 5 ms switch interval each re-take waited up to 5 ms,
    # and the writer spent most of a drain waiting (issue 13: 8.4 s of wall time for 3.2 s of
    # CPU over 200,000 events). 1 ms hands the GIL over sooner; a drain went 26,500 -> 30,700
    # events/s (bench.registrar_ingest, interleaved).
    sys.setswitchinterval(0.001)
    stop_on_signals(registrar.request_stop)
    try:
        async with registrar:
            print_ready(registrar.http_url)
            log.info("registrar ready: %s, db %s, nats %s", registrar.http_url, args.db,
                     settings.describe()["servers"])
            await registrar.wait_stopped()
            log.info("stopping: draining")
    except ConnectionError:
        raise  # run_main: one line on stderr, exit 1
    except Exception as exc:
        log.exception("registrar failed: %s", exc)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return run_main("registrar", _parser(), _run, argv, use_uvloop=True)


if __name__ == "__main__":
    sys.exit(main())
