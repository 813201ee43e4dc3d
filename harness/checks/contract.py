"""CloudEvents contract over every tapped message."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from harness.checks.observations import TappedMessage
from harness.checks.result import CheckResult
from services.common.cloudevents import check_message

#: More than this many details only bloats the journal; the counts stay exact.
MAX_DETAILS = 50


def check_contract(
    messages: Iterable[TappedMessage],
    *,
    legacy_ok: bool = False,
    min_messages: int = 1,
    name: str = "contract",
) -> CheckResult:
    """Every message must be a valid CloudEvent under the NATS protocol binding.

    Each violation names the subject, the rule and the offending value. Underscore headers
    (``ce_id``, as the original QIKI platform sent) are violations unless ``legacy_ok``.
    ``min_messages`` guards against a vacuous pass: a tap that saw nothing proves nothing.
    """
    seen = 0
    bad = 0
    by_rule: Counter[str] = Counter()
    details: list[str] = []
    for msg in messages:
        seen += 1
        violations = check_message(msg.headers, msg.payload, legacy_ok=legacy_ok)
        if not violations:
            continue
        bad += 1
        for v in violations:
            by_rule[v.rule] += 1
            if len(details) < MAX_DETAILS:
                details.append(
                    f"{msg.subject}: rule {v.rule} attribute {v.attribute!r} "
                    f"value {v.value!r}: {v.message}"
                )
    if seen < min_messages:
        details.insert(0, f"only {seen} message(s) tapped, expected at least {min_messages}")
    passed = bad == 0 and seen >= min_messages
    return CheckResult(
        name=name,
        kind="contract",
        passed=passed,
        expected={"violations": 0, "min_messages": min_messages, "legacy_ok": legacy_ok},
        observed={"messages": seen, "invalid": bad, "by_rule": dict(by_rule)},
        details=details,
    )
