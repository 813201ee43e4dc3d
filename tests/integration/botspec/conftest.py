"""A real nats-server with JetStream per test (harness.broker.NatsServer reaps it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from harness.broker import NatsServer


@pytest.fixture
async def nats_client() -> AsyncIterator[Client]:
    """A client connected to a fresh single-node JetStream server (temp store, removed)."""
    async with NatsServer(name="botspec") as srv:
        nc = await nats.connect(srv.client_url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            yield nc
        finally:
            await nc.close()


@pytest.fixture
def js(nats_client: Client) -> JetStreamContext:
    """JetStream context (with the manager API) of ``nats_client``."""
    return nats_client.jetstream(timeout=5)
