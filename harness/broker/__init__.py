"""Bring NATS up and down: process (real nats-server), container and external backends.

``async with open_broker("process", nodes=3) as broker:`` gives a :class:`Broker` whose
``nodes`` take faults (kill, pause, restart ...) and whose ``nats_settings()`` connects
clients and services.
"""

from harness.broker._binary import NATS_SERVER_ENV, find_nats_server
from harness.broker.base import Broker, Node
from harness.broker.errors import BrokerError, BrokerStartError, NatsServerNotFound
from harness.broker.external import ExternalBroker
from harness.broker.factory import backends, open_broker, register_backend
from harness.broker.process import NatsCluster, NatsNode, NatsServer, RouteUrlFor

__all__ = [
    "NATS_SERVER_ENV",
    "Broker",
    "BrokerError",
    "BrokerStartError",
    "ExternalBroker",
    "NatsCluster",
    "NatsNode",
    "NatsServer",
    "NatsServerNotFound",
    "Node",
    "RouteUrlFor",
    "backends",
    "find_nats_server",
    "open_broker",
    "register_backend",
]
