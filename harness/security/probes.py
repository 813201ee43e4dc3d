"""Live security probes against a broker: who is turned away, what is denied (issue 10).

Each probe returns a :class:`ProbeResult` (what was expected, what was observed and why), the
runner journals every one and :func:`harness.checks.security.check_security` judges them.
No probe ever puts a secret in its result: reasons are the server's words (``Authorization
Violation``, ``Permissions Violation for Publish to "x"``) or an exception's type and message
from a connection that carried no secret, or a wrong one the probe made up.

Connection probes (each needs a *control*: the same connection with the right settings must
be accepted, else the refusal proves nothing and the probe reports ``error``):

- ``anonymous``: no credentials at all (TLS material kept) must be refused by authorization;
- ``wrong_credentials``: the mode's kind of credential with a wrong value (the right user name
  with a wrong password, a wrong token, an unknown nkey) must be refused by authorization;
- ``plain_tcp``: a plaintext client on the TLS port must not get a ``PONG``: a raw socket
  reads the server's ``INFO`` (``tls_required``) and sends ``CONNECT``/``PING`` in clear,
  without any credential (a probe must not leak what it tests);
- ``no_client_cert``: under mTLS, the right credentials and CA but no client certificate must
  fail the TLS handshake.

Permission probes connect as a named identity and publish or subscribe once. The server
answers a violation asynchronously with ``-ERR 'Permissions Violation for ...'`` and keeps
the connection; nats-py awaits the error callback while parsing, before the ``PONG`` of the
flush that follows, so after ``flush()`` the answer is in. A publish the identity is allowed
to make carries ``Nats-Expected-Stream`` naming no stream, so JetStream stores nothing, and
the harness's injected-message header, so the contract check ignores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from services.common.settings import NatsSettings

__all__ = [
    "CONNECTION_PROBES",
    "PROBE_HEADER",
    "ConnectionProbe",
    "ProbeResult",
    "applicable_probes",
    "probe_connection",
    "probe_permission",
    "violations_in_log",
]

ConnectionProbe = Literal["anonymous", "wrong_credentials", "plain_tcp", "no_client_cert"]
CONNECTION_PROBES: tuple[ConnectionProbe, ...] = (
    "anonymous", "wrong_credentials", "plain_tcp", "no_client_cert")

#: Marks a probe's publish; the contract check skips messages with the harness's injected
#: header (kept in step with harness.platform.INJECTED_HEADER).
PROBE_HEADER = "Qiki-Harness-Injected"
#: No stream is called so: JetStream refuses to store the probe's allowed publish.
_NO_STREAM = "qiki-probe-never-stored"

Expect = Literal["refused", "accepted", "denied", "allowed"]
Observed = Literal["refused", "accepted", "denied", "allowed", "skipped", "error"]


@dataclass(frozen=True)
class ProbeResult:
    """One probe's outcome. ``passed`` when observed equals expected; ``skipped`` (the mode
    has nothing to probe there) neither passes nor fails a check."""

    probe: str
    expect: Expect
    observed: Observed
    reason: str
    identity: str | None = None
    action: Literal["publish", "subscribe"] | None = None
    subject: str | None = None
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        """True when the broker did what was expected."""
        return self.observed == self.expect

    @property
    def label(self) -> str:
        """``anonymous`` or ``radar_sim publish qiki.events.v1.x``."""
        if self.action is None:
            return self.probe
        label = f"{self.identity} {self.action} {self.subject}"
        return f"{label} (during the run)" if self.probe == "violation" else label

    def to_dict(self) -> dict[str, Any]:
        """Journal form (no secret is ever in a result)."""
        out = asdict(self)
        out["passed"] = self.passed
        return out


# --------------------------------------------------------------------------- helpers


def _fields(settings: NatsSettings) -> set[str]:
    return set(type(settings).model_fields)


def _without(settings: NatsSettings, *names: str) -> NatsSettings:
    """A copy with ``names`` cleared (only those the settings model has)."""
    have = _fields(settings)
    return settings.with_overrides(**{n: None for n in names if n in have})


_CREDENTIAL_FIELDS = ("token", "user", "password", "creds_file", "nkey_seed_file")
_CLIENT_CERT_FIELDS = ("tls_cert_file", "tls_key_file")


def _tls_required(settings: NatsSettings) -> bool:
    return any(urlsplit(s).scheme in ("tls", "wss") for s in settings.servers) or any(
        getattr(settings, f, None) for f in ("tls_ca_file", *_CLIENT_CERT_FIELDS))


def _classify(exc: BaseException | None, errors: list[BaseException]) -> tuple[str, str]:
    """(kind, text) of why a connection failed: authorization, tls, unreachable, other."""
    seen = [e for e in [exc, *errors] if e is not None]
    texts = [f"{type(e).__name__}: {e}".strip() for e in seen]
    joined = " | ".join(dict.fromkeys(t for t in texts if t))
    low = joined.lower()
    if "authorization" in low or "authentication" in low:
        return "authorization", joined
    if any(isinstance(e, ssl.SSLError) for e in seen) or "ssl" in low or "tls" in low \
            or "certificate" in low or "handshake" in low:
        return "tls", joined
    if any(isinstance(e, ConnectionRefusedError | TimeoutError | asyncio.TimeoutError)
           for e in seen) or "refused" in low or "timeout" in low or "no servers" in low:
        return "unreachable", joined
    return "other", joined


async def _try_connect(settings: NatsSettings, timeout_s: float,
                       on_error: Callable[[Exception], Awaitable[None]] | None = None,
                       ) -> tuple[Any | None, BaseException | None, list[BaseException]]:
    """(client or None, the exception, what the error callback saw); one attempt, no retry."""
    from nats.aio.client import Client

    errors: list[BaseException] = []

    async def _err(e: Exception) -> None:
        errors.append(e)
        if on_error is not None:
            await on_error(e)

    kwargs = settings.connect_kwargs()
    kwargs.update(allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=timeout_s,
                  error_cb=_err)
    nc = Client()
    try:
        await asyncio.wait_for(nc.connect(**kwargs), timeout_s + 1.0)
        await nc.flush(timeout=math.ceil(timeout_s))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        if isinstance(exc, asyncio.CancelledError):
            raise
        return None, exc, errors
    return nc, None, errors


async def _close(nc: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.close(), 2.0)


def _wrong_credentials(settings: NatsSettings) -> tuple[NatsSettings | None, str]:
    """Settings with the same kind of credential but a wrong value, and what was changed."""
    wrong = "qiki-probe-" + "x" * 24  # not a secret: a value no server is configured with
    kind = settings.auth_kind
    if kind == "token":
        return settings.with_overrides(token=wrong), "a wrong token"
    if kind == "user/password":
        return settings.with_overrides(password=wrong), \
            f"user {settings.user!r} with a wrong password"
    if getattr(settings, "nkey_seed_file", None):
        return None, "nkey: needs a made-up seed file (see the nkey probe)"
    if kind == "creds":
        return None, "creds (JWT) file: not probed"
    return None, "the connection settings carry no credentials"


def _made_up_nkey(dir_: Path) -> Path | None:
    """A fresh user nkey seed (0600) no server knows; None without the nkeys package."""
    try:
        import nkeys
    except ImportError:
        return None
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    path = dir_ / "made-up.nk"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(seed + b"\n")
    return path


# --------------------------------------------------------------------------- connection


def applicable_probes(auth: str, *, tls: bool, verify_client: bool) -> list[ConnectionProbe]:
    """The connection probes that mean something for a broker in this mode."""
    out: list[ConnectionProbe] = []
    if auth != "none":
        out += ["anonymous", "wrong_credentials"]
    if tls:
        out.append("plain_tcp")
    if verify_client:
        out.append("no_client_cert")
    return out


async def probe_connection(probe: ConnectionProbe, settings: NatsSettings, *,
                           timeout_s: float = 3.0,
                           wrong_seed_file: str | None = None) -> ProbeResult:
    """Run connection probe ``probe`` against the broker ``settings`` reaches.

    ``settings``: a connection that must be accepted (the control), with credentials and TLS
    files. ``wrong_seed_file``: an nkey seed the server does not know (nkey mode).
    """
    t0 = time.monotonic()

    def done(observed: Observed, reason: str, expect: Expect = "refused") -> ProbeResult:
        return ProbeResult(probe, expect, observed, reason,
                           duration_s=round(time.monotonic() - t0, 3))

    if probe == "plain_tcp":
        return done(*await _plain_tcp(settings, timeout_s))
    # The control: the right settings are accepted, so a refusal below has the probed cause.
    nc, exc, errs = await _try_connect(settings, timeout_s)
    if nc is None:
        return done("error", f"control connection with the run's settings failed: "
                             f"{_classify(exc, errs)[1]}")
    await _close(nc)
    if probe == "anonymous":
        # Without credentials in the run's settings this is the control again: an open
        # broker lets the anonymous client in, and the probe says so.
        attempt = _without(settings, *_CREDENTIAL_FIELDS)
        want = "authorization"
    elif probe == "wrong_credentials":
        if getattr(settings, "nkey_seed_file", None) and wrong_seed_file is None:
            with tempfile.TemporaryDirectory(prefix="qiki-probe-") as tmp:
                seed = _made_up_nkey(Path(tmp))
                if seed is None:
                    return done("skipped", "nkey: the nkeys package is not installed")
                return await probe_connection(probe, settings, timeout_s=timeout_s,
                                              wrong_seed_file=str(seed))
        made, what = _wrong_credentials(settings)
        if made is None and wrong_seed_file and "nkey_seed_file" in _fields(settings):
            made, what = settings.with_overrides(nkey_seed_file=wrong_seed_file), \
                "an nkey the server does not know"
        if made is None:
            return done("skipped", what)
        attempt = made
        want = "authorization"
    elif probe == "no_client_cert":
        if not getattr(settings, "tls_cert_file", None):
            return done("skipped", "the run's settings carry no client certificate (no mTLS)")
        attempt = _without(settings, *_CLIENT_CERT_FIELDS)
        want = "tls"
    else:
        raise ValueError(f"unknown connection probe {probe!r}; expected one of "
                         f"{', '.join(CONNECTION_PROBES)}")
    nc, exc, errs = await _try_connect(attempt, timeout_s)
    if nc is not None:
        await _close(nc)
        return done("accepted", "the server accepted the connection (PONG to PING)")
    kind, text = _classify(exc, errs)
    if kind == want or (want == "tls" and kind in ("other", "unreachable")
                        and "refused" not in text.lower()):
        # A missing client certificate under TLS 1.3 shows up after the handshake, as the
        # server closing the connection; the control above rules out an unreachable server.
        return done("refused", text)
    return done("error", f"refused for another reason than {want}: {text}")


async def _plain_tcp(settings: NatsSettings, timeout_s: float) -> tuple[Observed, str]:
    url = urlsplit(settings.servers[0])
    host, port = url.hostname or "127.0.0.1", url.port or 4222
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError) as exc:
        return "error", f"cannot reach {host}:{port}: {type(exc).__name__}: {exc}"
    try:
        info: dict[str, Any] | None = None
        with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError, ValueError):
            line = await asyncio.wait_for(reader.readline(), min(timeout_s, 1.5))
            if line.startswith(b"INFO "):
                info = json.loads(line[5:])
        # No credential in clear: the question is only whether the server talks plaintext.
        with contextlib.suppress(OSError):
            writer.write(b'CONNECT {"verbose":false,"pedantic":false,"lang":"qiki-probe"}'
                         b"\r\nPING\r\n")
            await writer.drain()
        answer = b""
        with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError):
            while b"PONG" not in answer and b"-ERR" not in answer:
                chunk = await asyncio.wait_for(reader.read(4096), timeout_s)
                if not chunk:
                    break
                answer += chunk
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    said = ("no INFO in plaintext (TLS first)" if info is None
            else f"INFO tls_required={bool(info.get('tls_required'))}")
    if b"PONG" in answer:
        return "accepted", f"{said}; a plaintext CONNECT/PING got PONG"
    if info is not None and not info.get("tls_required"):
        # It talks plaintext; only authorization (no credential sent) stopped the probe.
        return "accepted", f"{said}: the server speaks plaintext on this port"
    err = answer.decode("utf-8", "replace").strip().splitlines()
    return "refused", f"{said}; plaintext CONNECT answered by " + (
        err[0][:200] if err else "the server closing the connection")


# --------------------------------------------------------------------------- permissions


async def probe_permission(identity: str, settings: NatsSettings, *,
                           action: Literal["publish", "subscribe"], subject: str,
                           expect: Literal["denied", "allowed"],
                           timeout_s: float = 3.0) -> ProbeResult:
    """Connect as ``identity`` (its ``settings``) and ``action`` on ``subject`` once."""
    t0 = time.monotonic()
    violations: list[str] = []

    async def on_error(e: Exception) -> None:
        text = str(e)
        if "permissions violation" in text.lower():
            violations.append(text.removeprefix("nats: "))

    def done(observed: Observed, reason: str) -> ProbeResult:
        return ProbeResult("permission", expect, observed, reason, identity=identity,
                           action=action, subject=subject,
                           duration_s=round(time.monotonic() - t0, 3))

    nc, exc, errs = await _try_connect(settings, timeout_s, on_error)
    if nc is None:
        return done("error", f"cannot connect as {identity!r}: {_classify(exc, errs)[1]}")
    try:
        # nats-py lower-cases the server's text ("permissions violation for publish to ...")
        word = "publish to" if action == "publish" else "subscription to"
        if action == "publish":
            await nc.publish(subject, b"", headers={PROBE_HEADER: "security-probe",
                                                    "Nats-Expected-Stream": _NO_STREAM})
        else:
            sub = await nc.subscribe(subject)
        await nc.flush(timeout=math.ceil(timeout_s))
        # The -ERR is parsed (and its callback awaited) before the PONG; one more round trip
        # covers a server that answers the PING from another goroutine first.
        await nc.flush(timeout=math.ceil(timeout_s))
        if action == "subscribe":
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
    except Exception as exc:
        return done("error", f"{type(exc).__name__}: {exc}")
    finally:
        await _close(nc)
    quoted = json.dumps(subject).lower()
    mine = [v for v in violations if word in v.lower() and quoted in v.lower()]
    if mine:
        # The server's own words (nats-py hands them over lower-cased).
        said = "Publish to" if action == "publish" else "Subscription to"
        return done("denied", f"-ERR 'Permissions Violation for {said} {json.dumps(subject)}'")
    if violations:
        return done("error", f"violations, but not for this {action}: {violations[0]}")
    return done("allowed", f"no permissions violation after {action} and flush")


async def run_permission_probes(
    probes: list[Mapping[str, Any]], settings_for: Callable[[str], NatsSettings | None], *,
    timeout_s: float = 3.0,
) -> list[ProbeResult]:
    """Run ``{as, publish|subscribe, expect}`` probes; an unknown identity is an error result."""
    out = []
    for p in probes:
        name = str(p["as"])
        action: Literal["publish", "subscribe"] = "publish" if p.get("publish") else "subscribe"
        subject = str(p.get("publish") or p.get("subscribe"))
        expect = p["expect"]
        settings = settings_for(name)
        if settings is None:
            out.append(ProbeResult("permission", expect, "error",
                                   f"no credentials for identity {name!r} in this run",
                                   identity=name, action=action, subject=subject))
            continue
        out.append(await probe_permission(name, settings, action=action, subject=subject,
                                          expect=expect, timeout_s=timeout_s))
    return out


# nats-server's log line of a denied publish/subscribe (server/client.go pubPermissionViolation,
# subPermissionViolation, replySubjectViolation), e.g.
#   [ERR] 127.0.0.1:47018 - cid:32 - "v2.16.0:python3:qiki-registrar" - "QIKI_APP/user:registrar"
#   - Publish Violation - Subject "qiki.events.v1.x"
_VIOLATION = re.compile(
    r'\[ERR\].*? - cid:\d+(?: - "(?P<client>[^"]*)")?(?: - "(?:[^"/]*/)?user:(?P<user>[^"]*)")?'
    r' - (?P<kind>Publish|Subscription) Violation - (?P<what>Subject|Reply) "(?P<subject>[^"]*)"')


def violations_in_log(text: str, *, ignore_clients: str = "qiki-probe") -> list[ProbeResult]:
    """Every permission violation the server logged (``text``: its log), except those of
    clients whose name starts with ``ignore_clients`` (the probes' own, judged already).

    nats-server advises no permission violation on its system account; its log is where a
    *service* stepping outside its permissions shows (process and container backends)."""
    out: list[ProbeResult] = []
    for line in text.splitlines():
        m = _VIOLATION.search(line)
        if m is None:
            continue
        name = (m["client"] or "").split(":")[-1]
        if ignore_clients and name.startswith(ignore_clients):
            continue
        action: Literal["publish", "subscribe"] = (
            "publish" if m["kind"] == "Publish" else "subscribe")
        what = "with reply " if m["what"] == "Reply" else ""
        out.append(ProbeResult(
            "violation", "allowed", "denied",
            f"server log: {m['kind']} Violation - {what}{m['what']} {json.dumps(m['subject'])}"
            f" (client {name or 'unnamed'})",
            identity=m["user"] or name or None, action=action, subject=m["subject"]))
    return out
