"""The greenhouse controller: commands in, readings and alarms out, over JetStream.

Written the way a team would write it with plain nats-py (no qiki-harness imports):

- configuration from the environment (:meth:`Config.from_env`): ``GH_NATS_URL``,
  ``GH_STATE`` (a directory for the controller's state), ``GH_INTERVAL_S``, ``GH_ZONES``;
- its own streams, ``ACME_CLIMATE_CMD_V1`` (``acme.climate.v1.commands.>``) and
  ``ACME_CLIMATE_V1`` (readings, alarms, receipts), and its durable pull consumer
  ``greenhouse-commands``, created when missing and left alone when they exist (a platform
  may provision them from its spec first);
- every command is answered by a ``CommandReceipt`` carrying the command's CloudEvent id
  (``outcome``: applied, ignored or rejected) before it is acked, so whoever sent it can
  tell that nothing was lost; ``acme.climate.v1.SetTarget`` commands also change a zone's
  target and get a ``Reading`` (``trigger: command``). Answers take their ``Nats-Msg-Id``
  from the command's id, so a command redelivered after a crash between publish and ack is
  stored once (the duplicate window of the events stream);
- every ``GH_INTERVAL_S`` a ``Reading`` per zone (``trigger: timer``); an ``Alarm``
  (``severity: low``) when a zone drifts more than 5 degrees from its target, and one
  (``severity: high``, ``reason: restarted-after-crash``) when it starts after an unclean
  shutdown (its ``running`` marker was left behind);
- logs ``listening on ...`` once it consumes, and survives reconnects (unlimited attempts;
  a failed fetch, publish or ack is retried or redelivered, never dropped silently).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

log = logging.getLogger("greenhouse")

COMMAND_STREAM = "ACME_CLIMATE_CMD_V1"
COMMANDS = "acme.climate.v1.commands.>"
STREAM = "ACME_CLIMATE_V1"
READINGS = "acme.climate.v1.readings"
ALARMS = "acme.climate.v1.alarms"
RECEIPTS = "acme.climate.v1.receipts"
DURABLE = "greenhouse-commands"

SET_TARGET = "acme.climate.v1.SetTarget"
READING = "acme.climate.v1.Reading"
ALARM = "acme.climate.v1.Alarm"
RECEIPT = "acme.climate.v1.CommandReceipt"

#: A zone further than this from its target raises a low-severity alarm (once per drift).
DRIFT_ALARM_C = 5.0
#: How far the simulated temperature moves toward the target per tick.
STEP_C = 0.5
#: Targets outside this range are rejected (a broken thermostat, not a greenhouse).
TARGET_RANGE_C = (-10.0, 50.0)


@dataclass(frozen=True)
class Config:
    """What the controller needs from its environment."""

    nats_url: str = "nats://127.0.0.1:4222"
    state_dir: Path = Path("greenhouse-state")
    interval_s: float = 1.0
    zones: tuple[str, ...] = ("house-1",)
    source: str = "urn:acme:greenhouse:site-1"
    connect_timeout_s: float = 20.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        """``GH_NATS_URL``, ``GH_STATE``, ``GH_INTERVAL_S``, ``GH_ZONES`` (comma-separated),
        ``GH_SOURCE``; a bad value raises ``ValueError`` naming the variable."""
        env = dict(os.environ if env is None else env)
        try:
            interval = float(env.get("GH_INTERVAL_S", "1.0"))
        except ValueError:
            raise ValueError(
                f"GH_INTERVAL_S={env['GH_INTERVAL_S']!r}: expected seconds, e.g. 0.5"
            ) from None
        if interval <= 0:
            raise ValueError(f"GH_INTERVAL_S={interval}: expected a number > 0")
        zones = tuple(z.strip() for z in env.get("GH_ZONES", "house-1").split(",") if z.strip())
        if not zones:
            raise ValueError("GH_ZONES is empty: expected zone names, e.g. house-1,house-2")
        return cls(
            nats_url=env.get("GH_NATS_URL", cls.nats_url),
            state_dir=Path(env.get("GH_STATE", str(cls.state_dir))),
            interval_s=interval,
            zones=zones,
            source=env.get("GH_SOURCE", cls.source),
        )


@dataclass
class Zone:
    """One zone's simulated climate."""

    target_c: float = 21.0
    temperature_c: float = 21.0
    humidity_pct: float = 60.0
    drifting: bool = False


@dataclass
class State:
    """The controller's state, kept in ``GH_STATE/state.json`` so a restart resumes it."""

    zones: dict[str, Zone] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, zones: tuple[str, ...]) -> State:
        """Read ``path`` if it exists; every configured zone is present afterwards."""
        state = cls()
        if path.exists():
            raw = json.loads(path.read_text())
            state.zones = {name: Zone(**z) for name, z in raw.get("zones", {}).items()}
        for name in zones:
            state.zones.setdefault(name, Zone())
        return state

    def save(self, path: Path) -> None:
        """Write atomically: a kill mid-write must not leave half a file behind."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"zones": {k: vars(v) for k, v in self.zones.items()}}))
        os.replace(tmp, path)


class CommandError(ValueError):
    """A command that can never succeed (bad JSON, wrong fields): terminated, not retried."""


class Greenhouse:
    """The controller. ``await Greenhouse(cfg).run(stop)`` until ``stop`` is set."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = cfg.state_dir / "state.json"
        self.marker = cfg.state_dir / "running"
        self.state = State.load(self.state_path, cfg.zones)
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.handled = 0
        self.ignored = 0

    # ------------------------------------------------------------------ connection and layout

    async def connect(self) -> None:
        """Connect, retrying until ``connect_timeout_s``: the broker may start after us."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.connect_timeout_s
        while True:
            try:
                self.nc = await nats.connect(
                    servers=[self.cfg.nats_url],
                    name="greenhouse",
                    max_reconnect_attempts=-1,  # a controller never gives up on its broker
                    reconnect_time_wait=0.25,
                    ping_interval=1,  # a stalled link is only noticed by PING/PONG
                    max_outstanding_pings=3,
                    connect_timeout=2,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                break
            except (OSError, nats.errors.NoServersError, TimeoutError) as exc:
                if loop.time() > deadline:
                    raise RuntimeError(
                        f"cannot connect to {self.cfg.nats_url} within "
                        f"{self.cfg.connect_timeout_s:.0f} s: {exc!r}"
                    ) from exc
                await asyncio.sleep(0.5)
        self.js = self.nc.jetstream(timeout=5)

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats error: %r", exc)

    async def _on_disconnected(self) -> None:
        log.warning("disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        assert self.nc is not None
        log.info("reconnected to %s", self.nc.connected_url.netloc if self.nc.connected_url
                 else "?")

    async def ensure_layout(self) -> None:
        """Create the streams and the durable consumer when missing; keep them as found
        otherwise (their owner may be a platform spec with other limits)."""
        assert self.js is not None
        for name, subjects in ((COMMAND_STREAM, [COMMANDS]),
                               (STREAM, [READINGS, ALARMS, RECEIPTS])):
            try:
                await self.js.stream_info(name)
            except nats.js.errors.NotFoundError:
                await self.js.add_stream(StreamConfig(
                    name=name, subjects=subjects, storage=StorageType.FILE,
                    duplicate_window=120, max_age=86400,
                ))
                log.info("created stream %s", name)
        try:
            await self.js.consumer_info(COMMAND_STREAM, DURABLE)
        except nats.js.errors.NotFoundError:
            await self.js.add_consumer(COMMAND_STREAM, ConsumerConfig(
                durable_name=DURABLE, filter_subject=COMMANDS, ack_policy=AckPolicy.EXPLICIT,
                ack_wait=5, max_deliver=5, max_ack_pending=1000,
            ))
            log.info("created consumer %s on %s", DURABLE, COMMAND_STREAM)

    # ------------------------------------------------------------------ publishing

    async def publish(self, subject: str, ce_type: str, data: dict[str, Any], *,
                      event_id: str | None = None, ce_subject: str | None = None) -> None:
        """A binary-mode CloudEvent (``ce-`` headers) with ``Nats-Msg-Id`` = its id, retried
        through a reconnect; raises after the last attempt so the caller can nak."""
        assert self.js is not None
        event_id = event_id or str(uuid.uuid4())
        headers = {
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-source": self.cfg.source,
            "ce-type": ce_type,
            "ce-time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "ce-datacontenttype": "application/json",
            "Nats-Msg-Id": event_id,
        }
        if ce_subject:
            headers["ce-subject"] = ce_subject
        payload = json.dumps(data, separators=(",", ":")).encode()
        last: Exception | None = None
        for attempt in range(6):
            try:
                await self.js.publish(subject, payload, headers=headers, timeout=3)
                return
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError,
                    nats.errors.ConnectionReconnectingError, nats.js.errors.ServiceUnavailableError,
                    ) as exc:
                last = exc
                await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"publish {ce_type} on {subject} failed: {last!r}")

    def _reading(self, name: str, zone: Zone, trigger: str, command_id: str | None = None
                 ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "zone": name,
            "temperature_c": round(zone.temperature_c, 2),
            "humidity_pct": round(zone.humidity_pct, 1),
            "target_c": zone.target_c,
            "trigger": trigger,
        }
        if command_id is not None:
            data["command_id"] = command_id
        return data

    async def alarm(self, zone: str, severity: str, reason: str, message: str) -> None:
        """Publish an ``Alarm``; best effort (a lost alarm is logged, not fatal)."""
        data = {"zone": zone, "severity": severity, "reason": reason, "message": message}
        try:
            await self.publish(ALARMS, ALARM, data, ce_subject=zone)
            log.info("alarm %s %s: %s", severity, zone, message)
        except RuntimeError as exc:
            log.error("%s", exc)

    # ------------------------------------------------------------------ commands

    def _parse_set_target(self, msg: Msg) -> tuple[str, float]:
        try:
            data = json.loads(msg.data)
        except ValueError as exc:
            raise CommandError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise CommandError(f"expected an object, got {type(data).__name__}")
        zone, target = data.get("zone"), data.get("target_c")
        if not isinstance(zone, str) or not zone:
            raise CommandError(f"zone: expected a name, got {zone!r}")
        if isinstance(target, bool) or not isinstance(target, int | float):
            raise CommandError(f"target_c: expected a number, got {target!r}")
        lo, hi = TARGET_RANGE_C
        if not lo <= target <= hi:
            raise CommandError(f"target_c: {target} outside [{lo}, {hi}]")
        return zone, float(target)

    async def handle(self, msg: Msg) -> None:
        """One command: change state, persist it, answer (reading, receipt), then ack.
        The ack comes last so a crash before it means a redelivery, not a lost command."""
        headers = msg.headers or {}
        ce_type = headers.get("ce-type", "")
        # Not a CloudEvent: the receipt still needs an id the sender can find.
        ce_id = headers.get("ce-id") or headers.get("Nats-Msg-Id") or (
            f"seq-{msg.metadata.sequence.stream}")
        try:
            if ce_type == SET_TARGET:
                try:
                    name, target = self._parse_set_target(msg)
                except CommandError as exc:
                    log.warning("rejected command %s: %s", ce_id, exc)
                    await self.alarm("-", "low", "rejected-command", f"command {ce_id}: {exc}")
                    await self.receipt(ce_id, ce_type, "rejected", str(exc))
                    await msg.term()  # it can never succeed: no redelivery
                    return
                zone = self.state.zones.setdefault(name, Zone())
                zone.target_c = target
                self.state.save(self.state_path)
                await self.publish(READINGS, READING,
                                   self._reading(name, zone, "command", ce_id),
                                   event_id=f"{ce_id}.reading", ce_subject=name)
                await self.receipt(ce_id, ce_type, "applied")
                self.handled += 1
            else:
                # Not ours to interpret (another producer's event on the command space):
                # receipted as ignored and acked, so it is not redelivered forever.
                await self.receipt(ce_id, ce_type or "-", "ignored")
                self.ignored += 1
        except RuntimeError as exc:
            log.error("%s; command %s will be redelivered", exc, ce_id)
            await msg.nak(delay=0.5)
            return
        await msg.ack()

    async def receipt(self, command_id: str, command_type: str, outcome: str,
                      detail: str | None = None) -> None:
        """The answer to every command: a ``CommandReceipt`` with the command's own id (the
        id's scope is the source, which differs) and that id as ``Nats-Msg-Id``."""
        data: dict[str, Any] = {"command_type": command_type, "outcome": outcome}
        if detail:
            data["detail"] = detail[:200]
        await self.publish(RECEIPTS, RECEIPT, data, event_id=command_id)

    async def consume(self, stop: asyncio.Event) -> None:
        """Fetch commands in batches until ``stop``; errors during a reconnect are waited out."""
        assert self.js is not None
        psub = await self.js.pull_subscribe_bind(durable=DURABLE, stream=COMMAND_STREAM)
        while not stop.is_set():
            try:
                msgs = await psub.fetch(batch=50, timeout=1)
            except nats.errors.TimeoutError:
                continue
            except Exception as exc:  # reconnecting, server restarting: try again shortly
                log.warning("fetch failed: %r", exc)
                await asyncio.sleep(0.5)
                continue
            # A batch is answered concurrently: on a slow link one command at a time would
            # take a round trip each and outlast the ack wait (then everything is redelivered
            # and answered twice). State changes stay in order: each handle() applies its
            # command before its first await, and gather starts them in order.
            results = await asyncio.gather(*(self.handle(m) for m in msgs),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):  # an ack lost in a reconnect: redelivered
                    log.warning("command not acked (%r); it will be redelivered", result)

    # ------------------------------------------------------------------ the climate loop

    async def tick(self) -> None:
        """Move every zone toward its target, publish a reading each, alarm on drift."""
        for name, zone in sorted(self.state.zones.items()):
            delta = zone.target_c - zone.temperature_c
            zone.temperature_c += max(-STEP_C, min(STEP_C, delta))
            drift = abs(zone.target_c - zone.temperature_c) > DRIFT_ALARM_C
            if drift and not zone.drifting:
                await self.alarm(name, "low", "out-of-range",
                                 f"{zone.temperature_c:.1f} C, target {zone.target_c:.1f} C")
            zone.drifting = drift
            try:
                await self.publish(READINGS, READING, self._reading(name, zone, "timer"),
                                   ce_subject=name)
            except RuntimeError as exc:
                log.warning("%s (a periodic reading is skipped)", exc)

    async def climate(self, stop: asyncio.Event) -> None:
        """The periodic readings, until ``stop``."""
        while not stop.is_set():
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.interval_s)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, ensure the layout, announce readiness, work until ``stop``, drain."""
        crashed = self.marker.exists()
        await self.connect()
        assert self.nc is not None
        try:
            await self.ensure_layout()
            self.marker.write_text(str(os.getpid()))
            workers = [asyncio.create_task(self.consume(stop)),
                       asyncio.create_task(self.climate(stop))]
            log.info("listening on %s (stream %s, durable %s) at %s", COMMANDS, COMMAND_STREAM,
                     DURABLE, self.cfg.nats_url)
            if crashed:
                await self.alarm("-", "high", "restarted-after-crash",
                                 "the previous run ended without a clean shutdown")
            await stop.wait()
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.state.save(self.state_path)
            self.marker.unlink(missing_ok=True)
            log.info("stopped: %d command(s) handled, %d ignored", self.handled, self.ignored)
        finally:
            # close, not drain: the workers are done and everything handled is acked; a
            # drain waits on the pull subscription and, behind a dead link, for 30 s.
            if not self.nc.is_closed:
                with contextlib.suppress(Exception):
                    await self.nc.close()


def main() -> int:
    """Run until SIGTERM/SIGINT; exit 0 after a clean shutdown, 2 on bad configuration."""
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s greenhouse %(levelname)s %(message)s")
    try:
        cfg = Config.from_env()
    except ValueError as exc:
        log.error("bad configuration: %s", exc)
        return 2

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Greenhouse(cfg).run(stop)

    try:
        asyncio.run(_main())
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1
    return 0
