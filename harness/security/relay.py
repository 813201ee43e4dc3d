"""Server security advisories -> CloudEvents the registrar stores under 8xx codes (issue 10).

What nats-server (2.15.1; read in server/events.go and server/client.go) reports:

- an authentication failure: ``$SYS.SERVER.<server id>.CLIENT.AUTH.ERR`` in the system
  account, a ``io.nats.server.advisory.v1.client_disconnect`` document with the client (host,
  user name or nkey; a token shows as ``[REDACTED]``; never a password) and the reason
  (``Authentication Failure``...). ``$SYS.ACCOUNT.CLIENT.AUTH.ERR`` exists too but is sent
  only with auth callout, which the harness does not configure;
- a permission violation: NOT advised. The server answers the client with
  ``-ERR 'Permissions Violation for Publish to "x"'`` and writes an ``[ERR]`` line to its log,
  nothing on ``$SYS``. So denials reach the registrar from the probes' own observations
  (:func:`publish_denials`);
- a refused TLS handshake (no client certificate under mTLS, plaintext on a TLS port) is not an
  auth error and is not advised either: the probes record those.

:class:`AuthAdvisoryRelay` connects as the system account's user (``auth: accounts`` only: the
other modes have no system user) and republishes each advisory as a
``qiki.security.v1.auth_failed`` CloudEvent through the harness's own JetStream connection, on
the subject of the spec's channel that carries that type.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from harness._resource import AsyncResource
from harness.security.events import AUTH_FAILED, PERMISSION_DENIED, SOURCE

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

    from harness.security.probes import ProbeResult
    from services.common.botspec import RuntimeConfig
    from services.common.settings import NatsSettings

__all__ = [
    "AUTH_ERR_SUBJECT",
    "AuthAdvisoryRelay",
    "auth_failed_data",
    "publish_denials",
    "security_subject",
]

log = logging.getLogger(__name__)

#: Where every server of the cluster advises authentication failures (system account).
AUTH_ERR_SUBJECT = "$SYS.SERVER.*.CLIENT.AUTH.ERR"

_MAX = 1024


def security_subject(config: RuntimeConfig, type_: str = AUTH_FAILED) -> str | None:
    """The subject of the spec's channel carrying ``type_`` (None: the spec has none)."""
    channel = config.channel_of_type(type_)
    subjects = config.channels.get(channel or "", [])
    return subjects[0] if subjects else None


def _text(value: Any) -> str:
    return str(value)[:_MAX]


def auth_failed_data(advisory: dict[str, Any]) -> dict[str, Any]:
    """The CloudEvent ``data`` of one ``CLIENT.AUTH.ERR`` advisory (a fixed set of fields:
    nothing the server may add later, such as a JWT, is copied)."""
    server = advisory.get("server") or {}
    client = advisory.get("client") or {}
    data: dict[str, Any] = {
        "advisory_id": _text(advisory.get("id", "")),
        "advisory_type": _text(advisory.get("type", "")),
        "server": _text(server.get("name", "")),
        "server_id": _text(server.get("id", "")),
        "reason": _text(advisory.get("reason", "")),
    }
    for key in ("host", "user", "name", "lang", "version"):
        if client.get(key):
            data[f"client_{key}"] = _text(client[key])
    return data


class AuthAdvisoryRelay(AsyncResource):
    """Relays ``CLIENT.AUTH.ERR`` advisories as CloudEvents while it is open.

    ``system``: settings of the system account's user. ``js``: the harness's JetStream
    context (application account) to publish with. ``subject``: where (see
    :func:`security_subject`). ``relayed`` keeps the data of every relayed event.
    """

    def __init__(self, system: NatsSettings, js: JetStreamContext, subject: str, *,
                 timeout_s: float = 2.0) -> None:
        self._settings = system
        self._js = js
        self.subject = subject
        self._timeout_s = timeout_s
        self._nc: Client | None = None
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.relayed: list[dict[str, Any]] = []
        self.failed = 0

    async def start(self) -> None:
        """Connect as the system user and subscribe (flushed: nothing after is missed)."""
        from services.common.settings import connect

        self._nc = await connect(self._settings.with_overrides(name="qiki-security-relay"),
                                 first_connect_timeout_s=10.0)
        await self._nc.subscribe(AUTH_ERR_SUBJECT, cb=self._on_advisory)
        await self._nc.flush(timeout=math.ceil(self._timeout_s))
        self._worker = asyncio.create_task(self._publish_loop(), name="security-relay")

    async def _on_advisory(self, msg: Msg) -> None:
        try:
            advisory = json.loads(msg.data)
        except ValueError:
            log.warning("undecodable advisory on %s (%d bytes)", msg.subject, len(msg.data))
            return
        if isinstance(advisory, dict):
            self._queue.put_nowait(auth_failed_data(advisory))

    async def _publish_loop(self) -> None:
        from services.common.cloudevents import new_event, publish_event

        while True:
            data = await self._queue.get()
            ev = new_event(AUTH_FAILED, SOURCE, data, subject=data.get("client_user") or None)
            for attempt in range(3):
                try:
                    await publish_event(self._js, self.subject, ev, timeout_s=self._timeout_s)
                    self.relayed.append(data)
                    break
                except Exception as exc:  # the broker may be restarting: retry, then count
                    if attempt == 2:
                        self.failed += 1
                        log.warning("could not relay an auth failure: %s: %s",
                                    type(exc).__name__, exc)
                    else:
                        await asyncio.sleep(0.2)
            self._queue.task_done()

    async def settle(self, timeout_s: float = 2.0) -> None:
        """Wait until every advisory received so far has been published (or given up on)."""
        if self._nc is not None and self._nc.is_connected:
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=math.ceil(timeout_s))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout_s)

    async def close(self) -> None:
        """Stop relaying; idempotent."""
        if self._worker is not None:
            await self.settle()
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 2.0)
            self._nc = None


async def publish_denials(js: JetStreamContext, subject: str, results: Iterable[ProbeResult],
                          *, timeout_s: float = 2.0) -> int:
    """Publish a ``qiki.security.v1.permission_denied`` event per denial a probe observed;
    returns how many were acknowledged (nats-server advises no permission violations)."""
    from services.common.cloudevents import new_event, publish_event

    sent = 0
    for r in results:
        if r.observed != "denied" or r.action is None:
            continue
        data = {"identity": _text(r.identity or ""), "action": r.action,
                "subject": _text(r.subject or ""), "error": _text(r.reason),
                "expected": r.expect == "denied"}
        ev = new_event(PERMISSION_DENIED, SOURCE, data, subject=r.identity)
        try:
            await publish_event(js, subject, ev, timeout_s=timeout_s)
            sent += 1
        except Exception as exc:
            log.warning("could not publish a permission denial: %s: %s", type(exc).__name__, exc)
    return sent
