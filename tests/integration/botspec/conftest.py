"""JetStream on the plugin's ``nats_client`` (a fresh real nats-server per test)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext


@pytest.fixture
def js(nats_client: Client) -> JetStreamContext:
    """JetStream context (with the manager API) of ``nats_client``."""
    return nats_client.jetstream(timeout=5)
