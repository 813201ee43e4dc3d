"""``cancel_and_wait``: cancel until stopped (Python 3.11's wait_for can swallow a cancel)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from harness._resource import cancel_and_wait
from harness.faults.engine import FaultEngine


async def _swallows_first_cancel(started: asyncio.Event, stops: list[str]) -> None:
    """What a nats-py request under 3.11's wait_for can do: the first cancellation is lost
    (the task carries on), only a second one stops it."""
    started.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        stops.append("swallowed")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        stops.append("stopped")
        raise


async def test_a_task_that_swallows_the_first_cancel_is_stopped() -> None:
    started, stops = asyncio.Event(), []
    task = asyncio.create_task(_swallows_first_cancel(started, stops))
    await started.wait()
    stopper = asyncio.create_task(cancel_and_wait(task, retry_s=0.05))
    done, _ = await asyncio.wait({stopper}, timeout=5)
    assert done, "cancel_and_wait still waiting for a task that swallowed one cancellation"
    assert task.cancelled()
    assert stops == ["swallowed", "stopped"]


async def test_the_plain_pattern_hangs_on_such_a_task() -> None:
    """Why the helper exists: ``cancel(); await`` never returns here."""
    started, stops = asyncio.Event(), []
    task = asyncio.create_task(_swallows_first_cancel(started, stops))
    await started.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done and stops == ["swallowed"]
    await cancel_and_wait(task, retry_s=0.05)


async def test_errors_are_raised_as_await_would_unless_suppressed() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    for suppress in (False, True):
        task = asyncio.create_task(fails_on_cancel())
        await asyncio.sleep(0)
        if suppress:
            await cancel_and_wait(task, suppress_errors=True)
        else:
            with pytest.raises(RuntimeError, match="cleanup failed"):
                await cancel_and_wait(task)
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    await cancel_and_wait(done)  # already finished: nothing to do


async def test_timeout_names_a_task_that_never_stops() -> None:
    async def immortal() -> None:
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    task = asyncio.create_task(immortal(), name="immortal-sampler")
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError, match="immortal-sampler"):
        await cancel_and_wait(task, retry_s=0.05, timeout_s=0.2)
    # A plain task.cancel() is swallowed by the loop above: leave the test's loop clean by
    # ending it through its frame instead.
    task.get_coro().close()  # type: ignore[union-attr]


async def test_fault_engine_settle_stops_a_collector_that_swallows_a_cancel() -> None:
    """The engine's settle used ``cancel(); await``: it hung on such an evidence collector."""
    eng = FaultEngine(object())  # type: ignore[arg-type]
    started, stops = asyncio.Event(), []
    eng._evidence.append(asyncio.create_task(_swallows_first_cancel(started, stops)))
    await started.wait()
    # asyncio.wait, not a timeout around the await: cancelling ``await task`` cancels the
    # task again, which would unstick the old code and hide the hang.
    settle = asyncio.create_task(eng.settle(timeout_s=0.05))
    done, _ = await asyncio.wait({settle}, timeout=5)
    assert done, "settle still waiting for a collector that swallowed its cancellation"
    assert stops == ["swallowed", "stopped"]
