"""Client and stream fixtures for the common-module tests (``nats_server``: the plugin's)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig
from nats.js.client import JetStreamContext

from harness.broker import NatsServer
from services.common.settings import NatsSettings, connect

STREAM = "CE_TEST"
SUBJECTS = ["ce.test.>"]


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A client connected through :func:`services.common.settings.connect`."""
    client = await connect(
        NatsSettings(servers=[nats_server.client_url], name="ce-test"),
        first_connect_timeout_s=5.0,
    )
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def js(nc: Client) -> JetStreamContext:
    """JetStream with a file-stored stream CE_TEST on ``ce.test.>`` (2-minute dedup window)."""
    ctx = nc.jetstream()
    await ctx.add_stream(StreamConfig(name=STREAM, subjects=SUBJECTS, duplicate_window=120.0))
    return ctx
