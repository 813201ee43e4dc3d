"""NATS connection settings shared by the reference services (and reused by the harness).

Secrets (token, password) are ``SecretStr``: they never appear in ``repr``/``str``, in
:meth:`NatsSettings.describe` or in error messages; only :meth:`NatsSettings.connect_kwargs`
reveals them, to hand them to ``nats.connect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["DEFAULT_NATS_URL", "NatsSettings", "connect", "mask_url", "quiet_ssl_eof_noise"]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

_MASK = "**********"
_log = logging.getLogger(__name__)


def mask_url(url: str) -> str:
    """``url`` with any ``user:password@`` / ``token@`` userinfo replaced by a mask."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    masked = f"{user}:{_MASK}" if colon else _MASK
    return f"{scheme}://{masked}@{hostpart}"


class NatsSettings(BaseModel):
    """How to reach NATS: servers, credentials and client timing.

    Build it directly, from the environment with :meth:`from_env`, or from a broker
    (``broker.nats_settings()``). Unknown fields are errors, so a typo is caught at once.
    """

    # hide_input_in_errors: a validation error must not echo a password or token back.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    servers: list[str] = Field(default_factory=lambda: [DEFAULT_NATS_URL], min_length=1)
    name: str | None = None
    token: SecretStr | None = None
    user: str | None = None
    password: SecretStr | None = None
    creds_file: Path | None = None
    #: NKey seed file (``SU...``): the client signs the server's nonce with it (issue 10)
    nkey_seed_file: Path | None = None
    #: CA bundle that verifies the server's certificate; with it the client speaks TLS
    tls_ca_file: Path | None = None
    #: client certificate and key, for servers that verify clients (mTLS)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: where this client receives replies (PubAcks, JetStream API answers, pull deliveries):
    #: ``<inbox_prefix>.<random>``; default nats-py's shared ``_INBOX``. Under least privilege
    #: (``auth: accounts``) each identity may subscribe only to its own prefix, so a client
    #: that keeps ``_INBOX`` is refused ("Permissions Violation for Subscription to _INBOX...")
    inbox_prefix: str | None = None
    ping_interval_s: float = Field(default=2.0, gt=0)
    max_outstanding_pings: int = Field(default=2, ge=1)
    reconnect_time_wait_s: float = Field(default=0.25, ge=0)
    max_reconnect_attempts: int = Field(default=-1, ge=-1)
    connect_timeout_s: float = Field(default=2.0, gt=0)

    @field_validator("servers")
    @classmethod
    def _check_servers(cls, servers: list[str]) -> list[str]:
        cleaned = [s.strip() for s in servers if s.strip()]
        if not cleaned:
            raise ValueError("servers: expected at least one URL such as nats://127.0.0.1:4222")
        for url in cleaned:
            scheme, sep, rest = url.partition("://")
            if not sep or scheme not in ("nats", "tls", "ws", "wss") or not rest:
                # Mask: a URL may carry user:password@.
                raise ValueError(
                    f"servers: {mask_url(url)!r} is not a NATS URL; expected "
                    "nats://HOST:PORT (or tls://, ws://, wss://)"
                )
        return cleaned

    @field_validator("inbox_prefix")
    @classmethod
    def _check_inbox_prefix(cls, prefix: str | None) -> str | None:
        if prefix is None:
            return None
        tokens = prefix.split(".")
        if not prefix or any(not t or t in ("*", ">") or any(c.isspace() for c in t)
                             for t in tokens):
            raise ValueError(
                f"inbox_prefix: {prefix!r} is not a subject prefix; expected literal tokens "
                "separated by dots, no wildcards or spaces, e.g. _INBOX.registrar "
                "(QIKI_NATS_INBOX_PREFIX)")
        return prefix

    @model_validator(mode="after")
    def _check_tls_pair(self) -> NatsSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "tls_cert_file and tls_key_file go together (QIKI_NATS_CERT and QIKI_NATS_KEY): "
                "a client certificate needs its key"
            )
        return self

    @field_serializer("servers", when_used="json")
    def _mask_servers(self, servers: list[str]) -> list[str]:
        # JSON dumps end up in journals and logs; URLs may carry user:password@.
        return [mask_url(s) for s in servers]

    @classmethod
    def from_env(
        cls, prefix: str = "QIKI_NATS_", environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> NatsSettings:
        """Settings from environment variables, then ``overrides`` on top.

        Reads ``{prefix}URL`` (comma-separated server URLs), ``{prefix}TOKEN``, ``{prefix}USER``,
        ``{prefix}PASSWORD``, ``{prefix}CREDS`` (creds file path), ``{prefix}NKEY_SEED_FILE``,
        ``{prefix}CA`` / ``{prefix}CERT`` / ``{prefix}KEY`` (TLS files), ``{prefix}NAME``,
        ``{prefix}INBOX_PREFIX`` (the client's reply prefix) and ``{prefix}PING_INTERVAL_S``.
        Unset or empty variables keep the defaults.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}

        def get(key: str) -> str | None:
            raw = env.get(prefix + key)
            return raw if raw else None

        if (url := get("URL")) is not None:
            values["servers"] = [u.strip() for u in url.split(",") if u.strip()]
        for key, field in (
            ("TOKEN", "token"),
            ("USER", "user"),
            ("PASSWORD", "password"),
            ("CREDS", "creds_file"),
            ("NKEY_SEED_FILE", "nkey_seed_file"),
            ("CA", "tls_ca_file"),
            ("CERT", "tls_cert_file"),
            ("KEY", "tls_key_file"),
            ("NAME", "name"),
            ("INBOX_PREFIX", "inbox_prefix"),
        ):
            if (raw := get(key)) is not None:
                values[field] = raw
        if (ping := get("PING_INTERVAL_S")) is not None:
            try:
                values["ping_interval_s"] = float(ping)
            except ValueError:
                raise ValueError(
                    f"{prefix}PING_INTERVAL_S={ping!r} is not a number; expected seconds, e.g. 2.0"
                ) from None
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **changes: Any) -> NatsSettings:
        """A validated copy with ``changes`` applied."""
        return type(self).model_validate({**self.model_dump(), **changes})

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect(**kwargs)``; the only place secrets are revealed."""
        kwargs: dict[str, Any] = {
            "servers": list(self.servers),
            "ping_interval": self.ping_interval_s,
            "max_outstanding_pings": self.max_outstanding_pings,
            "reconnect_time_wait": self.reconnect_time_wait_s,
            "max_reconnect_attempts": self.max_reconnect_attempts,
            "connect_timeout": self.connect_timeout_s,
            # Without this, nats-py gives up at once if the first connect fails, even though
            # the services are meant to wait for a broker that is still starting.
            "allow_reconnect": True,
        }
        if self.name is not None:
            kwargs["name"] = self.name
        if self.token is not None:
            kwargs["token"] = self.token.get_secret_value()
        if self.user is not None:
            kwargs["user"] = self.user
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        if self.creds_file is not None:
            kwargs["user_credentials"] = str(self.creds_file)
        if self.nkey_seed_file is not None:
            kwargs["nkeys_seed"] = str(self.nkey_seed_file)
        if self.inbox_prefix is not None:
            kwargs["inbox_prefix"] = self.inbox_prefix
        if (ctx := self.ssl_context()) is not None:
            kwargs["tls"] = ctx
        return kwargs

    @property
    def tls(self) -> bool:
        """True when the client speaks TLS (a CA or a client certificate is set)."""
        return self.tls_ca_file is not None or self.tls_cert_file is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context (server verified against ``tls_ca_file``, the client
        certificate presented when set), or None for plain TCP.

        Raises ``ValueError`` naming the file when one cannot be read (never its contents).
        """
        if not self.tls:
            return None
        try:
            ctx = ssl.create_default_context(
                cafile=str(self.tls_ca_file) if self.tls_ca_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"TLS CA file {str(self.tls_ca_file)!r} cannot be used ({type(exc).__name__}: "
                f"{getattr(exc, 'strerror', None) or exc}); expected a PEM CA bundle"
            ) from None
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            try:
                ctx.load_cert_chain(str(self.tls_cert_file), str(self.tls_key_file))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"TLS client certificate {str(self.tls_cert_file)!r} with key "
                    f"{str(self.tls_key_file)!r} cannot be used ({type(exc).__name__}); "
                    "expected PEM files that belong together"
                ) from None
        return ctx

    def describe(self) -> dict[str, Any]:
        """A journal-safe summary: servers (userinfo masked) and which credentials are set."""
        return {
            "servers": [mask_url(s) for s in self.servers],
            "name": self.name,
            "auth": self.auth_kind,
            "user": self.user,
            "creds_file": str(self.creds_file) if self.creds_file else None,
            "nkey_seed_file": str(self.nkey_seed_file) if self.nkey_seed_file else None,
            "tls": self.tls,
            "tls_ca_file": str(self.tls_ca_file) if self.tls_ca_file else None,
            "tls_cert_file": str(self.tls_cert_file) if self.tls_cert_file else None,
            "inbox_prefix": self.inbox_prefix,
        }

    @property
    def auth_kind(self) -> str:
        """``"token"``, ``"user/password"``, ``"creds"``, ``"nkey"`` or ``"none"``."""
        if self.creds_file is not None:
            return "creds"
        if self.nkey_seed_file is not None:
            return "nkey"
        if self.token is not None:
            return "token"
        if self.user is not None or self.password is not None:
            return "user/password"
        return "none"

    def __repr_args__(self) -> Any:
        # pydantic already renders SecretStr as '**********'; URLs may still carry userinfo.
        for key, value in super().__repr_args__():
            if key == "servers":
                yield key, [mask_url(s) for s in value]
            else:
                yield key, value


class _SslEofNoise(logging.Filter):
    """Drops asyncio's "returning true from eof_received() has no effect when using ssl".

    nats-py upgrades its stream to TLS after INFO; its stream protocol then answers EOF with
    True, and asyncio logs that warning for every TLS connection a broker stop closes: lines
    in every log of a chaos run that say nothing about it (issue 10).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


def quiet_ssl_eof_noise() -> None:
    """Install the :class:`_SslEofNoise` filter on the asyncio logger (once per process)."""
    log = logging.getLogger("asyncio")
    if not any(isinstance(f, _SslEofNoise) for f in log.filters):
        log.addFilter(_SslEofNoise())


ErrorCallback = Callable[[Exception], Awaitable[None]]
EventCallback = Callable[[], Awaitable[None]]


async def connect(
    settings: NatsSettings | None = None,
    *,
    disconnected_cb: EventCallback | None = None,
    reconnected_cb: EventCallback | None = None,
    error_cb: ErrorCallback | None = None,
    closed_cb: EventCallback | None = None,
    first_connect_timeout_s: float | None = 30.0,
    **extra: Any,
) -> Client:
    """Connect to NATS with ``settings`` (default: :meth:`NatsSettings.from_env`).

    The callbacks are passed through to ``nats.connect``; ``extra`` keyword arguments too
    (they win over the settings). With ``max_reconnect_attempts=-1`` nats-py retries the first
    connection forever; ``first_connect_timeout_s`` bounds that wait (``None``: no bound).
    Failure raises ``ConnectionError`` naming the (masked) servers.
    """
    from nats.aio.client import Client as NatsClient  # deferred: nothing at import time

    settings = settings if settings is not None else NatsSettings.from_env()
    kwargs = settings.connect_kwargs()
    if settings.tls:
        quiet_ssl_eof_noise()
    for key, cb in (
        ("disconnected_cb", disconnected_cb),
        ("reconnected_cb", reconnected_cb),
        ("error_cb", error_cb),
        ("closed_cb", closed_cb),
    ):
        if cb is not None:
            kwargs[key] = cb
    if error_cb is None:
        # nats-py logs every failed reconnect attempt at ERROR level with a traceback by
        # default; debug level keeps service logs readable while a broker restarts.
        kwargs["error_cb"] = _debug_error_cb
    kwargs.update(extra)
    nc = NatsClient()
    try:
        if first_connect_timeout_s is None:
            await nc.connect(**kwargs)
        else:
            await asyncio.wait_for(nc.connect(**kwargs), first_connect_timeout_s)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        if not isinstance(exc, Exception):
            raise
        servers = ", ".join(mask_url(s) for s in settings.servers)
        reason = (
            f"no connection within {first_connect_timeout_s} s"
            if isinstance(exc, TimeoutError)
            else f"{type(exc).__name__}: {exc}"
        )
        raise ConnectionError(
            f"cannot connect to NATS at {servers} ({reason}); "
            "is the server running and are the QIKI_NATS_* credentials right?"
        ) from exc
    return nc


async def _debug_error_cb(exc: Exception) -> None:
    """Log connection errors at debug level (reconnects are reported by the other callbacks)."""
    _log.debug("nats client error: %s: %s", type(exc).__name__, exc)
