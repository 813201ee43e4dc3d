"""The lag monitor service: poll, export, announce threshold crossings.

:class:`LagMonitor` owns no connection (the caller passes a connected client), so tests and the
harness can drive :meth:`LagMonitor.poll_once` directly; ``python -m services.lagmon`` wires it
to a connection, a timer and the HTTP endpoints.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from nats.aio.client import Client

from services.common.cloudevents import CloudEvent, new_event, publish_event
from services.common.http import METRICS_CONTENT_TYPE, Response, json_response
from services.lagmon.events import SOURCE
from services.lagmon.metrics import LagMetrics
from services.lagmon.poller import AgeMode, LagPoller, LagSnapshot
from services.lagmon.state import read_over_threshold
from services.lagmon.thresholds import (
    Key,
    Thresholds,
    ThresholdTracker,
    Transition,
)

log = logging.getLogger(__name__)

#: Polls on which reading the crossing state back may fail before the monitor goes on
#: without it.
RESTORE_ATTEMPTS = 3


class LagMonitor:
    """Polls consumer lag, keeps the last snapshot, exports metrics, publishes threshold events.

    Args:
        nc: a connected NATS client (not closed by the monitor).
        streams: streams to poll.
        watch: ``(stream, consumer)`` to watch; None watches every consumer of ``streams``.
        watch_all_of: streams whose every consumer is watched in addition to ``watch``.
        thresholds: per-consumer thresholds (see :mod:`services.lagmon.thresholds`).
        health_subject: where threshold events go (default: the spec's ``subjects.health_events``).
        interval_s: time between polls in :meth:`run`.
        age_mode: oldest-unacked-age mode (see :mod:`services.lagmon.poller`).
        timeout_s: per JetStream API request and per event publish.
        restore_state: before announcing anything, read which consumers are over their
            threshold back from the events already published on ``health_subject``
            (:mod:`services.lagmon.state`), so a restart re-announces nothing.
    """

    def __init__(
        self,
        nc: Client,
        *,
        streams: Sequence[str],
        watch: Iterable[Key] | None = None,
        watch_all_of: Iterable[str] = (),
        thresholds: Thresholds | None = None,
        health_subject: str | None = None,
        interval_s: float = 1.0,
        age_mode: AgeMode = "exact",
        timeout_s: float = 2.0,
        restore_state: bool = True,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout_s)
        self.watch = None if watch is None else sorted(set(watch))
        self.poller = LagPoller(
            nc,
            streams,
            consumers=self.watch,
            all_of=watch_all_of,
            timeout_s=timeout_s, age_mode=age_mode
        )
        self.tracker = ThresholdTracker(thresholds or Thresholds())
        if health_subject is None:
            from services.common.botspec import load_runtime_config

            health_subject = load_runtime_config().subjects.health_events
        self.health_subject = health_subject
        self.interval_s = interval_s
        self._timeout_s = timeout_s
        self.last: LagSnapshot | None = None
        self.last_error: str | None = None
        self._last_ok_monotonic: float | None = None
        # Event of a transition not yet published; reused on retry so its id (and hence
        # JetStream's Nats-Msg-Id dedup) stays the same if a PubAck was lost.
        self._pending: dict[Key, tuple[str, CloudEvent]] = {}
        self.metrics = LagMetrics(lambda: self.last, self.tracker)
        # Crossing state read back from the stream: None until done (or given up on).
        self._restore_failures: int | None = 0 if restore_state else None

    async def poll_once(self) -> LagSnapshot:
        """One poll: refresh the snapshot and metrics, then publish state changes."""
        started = time.perf_counter()
        try:
            snap = await self.poller.poll()
        except Exception as exc:
            self.metrics.poll_errors.labels(stream="").inc()
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise
        self.metrics.poll_duration.observe(snap.duration_s)
        self.metrics.polls.inc()
        self.metrics.last_poll.set(time.time())
        for stream in snap.stream_errors:
            self.metrics.poll_errors.labels(stream=stream).inc()
        self.last = snap
        self.last_error = (
            None
            if not snap.stream_errors
            else "; ".join(f"{s}: {e}" for s, e in sorted(snap.stream_errors.items()))
        )
        if not snap.stream_errors:
            self._last_ok_monotonic = time.monotonic()
        self.metrics.missing.set(len(self.missing_consumers()))
        if not await self._restore_state():
            return snap  # announce nothing before the state is known: it may be a duplicate
        # A leaderless consumer's numbers are a stale replica's: decide nothing on them.
        readings = [c for c in snap.consumers.values() if not c.leaderless]
        for transition in self.tracker.evaluate(readings):
            await self._announce(transition)
        log.debug(
            "poll: %d consumers in %.1f ms (total %.1f ms)",
            len(snap.consumers),
            snap.duration_s * 1e3,
            (time.perf_counter() - started) * 1e3,
        )
        return snap

    async def _restore_state(self) -> bool:
        """Read the crossing state back once; False while it is unknown (retry next poll).

        After :data:`RESTORE_ATTEMPTS` failed polls the monitor goes on without it (a lag
        monitor that never announces is worse than one duplicate ``ThresholdCrossed``).
        """
        failures = self._restore_failures
        if failures is None:
            return True
        try:
            over = await read_over_threshold(
                self._nc, self.health_subject, timeout_s=self._timeout_s
            )
        except Exception as exc:
            failures += 1
            if failures >= RESTORE_ATTEMPTS:
                log.warning(
                    "could not read the threshold state back from %s after %d attempts "
                    "(%s: %s): going on without it; a consumer still over its threshold "
                    "will be announced again",
                    self.health_subject, failures, type(exc).__name__, exc,
                )
                self._restore_failures = None
                return True
            log.warning(
                "could not read the threshold state back from %s (%s: %s); retrying next poll",
                self.health_subject, type(exc).__name__, exc,
            )
            self._restore_failures = failures
            return False
        self.tracker.restore(over)
        self._restore_failures = None
        if over:
            log.info(
                "restored threshold state: %d consumers over (%s)",
                len(over), ", ".join(f"{s}/{c}" for s, c in sorted(over)[:10]),
            )
        return True

    async def _announce(self, transition: Transition) -> None:
        key = transition.key
        pending = self._pending.get(key)
        if pending is not None and pending[0] == transition.kind:
            event = pending[1]
        else:
            event = new_event(
                transition.kind,
                SOURCE,
                transition.data(),
                subject=f"{key[0]}/{key[1]}",
            )
            self._pending[key] = (transition.kind, event)
        try:
            await publish_event(self._js, self.health_subject, event, timeout_s=self._timeout_s)
        except Exception as exc:
            self.metrics.publish_errors.inc()
            log.warning(
                "could not publish %s for %s/%s (retrying next poll): %s: %s",
                transition.kind,
                key[0],
                key[1],
                type(exc).__name__,
                exc,
            )
            return
        del self._pending[key]
        self.tracker.commit(transition)
        self.metrics.threshold_events.labels(type=transition.kind).inc()
        log.info(
            "%s %s/%s lag=%d threshold=%d",
            transition.kind.rsplit(".", 1)[-1],
            key[0],
            key[1],
            transition.reading.lag,
            transition.threshold,
        )

    def missing_consumers(self) -> list[Key]:
        """Watched consumers absent from the last poll or listed without a leader."""
        if self.last is None:
            return []
        out = set(self.last.missing)
        out.update(k for k, c in self.last.consumers.items() if c.leaderless)
        if self.watch is not None:
            failed = set(self.last.stream_errors)
            out.update(
                k for k in self.watch if k not in self.last.consumers and k[0] not in failed
            )
        return sorted(out)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every ``interval_s`` until ``stop`` is set; a failed poll is logged, not fatal."""
        while not stop.is_set():
            deadline = time.monotonic() + self.interval_s
            try:
                await self.poll_once()
            except Exception as exc:
                log.warning("lag poll failed: %s: %s", type(exc).__name__, exc)
            delay = max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ HTTP views

    def healthy(self) -> tuple[bool, str]:
        """Healthy when connected and the last complete poll is recent."""
        if not self._nc.is_connected:
            return False, "not connected to NATS"
        if self._last_ok_monotonic is None:
            return False, self.last_error or "no successful poll yet"
        age = time.monotonic() - self._last_ok_monotonic
        limit = 3 * self.interval_s + 2 * self._timeout_s
        if age > limit:
            return False, f"last successful poll {age:.1f} s ago: {self.last_error or 'stalled'}"
        return True, "ok"

    def healthz(self) -> Response:
        """``/healthz``: 200 ok or 503 with the reason."""
        ok, reason = self.healthy()
        return Response(200 if ok else 503, (reason + "\n").encode())

    def metrics_view(self) -> Response:
        """``/metrics``: Prometheus text format."""
        return Response(200, self.metrics.render(), METRICS_CONTENT_TYPE)

    def lag_view(self) -> Response:
        """``/lag``: JSON of the last poll, thresholds and who is over."""
        body: dict[str, Any] = {
            "snapshot": None if self.last is None else self.last.as_dict(),
            "thresholds": self.tracker.thresholds.as_dict(),
            "over_threshold": [
                {"stream": s, "consumer": c} for s, c in sorted(self.tracker.over)
            ],
            "missing": [{"stream": s, "consumer": c} for s, c in self.missing_consumers()],
            "last_error": self.last_error,
        }
        return json_response(body)
