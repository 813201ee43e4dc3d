"""The ``events`` check: an expectation on the tap (Specmatic-style), as a pure function.

"After the greenhouse is killed, an ``acme.climate.v1.Alarm`` with ``severity: high``
appears within 5 s": messages are selected by subject (NATS wildcards), CloudEvent type
(exact, or ``*`` wildcards as in the spec's code rules) and ``where`` conditions on the
event's data, inside a time window; their count must lie in ``[min, max]``.

``where`` maps a dotted path into ``data`` (``reading.temp_c``, ``items.0.id``) to either a
plain value (equality) or one operator mapping:

========== ============================================================
``eq``     equal (the same as a plain value; use it to compare with a mapping)
``ne``     not equal (a missing field counts as not equal)
``gt``     greater than (numbers or strings; a missing/incomparable value fails)
``ge``     greater than or equal
``lt``     less than
``le``     less than or equal
``in``     one of a list of values
``exists`` ``true``: the path is present; ``false``: it is absent
========== ============================================================

Several operators in one mapping must all hold (``{gt: 10, lt: 20}``). The tap records the
raw subject, headers, payload and arrival time; type and data are decoded here, only for
messages whose subject already matched, so the tap's hot path stays a plain append.
"""

from __future__ import annotations

import fnmatch
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.checks.observations import TappedMessage
from harness.checks.result import CheckResult
from services.common.cloudevents import header_value

#: The operators a ``where`` condition may use (see the module docstring).
WHERE_OPS = ("eq", "ne", "gt", "ge", "lt", "le", "in", "exists")
#: More matched messages than this are summarised, not listed.
MAX_LISTED = 10
_MISSING = object()


def validate_condition(path: str, cond: Any) -> None:
    """Raise ``ValueError`` naming the path and what is expected if ``cond`` is not a valid
    ``where`` condition (used by the scenario model, so a typo is caught before a run)."""
    if not path or any(part == "" for part in path.split(".")):
        raise ValueError(f"where: {path!r} is not a dotted path into data (e.g. reading.temp_c)")
    if not isinstance(cond, Mapping):
        return
    if not cond:
        raise ValueError(f"where.{path}: an empty operator mapping; expected one of "
                         f"{', '.join(WHERE_OPS)} (or a plain value for equality)")
    unknown = sorted(str(k) for k in cond if k not in WHERE_OPS)
    if unknown:
        raise ValueError(f"where.{path}: unknown operator(s) {', '.join(unknown)}; expected "
                         f"{', '.join(WHERE_OPS)} (to compare with a mapping use {{eq: ...}})")
    if "in" in cond and not isinstance(cond["in"], list):
        raise ValueError(f"where.{path}.in: expected a list of values, got {cond['in']!r}")
    if "exists" in cond and not isinstance(cond["exists"], bool):
        raise ValueError(f"where.{path}.exists: expected true or false, got {cond['exists']!r}")


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match: ``*`` is one token, a trailing ``>`` one or more tokens."""
    p = pattern.split(".")
    s = subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(s) == len(p)


def type_matches(pattern: str, ce_type: str | None) -> bool:
    """Exact type, or fnmatch-style ``*`` (as the spec's code rules write it)."""
    if ce_type is None:
        return False
    if "*" in pattern or "?" in pattern or "[" in pattern:
        return fnmatch.fnmatchcase(ce_type, pattern)
    return ce_type == pattern


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted path (list items by index), or a private MISSING marker."""
    cur = data
    for part in path.split("."):
        if isinstance(cur, Mapping):
            if part not in cur:
                return _MISSING
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit():
            idx = int(part)
            if not -len(cur) <= idx < len(cur):
                return _MISSING
            cur = cur[idx]
        else:
            return _MISSING
    return cur


def _compare(op: str, value: Any, expected: Any) -> bool:
    if op == "exists":
        return (value is not _MISSING) is bool(expected)
    if op == "ne":
        return value is _MISSING or value != expected
    if value is _MISSING:
        return False
    if op == "eq":
        return bool(value == expected)
    if op == "in":
        return value in expected
    try:
        if op == "gt":
            return bool(value > expected)
        if op == "ge":
            return bool(value >= expected)
        if op == "lt":
            return bool(value < expected)
        if op == "le":
            return bool(value <= expected)
    except TypeError:  # "abc" > 3: not a match, not a crash
        return False
    raise ValueError(f"unknown operator {op!r}")


def failed_condition(data: Any, where: Mapping[str, Any]) -> str | None:
    """``None`` when every condition holds, else a short text naming the first that failed
    and the value found (``severity eq 'high': got 'low'``)."""
    for path, cond in where.items():
        value = lookup(data, path)
        ops = cond.items() if isinstance(cond, Mapping) else [("eq", cond)]
        for op, expected in ops:
            if not _compare(op, value, expected):
                got = "missing" if value is _MISSING else _short(value)
                return f"{path} {op} {_short(expected)}: got {got}"
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """What the check needs of one tapped message: type and data (``None`` when absent)."""

    ce_type: str | None
    data: Any
    #: why ``data`` could not be read as JSON (``None`` when it could, or there is none)
    data_error: str | None = None


def decode_event(msg: TappedMessage) -> DecodedEvent:
    """Type and data of a tapped message, binary mode (``ce-type`` header) or structured
    (``application/cloudevents+json``). Lenient on purpose: judging the envelope is the
    contract check's job; here an undecodable message simply has no type or no data."""
    ce_type = header_value(msg.headers, "ce-type")
    if ce_type is None:
        ctype = header_value(msg.headers, "content-type") or ""
        if ctype.startswith("application/cloudevents+json"):
            try:
                doc = json.loads(msg.payload)
            except ValueError as exc:
                return DecodedEvent(None, None, f"structured event not JSON: {exc}")
            if isinstance(doc, dict):
                t = doc.get("type")
                return DecodedEvent(t if isinstance(t, str) else None, doc.get("data"))
        return DecodedEvent(None, None)
    if not msg.payload:
        return DecodedEvent(ce_type, None)
    try:
        return DecodedEvent(ce_type, json.loads(msg.payload))
    except ValueError as exc:
        return DecodedEvent(ce_type, None, f"data not JSON: {exc}")


def check_events(
    messages: Iterable[TappedMessage],
    *,
    subject: str = ">",
    type: str | None = None,
    where: Mapping[str, Any] | None = None,
    min: int = 1,
    max: int | None = None,
    window_start_s: float | None = None,
    window_end_s: float | None = None,
    anchor: str = "",
    name: str = "events",
) -> CheckResult:
    """Count tapped messages matching subject, type and ``where`` inside
    ``[window_start_s, window_end_s]`` (seconds on the run's clock, either end open when
    ``None``); pass when the count lies in ``[min, max]``.

    ``anchor`` says in words where the window comes from (``after step 'kill-gh' (t=2.01s)
    within 5s``), for the result. ``observed`` gives the count, first and last arrival, and
    how many messages came close (subject and type right but a condition failed, or outside
    the window), so a failure says what was seen instead.
    """
    conds = dict(where or {})
    matched: list[tuple[float, TappedMessage]] = []
    near_subject_type = 0
    early = late = 0
    why_not: Counter[str] = Counter()
    # Subjects and types repeat: each distinct one is matched once.
    subject_hit: dict[str, bool] = {}
    type_hit: dict[str | None, bool] = {}
    for msg in messages:
        hit = subject_hit.get(msg.subject)
        if hit is None:
            hit = subject_hit[msg.subject] = subject_matches(subject, msg.subject)
        if not hit:
            continue
        if type is not None:
            ce_type = header_value(msg.headers, "ce-type")
            if ce_type is None:  # structured mode (rare): the type is in the payload
                ce_type = decode_event(msg).ce_type
            ok = type_hit.get(ce_type)
            if ok is None:
                ok = type_hit[ce_type] = type_matches(type, ce_type)
            if not ok:
                continue
        near_subject_type += 1
        if conds:
            # data is decoded only now, for messages whose subject and type matched
            decoded = decode_event(msg)
            if decoded.data_error is not None:
                why_not[decoded.data_error[:80]] += 1
                continue
            failed = failed_condition(decoded.data, conds)
            if failed is not None:
                why_not[failed] += 1
                continue
        t = msg.received_at
        if window_start_s is not None and t < window_start_s:
            early += 1
            continue
        if window_end_s is not None and t > window_end_s:
            late += 1
            continue
        matched.append((t, msg))
    n = len(matched)
    passed = n >= min and (max is None or n <= max)
    expected: dict[str, Any] = {"subject": subject, "min": min}
    if type is not None:
        expected["type"] = type
    if conds:
        expected["where"] = conds
    if max is not None:
        expected["max"] = max
    if window_start_s is not None or window_end_s is not None:
        expected["window_s"] = [
            None if window_start_s is None else round(window_start_s, 3),
            None if window_end_s is None else round(window_end_s, 3),
        ]
    if anchor:
        expected["when"] = anchor
    observed: dict[str, Any] = {
        "matched": n,
        "first_s": round(matched[0][0], 3) if matched else None,
        "last_s": round(matched[-1][0], 3) if matched else None,
        "subject_and_type_matched": near_subject_type,
        "where_failed": sum(why_not.values()),
        "before_window": early,
        "after_window": late,
    }
    what = f"{type or 'any type'} on {subject}"
    details: list[str] = []
    if n < min:
        details.append(f"{n} {what} matched{_window_text(window_start_s, window_end_s, anchor)},"
                       f" expected at least {min}")
    if max is not None and n > max:
        details.append(f"{n} {what} matched{_window_text(window_start_s, window_end_s, anchor)},"
                       f" expected at most {max}")
    for reason, count in why_not.most_common(5):
        details.append(f"{count} {what} failed where: {reason}")
    if early:
        details.append(f"{early} matching message(s) arrived before the window "
                       f"(t<{window_start_s:.3f}s)")
    if late:
        details.append(f"{late} matching message(s) arrived after the window "
                       f"(t>{window_end_s:.3f}s)")
    for t, m in matched[:MAX_LISTED]:
        details.append(f"matched t={t:.3f}s {m.subject} data={_short(decode_event(m).data, 120)}")
    if n > MAX_LISTED:
        details.append(f"... and {n - MAX_LISTED} more matched")
    return CheckResult(name=name, kind="events", passed=passed, expected=expected,
                       observed=observed, details=details)


def _window_text(start: float | None, end: float | None, anchor: str) -> str:
    if anchor:
        return f" {anchor}"
    if start is None and end is None:
        return " over the run"
    lo = "start" if start is None else f"{start:.3f}s"
    hi = "end" if end is None else f"{end:.3f}s"
    return f" between t={lo} and t={hi}"
