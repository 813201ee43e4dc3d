"""The radar simulator service: frames at a fixed rate, sensor and power status, over JetStream.

Every message is a binary-mode CloudEvent published with ``Nats-Msg-Id`` = event id and
confirmed by a PubAck.  A failed publish (broker restarting, no stream, timeout) is counted and
dropped, never fatal: the client reconnects on its own and publishing resumes.  While the
client is disconnected the simulator does not publish at all (it would only queue requests
that time out) and counts each skipped message as an error with reason ``disconnected``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from nats.aio.client import Client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel

from services.common.cloudevents import new_event, publish_event
from services.common.http import METRICS_CONTENT_TYPE, Response
from services.radar_sim import events as ev
from services.radar_sim.simulation import Scene, split_by_band

if TYPE_CHECKING:
    from services.common.botspec import RuntimeConfig

log = logging.getLogger(__name__)

FrameMode = Literal["combined", "split"]


@dataclass(frozen=True)
class SimSubjects:
    """Where each kind of event goes (from ``RuntimeConfig.subjects``)."""

    frames: str
    frames_lr: str
    frames_sr: str
    sensor: str
    power: str

    @classmethod
    def from_config(cls, config: RuntimeConfig) -> SimSubjects:
        """The subjects the spec's channels give the radar simulator (``runtime.radar_sim``).

        Raises ``ValueError`` naming the missing ones: a spec without them cannot feed it.
        """
        s = config.subjects
        got = cls(frames=s.radar_frames, frames_lr=s.radar_frames_lr,
                  frames_sr=s.radar_frames_sr, sensor=s.sensor_events, power=s.power_events)
        missing = [k for k, v in vars(got).items() if not v]
        if missing:
            raise ValueError(
                f"the BotSpec gives the radar simulator no subject for {', '.join(missing)}: "
                "declare the channels runtime.radar_sim.frames (3 subjects: combined, long-"
                "and short-range), .sensor and .power name")
        return got


class SimMetrics:
    """Prometheus instruments on a private registry.

    ``qiki_radar_sim_published_total{type}``, ``qiki_radar_sim_publish_errors_total{type,reason}``
    (reason: disconnected, timeout, no_responders, error), ``qiki_radar_sim_duplicates_total``
    (PubAck said duplicate), ``qiki_radar_sim_publish_seconds`` (publish to PubAck),
    ``qiki_radar_sim_ticks_behind_total`` (ticks skipped because publishing fell behind the
    rate), ``qiki_radar_sim_nats_connected``, ``qiki_radar_sim_reconnects_total``.
    """

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.published = Counter(
            "qiki_radar_sim_published_total", "Events published (PubAck)", ["type"], registry=r
        )
        self.errors = Counter(
            "qiki_radar_sim_publish_errors_total",
            "Events not published",
            ["type", "reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "qiki_radar_sim_duplicates_total", "PubAcks flagged duplicate", registry=r
        )
        self.latency = Histogram(
            "qiki_radar_sim_publish_seconds",
            "Publish to PubAck",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0),
            registry=r,
        )
        self.behind = Counter(
            "qiki_radar_sim_ticks_behind_total",
            "Frame ticks skipped because publishing fell behind the rate",
            registry=r,
        )
        self.connected = Gauge(
            "qiki_radar_sim_nats_connected", "1 while connected to NATS", registry=r
        )
        self.reconnects = Counter(
            "qiki_radar_sim_reconnects_total", "Reconnections to NATS", registry=r
        )

    def render(self) -> bytes:
        """Prometheus text exposition."""
        return generate_latest(self.registry)

    def connection_callbacks(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """``disconnected_cb`` / ``reconnected_cb`` for :func:`services.common.settings.connect`."""

        async def disconnected() -> None:
            self.connected.set(0)
            log.warning("disconnected from NATS; publishing paused")

        async def reconnected() -> None:
            self.connected.set(1)
            self.reconnects.inc()
            log.info("reconnected to NATS; publishing resumed")

        return {"disconnected_cb": disconnected, "reconnected_cb": reconnected}


def _reason(exc: BaseException) -> str:
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.errors import NoStreamResponseError

    if isinstance(exc, NoRespondersError | NoStreamResponseError):
        return "no_responders"  # no stream captures the subject (or JetStream is down)
    if isinstance(exc, NatsTimeout | TimeoutError):
        return "timeout"
    return "error"


class RadarSimulator:
    """Publishes the scene of :class:`~services.radar_sim.simulation.Scene` over JetStream.

    Args:
        nc: a connected client (not closed here).
        subjects: target subjects.
        rate_hz: frame ticks per second (> 0).
        seed: scene seed (payloads are reproducible; ids and timestamps are not).
        count: stop after this many frame ticks (None: run until stopped).
        frame_mode: ``"combined"`` one ``Frame`` per tick on ``subjects.frames``; ``"split"``
            a ``FrameLR`` on ``frames_lr`` and a ``FrameSR`` on ``frames_sr`` per tick.
        status_interval_s: period of sensor and power status events (0 disables them).
        timeout_s: PubAck timeout.
        metrics: instruments (pass the ones whose connection callbacks the client uses).
    """

    def __init__(
        self,
        nc: Client,
        *,
        subjects: SimSubjects | None = None,
        rate_hz: float = 10.0,
        seed: int = 0,
        count: int | None = None,
        frame_mode: FrameMode = "combined",
        status_interval_s: float = 1.0,
        sensor_id: str = "radar-1",
        targets: int = 8,
        timeout_s: float = 2.0,
        metrics: SimMetrics | None = None,
    ) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        if count is not None and count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if frame_mode not in ("combined", "split"):
            raise ValueError(f"frame_mode must be 'combined' or 'split', got {frame_mode!r}")
        if status_interval_s < 0:
            raise ValueError(f"status_interval_s must be >= 0, got {status_interval_s}")
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout_s)
        if subjects is None:
            from services.common.botspec import load_runtime_config

            subjects = SimSubjects.from_config(load_runtime_config())
        self.subjects = subjects
        self.rate_hz = rate_hz
        self.count = count
        self.frame_mode: FrameMode = frame_mode
        self.status_interval_s = status_interval_s
        self.timeout_s = timeout_s
        self.scene = Scene(seed=seed, sensor_id=sensor_id, targets=targets)
        self.metrics = metrics or SimMetrics()
        self.ticks = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------------ publishing

    async def _publish(self, subject: str, type_: str, source: str, data: BaseModel) -> bool:
        if not self._nc.is_connected:
            self.metrics.errors.labels(type=type_, reason="disconnected").inc()
            return False
        event = new_event(type_, source, data)
        started = time.perf_counter()
        try:
            ack = await publish_event(self._js, subject, event, timeout_s=self.timeout_s)
        except Exception as exc:
            reason = _reason(exc)
            self.metrics.errors.labels(type=type_, reason=reason).inc()
            self.last_error = f"{type_} on {subject}: {type(exc).__name__}: {exc}"
            log.debug("publish failed (%s): %s", reason, self.last_error)
            return False
        self.metrics.latency.observe(time.perf_counter() - started)
        self.metrics.published.labels(type=type_).inc()
        if ack.duplicate:
            self.metrics.duplicates.inc()
        return True

    async def publish_frame(self) -> int:
        """Advance the scene one tick and publish its frame(s); returns how many were acked."""
        frame = self.scene.next_frame(1.0 / self.rate_hz)
        self.ticks += 1
        if self.frame_mode == "combined":
            return int(
                await self._publish(self.subjects.frames, ev.FRAME_TYPE, ev.RADAR_SOURCE, frame)
            )
        bands = split_by_band(frame)
        ok_lr = await self._publish(
            self.subjects.frames_lr, ev.FRAME_LR_TYPE, ev.RADAR_SOURCE, bands["LR"]
        )
        ok_sr = await self._publish(
            self.subjects.frames_sr, ev.FRAME_SR_TYPE, ev.RADAR_SOURCE, bands["SR"]
        )
        return int(ok_lr) + int(ok_sr)

    async def publish_status(self, dt_s: float) -> int:
        """Publish one sensor I/O status and one energy status; returns how many were acked."""
        ok_sensor = await self._publish(
            self.subjects.sensor,
            ev.SENSOR_IO_STATUS_TYPE,
            ev.SENSOR_SOURCE,
            self.scene.sensor_status(),
        )
        ok_power = await self._publish(
            self.subjects.power,
            ev.POWER_ENERGY_STATUS_TYPE,
            ev.POWER_SOURCE,
            self.scene.energy_status(dt_s),
        )
        return int(ok_sensor) + int(ok_power)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish at ``rate_hz`` until ``stop`` is set or ``count`` ticks are done.

        Ticks follow a fixed schedule (no drift); when publishing falls more than a tick behind
        (slow broker) the missed ticks are skipped and counted, not sent in a burst.
        """
        period = 1.0 / self.rate_hz
        next_tick = time.monotonic()
        next_status = next_tick
        while not stop.is_set() and (self.count is None or self.ticks < self.count):
            now = time.monotonic()
            if self.status_interval_s and now >= next_status:
                await self.publish_status(self.status_interval_s)
                next_status += self.status_interval_s
                if next_status < now:
                    next_status = now + self.status_interval_s
            await self.publish_frame()
            next_tick += period
            now = time.monotonic()
            if now - next_tick > period:
                skipped = int((now - next_tick) / period)
                self.metrics.behind.inc(skipped)
                next_tick += skipped * period
            delay = next_tick - now
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)  # stay cooperative at very high rates

    # ------------------------------------------------------------------ HTTP views

    def healthz(self) -> Response:
        """``/healthz``: 200 while connected, else 503."""
        if self._nc.is_connected:
            self.metrics.connected.set(1)
            return Response(200, b"ok\n")
        return Response(503, b"not connected to NATS\n")

    def metrics_view(self) -> Response:
        """``/metrics``."""
        self.metrics.connected.set(1 if self._nc.is_connected else 0)
        return Response(200, self.metrics.render(), METRICS_CONTENT_TYPE)
