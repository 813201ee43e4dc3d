"""Fixtures the integration areas share; ``nats_server`` itself comes from the project's pytest
plugin (``harness.pytest_plugin``: a fresh JetStream server on free 127.0.0.1 ports, reaped after
the test).  An area's own conftest may still define fixtures of the same names; its own win."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from harness.broker import NatsServer
from services.common.botspec import RuntimeConfig, load_runtime_config, provision


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A connected client (plain ``nats.connect``: no reconnect settings of the services)."""
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
