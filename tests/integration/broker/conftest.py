"""Fixtures for the broker integration tests (real nats-server processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from harness.broker import NatsServer


@pytest.fixture
async def server() -> AsyncIterator[NatsServer]:
    """A fresh single-node JetStream server, stopped and removed afterwards."""
    async with NatsServer() as srv:
        yield srv
