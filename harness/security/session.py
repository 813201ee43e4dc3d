"""The security side of one run: the advisory relay and the probes of a ``security`` check.

The runner calls these; they read the platform (its broker's auth/TLS mode, the run's
credentials, the spec's security channel) and record what they did as platform events, which
the journal keeps. Kept out of the runner so the runner only sequences (issue 10).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from harness.security.probes import (
    ProbeResult,
    applicable_probes,
    probe_connection,
    run_permission_probes,
    violations_in_log,
)
from harness.security.relay import AuthAdvisoryRelay, publish_denials, security_subject

if TYPE_CHECKING:
    from harness.platform import Platform
    from harness.scenario.model import SecurityCheck
    from services.common.settings import NatsSettings

__all__ = ["probe_platform", "start_relay"]


def _mode(p: Platform) -> tuple[str, bool, bool]:
    """(auth, tls, verify_client) of the run's broker (an external one: from its settings)."""
    creds = p.credentials
    if creds is not None:
        tls = creds.tls is not None
        return creds.mode, tls, bool(tls and creds.tls and creds.tls.verify_client)
    settings = p.settings("harness")
    kind = settings.auth_kind
    return ("none" if kind == "none" else kind, settings.tls,
            settings.tls_cert_file is not None)


async def start_relay(p: Platform) -> AuthAdvisoryRelay | None:
    """Relay the server's auth-failure advisories while the run lasts (``auth: accounts``,
    where the run has a system account user); None, with a platform event saying why, else."""
    creds = p.credentials
    if creds is None or creds.system is None or p.broker is None or p.nc is None:
        return None
    subject = security_subject(p.config)
    if subject is None:
        p.event("security.relay", started=False,
                reason="the spec has no channel carrying qiki.security.v1.auth_failed")
        return None
    system = p.broker.nats_settings(**creds.system_fields())
    relay = AuthAdvisoryRelay(system, p.nc.jetstream(), subject)
    try:
        await relay.start()
    except Exception as exc:
        await relay.close()
        p.event("security.relay", started=False, reason=f"{type(exc).__name__}: {exc}")
        return None
    p.event("security.relay", started=True, subject=subject)
    return relay


def _identity_settings(p: Platform) -> Any:
    creds = p.credentials

    def settings_for(name: str) -> NatsSettings | None:
        if creds is None:
            # No per-run identities (auth none, or an external broker): everyone is the
            # harness's connection.
            return p.settings("harness", name=f"qiki-probe-{name}")
        if name not in creds.credentials:
            return None
        return p.settings(name, name=f"qiki-probe-{name}")

    return settings_for


async def probe_platform(p: Platform, check: SecurityCheck, *, timeout_s: float = 3.0,
                         seen_violations: Counter[str] | None = None) -> list[ProbeResult]:
    """Run ``check``'s probes against the platform's broker; each is recorded as a
    ``security.probe`` platform event, and each denial observed becomes a
    ``qiki.security.v1.permission_denied`` CloudEvent (the registrar's 830). Under
    ``auth: accounts`` every violation the server logged for a client that is not a probe
    (a service stepping outside its permissions) is a failed result too.

    ``seen_violations``: the run's count of logged violations already reported (by detail).
    The server's log keeps every line, so a later evaluation reads the earlier ones again:
    those are still failed results, but are neither journalled nor published again (one
    830 per logged violation in the whole run). The caller keeps it across evaluations."""
    auth, tls, verify_client = _mode(p)
    names = check.probes if check.probes is not None else applicable_probes(
        auth, tls=tls, verify_client=verify_client)
    base = p.settings("harness", name="qiki-probe")
    results: list[ProbeResult] = []
    for name in names:
        results.append(await probe_connection(name, base, timeout_s=timeout_s))
    results += await run_permission_probes(
        [{"as": x.as_, "publish": x.publish, "subscribe": x.subscribe, "expect": x.expect}
         for x in check.permissions],
        _identity_settings(p), timeout_s=timeout_s)
    # A service that stepped outside its permissions during the run: only the server's log
    # says so (no advisory exists for it).
    fresh = list(results)
    if auth == "accounts" and p.broker is not None:
        seen = seen_violations if seen_violations is not None else Counter()
        in_logs: Counter[str] = Counter()
        for node in p.broker.nodes:
            try:
                logged = violations_in_log(node.log_text())
            except Exception as exc:  # a node whose log cannot be read: say so, go on
                p.event("security.log_unreadable", node=node.name,
                        reason=f"{type(exc).__name__}: {exc}")
                continue
            for v in logged:
                results.append(v)
                key = f"{node.name}: {v.reason}"
                in_logs[key] += 1
                if in_logs[key] > seen[key]:  # a line not reported by an earlier evaluation
                    seen[key] += 1
                    fresh.append(v)
    for r in fresh:
        p.event("security.probe", **r.to_dict())
    subject = security_subject(p.config)
    if subject is not None and p.nc is not None:
        sent = await publish_denials(p.nc.jetstream(), subject, fresh, timeout_s=timeout_s)
        if sent:
            p.event("security.denials_published", count=sent, subject=subject)
    return results
