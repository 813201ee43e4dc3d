"""gevent <-> asyncio bridge for Locust users built on nats-py (issue 5, Locust issue 1251).

Locust runs on gevent and monkeypatches ``socket``, ``select``, ``threading`` and friends.
A plain asyncio loop in a (patched) thread then runs *inside a greenlet*, and its selector
blocks the hub or never wakes: connects time out. What works, and what this module does:

- a real OS thread, started with the *original* ``_thread.start_new_thread``
  (``gevent.monkey.get_original``), running
- a uvloop event loop, whose I/O goes through libuv rather than the patched ``selectors``
  and ``socket`` modules;
- greenlets submit coroutines with ``loop.call_soon_threadsafe`` (uv_async: safe from any
  thread) and wait on a ``gevent.event.AsyncResult``; the loop thread hands the outcome back
  with the hub's ``loop.run_callback_threadsafe``, which wakes the hub from a foreign thread.
  No lock is shared between the two worlds (a patched lock would block the wrong thread).

Only Locust-side modules import this one; it imports gevent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.monkey

from harness._resource import cancel_and_wait
from harness.errors import HarnessError

__all__ = ["AsyncBridge", "BridgeError", "BridgeTimeout"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class BridgeError(HarnessError):
    """The asyncio side of the bridge is not running (not started, stopped, or crashed)."""


class BridgeTimeout(BridgeError, TimeoutError):
    """A coroutine run through the bridge did not finish in time (it is cancelled)."""


class AsyncBridge:
    """An asyncio (uvloop) event loop in a real OS thread, callable from greenlets.

    ``start()`` / ``stop()`` from a greenlet; ``run(coro)`` runs a coroutine on the loop and
    blocks only the calling greenlet until it is done, re-raising its exception.
    """

    def __init__(self, *, name: str = "qiki-asyncio-bridge", use_uvloop: bool = True) -> None:
        self.name = name
        self.use_uvloop = use_uvloop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: gevent.event.AsyncResult | None = None
        self._closing = False

    @property
    def running(self) -> bool:
        """True between a successful ``start()`` and ``stop()``."""
        return self._loop is not None and not self._closing

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The bridged loop (raises :class:`BridgeError` when not running)."""
        if self._loop is None or self._closing:
            raise BridgeError(f"{self.name}: the asyncio bridge is not running; call start()")
        return self._loop

    def start(self, timeout_s: float = 5.0) -> None:
        """Start the loop thread and wait (cooperatively) until the loop runs. Idempotent."""
        if self.running:
            return
        hub_loop = gevent.get_hub().loop
        ready: gevent.event.AsyncResult = gevent.event.AsyncResult()
        stopped: gevent.event.AsyncResult = gevent.event.AsyncResult()
        start_new_thread = gevent.monkey.get_original("_thread", "start_new_thread")

        def thread_main() -> None:
            try:
                if self.use_uvloop:
                    import uvloop

                    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
                else:
                    loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
            except BaseException as e:
                hub_loop.run_callback_threadsafe(ready.set_exception, e)
                return
            loop.call_soon(lambda: hub_loop.run_callback_threadsafe(ready.set, loop))
            try:
                loop.run_forever()
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            except BaseException as e:  # surfaced through stop()
                log.exception("%s: event loop thread failed", self.name)
                hub_loop.run_callback_threadsafe(stopped.set_exception, e)
                return
            finally:
                loop.close()
            hub_loop.run_callback_threadsafe(stopped.set, None)

        start_new_thread(thread_main, ())
        try:
            self._loop = ready.get(timeout=timeout_s)
        except gevent.Timeout:
            raise BridgeError(f"{self.name}: the event loop thread did not start within "
                              f"{timeout_s}s") from None
        self._stopped = stopped
        self._closing = False

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run ``coro`` on the bridged loop; block this greenlet until it finishes.

        Exceptions of the coroutine are re-raised here. After ``timeout_s`` the coroutine is
        cancelled and :class:`BridgeTimeout` raised.
        """
        try:
            loop = self.loop
        except BridgeError:
            coro.close()  # never awaited: close it so Python does not warn
            raise
        hub_loop = gevent.get_hub().loop
        result: gevent.event.AsyncResult = gevent.event.AsyncResult()
        holder: list[asyncio.Task[T]] = []

        def deliver(task: asyncio.Task[T]) -> None:
            # Runs in the loop thread: only hand over through the hub's thread-safe queue.
            if task.cancelled():
                hub_loop.run_callback_threadsafe(
                    result.set_exception, BridgeError(f"{self.name}: coroutine was cancelled"))
                return
            exc = task.exception()
            if exc is not None:
                hub_loop.run_callback_threadsafe(result.set_exception, exc)
            else:
                hub_loop.run_callback_threadsafe(result.set, task.result())

        def begin() -> None:
            task = loop.create_task(coro)
            holder.append(task)
            task.add_done_callback(deliver)

        try:
            loop.call_soon_threadsafe(begin)
        except RuntimeError:  # the loop closed between the check and the call
            coro.close()
            raise BridgeError(f"{self.name}: the asyncio bridge has stopped") from None
        try:
            return result.get(timeout=timeout_s)  # type: ignore[no-any-return]
        except gevent.Timeout:
            self._cancel(holder)
            raise BridgeTimeout(f"{self.name}: coroutine did not finish within "
                                f"{timeout_s}s; cancelled") from None
        except BaseException:
            # GreenletExit (Locust stopping a user) and friends: do not leave the task behind.
            self._cancel(holder)
            raise

    def call(self, start: Callable[[Callable[[T], None]], None],
             timeout_s: float | None = None) -> T:
        """Run ``start(resolve)`` in the loop thread and block this greenlet until
        ``resolve(value)`` is called there (once). The cheap path for callback-style
        operations: no task and no future on the asyncio side.

        ``start`` must not raise after having called ``resolve``; an exception it raises
        before is re-raised here.
        """
        loop = self.loop
        hub_loop = gevent.get_hub().loop
        result: gevent.event.AsyncResult = gevent.event.AsyncResult()

        def resolve(value: T) -> None:
            hub_loop.run_callback_threadsafe(result.set, value)

        def begin() -> None:
            try:
                start(resolve)
            except BaseException as e:
                hub_loop.run_callback_threadsafe(result.set_exception, e)

        try:
            loop.call_soon_threadsafe(begin)
        except RuntimeError:
            raise BridgeError(f"{self.name}: the asyncio bridge has stopped") from None
        try:
            return result.get(timeout=timeout_s)  # type: ignore[no-any-return]
        except gevent.Timeout:
            raise BridgeTimeout(f"{self.name}: no result within {timeout_s}s") from None

    def _cancel(self, holder: list[asyncio.Task[Any]]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def cancel() -> None:
            for task in holder:
                task.cancel()

        try:
            loop.call_soon_threadsafe(cancel)
        except RuntimeError:
            pass

    def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel pending tasks, stop the loop and wait for the thread to end. Idempotent."""
        loop, stopped = self._loop, self._stopped
        if loop is None or stopped is None or self._closing:
            return
        self._closing = True
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:
            pass
        try:
            stopped.get(timeout=timeout_s)
        except gevent.Timeout:
            log.warning("%s: loop thread did not stop within %ss", self.name, timeout_s)
        finally:
            self._loop = None
            self._stopped = None


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel every task left on ``loop`` and let them unwind (asyncio.run's cleanup)."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    loop.run_until_complete(cancel_and_wait(*tasks, suppress_errors=True))
