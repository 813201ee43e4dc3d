"""The ``security`` check: did every live probe see what it expected (issue 10)?

Pure: the probes ran against the broker (:mod:`harness.security.probes`, journalled as
``security.probe`` events); this judges their results.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.checks.result import CheckResult
from harness.security.probes import ProbeResult

__all__ = ["check_security"]


def check_security(results: Sequence[ProbeResult], *, mode: str = "") -> CheckResult:
    """Pass when at least one probe ran and every probe that ran saw what it expected.

    A ``skipped`` probe (nothing to probe in this mode, e.g. no credential kind to falsify)
    is listed but neither passes nor fails. ``mode``: the broker's auth/TLS mode, for the
    message when no probe applies.
    """
    ran = [r for r in results if r.observed != "skipped"]
    failed = [r for r in ran if not r.passed]
    details = [
        f"{r.label}: expected {r.expect}, observed {r.observed} ({r.reason})" for r in failed
    ]
    details += [f"{r.label}: skipped ({r.reason})" for r in results if r.observed == "skipped"]
    if not ran:
        details.insert(0, f"no probe applies to this broker{f' ({mode})' if mode else ''}: "
                          "give it auth and/or TLS (topology.broker.auth, .tls) or list "
                          "permissions probes")
    return CheckResult(
        name="security",
        kind="security",
        passed=bool(ran) and not failed,
        expected={r.label: r.expect for r in results},
        observed={r.label: r.observed for r in results},
        details=details,
    )
