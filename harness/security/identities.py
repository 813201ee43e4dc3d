"""Identities and their permissions: the data every auth mode is rendered from."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ALLOW_ALL", "Identity", "Permissions"]


@dataclass(frozen=True)
class Permissions:
    """Subjects an identity may publish to and subscribe to (NATS wildcards allowed).

    ``None`` on a side means no restriction on that side; an empty tuple allows nothing.
    """

    publish: tuple[str, ...] | None = None
    subscribe: tuple[str, ...] | None = None

    @property
    def unrestricted(self) -> bool:
        """True when neither side is restricted."""
        return self.publish is None and self.subscribe is None


#: No restriction on either side (the harness's own identity, and every identity outside
#: ``auth: accounts``).
ALLOW_ALL = Permissions()


@dataclass(frozen=True)
class Identity:
    """One client of the broker: a service name, ``harness`` or ``load``.

    Secrets are not held here: the credentials module issues them per run and keeps them in
    the run dir with 0600 permissions.
    """

    name: str
    permissions: Permissions = field(default=ALLOW_ALL)
