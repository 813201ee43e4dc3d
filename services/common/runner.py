"""What every ``python -m services.<name>`` entry point shares.

The common flags (``--nats-url``, ``--botspec``, ``--http-port``, ``--log-level``), NATS settings
from ``QIKI_NATS_*`` with ``--nats-url`` on top, SIGTERM/SIGINT handling, the ``READY <url>``
line and the exit codes: 0 after a clean stop, 1 when start-up fails (e.g. no broker), 2 for bad
arguments or configuration (:class:`UsageError`).  Each service keeps its own flags and logic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.settings import NatsSettings, connect

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "add_common_arguments",
    "check_http_port",
    "nats_connection",
    "nats_settings",
    "print_ready",
    "run_main",
    "stop_on_signals",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad arguments or configuration: :func:`run_main` prints it and exits 2."""


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--nats-url``, ``--botspec``, ``--http-port`` and ``--log-level`` to ``p``."""
    p.add_argument(
        "--nats-url",
        help="NATS server URL(s), comma-separated (default: $QIKI_NATS_URL or "
        "nats://127.0.0.1:4222); credentials come from QIKI_NATS_TOKEN / QIKI_NATS_USER + "
        "QIKI_NATS_PASSWORD / QIKI_NATS_CREDS",
    )
    p.add_argument(
        "--botspec",
        type=Path,
        default=None,
        help="BotSpec YAML (default: $QIKI_BOTSPEC or scenarios/specs/BotSpec.yaml)",
    )
    p.add_argument(
        "--http-port",
        type=int,
        default=0,
        help="HTTP port on 127.0.0.1 (or $QIKI_HTTP_HOST; 0 = any free port; printed in the "
        "READY line)",
    )
    p.add_argument("--log-level", default=os.environ.get("QIKI_LOG_LEVEL", "INFO"))


def check_http_port(port: int) -> None:
    """Raise :class:`UsageError` unless ``port`` is 0..65535."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--http-port {port}: expected 0..65535")


def nats_settings(nats_url: str | None, *, name: str) -> NatsSettings:
    """``QIKI_NATS_*`` settings, ``--nats-url`` (comma-separated) on top; client ``name`` unless
    ``QIKI_NATS_NAME`` gives one.  Raises :class:`UsageError` for a bad value."""
    overrides: dict[str, Any] = {}
    if nats_url:
        overrides["servers"] = [u.strip() for u in nats_url.split(",") if u.strip()]
    try:
        settings = NatsSettings.from_env(**overrides)
        if settings.name is None:
            settings = settings.with_overrides(name=name)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return settings


@contextlib.asynccontextmanager
async def nats_connection(settings: NatsSettings, **callbacks: Any) -> AsyncIterator[Client]:
    """Connect (``ConnectionError`` if no broker: exit 1); drain and close on the way out."""
    nc = await connect(settings, **callbacks)
    try:
        yield nc
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.drain(), timeout=2.0)
        with contextlib.suppress(Exception):
            await nc.close()


def stop_on_signals(callback: Callable[[], object]) -> None:
    """Call ``callback`` on SIGTERM or SIGINT (the graceful stop)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, callback)


def print_ready(url: str) -> None:
    """The first stdout line the harness waits for: ``READY http://127.0.0.1:PORT``."""
    print(f"READY {url}", flush=True)


def run_main(
    name: str,
    parser: argparse.ArgumentParser,
    amain: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
    argv: Sequence[str] | None = None,
    *,
    use_uvloop: bool = False,
) -> int:
    """Parse ``argv``, set up logging to stderr, run ``amain(args)``; return the exit code.

    :class:`UsageError` -> 2 (``name: error: ...`` on stderr); ``ConnectionError`` -> 1.
    """
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if use_uvloop:
            try:
                import uvloop
            except ImportError:  # pragma: no cover - uvloop is a dependency, but optional here
                pass
            else:
                return uvloop.run(amain(args))
        return asyncio.run(amain(args))
    except UsageError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConnectionError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_FAILED

