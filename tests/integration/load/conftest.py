"""Real nats-server (``harness.broker.NatsServer``) and platform streams for the load tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig

from harness.broker import NatsServer

#: The platform streams the locustfile publishes to (names as in services.common.botspec).
PLATFORM_STREAMS = {"QIKI_RADAR_V1": ["qiki.radar.v1.>"], "QIKI_EVENTS_V1": ["qiki.events.v1.>"]}


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """URL of the plugin's ``nats_server`` (a fresh JetStream server on 127.0.0.1)."""
    return nats_server.client_url


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    """A connected client; closed afterwards."""
    client = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=2)
    try:
        yield client
    finally:
        await client.close()


async def ensure_platform_streams(client: Client, storage: StorageType = StorageType.FILE) -> None:
    """Create the radar and events streams. ``services.common.botspec.provision`` is the
    production path; these tests keep just the two streams they need."""
    js = client.jetstream()
    for name, subjects in PLATFORM_STREAMS.items():
        await js.add_stream(StreamConfig(name=name, subjects=subjects, storage=storage))
