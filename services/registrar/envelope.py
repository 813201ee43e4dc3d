"""A fused header + envelope parse for the registrar's hot path (issue 13).

The general path turns a delivered message's raw header block into a dict (nats-py's
semantics, :func:`.pull.parse_raw_headers`), then :func:`services.common.cloudevents.
from_message` walks that dict, validates every attribute and builds a :class:`CloudEvent`,
then the registrar reads six of its fields. Profiling the ingest put a fifth of the
registrar's CPU per event there. :class:`EnvelopeParser` goes from the raw header block
straight to the attributes the registrar stores, in one pass over the lines:

* most lines repeat from event to event (``ce-source``, ``ce-type``, ``ce-specversion``,
  the content type, a few subjects): a whole line is looked up in a bounded cache that holds
  its attribute slot and its *already validated* value, so a hit costs one dict lookup;
* lines whose values keep changing (``ce-id``, ``ce-time``) are parsed and checked each time,
  and headers the envelope ignores (``Nats-Msg-Id``, anything not ``ce-``) are skipped
  without decoding their values;
* anything unusual (a status line, a duplicate attribute, a legacy ``ce_`` or
  ``Content-Type`` header, a value that is not plain ASCII, a missing or invalid attribute)
  makes :meth:`EnvelopeParser.parse` return ``None`` and the caller takes the general path,
  which gives the exact rejection. So the fast path never decides a rejection and never
  accepts what the general path rejects (a unit test compares them on generated input).

The checks per attribute are those of ``cloudevents._fast_binary``: every value plain ASCII
(``_PLAIN_VALUE``), ``specversion`` 1.0, ``id``/``source``/``type`` present and non-empty,
``source`` a URI reference, ``time`` RFC 3339, ``subject``/``datacontenttype``/``dataschema``
non-empty when present, the content type a media type, the schema an absolute URI, extension
names lower-case alphanumerics of at most 20 characters.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

from services.common import cloudevents as _ce

__all__ = ["Envelope", "EnvelopeParser"]

_PREFIX: Final = b"NATS/1.0\r\n"
_CRLF: Final = b"\r\n"
_END: Final = b"\r\n\r\n"

# Attribute slots of a parsed line.
_ID, _SOURCE, _TYPE, _SPEC, _TIME, _SUBJECT, _CT, _SCHEMA = range(8)
_EXT: Final = 8  # an extension attribute (validated name; the value is not stored)
_SKIP: Final = 9  # not part of the envelope (Nats-Msg-Id, any non-ce- header) or no name
_BAIL: Final = 10  # the general path must decide (legacy/structured header, bad value)

_SLOT_OF: Final = {
    "id": _ID, "source": _SOURCE, "type": _TYPE, "specversion": _SPEC, "time": _TIME,
    "subject": _SUBJECT, "datacontenttype": _CT, "dataschema": _SCHEMA,
}
_UNSET: Any = object()
_fromisoformat: Final = datetime.fromisoformat
_plain: Final = _ce._PLAIN_VALUE.fullmatch
#: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in ASCII digits: a subset of what _time_iso's fast case
#: takes (its regex and _PLAIN_VALUE both accept every such string).
_usual_time: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"
).fullmatch


#: What :meth:`EnvelopeParser.parse` returns for a valid binary CloudEvent, the attributes
#: the registrar stores: (id, source, type, time as ``datetime.isoformat()`` of the parsed
#: value or None, subject or None, datacontenttype or None, whether the content type says
#: JSON (or is absent: JSON by default)). A plain tuple: one is made per event.
Envelope = tuple[str, str, str, "str | None", "str | None", "str | None", bool]


def _header_name(name: bytes) -> str | None:
    # nats-py's rules (see .pull.parse_header_lines): stripped ASCII, no whitespace inside.
    try:
        key = name.strip().decode("ascii")
    except UnicodeDecodeError:
        return None
    return None if any(c.isspace() for c in key) else key


def _name_slot(key: str | None) -> tuple[int, str]:
    """(slot, attribute name) of a header key, by ``cloudevents._header_kind``'s rules."""
    if key is None:
        return _SKIP, ""
    low = key.lower()
    if low.startswith("ce-"):
        attr = low[3:]
        if not attr:
            return _BAIL, ""
        return _SLOT_OF.get(attr, _EXT), attr
    if low.startswith("ce_") or low == "content-type":
        return _BAIL, ""
    return _SKIP, ""


def _time_iso(text: str) -> tuple[int, Any]:
    """(_TIME, ``parse_time(text).isoformat()``), or (_BAIL, None) when it does not parse.

    The usual producer form, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` with a non-zero fraction, is
    what ``isoformat()`` prints with ``+00:00`` for the ``Z``; once the RFC 3339 regex and
    ``fromisoformat`` (which checks the date is real) accept it, the string is rewritten
    instead of formatting a datetime (isoformat was half the cost of a time line).
    """
    if (
        len(text) == 27
        and text[26] == "Z"
        and text[10] == "T"
        and text[19] == "."
        and text[20:26] != "000000"
        and _ce._RFC3339.fullmatch(text)
    ):
        try:
            _fromisoformat(text)
        except ValueError:
            pass  # a leap second, or no such date: parse_time decides
        else:
            return _TIME, text[:26] + "+00:00"
    try:
        return _TIME, _ce.parse_time(text).isoformat()
    except ValueError:
        return _BAIL, None


def _checked(slot: int, attr: str, text: str) -> tuple[int, Any]:
    """(slot, value) of one attribute line after its own checks; (_BAIL, None) if any fails."""
    if not _ce._PLAIN_VALUE.fullmatch(text):
        return _BAIL, None
    if slot == _SPEC:
        return (slot, text) if text == _ce.SPECVERSION else (_BAIL, None)
    if slot == _EXT:  # any plain value; the name is what is checked
        if not _ce._EXT_NAME.fullmatch(attr) or attr in _ce._RESERVED:
            return _BAIL, None
        return slot, attr
    if not text:  # id, source, type, subject, content type and schema must not be empty
        return _BAIL, None
    if slot == _SOURCE:
        return (slot, text) if _ce._URI_REFERENCE.fullmatch(text) else (_BAIL, None)
    if slot == _TIME:
        return _time_iso(text)
    if slot == _CT:
        if not _ce._MEDIA_TYPE.fullmatch(text):
            return _BAIL, None
        return slot, (text, _ce._is_json_type(text))
    if slot == _SCHEMA:
        return (slot, text) if _ce._ABSOLUTE_URI.fullmatch(text) else (_BAIL, None)
    return slot, text


class EnvelopeParser:
    """Raw NATS header block -> :class:`Envelope` of a valid binary CloudEvent, or None.

    Bounded: at most ``max_lines`` cached lines and names (cleared when full); a header name
    whose lines have shown ``max_distinct`` different values is no longer cached line by
    line (ids, times). One instance per registrar (not thread-safe; the event loop owns it).
    """

    __slots__ = ("_distinct", "_lines", "_names", "max_distinct", "max_lines")

    def __init__(self, max_lines: int = 4096, max_distinct: int = 32) -> None:
        if max_lines < 1 or max_distinct < 0:
            raise ValueError(
                f"max_lines={max_lines}, max_distinct={max_distinct}: expected >= 1 and >= 0"
            )
        self.max_lines = max_lines
        self.max_distinct = max_distinct
        #: whole line -> (slot, validated value)
        self._lines: dict[bytes, tuple[int, Any]] = {}
        #: raw name -> (slot, attribute name)
        self._names: dict[bytes, tuple[int, str]] = {}
        #: raw name -> distinct lines cached so far
        self._distinct: dict[bytes, int] = {}

    def parse(self, raw: bytes | None) -> Envelope | None:
        """The envelope of the header block ``raw`` (``NATS/1.0\\r\\n...\\r\\n\\r\\n``), or
        None when the general path must decide (see the module docstring)."""
        if not raw or not raw.startswith(_PREFIX):
            return None
        lines = self._lines
        names = self._names
        distinct = self._distinct
        vals: list[Any] = [_UNSET] * 8
        exts: set[str] | None = None
        # The block ends with an empty line: no need to look at it.
        body = raw[10:-4] if raw.endswith(_END) else raw[10:]
        for line in body.split(_CRLF):
            hit = lines.get(line)
            if hit is None:
                if not line:
                    continue
                name, sep, value = line.partition(b":")
                if not sep:
                    continue  # nats-py skips a line without a colon
                ns = names.get(name)
                if ns is None:
                    ns = _name_slot(_header_name(name))
                    if len(names) >= self.max_lines:
                        names.clear()
                    names[name] = ns
                slot, attr = ns
                if slot == _SKIP:
                    continue
                if slot == _BAIL:
                    return None
                text = value.strip().decode("utf-8", "replace")
                if slot == _ID:
                    # Every event has its own id: its one check inlined (what _checked does).
                    if text and _plain(text):
                        if vals[_ID] is not _UNSET:
                            return None
                        vals[_ID] = text
                        continue
                    return None
                if slot == _TIME and _usual_time(text) and text[20:26] != "000000":
                    # Every event has its own time too. The producers' form (see _time_iso)
                    # in ASCII digits passes every check of _checked's path, which is three
                    # times slower (its RFC 3339 regex captures eleven groups); only the
                    # date's existence is left to check.
                    try:
                        _fromisoformat(text)
                    except ValueError:
                        return None  # no such date: the general path says so
                    if vals[_TIME] is not _UNSET:
                        return None
                    vals[_TIME] = text[:26] + "+00:00"
                    continue
                hit = _checked(slot, attr, text)
                if distinct.get(name, 0) < self.max_distinct:
                    self._remember(line, name, hit)
            slot, v = hit
            if slot < 8:
                if vals[slot] is not _UNSET:
                    return None  # the same attribute twice: the general path decides
                vals[slot] = v
            elif slot == _EXT:
                if exts is None:
                    exts = {v}
                elif v in exts:
                    return None
                else:
                    exts.add(v)
            elif slot == _BAIL:
                return None
        id_, source, type_, spec, time_iso, subject, ct, _schema = vals
        if id_ is _UNSET or source is _UNSET or type_ is _UNSET or spec is _UNSET:
            return None
        if ct is _UNSET:
            ct, is_json = None, True
        else:
            ct, is_json = ct
        return (
            id_,
            source,
            type_,
            None if time_iso is _UNSET else time_iso,
            None if subject is _UNSET else subject,
            ct,
            is_json,
        )

    def _remember(self, line: bytes, name: bytes, parsed: tuple[int, Any]) -> None:
        n = self._distinct.get(name, 0)
        if n >= self.max_distinct:
            return
        if len(self._lines) >= self.max_lines or len(self._distinct) >= self.max_lines:
            self._lines.clear()
            self._distinct.clear()
        self._distinct[name] = n + 1
        self._lines[line] = parsed
