"""Retrying a JetStream request across a leader change, for tests that kill or cut nodes.

After a stream's leader dies, the successor's interest in the stream's subjects reaches the
client's server a moment after ``/jsz`` names it leader, and the client may itself be
reconnecting: a request in that window gets "no responders" or times out. A client of a real
platform retries; so do these tests (a retry until a generous deadline is not a timed
assertion). Publish with a ``Nats-Msg-Id`` header so a retry of a request whose answer was lost
cannot store the message twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors

T = TypeVar("T")


async def until_answered(
    op: Callable[[], Awaitable[T]], what: str, *, timeout_s: float = 30.0
) -> T:
    """``await op()`` until it returns; raises AssertionError naming ``what`` and the last
    error once ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await op()
        except (nats.errors.Error, TimeoutError) as exc:  # NoResponders, timeouts, API errors
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"not answered within {timeout_s:g} s: {what} "
                    f"(last error: {type(exc).__name__}: {exc})"
                ) from exc
        await asyncio.sleep(0.2)
