"""A real nats-server with per-identity users (accounts), rendered here from identities.

seca's ``render_auth`` renders the run's server config; these tests render their own, the
nats-server way, so the permissions derived from the spec are tried against the real server.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.broker import NatsServer
from harness.security import Identity, Permissions
from harness.security.permissions import inbox_prefix
from services.common.botspec import RuntimeConfig, provision
from services.common.settings import NatsSettings, connect

SYS_USER = "qiki-sys"


def _side(allowed: tuple[str, ...] | None) -> dict[str, Any] | None:
    if allowed is None:
        return None
    # An empty allow list would mean "no restriction" to some readers: deny everything.
    return {"allow": list(allowed)} if allowed else {"deny": [">"]}


def permissions_block(p: Permissions) -> dict[str, Any]:
    """nats-server ``permissions`` of one user."""
    out: dict[str, Any] = {}
    for key, side in (("publish", p.publish), ("subscribe", p.subscribe)):
        block = _side(side)
        if block is not None:
            out[key] = block
    return out


@dataclass
class AccountsBroker:
    """The server plus every identity's connection settings (password auth)."""

    server: NatsServer
    passwords: dict[str, str]

    def settings(self, name: str) -> NatsSettings:
        """Connection settings of identity ``name`` (or the system user), replies on its own
        inbox (``_INBOX.<name>``), as the platform gives them."""
        return self.server.nats_settings(name=f"test-{name}").with_overrides(
            user=name, password=self.passwords[name], inbox_prefix=inbox_prefix(name))

    def env(self, name: str) -> dict[str, str]:
        """QIKI_NATS_* variables a service process connects with."""
        return {"QIKI_NATS_URL": self.server.client_url, "QIKI_NATS_USER": name,
                "QIKI_NATS_PASSWORD": self.passwords[name],
                "QIKI_NATS_INBOX_PREFIX": inbox_prefix(name)}

    async def provision(self, config: RuntimeConfig) -> None:
        """Create the spec's streams and durables as the unrestricted ``harness`` identity
        (the run does the same before any service starts)."""
        nc = await connect(self.settings("harness"))
        try:
            await provision(nc.jetstream(), config)
        finally:
            await nc.close()

    def log_text(self) -> str:
        """The server's log so far."""
        return self.server.node.log_text()


@asynccontextmanager
async def accounts_broker(identities: Iterable[Identity], tmp_path: Path
                          ) -> AsyncIterator[AccountsBroker]:
    """One application account with a user per identity, and a system account user."""
    ids = list(identities)
    passwords = {i.name: secrets.token_urlsafe(18) for i in ids}
    passwords[SYS_USER] = secrets.token_urlsafe(18)
    users = []
    for i in ids:
        user: dict[str, Any] = {"user": i.name, "password": passwords[i.name]}
        perms = permissions_block(i.permissions)
        if perms:
            user["permissions"] = perms
        users.append(user)
    extra = {
        "accounts": {
            "APP": {"jetstream": "enabled", "users": users},
            "SYS": {"users": [{"user": SYS_USER, "password": passwords[SYS_USER]}]},
        },
        "system_account": "SYS",
    }
    async with NatsServer(extra_config=extra, log_dir=tmp_path / "nats-logs") as srv:
        yield AccountsBroker(srv, passwords)
