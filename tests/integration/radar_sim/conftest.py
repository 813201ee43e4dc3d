"""Real nats-server for the radar simulator's integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from harness.broker import NatsServer
from services.common.botspec import RuntimeConfig, load_runtime_config, provision


@pytest.fixture
async def nats_server() -> AsyncIterator[NatsServer]:
    """A fresh single-node JetStream server on free 127.0.0.1 ports (reaped after the test)."""
    async with NatsServer() as srv:
        yield srv


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A connected client."""
    client = await nats.connect(nats_server.client_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def provisioned(nc: Client) -> RuntimeConfig:
    """The platform's streams and consumers (memory storage: fast, nothing left on disk)."""
    config = load_runtime_config().with_overrides(storage="memory")
    await provision(nc.jetstream(), config)
    return config
