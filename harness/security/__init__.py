"""Security of a run's broker: identities, credentials, TLS, probes and the secret scan (issue 10).

The one shared shape is :class:`Identity`: who connects (a service, the harness, the load) and
what it may publish and subscribe to. Broker back-ends render identities into server config;
the spec derives them (least privilege); the ``security`` check probes them.
"""

from harness.security.identities import ALLOW_ALL, Identity, Permissions

__all__ = ["ALLOW_ALL", "Identity", "Permissions"]
