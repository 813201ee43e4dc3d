"""Contract check over every tapped message: the CloudEvents envelope and the data.

Envelope: the CloudEvents NATS protocol binding
(:func:`services.common.cloudevents.inspect_message`). Data: the contract the spec declares for
the event's type (:class:`services.common.contracts.ContractRegistry`), compiled once per run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from harness.checks.observations import TappedMessage
from harness.checks.result import CheckResult
from services.common.cloudevents import inspect_message
from services.common.contracts import ContractRegistry

#: More than this many details only bloats the journal; the counts stay exact.
MAX_DETAILS = 50


def check_contract(
    messages: Iterable[TappedMessage],
    *,
    legacy_ok: bool = False,
    min_messages: int = 1,
    registry: ContractRegistry | None = None,
    require_declared: bool = False,
    coverage: bool = True,
    min_coverage: float = 0.0,
    name: str = "contract",
) -> CheckResult:
    """Every message must be a valid CloudEvent whose data keeps its type's contract.

    Each envelope violation names the subject, the rule and the offending value; each data
    violation names the subject, the type, the JSON pointer, the schema keyword and the value
    (truncated), e.g. ``qiki.radar.v1.frames: type qiki.radar.v1.Frame: data /frame_id:
    [minimum] -1 is less than the minimum of 0 (value -1)``. Underscore headers (``ce_id``, as
    the original QIKI platform sent) are violations unless ``legacy_ok``.

    ``registry`` holds the declared contracts (``None``: envelopes only); a type whose contract
    is an AsyncAPI message must also travel on one of its channels' addresses. With
    ``require_declared`` a type without a contract is a violation. ``coverage`` lists the
    declared types the run never saw (``observed.unseen``); ``min_coverage`` (0..1) fails the
    check when the seen share of declared types is lower. ``min_messages`` guards against a
    vacuous pass: a tap that saw nothing proves nothing.
    """
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be within 0..1, got {min_coverage!r}")
    declared = registry.declared if registry is not None else frozenset()
    seen = 0
    bad = 0
    data_checked = 0
    data_bad = 0
    by_rule: Counter[str] = Counter()
    by_keyword: Counter[str] = Counter()
    undeclared: Counter[str] = Counter()
    types_seen: set[str] = set()
    details: list[str] = []

    def note(text: str) -> None:
        if len(details) < MAX_DETAILS:
            details.append(text)

    for msg in messages:
        seen += 1
        ev, violations = inspect_message(msg.headers, msg.payload, legacy_ok=legacy_ok)
        broken = bool(violations)
        for v in violations:
            by_rule[v.rule] += 1
            note(f"{msg.subject}: rule {v.rule} attribute {v.attribute!r} "
                 f"value {v.value!r}: {v.message}")
        if ev is not None:
            types_seen.add(ev.type)
            if ev.type in declared:
                assert registry is not None
                data_checked += 1
                contract = registry.contract(ev.type)
                problems = contract.validate_json(ev.data)
                if not contract.carried_on(msg.subject):
                    by_keyword["address"] += 1
                    broken = True
                    note(f"{msg.subject}: type {ev.type}: published on a subject that is not "
                         f"the address of any channel carrying it "
                         f"({', '.join(contract.addresses)})")
                if problems:
                    data_bad += 1
                    broken = True
                    for p in problems:
                        by_keyword[p.keyword] += 1
                        note(f"{msg.subject}: type {ev.type}: data {p.pointer or '/'}: "
                             f"[{p.keyword}] {p.message} (value {p.value})")
            elif require_declared:
                undeclared[ev.type] += 1
                broken = True
                if undeclared[ev.type] == 1:
                    note(f"{msg.subject}: type {ev.type}: no contract declared for this type "
                         "(require_declared)")
        bad += broken

    unseen = sorted(declared - types_seen)
    covered = (len(declared) - len(unseen)) / len(declared) if declared else 1.0
    if seen < min_messages:
        details.insert(0, f"only {seen} message(s) tapped, expected at least {min_messages}")
    coverage_ok = covered >= min_coverage
    if not coverage_ok:
        details.insert(
            0,
            f"contract coverage {covered:.2f} below {min_coverage:.2f}: declared type(s) never "
            f"seen: {', '.join(unseen)}",
        )
    expected: dict[str, object] = {
        "violations": 0,
        "min_messages": min_messages,
        "legacy_ok": legacy_ok,
        "require_declared": require_declared,
        "min_coverage": min_coverage,
    }
    observed: dict[str, object] = {
        "messages": seen,
        "invalid": bad,
        "by_rule": dict(by_rule),
        "data_checked": data_checked,
        "data_invalid": data_bad,
        "by_keyword": dict(by_keyword),
        "declared": len(declared),
    }
    if undeclared:
        observed["undeclared"] = dict(undeclared)
    if coverage:
        observed["coverage"] = round(covered, 4)
        observed["unseen"] = unseen
    return CheckResult(
        name=name,
        kind="contract",
        passed=bad == 0 and seen >= min_messages and coverage_ok,
        expected=expected,
        observed=observed,
        details=details,
    )
