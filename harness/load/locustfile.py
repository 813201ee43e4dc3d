"""Locustfile for the QIKI platform: radar frames and sensor events as CloudEvents (issue 5).

Run it headless against a broker whose platform streams exist (those of the BotSpec,
``$QIKI_BOTSPEC`` or the shipped QIKI one; ``--qiki-ensure-streams`` creates them in memory if
missing). Subjects come from the spec's channels (``runtime.radar_sim.frames`` / ``.sensor``)::

    locust -f harness/load/locustfile.py --headless -u 50 -r 50 -t 30s \\
        --host nats://127.0.0.1:4222 --csv reports/run/locust --html reports/run/locust.html \\
        --qiki-max-fail-ratio 0 --qiki-max-p95-ms 50 --qiki-min-rps 1000 \\
        --qiki-report-json reports/run/locust.json

Gates that fail set exit code 1. Distributed: ``--master --expect-workers N`` plus N
``--worker --master-host ...`` processes (same file).
"""

from __future__ import annotations

import functools
import itertools
import os
import random
from datetime import UTC, datetime
from typing import Any

from locust import constant, events, task
from locust.env import Environment

from harness.load import locust_users
from harness.load.locust_users import JetStreamUser
from services.common.botspec import RuntimeConfig, load_runtime_config
from services.common.cloudevents import new_event, to_binary
from services.radar_sim.events import (
    FRAME_TYPE,
    RADAR_SOURCE,
    SENSOR_IO_STATUS_TYPE,
    SENSOR_SOURCE,
)

locust_users.register(events)

#: ``QIKI_LOCUST_BENCH=1`` swaps the platform user for :class:`BenchUser` (``bench.load``).
_BENCH = os.environ.get("QIKI_LOCUST_BENCH") == "1"
#: ``QIKI_LOCUST_FAST_PUBLISH=0`` publishes through nats-py's ``js.publish`` instead.
_FAST = os.environ.get("QIKI_LOCUST_FAST_PUBLISH", "1") != "0"

_streams_checked: set[str] = set()
_frame_ids = itertools.count()


@functools.cache
def _spec() -> RuntimeConfig:
    """The platform's runtime configuration (read once per process, on first use)."""
    return load_runtime_config()


@events.test_start.add_listener
def _ensure_streams(environment: Environment, **_kw: Any) -> None:
    """With ``--qiki-ensure-streams``: create the platform streams (memory) where missing."""
    opts = environment.parsed_options
    if not getattr(opts, "qiki_ensure_streams", False) or not environment.host:
        return
    from harness.load.locust_users import _shared_client, env_connect_kwargs, shared_bridge

    if environment.host in _streams_checked:
        return
    _streams_checked.add(environment.host)
    nc = _shared_client(environment, environment.host.split(","), env_connect_kwargs())

    async def ensure() -> None:
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        js = nc.jetstream()
        for stream in _spec().streams:
            try:
                await js.stream_info(stream.name)
            except NotFoundError:
                await js.add_stream(StreamConfig(name=stream.name, subjects=stream.subjects,
                                                 storage=StorageType.MEMORY))

    shared_bridge().run(ensure(), timeout_s=10)


def radar_frame(frame_id: int, sensor_id: str, rng: random.Random) -> dict[str, Any]:
    """A ``qiki.radar.v1.Frame`` body shaped like ``services.radar_sim.models.RadarFrame``."""
    return {
        "frame_id": frame_id,
        "sensor_id": sensor_id,
        "timestamp": datetime.now(UTC).isoformat(),
        "detections": [
            {
                "range_m": round(rng.uniform(50, 20000), 1),
                "bearing_deg": round(rng.uniform(0, 359.9), 2),
                "elev_deg": round(rng.uniform(-10, 60), 2),
                "vr_mps": round(rng.uniform(-300, 300), 1),
                "snr_db": round(rng.uniform(3, 40), 1),
                "rcs_dbsm": round(rng.uniform(-20, 30), 1),
                "range_band": "LR" if i % 2 else "SR",
            }
            for i in range(2)
        ],
    }


class PlatformUser(JetStreamUser):
    """Publishes radar frames (weight 3) and sensor I/O status events (weight 1).

    With ``--qiki-registrar-url``, every 100th frame is also followed to the registrar's
    store (``E2E``).
    """

    abstract = _BENCH
    fast_publish = _FAST
    wait_time = constant(0)

    def on_start(self) -> None:
        """Pick a sensor id per user so sources and frame ids stay realistic."""
        self.rng = random.Random()
        self.sensor_id = f"locust-{os.getpid()}-{id(self) & 0xFFFF:04x}"
        self.frames_sent = 0

    @task(3)
    def publish_radar_frame(self) -> None:
        """One radar frame on the spec's combined frame subject."""
        ev = new_event(FRAME_TYPE, RADAR_SOURCE,
                       radar_frame(next(_frame_ids), self.sensor_id, self.rng),
                       subject=self.sensor_id)
        headers, payload = to_binary(ev)
        ack = self.js_publish(_spec().subjects.radar_frames, payload, headers=headers)
        self.frames_sent += 1
        if ack is not None and ev.time is not None and self.frames_sent % 100 == 1:
            self.check_stored(ev.id, ev.time)

    @task(1)
    def publish_sensor_event(self) -> None:
        """One sensor I/O status event on the spec's sensor subject."""
        ev = new_event(SENSOR_IO_STATUS_TYPE, SENSOR_SOURCE, {
            "sensor_id": self.sensor_id,
            "status": "ok",
            "timestamp": datetime.now(UTC).isoformat(),
            "frames_sent": self.frames_sent,
        }, subject=self.sensor_id)
        headers, payload = to_binary(ev)
        self.js_publish(_spec().subjects.sensor_events, payload, headers=headers)


class BenchUser(JetStreamUser):
    """Bare 256-byte JetStream publishes (``bench.load``): measures the user, not the data.

    Active only with ``QIKI_LOCUST_BENCH=1``; the subject comes from ``QIKI_BENCH_SUBJECT``.
    """

    abstract = not _BENCH
    fast_publish = _FAST
    wait_time = constant(0)

    def on_start(self) -> None:
        """Payload and id prefix per user."""
        self.subject = os.environ.get("QIKI_BENCH_SUBJECT", "bench.load")
        self.body = b"x" * 256
        self.prefix = f"{os.getpid()}-{id(self):x}-"
        self.n = 0

    @task
    def publish(self) -> None:  # type: ignore[override]
        """One 256-byte publish with a unique ``Nats-Msg-Id``."""
        self.n += 1
        self.js_publish(self.subject, self.body,
                        headers={"Nats-Msg-Id": f"{self.prefix}{self.n}"})
