"""A real nats-server (JetStream) for the fault proxy's integration tests.

Uses harness.broker.NatsServer (reaps the process, removes the store).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from harness.broker import NatsServer
from harness.faults import FaultProxy


@pytest.fixture
async def nats_server() -> AsyncIterator[NatsServer]:
    async with NatsServer(name="faults") as srv:
        yield srv


@pytest.fixture
async def nats_proxy(nats_server: NatsServer) -> AsyncIterator[FaultProxy]:
    port = int(nats_server.client_url.rsplit(":", 1)[1])
    async with FaultProxy("127.0.0.1", port, name="nats-link") as proxy:
        yield proxy
