"""Fixtures for the broker integration tests (real nats-server processes)."""

from __future__ import annotations

import pytest

from harness.broker import NatsServer


@pytest.fixture
def server(nats_server: NatsServer) -> NatsServer:
    """A fresh single-node JetStream server (the plugin's ``nats_server``)."""
    return nats_server
