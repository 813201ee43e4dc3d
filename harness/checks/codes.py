"""Registrar-code checks: includes, excludes, counts and order over the audit records."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from harness.checks.observations import RegistrarRecord
from harness.checks.result import CheckResult


def _is_subsequence(wanted: Sequence[int], codes: Sequence[int]) -> bool:
    it = iter(codes)
    return all(any(c == w for c in it) for w in wanted)


def check_registrar_codes(
    records: Sequence[RegistrarRecord],
    *,
    includes: Sequence[int] = (),
    excludes: Sequence[int] = (),
    counts: Mapping[int, tuple[int | None, int | None]] | None = None,
    order: Sequence[int] = (),
    name: str = "registrar.codes",
) -> CheckResult:
    """Judge the codes the registrar stored.

    - ``includes``: each code occurs at least once.
    - ``excludes``: no such code occurs.
    - ``counts``: code -> (min, max), either bound may be None.
    - ``order``: these codes occur in this relative order (first occurrences; stored order).
    """
    ordered = sorted(records, key=lambda r: (r.stored_at, r.seq))
    codes = [r.code for r in ordered]
    seen: Counter[int] = Counter(codes)
    details: list[str] = []
    for code in includes:
        if seen[code] == 0:
            details.append(f"code {code} expected but never recorded")
    for code in excludes:
        if seen[code]:
            first = next(r for r in ordered if r.code == code)
            why = f" (reason: {first.reason})" if first.reason else ""
            details.append(
                f"code {code} excluded but recorded {seen[code]} time(s), first from "
                f"{first.source} id {first.event_id}{why}"
            )
    for code, (lo, hi) in (counts or {}).items():
        n = seen[code]
        if lo is not None and n < lo:
            details.append(f"code {code} recorded {n} time(s), expected at least {lo}")
        if hi is not None and n > hi:
            details.append(f"code {code} recorded {n} time(s), expected at most {hi}")
    if order:
        firsts = [c for i, c in enumerate(codes) if c in order and c not in codes[:i]]
        if not _is_subsequence(order, firsts):
            details.append(f"codes not in order {list(order)}: first occurrences {firsts}")
    return CheckResult(
        name=name,
        kind="registrar",
        passed=not details,
        expected={
            "includes": list(includes),
            "excludes": list(excludes),
            "counts": {str(k): list(v) for k, v in (counts or {}).items()},
            "order": list(order),
        },
        observed={"counts": {str(k): v for k, v in sorted(seen.items())}},
        details=details,
    )
