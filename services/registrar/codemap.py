"""Event -> registrar code: a small rule engine fed by the spec's ``codes:`` section.

The rules live in the BotSpec (``codes.rules``; QIKI's in ``scenarios/specs/BotSpec.yaml``),
first match wins. A rule's conditions, all of which must hold when given:

* ``type``: fnmatch-style patterns on the CloudEvent type (``*``, ``?``), case-insensitive;
* ``subject``: NATS filters on the subject the event arrived on (``*``, ``>``);
* ``where``: top-level fields of the JSON data equal to a value (or to one of a list).

Its result is a fixed ``code``, or ``outcomes`` (outcome class -> code): the type's last token
is split into words and read right to left, each word checked against the classes
(``codes.outcome_words``) in the rule's order; when the type names no outcome, the data's
``codes.outcome_fields`` are read the same way; when neither does, the rule's ``fallback``
(default: its ``ok`` code) is stored with the reason "unclassified outcome". No rule matching:
``codes.default`` with the reason "unclassified event type".

The registrar's rejection codes (920-927) and its lifecycle codes are its own
(:class:`~services.common.codes.RegistrarCode`); the type it publishes a lifecycle event with is
the spec's exact-type rule for that code (:meth:`CodeMapper.lifecycle_type`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import translate
from typing import Any

from services.common.botspec import CodeRule, Codes
from services.common.codes import RegistrarCode

__all__ = ["LIFECYCLE_CODES", "Classification", "CodeMapper"]

#: The lifecycle events the registrar publishes about itself; their CloudEvent types come from
#: the spec's rules (:meth:`CodeMapper.lifecycle_types`).
LIFECYCLE_CODES: tuple[RegistrarCode, ...] = (
    RegistrarCode.BOOT_START,
    RegistrarCode.BOOT_OK,
    RegistrarCode.BOOT_FAILED,
    RegistrarCode.NATS_CONNECTED,
    RegistrarCode.NATS_DISCONNECTED,
    RegistrarCode.RECOVERY_START,
    RegistrarCode.RECOVERY_OK,
    RegistrarCode.STORAGE_FAILED,
    RegistrarCode.STORAGE_OK,
)

_WORD = re.compile(r"[a-z0-9]+")
_WILDCARDS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Classification:
    """The code for an event and, when the rule was a fallback, why."""

    code: int
    reason: str | None = None


#: ``classify(decoded=...)`` not given.
_NOT_DECODED: Any = object()


def _json_or_none(data: bytes, content_type: str | None) -> Any:
    if not data or (content_type is not None and "json" not in content_type.lower()):
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def _nats_filter_regex(subject: str) -> str:
    """A NATS filter as a regex: ``*`` one token, ``>`` (last) one or more tokens."""
    parts = [r"[^.]+" if t == "*" else r".+" if t == ">" else re.escape(t)
             for t in subject.split(".")]
    return r"\.".join(parts) + r"\Z"


def _any_of(regexes: list[str]) -> re.Pattern[str] | None:
    # One compiled alternation per rule: a new (type, subject) pair costs a regex match per
    # rule, not an fnmatch per pattern (a spec has tens of rules, QIKI's about 40).
    return re.compile("|".join(f"(?:{r})" for r in regexes)) if regexes else None


@dataclass(frozen=True)
class _Rule:
    """A spec rule, prepared for matching (patterns compiled, outcome words as sets)."""

    types: re.Pattern[str] | None
    subjects: re.Pattern[str] | None
    where: tuple[tuple[str, tuple[Any, ...]], ...]
    code: int | None
    outcomes: tuple[tuple[frozenset[str], int], ...]
    fallback: int | None

    @classmethod
    def of(cls, rule: CodeRule, words: Mapping[str, Sequence[str]]) -> _Rule:
        where = tuple(
            (k, tuple(v) if isinstance(v, list) else (v,)) for k, v in (rule.where or {}).items()
        )
        outcomes = tuple(
            (frozenset(w.lower() for w in words.get(cls_, ())), code)
            for cls_, code in (rule.outcomes or {}).items()
        )
        fallback = rule.fallback
        if fallback is None and rule.outcomes:
            fallback = rule.outcomes.get("ok", next(iter(rule.outcomes.values())))
        return cls(_any_of([translate(t.lower()) for t in rule.type]),
                   _any_of([_nats_filter_regex(f) for f in rule.subject]), where, rule.code,
                   outcomes, fallback)

    def matches_static(self, low_type: str, subject: str) -> bool:
        if self.types is not None and self.types.match(low_type) is None:
            return False
        return self.subjects is None or self.subjects.match(subject) is not None

    def matches_data(self, data: Any) -> bool:
        if not self.where:
            return True
        # dict first: decoded JSON objects are dicts, and the ABC check costs ~10x more
        if not (isinstance(data, dict) or isinstance(data, Mapping)):
            return False
        return all(k in data and data[k] in values for k, values in self.where)

    def outcome(self, words: Sequence[str]) -> int | None:
        for w in reversed(words):
            for vocabulary, code in self.outcomes:
                if w in vocabulary:
                    return code
        return None


class CodeMapper:
    """Assigns codes by the spec's rules; caches which rules can apply per (type, subject).

    Most events' code depends only on their type and subject: that decision is a dict lookup
    after the first event. Rules with ``where`` conditions, or outcome rules whose type names
    no outcome, look at the data.
    """

    _MAX_CACHE = 4096

    def __init__(self, codes: Codes | None = None) -> None:
        if codes is None:
            # The default spec's rules (tests and tools that do not name a spec).
            from services.common.botspec import load_runtime_config

            codes = load_runtime_config().codes
        self.codes = codes
        self._rules = [_Rule.of(r, codes.outcome_words) for r in codes.rules]
        self._fields = tuple(codes.outcome_fields)
        self._default = Classification(codes.default.code, None)
        # value: a final Classification, or the candidate rules (in order) that need the data
        self._cache: dict[tuple[str, str], Classification | list[_Rule | _Decided]] = {}
        # Memos of _classify_data (issue 13: the regexes and the Classification made per
        # event were a tenth of the registrar's ingest CPU): (rule index, type) -> the
        # outcome its last token names; (rule index, field value) -> the outcome that value
        # names; code -> its Classification. Bounded by clearing, like _cache.
        self._type_outcomes: dict[tuple[int, str], int | None] = {}
        self._value_outcomes: dict[tuple[int, str], int | None] = {}
        self._plain: dict[int, Classification] = {}
        self._rule_index = {id(rule): i for i, rule in enumerate(self._rules)}
        self._lifecycle: dict[int, str] = {}
        for r in codes.rules:
            if r.code is not None and len(r.type) >= 1 and not _WILDCARDS.search(r.type[0]):
                self._lifecycle.setdefault(r.code, r.type[0])

    def lifecycle_type(self, code: RegistrarCode) -> str:
        """The CloudEvent type the registrar publishes its lifecycle event ``code`` with.

        The spec's first rule giving that code for an exact type names it; a spec without one
        gets ``registrar.v1.<name>`` so the event is still stored under its code.
        """
        return self._lifecycle.get(int(code)) or f"registrar.v1.{code.name.lower()}"

    def lifecycle_types(self) -> dict[RegistrarCode, str]:
        """{code: CloudEvent type} of every lifecycle event the registrar publishes."""
        return {code: self.lifecycle_type(code) for code in LIFECYCLE_CODES}

    def classify(
        self,
        type_: str,
        nats_subject: str,
        data: bytes = b"",
        content_type: str | None = None,
        decoded: Any = _NOT_DECODED,
    ) -> Classification:
        """The code for an event of ``type_`` that arrived on ``nats_subject``.

        ``data`` (raw bytes) is decoded as JSON only when the code depends on it. A caller
        that has already decoded it (the registrar's contract check) passes the value as
        ``decoded`` so it is not parsed twice; it must be what ``json.loads(data)`` gives,
        and is only used when ``content_type`` lets the data be read as JSON.
        """
        key = (type_, nats_subject)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._classify_static(type_, nats_subject)
            if len(self._cache) >= self._MAX_CACHE:
                self._cache.clear()
            self._cache[key] = hit
        if isinstance(hit, Classification):
            return hit
        if decoded is _NOT_DECODED or not data or (
            content_type is not None and "json" not in content_type.lower()
        ):
            decoded = _json_or_none(data, content_type)
        return self._classify_data(hit, type_, decoded)

    def _plain_of(self, code: int) -> Classification:
        hit = self._plain.get(code)
        if hit is None:
            hit = self._plain[code] = Classification(code)
        return hit

    def _unclassified(self, type_: str) -> Classification:
        return Classification(self._default.code, f"unclassified event type {type_!r}")

    def _classify_static(
        self, type_: str, subject: str
    ) -> Classification | list[_Rule | _Decided]:
        low = type_.lower()
        tokens = low.split(".")
        words = _WORD.findall(tokens[-1]) if len(tokens) > 1 else []
        pending: list[_Rule | _Decided] = []
        for rule in self._rules:
            if not rule.matches_static(low, subject):
                continue
            if rule.where:
                pending.append(rule)  # decided per event by its data
                continue
            if rule.code is not None:
                decided = Classification(rule.code)
            else:
                code = rule.outcome(words)
                if code is None:
                    pending.append(rule)  # the data may name the outcome
                    # A rule without `where` always matches: later rules never apply.
                    return pending
                decided = Classification(code)
            return [*pending, _Decided(decided)] if pending else decided
        return pending if pending else self._unclassified(type_)

    def _classify_data(
        self, rules: list[_Rule | _Decided], type_: str, data: Any
    ) -> Classification:
        for rule in rules:
            if isinstance(rule, _Decided):
                return rule.result
            if not rule.matches_data(data):
                continue
            if rule.code is not None:
                return self._plain_of(rule.code)
            ri = self._rule_index[id(rule)]
            key = (ri, type_)
            types = self._type_outcomes
            if key in types:
                code = types[key]
            else:
                tokens = type_.lower().split(".")
                code = rule.outcome(_WORD.findall(tokens[-1]) if len(tokens) > 1 else [])
                if len(types) >= self._MAX_CACHE:
                    types.clear()
                types[key] = code
            if code is not None:
                return self._plain_of(code)
            if isinstance(data, dict) or isinstance(data, Mapping):
                values = self._value_outcomes
                for name in self._fields:
                    value = data.get(name)
                    if isinstance(value, str):
                        vkey = (ri, value)
                        if vkey in values:
                            code = values[vkey]
                        else:
                            code = rule.outcome(_WORD.findall(value.lower()))
                            if len(values) >= self._MAX_CACHE:
                                values.clear()
                            values[vkey] = code
                        if code is not None:
                            return self._plain_of(code)
            assert rule.fallback is not None
            cls_name = self.codes.classes.get(rule.fallback // 100)
            of_range = f"the {cls_name} range's" if cls_name else "the rule's"
            return Classification(
                rule.fallback,
                f"unclassified outcome of {type_!r}: stored as {of_range} OK code",
            )
        return self._unclassified(type_)


@dataclass(frozen=True)
class _Decided:
    """A decision reached without the data, after data-dependent candidates that did not match."""

    result: Classification
