"""The fault proxy in front of the plugin's ``nats_server`` (a real JetStream server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from harness.broker import NatsServer
from harness.faults import FaultProxy


@pytest.fixture
async def nats_proxy(nats_server: NatsServer) -> AsyncIterator[FaultProxy]:
    port = int(nats_server.client_url.rsplit(":", 1)[1])
    async with FaultProxy("127.0.0.1", port, name="nats-link") as proxy:
        yield proxy
