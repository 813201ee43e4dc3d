"""The ``external`` backend: a NATS server or cluster someone else runs.

The harness only connects to it; nodes cannot be faulted (``nodes == []``). Credentials
are kept as secrets: handed to clients through :meth:`ExternalBroker.nats_settings`, never
shown by ``repr``, :meth:`ExternalBroker.describe` or error messages.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from harness.broker.errors import BrokerStartError

if TYPE_CHECKING:
    from harness.broker.process import NatsNode
    from services.common.settings import NatsSettings

__all__ = ["CREDENTIAL_ENV", "ExternalBroker", "credentials_from_env"]

#: Environment variables an external broker's credentials come from (README "Security").
CREDENTIAL_ENV = {
    "QIKI_NATS_TOKEN": "token",
    "QIKI_NATS_USER": "user",
    "QIKI_NATS_PASSWORD": "password",
    "QIKI_NATS_CREDS": "creds_file",
    "QIKI_NATS_NKEY_SEED_FILE": "nkey_seed_file",
    "QIKI_NATS_CA": "tls_ca_file",
    "QIKI_NATS_CERT": "tls_cert_file",
    "QIKI_NATS_KEY": "tls_key_file",
}

#: The file credentials, their command-line flag and what the file must hold (messages).
FILE_CREDENTIALS = {
    "creds_file": ("QIKI_NATS_CREDS", "--nats-creds", "a NATS .creds file (JWT + seed)"),
    "nkey_seed_file": ("QIKI_NATS_NKEY_SEED_FILE", "--nats-nkey-seed",
                       "an NKey seed file (SU...)"),
    "tls_ca_file": ("QIKI_NATS_CA", "--nats-ca", "a PEM CA bundle"),
    "tls_cert_file": ("QIKI_NATS_CERT", "--nats-cert", "a PEM client certificate"),
    "tls_key_file": ("QIKI_NATS_KEY", "--nats-key", "the PEM key of the client certificate"),
}


def credentials_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``ExternalBroker`` keyword arguments from the ``QIKI_NATS_*`` variables of
    :data:`CREDENTIAL_ENV` (unset or empty ones are left out)."""
    env = os.environ if environ is None else environ
    return {kw: env[var] for var, kw in CREDENTIAL_ENV.items() if env.get(var)}


def _check_file(field: str, value: str | Path) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        var, flag, what = FILE_CREDENTIALS[field]
        raise BrokerStartError(
            f"ExternalBroker: {field} {str(path)!r} does not exist or is not a file; expected "
            f"{what} (from {flag} or {var})"
        )
    return path


class ExternalBroker:
    """An existing NATS deployment at ``url`` (comma-separated list or a sequence of URLs).

    ``async with ExternalBroker("nats://host:4222", token=...) as b:`` connects once to
    check that it answers (and to learn its version), then disconnects; a failure raises
    :class:`BrokerStartError` with the masked URL and a hint. ``verify=False`` skips that.
    """

    backend = "external"

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        creds_file: str | Path | None = None,
        nkey_seed_file: str | Path | None = None,
        tls_ca_file: str | Path | None = None,
        tls_cert_file: str | Path | None = None,
        tls_key_file: str | Path | None = None,
        inbox_prefix: str | None = None,
        verify: bool = True,
        connect_timeout_s: float = 2.0,
    ) -> None:
        from services.common.settings import NatsSettings

        servers = [u.strip() for u in url.split(",")] if isinstance(url, str) else list(url)
        if token is not None and (user is not None or password is not None):
            raise ValueError("ExternalBroker: give either token or user/password, not both")
        files = {k: _check_file(k, v) for k, v in (
            ("creds_file", creds_file), ("nkey_seed_file", nkey_seed_file),
            ("tls_ca_file", tls_ca_file), ("tls_cert_file", tls_cert_file),
            ("tls_key_file", tls_key_file)) if v is not None}
        if ("tls_cert_file" in files) != ("tls_key_file" in files):
            raise BrokerStartError(
                "ExternalBroker: a client certificate needs its key: give both --nats-cert and "
                "--nats-key (QIKI_NATS_CERT and QIKI_NATS_KEY)"
            )
        # NatsSettings validates the URLs (masking userinfo in its errors) and holds the
        # secrets as SecretStr.
        self._settings = NatsSettings(
            servers=servers,
            token=token,
            user=user,
            password=password,
            connect_timeout_s=connect_timeout_s,
            # the operator's reply prefix (QIKI_NATS_INBOX_PREFIX), kept for every client
            inbox_prefix=inbox_prefix,
            **files,
        )
        try:
            self._settings.ssl_context()  # a CA or key that cannot be read: say so now
        except ValueError as exc:
            raise BrokerStartError(f"ExternalBroker: {exc}") from None
        self.verify = verify
        self._version: str | None = None

    def tried(self) -> str:
        """What this broker's clients present, for error messages: the auth mode, the user
        name and the file paths; never a token, password or key."""
        s = self._settings
        parts = [f"auth: {s.auth_kind}"]
        if s.user is not None:
            parts.append(f"user {s.user!r}")
        if s.auth_kind == "none":
            parts.append("no credentials given (QIKI_NATS_TOKEN, QIKI_NATS_USER/PASSWORD, "
                         "QIKI_NATS_CREDS or QIKI_NATS_NKEY_SEED_FILE)")
        for field, (_, flag, _what) in FILE_CREDENTIALS.items():
            value = getattr(s, field)
            if value is not None:
                parts.append(f"{flag.removeprefix('--')} {str(value)!r}")
        if not s.tls:
            parts.append("plain TCP (no CA: QIKI_NATS_CA / --nats-ca for TLS)")
        elif s.tls_cert_file is None:
            parts.append("no client certificate (--nats-cert/--nats-key: a server that "
                         "verifies clients drops the connection without one)")
        return ", ".join(parts)

    @property
    def nodes(self) -> list[NatsNode]:
        """Always empty: an external server cannot be killed or paused by the harness."""
        return []

    @property
    def client_urls(self) -> list[str]:
        """Server URLs as given (userinfo masked, so they are safe to log)."""
        return list(self._settings.describe()["servers"])

    @property
    def version(self) -> str:
        """Server version learned on connect (``"unknown"`` with ``verify=False``)."""
        return self._version or "unknown"

    def nats_settings(self, **overrides: Any) -> NatsSettings:
        """Settings carrying the servers and the credentials, with ``overrides`` applied."""
        return self._settings.with_overrides(**overrides) if overrides else self._settings

    def secret_values(self) -> tuple[str, ...]:
        """The secrets the external credentials carry (token, password, seeds), for the
        secret scan (issue 10)."""
        from harness.security.scan import settings_secrets

        return settings_secrets(self._settings)

    def describe(self) -> dict[str, Any]:
        """Journal-safe description: which kind of credentials, never their values."""
        info = self._settings.describe()
        return {
            "backend": self.backend,
            "version": self._version,
            "servers": info["servers"],
            "auth": info["auth"],
            "user": info["user"],
            "creds_file": info["creds_file"],
            "nkey_seed_file": info["nkey_seed_file"],
            "tls": info["tls"],
            "tls_ca_file": info["tls_ca_file"],
            "tls_cert_file": info["tls_cert_file"],
            "nodes": [],
        }

    def __repr__(self) -> str:
        return f"<ExternalBroker {','.join(self.client_urls)} auth={self._settings.auth_kind}>"

    async def check(self) -> str:
        """Connect once, return the server version; raise :class:`BrokerStartError` if not."""
        from services.common.settings import connect

        settings = self._settings.with_overrides(max_reconnect_attempts=0)
        try:
            nc = await connect(
                settings,
                first_connect_timeout_s=self._settings.connect_timeout_s + 1.0,
                allow_reconnect=False,
            )
        except ConnectionError as exc:
            # settings.connect's message masks the URLs; the raw client exception is not
            # chained (`from None`) so no traceback can carry what the client sent.
            raise BrokerStartError(
                f"external NATS does not answer: {exc} (tried {self.tried()}).\n"
                "Hint: check the URL, that the server runs and that the credentials are right "
                "(README, Security: external brokers)."
            ) from None
        try:
            v = nc.connected_server_version
            version = f"{v.major}.{v.minor}.{v.patch}"
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
        return version

    async def __aenter__(self) -> Self:
        if self.verify:
            self._version = await self.check()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
