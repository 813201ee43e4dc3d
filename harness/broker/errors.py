"""Errors of the broker layer (all under :class:`harness.errors.HarnessError`)."""

from __future__ import annotations

from harness.errors import HarnessError, SetupError

__all__ = ["BrokerError", "BrokerStartError", "NatsServerNotFound"]


class BrokerError(HarnessError):
    """A broker could not be found, started, queried or faulted as asked."""


class BrokerStartError(BrokerError, SetupError):
    """A broker (process, cluster, external URL) did not come up; the message says why."""


class NatsServerNotFound(BrokerStartError):
    """No ``nats-server`` binary was found; the message lists every place tried and a fix."""
