"""Readiness probes of user services: a log line, an HTTP path, a TCP port, a NATS subject
or a delay. Each probe is awaited until it succeeds; the caller bounds it with the
service's ``ready_timeout_s`` and notices an early exit."""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from harness.errors import SetupError

if TYPE_CHECKING:
    from nats.aio.client import Client

    from harness.scenario.model import ReadyProbe

__all__ = ["LogSource", "wait_ready"]

HOST = "127.0.0.1"

LogSource = Callable[[str], Awaitable[None]]
"""Waits until the service's output since this (re)start contains the text."""


def _http_ok(url: str) -> None:
    with urllib.request.urlopen(url, timeout=1.0) as resp:
        if resp.status >= 300:
            raise OSError(f"{url}: HTTP {resp.status}")


async def _http(url: str) -> None:
    while True:
        try:
            await asyncio.to_thread(_http_ok, url)
            return
        except OSError:
            await asyncio.sleep(0.1)


async def _tcp(port: int) -> None:
    while True:
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def _subject(nc: Client | None, pattern: str) -> None:
    if nc is None:
        raise SetupError(f"ready probe on subject {pattern!r} needs the harness's NATS client")
    seen = asyncio.Event()

    async def cb(_msg: object) -> None:
        seen.set()

    sub = await nc.subscribe(pattern, cb=cb)
    try:
        await seen.wait()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def _port(env: Mapping[str, str], var: str) -> int:
    value = env.get(var, "")
    try:
        return int(value)
    except ValueError:
        raise SetupError(f"ready probe: env {var}={value!r} is not a port number") from None


async def wait_ready(
    probe: ReadyProbe, *, env: Mapping[str, str], log: LogSource, nc: Client | None
) -> None:
    """Return once ``probe`` succeeds (never on its own otherwise: the caller times it out).

    ``env`` is the service's environment after expansion (the ports come from it).
    """
    if probe.log is not None:
        await log(probe.log)
    elif probe.http is not None and probe.port_env is not None:
        await _http(f"http://{HOST}:{_port(env, probe.port_env)}{probe.http}")
    elif probe.tcp_env is not None:
        await _tcp(_port(env, probe.tcp_env))
    elif probe.subject is not None:
        await _subject(nc, probe.subject)
    elif probe.after_s is not None:
        await asyncio.sleep(probe.after_s)


def log_pattern(text: str) -> re.Pattern[str]:
    """The regex a ``log`` probe's plain text is searched with."""
    return re.compile(re.escape(text))
