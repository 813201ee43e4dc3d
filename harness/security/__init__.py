"""Security of a run's broker: identities, credentials, TLS, probes and the secret scan (issue 10).

The one shared shape is :class:`Identity`: who connects (a service, the harness, the load) and
what it may publish and subscribe to. Broker back-ends render identities into server config;
the spec derives them (least privilege); the ``security`` check probes them.

The public pieces (the rest of the modules may change):

- identities and permissions: :class:`Identity`, :class:`Permissions`, :data:`ALLOW_ALL`;
  :func:`identities_for_run` (least privilege from the spec, ``auth: accounts``),
  :func:`service_permissions`, :func:`default_identities` (everyone unrestricted, the other
  modes), :exc:`UndeclaredServiceError`; each identity's own reply prefix
  :func:`inbox_prefix` / :func:`inbox_subjects` (``_INBOX.<identity>``);
- per-run credentials and certificates: :class:`RunCredentials` (``RunCredentials.issue``
  writes them to ``<run_dir>/secrets/``, 0600), :class:`Credential`, :class:`TlsMaterial`,
  :data:`AUTH_MODES`, :func:`render_auth` (the server's ``authorization``/``accounts`` block);
- probes: :class:`ProbeResult`, :data:`CONNECTION_PROBES`, :func:`applicable_probes`,
  :func:`probe_connection`, :func:`probe_permission`, :func:`violations_in_log`;
- the secret scan: :class:`SecretFinding`, :func:`scan_files`, :func:`scan_command_lines`,
  :func:`redact_text`;
- the server's auth-failure advisories as CloudEvents: :class:`AuthAdvisoryRelay`.

Importing this package loads nothing heavy: all but the identity types resolve on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from harness.security.identities import ALLOW_ALL, Identity, Permissions

if TYPE_CHECKING:
    from harness.security.credentials import (
        AUTH_MODES,
        Credential,
        RunCredentials,
        TlsMaterial,
        default_identities,
        render_auth,
    )
    from harness.security.permissions import (
        UndeclaredServiceError,
        identities_for_run,
        inbox_prefix,
        inbox_subjects,
        service_permissions,
    )
    from harness.security.probes import (
        CONNECTION_PROBES,
        ProbeResult,
        applicable_probes,
        probe_connection,
        probe_permission,
        violations_in_log,
    )
    from harness.security.relay import AuthAdvisoryRelay
    from harness.security.scan import SecretFinding, redact_text, scan_command_lines, scan_files

_LAZY = {
    "AUTH_MODES": "harness.security.credentials",
    "Credential": "harness.security.credentials",
    "RunCredentials": "harness.security.credentials",
    "TlsMaterial": "harness.security.credentials",
    "default_identities": "harness.security.credentials",
    "render_auth": "harness.security.credentials",
    "UndeclaredServiceError": "harness.security.permissions",
    "identities_for_run": "harness.security.permissions",
    "inbox_prefix": "harness.security.permissions",
    "inbox_subjects": "harness.security.permissions",
    "service_permissions": "harness.security.permissions",
    "CONNECTION_PROBES": "harness.security.probes",
    "ProbeResult": "harness.security.probes",
    "applicable_probes": "harness.security.probes",
    "probe_connection": "harness.security.probes",
    "probe_permission": "harness.security.probes",
    "violations_in_log": "harness.security.probes",
    "AuthAdvisoryRelay": "harness.security.relay",
    "SecretFinding": "harness.security.scan",
    "redact_text": "harness.security.scan",
    "scan_command_lines": "harness.security.scan",
    "scan_files": "harness.security.scan",
}

__all__ = [
    "ALLOW_ALL",
    "AUTH_MODES",
    "CONNECTION_PROBES",
    "AuthAdvisoryRelay",
    "Credential",
    "Identity",
    "Permissions",
    "ProbeResult",
    "RunCredentials",
    "SecretFinding",
    "TlsMaterial",
    "UndeclaredServiceError",
    "applicable_probes",
    "default_identities",
    "identities_for_run",
    "inbox_prefix",
    "inbox_subjects",
    "probe_connection",
    "probe_permission",
    "redact_text",
    "render_auth",
    "scan_command_lines",
    "scan_files",
    "service_permissions",
    "violations_in_log",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'harness.security' has no attribute {name!r}")
    return getattr(import_module(module), name)
