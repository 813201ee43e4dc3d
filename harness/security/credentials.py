"""Per-run credentials and TLS material, and the server config rendered from them (issue 10).

:meth:`RunCredentials.issue` mints, for one run, whatever the auth mode needs (a token, a
password or an NKey per identity, a system-account user) and, with TLS, a private CA with a
server and a client certificate. Everything lives in ``<run_dir>/secrets/``: the directory is
0700, every file 0600, so other users of the machine cannot read them; secrets never enter a
journal (:meth:`RunCredentials.describe` names files and users only).

Why these libraries: ``trustme`` issues a CA and leaf certificates in a few lines, with the
IP SAN ``127.0.0.1`` our clients (and the fault proxy in front of them) connect to and the
client-auth usage mTLS needs; ``nkeys`` is what nats-py signs the server's nonce with, and
its encoder mints the per-run seeds. ``cryptography`` comes with trustme; nothing here needs
it directly.

:func:`render_auth` turns a list of :class:`~harness.security.Identity` into nats-server
config text: an ``authorization`` block for ``token``/``user``/``nkey`` (every identity
unrestricted) or, for ``accounts``, an application account holding one user per identity
with its permissions plus a system account (server advisories).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from harness.broker._config import render_config
from harness.security.identities import ALLOW_ALL, Identity, Permissions

__all__ = [
    "APP_ACCOUNT",
    "AUTH_MODES",
    "SYSTEM_ACCOUNT",
    "SYSTEM_USER",
    "AuthMode",
    "Credential",
    "RunCredentials",
    "TlsMaterial",
    "check_private",
    "default_identities",
    "render_auth",
    "tls_config",
]

AuthMode = Literal["none", "token", "user", "nkey", "accounts"]
#: Every auth mode, in the order the docs list them.
AUTH_MODES: tuple[str, ...] = get_args(AuthMode)

#: The account the platform's identities live in under ``auth: accounts`` (JetStream enabled).
APP_ACCOUNT = "QIKI_APP"
#: The server's system account (advisories: auth failures, permission violations).
SYSTEM_ACCOUNT = "SYS"
#: The one user of the system account.
SYSTEM_USER = "qiki-sys"

_DIR_MODE = 0o700
_FILE_MODE = 0o600


def default_identities(services: Iterable[str]) -> list[Identity]:
    """One unrestricted identity per service, plus ``harness`` and ``load``."""
    names = ["harness", "load", *services]
    return [Identity(n) for n in dict.fromkeys(names)]


@dataclass(frozen=True)
class Credential:
    """How one identity proves who it is (the secret parts are never in ``repr``)."""

    identity: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    nkey_public: str | None = None
    nkey_seed_file: Path | None = None

    def settings_fields(self) -> dict[str, Any]:
        """:class:`~services.common.settings.NatsSettings` fields for this identity."""
        out: dict[str, Any] = {}
        if self.token is not None:
            out["token"] = self.token
        if self.user is not None:
            out["user"] = self.user
        if self.password is not None:
            out["password"] = self.password
        if self.nkey_seed_file is not None:
            out["nkey_seed_file"] = self.nkey_seed_file
        return out

    def secret_values(self) -> list[str]:
        """The secret strings this credential holds (for the secret scan)."""
        out = [v for v in (self.token, self.password) if v]
        if self.nkey_seed_file is not None and self.nkey_seed_file.is_file():
            out.append(self.nkey_seed_file.read_text(encoding="utf-8").strip())
        return out


@dataclass(frozen=True)
class TlsMaterial:
    """PEM files of a run's private CA, the server's and the clients' certificate."""

    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    client_cert_file: Path
    client_key_file: Path
    #: the server asks every client (and route) for a certificate signed by the CA (mTLS)
    verify_client: bool = False

    def client_fields(self) -> dict[str, Any]:
        """NatsSettings TLS fields: the CA always, the client certificate under mTLS."""
        out: dict[str, Any] = {"tls_ca_file": self.ca_file}
        if self.verify_client:
            out.update(tls_cert_file=self.client_cert_file, tls_key_file=self.client_key_file)
        return out

    def at(self, root: Path) -> TlsMaterial:
        """The same material seen under another directory (a container's mount point)."""
        return TlsMaterial(
            ca_file=root / self.ca_file.name,
            server_cert_file=root / self.server_cert_file.name,
            server_key_file=root / self.server_key_file.name,
            client_cert_file=root / self.client_cert_file.name,
            client_key_file=root / self.client_key_file.name,
            verify_client=self.verify_client,
        )


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(_DIR_MODE)
    return path


def _write_private(path: Path, data: str | bytes) -> Path:
    """Create ``path`` with 0600 from the first byte (never world-readable, even briefly)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    path.chmod(_FILE_MODE)  # O_CREAT's mode is masked by umask; an existing file kept its own
    return path


def _new_nkey(dir_: Path, identity: str) -> tuple[str, Path]:
    import nkeys

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode("ascii")
    path = _write_private(dir_ / f"{identity}.nk", seed + b"\n")
    return public, path


@dataclass
class RunCredentials:
    """Everything a run's broker and clients need to authenticate (and speak TLS).

    Build it with :meth:`issue`. :meth:`client_fields` gives a client's settings fields;
    :meth:`auth_config` and :meth:`tls_config` the nats-server config; :meth:`secret_values`
    every secret (the secret scan looks for them in what the run wrote).
    """

    mode: AuthMode
    secrets_dir: Path
    identities: tuple[Identity, ...]
    credentials: dict[str, Credential]
    system: Credential | None = None
    tls: TlsMaterial | None = None

    @classmethod
    def issue(
        cls,
        secrets_dir: Path,
        mode: AuthMode,
        identities: Sequence[Identity],
        *,
        tls: bool = False,
        verify_client: bool = False,
        hostnames: Sequence[str] = (),
    ) -> RunCredentials:
        """Mint credentials for ``identities`` under ``mode`` into ``secrets_dir`` (0700).

        ``tls``: also a CA, a server certificate for ``127.0.0.1``, ``localhost`` and
        ``hostnames`` (container aliases), and a client certificate; ``verify_client``: mTLS.
        """
        if mode not in AUTH_MODES:
            raise ValueError(f"auth mode {mode!r} unknown; expected one of {list(AUTH_MODES)}")
        if verify_client and not tls:
            raise ValueError("verify_client (mTLS) needs tls enabled")
        names = [i.name for i in identities]
        if len(set(names)) != len(names):
            raise ValueError(f"identity names must be unique, got {names}")
        if mode != "none" and "harness" not in names:
            raise ValueError("the identities must include 'harness' (the harness's own client)")
        dir_ = _private_dir(secrets_dir)
        creds: dict[str, Credential] = {}
        system: Credential | None = None
        if mode == "token":
            token = secrets.token_urlsafe(24)
            _write_private(dir_ / "token", token + "\n")
            creds = {n: Credential(n, token=token) for n in names}
        elif mode in ("user", "accounts"):
            creds = {n: Credential(n, user=n, password=secrets.token_urlsafe(18)) for n in names}
            if mode == "accounts":
                system = Credential("$system", user=SYSTEM_USER,
                                    password=secrets.token_urlsafe(18))
            rows = {c.user: c.password for c in creds.values()}
            if system is not None:
                rows[system.user] = system.password
            _write_private(dir_ / "passwords.json", json.dumps(rows, indent=2) + "\n")
        elif mode == "nkey":
            for n in names:
                public, path = _new_nkey(dir_, n)
                creds[n] = Credential(n, nkey_public=public, nkey_seed_file=path)
        else:
            creds = {n: Credential(n) for n in names}
        material = _issue_tls(dir_, hostnames, verify_client) if tls else None
        return cls(mode=mode, secrets_dir=dir_, identities=tuple(identities), credentials=creds,
                   system=system, tls=material)

    # ------------------------------------------------------------------ clients

    def for_identity(self, name: str) -> Credential:
        """The credential of identity ``name`` (KeyError naming the known ones)."""
        try:
            return self.credentials[name]
        except KeyError:
            raise KeyError(
                f"no credentials for identity {name!r}; issued for {sorted(self.credentials)}"
            ) from None

    def client_fields(self, name: str = "harness") -> dict[str, Any]:
        """NatsSettings fields (credentials and TLS files) for identity ``name``."""
        fields = self.for_identity(name).settings_fields() if self.mode != "none" else {}
        if self.tls is not None:
            fields.update(self.tls.client_fields())
        return fields

    def system_fields(self) -> dict[str, Any]:
        """NatsSettings fields of the system account's user (``auth: accounts`` only)."""
        if self.system is None:
            raise KeyError(f"auth mode {self.mode!r} has no system account (only 'accounts')")
        fields = self.system.settings_fields()
        if self.tls is not None:
            fields.update(self.tls.client_fields())
        return fields

    @property
    def account(self) -> str:
        """The account the platform's streams live in (``$G`` unless ``auth: accounts``)."""
        return APP_ACCOUNT if self.mode == "accounts" else "$G"

    def secret_values(self) -> list[str]:
        """Every secret string of the run, deduplicated (never logged: for the secret scan)."""
        out: list[str] = []
        for c in [*self.credentials.values(), *([self.system] if self.system else [])]:
            out.extend(c.secret_values())
        if self.tls is not None:
            # Private keys: the first base64 line of each is distinctive enough to find a
            # copied key (a PEM is never written on one line).
            for key in (self.tls.server_key_file, self.tls.client_key_file):
                lines = [ln for ln in key.read_text(encoding="ascii").splitlines()
                         if ln and not ln.startswith("-----")]
                if lines:
                    out.append(lines[0])
        return list(dict.fromkeys(out))

    # ------------------------------------------------------------------ server

    def auth_config(self) -> str:
        """nats-server config text for the auth mode (appended to a node's config)."""
        return render_auth(self.identities, self.mode, self)

    def tls_config(self, *, cluster: bool = False) -> dict[str, Any]:
        """TLS config mapping (merged into a node's config); empty without TLS."""
        return tls_config(self.tls, cluster=cluster) if self.tls is not None else {}

    def describe(self) -> dict[str, Any]:
        """Journal-safe summary: mode, identities, files; never a secret."""
        return {
            "auth": self.mode,
            "identities": [i.name for i in self.identities],
            "account": self.account,
            "system_account": SYSTEM_ACCOUNT if self.system is not None else None,
            "tls": self.tls is not None,
            "verify_client": bool(self.tls and self.tls.verify_client),
            "secrets_dir": str(self.secrets_dir),
        }


def _issue_tls(dir_: Path, hostnames: Sequence[str], verify_client: bool) -> TlsMaterial:
    import trustme

    ca = trustme.CA(organization_name="qiki-harness run CA")
    # IP SAN 127.0.0.1: clients (and fault proxies in front of them) dial the loopback
    # address, and hostname checking compares it against the certificate. The same leaf
    # serves routes, which present it as a client too (trustme sets both usages).
    server = ca.issue_cert("127.0.0.1", "localhost", *dict.fromkeys(hostnames),
                           common_name="qiki-nats")
    client = ca.issue_cert("qiki-client", common_name="qiki-client")
    files = TlsMaterial(
        ca_file=_write_private(dir_ / "ca.pem", ca.cert_pem.bytes()),
        server_cert_file=_write_private(dir_ / "server-cert.pem",
                                        b"".join(b.bytes() for b in server.cert_chain_pems)),
        server_key_file=_write_private(dir_ / "server-key.pem", server.private_key_pem.bytes()),
        client_cert_file=_write_private(dir_ / "client-cert.pem",
                                        b"".join(b.bytes() for b in client.cert_chain_pems)),
        client_key_file=_write_private(dir_ / "client-key.pem", client.private_key_pem.bytes()),
        verify_client=verify_client,
    )
    return files


# ---------------------------------------------------------------------- rendering


def _permissions(p: Permissions) -> dict[str, Any] | None:
    if p.unrestricted:
        return None
    out: dict[str, Any] = {}
    for side, subjects in (("publish", p.publish), ("subscribe", p.subscribe)):
        if subjects is None:
            continue
        # An empty allow list would read as "no restriction": deny everything instead.
        out[side] = {"allow": list(subjects)} if subjects else {"deny": [">"]}
    return out


def _user_entry(cred: Credential, perms: Permissions) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if cred.nkey_public is not None:
        entry["nkey"] = cred.nkey_public
    else:
        entry["user"] = cred.user
        entry["password"] = cred.password
    entry["permissions"] = _permissions(perms)
    return entry


def render_auth(identities: Sequence[Identity], mode: AuthMode,
                credentials: RunCredentials | Mapping[str, Credential]) -> str:
    """nats-server config text authenticating ``identities`` under ``mode``.

    ``none``: nothing. ``token``: one token for every client. ``user`` / ``nkey``: one user
    per identity, unrestricted. ``accounts``: an application account (JetStream enabled)
    holding one user per identity with the identity's permissions, and a system account
    with its own user (``credentials`` must then be a :class:`RunCredentials` with
    ``system``). ``credentials``: the run's, or a mapping identity name -> credential.
    """
    by_name = credentials.credentials if isinstance(credentials, RunCredentials) \
        else dict(credentials)
    missing = [i.name for i in identities if i.name not in by_name]
    if mode != "none" and missing:
        raise ValueError(f"render_auth: no credentials for identities {missing}")
    if mode == "none":
        return ""
    if mode == "token":
        tokens = {by_name[i.name].token for i in identities}
        if len(tokens) != 1 or None in tokens:
            raise ValueError("render_auth: auth 'token' needs one shared token for every identity")
        return render_config({"authorization": {"token": tokens.pop()}})
    if mode in ("user", "nkey"):
        # Outside `accounts` every identity is unrestricted (FORMATS.md, Round 3).
        users = [_user_entry(by_name[i.name], ALLOW_ALL) for i in identities]
        return render_config({"authorization": {"users": users}})
    if mode == "accounts":
        system = credentials.system if isinstance(credentials, RunCredentials) else None
        if system is None:
            raise ValueError("render_auth: auth 'accounts' needs the run's system credential")
        users = [_user_entry(by_name[i.name], i.permissions) for i in identities]
        return render_config({
            "accounts": {
                APP_ACCOUNT: {"jetstream": "enabled", "users": users},
                SYSTEM_ACCOUNT: {"users": [_user_entry(system, ALLOW_ALL)]},
            },
            "system_account": SYSTEM_ACCOUNT,
        })
    raise ValueError(f"render_auth: auth mode {mode!r} unknown; expected one of {list(AUTH_MODES)}")


def tls_config(material: TlsMaterial, *, cluster: bool = False) -> dict[str, Any]:
    """nats-server config (a mapping, merged into a node's) for TLS.

    ``tls``: clients must speak TLS; with ``verify_client`` they must also present a
    certificate the run's CA signed (mTLS). ``cluster.tls`` (``cluster=True``): routes speak
    TLS too and always verify each other (a route is mutual by nature: both ends present the
    server certificate, which carries the client-auth usage as well).
    """
    files = {
        "cert_file": str(material.server_cert_file),
        "key_file": str(material.server_key_file),
        "ca_file": str(material.ca_file),
    }
    config: dict[str, Any] = {"tls": {**files, "verify": material.verify_client, "timeout": 5}}
    if cluster:
        config["cluster"] = {"tls": {**files, "verify": True, "timeout": 5}}
    return config


def check_private(path: Path) -> list[str]:
    """Problems with ``path``'s permissions (dir 0700, files 0600); empty when right."""
    problems: list[str] = []
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode != _DIR_MODE:
        problems.append(f"{path}: mode {mode:o}, expected 700")
    for f in sorted(path.iterdir()):
        fmode = stat.S_IMODE(f.stat().st_mode)
        if fmode != _FILE_MODE:
            problems.append(f"{f}: mode {fmode:o}, expected 600")
    return problems
