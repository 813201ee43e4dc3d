"""CloudEvents 1.0 over NATS: the binding every reference service and the harness use.

Implements the NATS protocol binding of the CloudEvents spec (main branch, "1.0.3-wip"):

* **binary mode**: every attribute, extensions included, is a ``ce-<name>`` NATS header
  (``datacontenttype`` too: ``ce-datacontenttype``, section 3.1.3.1) and the data is the payload.
  Header values are percent-encoded (3.1.3.2): space, ``"``, ``%`` and everything outside
  printable US-ASCII, as UTF-8 bytes with upper-case hex. Decoding first unescapes a
  double-quoted value (RFC 7230 3.2.6), then percent-decodes once, accepting lower-case hex and
  rejecting bad escapes and invalid UTF-8 (e.g. the overlong ``%C0%A0``).
* **structured mode**: ``Content-Type: application/cloudevents+json`` and the JSON event format
  (``data`` or ``data_base64``) as the payload.
* **mode detection** (section 3): a ``Content-Type`` starting with ``application/cloudevents``
  (case-insensitive) is structured, otherwise binary; :func:`detect_mode` further tells apart
  messages carrying no CloudEvents headers at all and the legacy underscore headers.
* **JetStream dedup**: every encoding sets ``Nats-Msg-Id`` to the event id.

The original QIKI platform wrote underscore headers (``ce_id``, ``ce_specversion``); the
decoder recognises them so they are reported as a contract violation
(``legacy-underscore-headers``), or decoded when ``legacy_ok=True``.

Decoding is on the registrar's hot path (~25k events/s on one core): it uses precompiled regexes,
fast paths for plain ASCII header values and no pydantic.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote, unquote_to_bytes

if TYPE_CHECKING:
    from nats.js.api import PubAck
    from nats.js.client import JetStreamContext

__all__ = [
    "CE_HEADER_PREFIX",
    "LEGACY_HEADER_PREFIX",
    "NATS_MSG_ID",
    "SPECVERSION",
    "STRUCTURED_CONTENT_TYPE",
    "CloudEvent",
    "CloudEventError",
    "ContractViolation",
    "Mode",
    "Rule",
    "check_message",
    "decode_header_value",
    "detect_mode",
    "encode_header_value",
    "format_time",
    "from_message",
    "header_value",
    "inspect_message",
    "new_event",
    "parse_time",
    "publish_event",
    "to_binary",
    "to_message",
    "to_structured",
]

SPECVERSION: Final = "1.0"
CE_HEADER_PREFIX: Final = "ce-"
LEGACY_HEADER_PREFIX: Final = "ce_"
NATS_MSG_ID: Final = "Nats-Msg-Id"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"

Mode = Literal["binary", "structured", "legacy", "none"]

_REQUIRED: Final = ("id", "source", "specversion", "type")
_OPTIONAL: Final = ("time", "subject", "datacontenttype", "dataschema")
_CORE: Final = frozenset(_REQUIRED + _OPTIONAL)
# Names an extension can never take: they are members of the JSON event format.
_RESERVED: Final = frozenset({"data", "data_base64"})
_MAX_VALUE_IN_REPORT: Final = 200


class Rule(StrEnum):
    """Stable ids of the contract rules a message can break (used by checks and the registrar)."""

    NOT_CLOUDEVENT = "not-cloudevent"
    MISSING_ATTRIBUTE = "missing-attribute"
    SPECVERSION = "specversion"
    HEADER_ENCODING = "header-encoding"
    LEGACY_HEADERS = "legacy-underscore-headers"
    BAD_DATA = "bad-data"
    OVERSIZED = "oversized"
    EMPTY_ATTRIBUTE = "empty-attribute"
    INVALID_STRING = "invalid-string"
    INVALID_TIME = "invalid-time"
    INVALID_URI = "invalid-uri"
    INVALID_MEDIA_TYPE = "invalid-media-type"
    EXTENSION_NAME = "extension-name"
    ATTRIBUTE_TYPE = "attribute-type"
    DUPLICATE_ATTRIBUTE = "duplicate-attribute"
    NATS_MSG_ID = "nats-msg-id"


_LEGACY_EXPLANATION: Final = (
    "the original QIKI platform wrote underscore headers (ce_id, ce_specversion, ...); the "
    "CloudEvents NATS protocol binding requires each attribute as a header with the 'ce-' "
    "prefix (ce-id, ce-specversion, ...): publish with services.common.cloudevents"
)


@dataclass(frozen=True, slots=True)
class ContractViolation:
    """One broken CloudEvents contract rule: which rule, which attribute, which value, why."""

    rule: str
    attribute: str | None
    value: str | None
    message: str

    def to_dict(self) -> dict[str, str | None]:
        """A JSON-ready dict (for journals and registrar reasons)."""
        return {
            "rule": self.rule,
            "attribute": self.attribute,
            "value": self.value,
            "message": self.message,
        }

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


class CloudEventError(ValueError):
    """A message or event breaks the CloudEvents contract.

    ``rule`` is a stable id (a :class:`Rule` value), ``attribute`` the attribute or header
    concerned (or ``None``) and ``value`` the offending value, shortened for reports.
    """

    def __init__(
        self, rule: str, message: str, *, attribute: str | None = None, value: Any = None
    ) -> None:
        super().__init__(message)
        self.rule = str(rule)
        self.attribute = attribute
        self.value = _short(value)
        self.message = message

    @property
    def violation(self) -> ContractViolation:
        """This error as a :class:`ContractViolation`."""
        return ContractViolation(self.rule, self.attribute, self.value, self.message)


def _short(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _MAX_VALUE_IN_REPORT:
        return text[:_MAX_VALUE_IN_REPORT] + "..."
    return text


# --------------------------------------------------------------------------------------------
# Header value percent-encoding (binding section 3.1.3.2)

# Printable US-ASCII except space, '"' and '%': the characters left as they are.
_SAFE_CHARS: Final = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_PLAIN_VALUE: Final = re.compile(r"[\x21\x23\x24\x26-\x7e]*")
# What a received value may contain once any quoting is removed: printable ASCII and space
# (older producers did not encode space). '%' is checked separately.
_RAW_OK: Final = re.compile(r"[\x20-\x7e]*")
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_QUOTED_PAIR: Final = re.compile(r"\\(.)", re.DOTALL)
_UNESCAPED_QUOTE: Final = re.compile(r'(?<!\\)(?:\\\\)*"')


def encode_header_value(value: str) -> str:
    """Percent-encode ``value`` for a NATS header as the binding requires.

    Space, ``"``, ``%`` and every character outside U+0021..U+007E are encoded as their UTF-8
    bytes, ``%XY`` with upper-case hex. Raises :class:`CloudEventError` (``header-encoding``)
    for a string that has no UTF-8 form (a lone surrogate).
    """
    if _PLAIN_VALUE.fullmatch(value):
        return value
    try:
        return quote(value, safe=_SAFE_CHARS, encoding="utf-8", errors="strict")
    except UnicodeEncodeError as exc:
        raise CloudEventError(
            Rule.HEADER_ENCODING,
            f"value {value!r} cannot be encoded as UTF-8 ({exc.reason}); "
            "expected a string of Unicode characters without lone surrogates",
            value=value,
        ) from None


def decode_header_value(value: str, *, header: str | None = None) -> str:
    """Decode a received NATS header value into the attribute's string.

    Strips optional whitespace, unescapes an RFC 7230 double-quoted value, then performs one
    round of percent-decoding (lower-case hex accepted). Raises :class:`CloudEventError`
    (``header-encoding``) for a bad escape, a raw character outside printable ASCII, or bytes
    that are not valid UTF-8 (overlong forms and encoded surrogates included).
    """
    if _PLAIN_VALUE.fullmatch(value):
        return value  # fast path: nothing to unquote or decode
    where = f"header {header!r}" if header else "header value"
    text = value.strip(" \t")
    if text.startswith('"'):
        if len(text) < 2 or not text.endswith('"') or (text.endswith('\\"') and _odd_tail(text)):
            raise CloudEventError(
                Rule.HEADER_ENCODING,
                f"{where}: {value!r} opens a double-quoted string that is not closed",
                attribute=header,
                value=value,
            )
        inner = text[1:-1]
        if _UNESCAPED_QUOTE.search(inner):
            raise CloudEventError(
                Rule.HEADER_ENCODING,
                f"{where}: {value!r} has an unescaped '\"' inside a double-quoted string",
                attribute=header,
                value=value,
            )
        text = _QUOTED_PAIR.sub(r"\1", inner)
    if not _RAW_OK.fullmatch(text):
        bad = next(ch for ch in text if not 0x20 <= ord(ch) <= 0x7E)
        raise CloudEventError(
            Rule.HEADER_ENCODING,
            f"{where}: {value!r} contains the raw character {bad!r} (U+{ord(bad):04X}); "
            "header values must be printable US-ASCII with everything else percent-encoded "
            "as UTF-8 (%XY)",
            attribute=header,
            value=value,
        )
    if "%" not in text:
        return text
    bad_escape = _BAD_ESCAPE.search(text)
    if bad_escape is not None:
        snippet = text[bad_escape.start() : bad_escape.start() + 3]
        raise CloudEventError(
            Rule.HEADER_ENCODING,
            f"{where}: {value!r} has the bad escape {snippet!r}; '%' must be followed by two "
            "hex digits (a literal '%' is sent as %25)",
            attribute=header,
            value=value,
        )
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CloudEventError(
            Rule.HEADER_ENCODING,
            f"{where}: {value!r} percent-decodes to bytes that are not valid UTF-8 "
            f"({exc.reason} at byte {exc.start}); overlong forms such as %C0%A0 are rejected",
            attribute=header,
            value=value,
        ) from None


def _odd_tail(text: str) -> bool:
    """True if the closing quote of ``text`` is escaped (an odd run of backslashes before it)."""
    run = len(text) - 1 - len(text[:-1].rstrip("\\"))
    return run % 2 == 1


# --------------------------------------------------------------------------------------------
# Attribute value checks (CloudEvents 1.0 type system)

# Control characters, surrogates and Unicode noncharacters are not allowed in a String.
_NONCHARS: Final = "\ufdd0-\ufdef" + "".join(
    re.escape(chr(plane * 0x10000 + 0xFFFE)) + re.escape(chr(plane * 0x10000 + 0xFFFF))
    for plane in range(17)
)
_BAD_STRING: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff" + _NONCHARS + "]")
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_URI_BODY: Final = r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"
_SCHEME: Final = r"[A-Za-z][A-Za-z0-9+.\-]*:"
# RFC 3986 URI-reference: a scheme, or a relative reference with no ':' before the first
# '/', '?' or '#' (section 4.2: such a ':' would make the first segment a scheme).
_URI_REFERENCE: Final = re.compile(rf"(?:{_SCHEME}|(?![^/?#]*:)){_URI_BODY}")
_ABSOLUTE_URI: Final = re.compile(rf"{_SCHEME}{_URI_BODY}")
_NO_NAMES: Final[frozenset[str]] = frozenset()
_TOKEN: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE: Final = re.compile(
    rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|\"(?:[^\"\\]|\\.)*\"))*[ \t]*;?[ \t]*"
)
_EXT_NAME: Final = re.compile(r"[a-z0-9]{1,20}")
_EXT_NAME_LOOSE: Final = re.compile(r"[a-z0-9]+")


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or offset; any fraction, kept to microseconds).

    Raises ``ValueError`` naming the value and the expected form.
    """
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise ValueError(
            f"time {value!r} is not an RFC 3339 timestamp; expected e.g. 2026-01-31T12:00:00Z"
        )
    try:
        # The C parser is fast and, once the regex has vetted the form, agrees with RFC 3339;
        # it refuses lower-case 't'/'z' and leap seconds, handled below.
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    hour, minute, second = int(m.group(4)), int(m.group(5)), int(m.group(6))
    frac = m.group(7)
    micro = int((frac + "00000")[:6]) if frac else 0
    if m.group(8):
        tz: timezone = UTC
    else:
        off_h, off_m = int(m.group(10)), int(m.group(11))
        if off_h > 23 or off_m > 59:
            raise ValueError(f"time {value!r} has an impossible UTC offset")
        sign = -1 if m.group(9) == "-" else 1
        tz = timezone(sign * timedelta(hours=off_h, minutes=off_m))
    leap = second == 60  # RFC 3339 allows a leap second; datetime cannot hold it
    try:
        dt = datetime(year, month, day, hour, minute, 59 if leap else second, micro, tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"time {value!r} is not a valid date/time: {exc}") from None
    return dt + timedelta(seconds=1) if leap else dt


def format_time(dt: datetime) -> str:
    """RFC 3339 form of a timezone-aware datetime (UTC as ``Z``)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise CloudEventError(
            Rule.INVALID_TIME,
            f"time {dt!r} has no timezone; expected an aware datetime, e.g. datetime.now(UTC)",
            attribute="time",
            value=dt,
        )
    text = dt.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _is_json_type(content_type: str | None) -> bool:
    if content_type is None:
        return True  # the JSON event format's default
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _is_text_type(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media.endswith("+xml") or media == "application/xml"


# --------------------------------------------------------------------------------------------
# The event


@dataclass(frozen=True)
class CloudEvent:
    """A CloudEvents 1.0 event; ``data`` holds the raw payload bytes as sent.

    Construct it with :func:`new_event` (which validates) or receive it from
    :func:`from_message`. Extension values are kept in their canonical string form.
    Equality compares every field; the hash is that of ``(source, id)``, the event's identity.
    """

    id: str
    source: str
    type: str
    specversion: str = SPECVERSION
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: bytes = b""
    extensions: dict[str, str] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.source, self.id))

    def json(self) -> Any:
        """The data decoded as JSON; raises :class:`CloudEventError` (``bad-data``) if it is not."""
        try:
            return json.loads(self.data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CloudEventError(
                Rule.BAD_DATA,
                f"event {self.id!r} from {self.source!r}: data is not valid JSON ({exc}); "
                f"datacontenttype is {self.datacontenttype!r}",
                attribute="data",
                value=self.data[:_MAX_VALUE_IN_REPORT],
            ) from None

    def attributes(self) -> dict[str, str]:
        """All context attributes (extensions included) in canonical string form."""
        attrs: dict[str, str] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        if self.time is not None:
            attrs["time"] = format_time(self.time)
        if self.subject is not None:
            attrs["subject"] = self.subject
        if self.datacontenttype is not None:
            attrs["datacontenttype"] = self.datacontenttype
        if self.dataschema is not None:
            attrs["dataschema"] = self.dataschema
        attrs.update(self.extensions)
        return attrs

    def violations(self) -> list[ContractViolation]:
        """Every contract rule this event's attributes break (empty when valid)."""
        found: list[ContractViolation] = []
        attrs: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "datacontenttype": self.datacontenttype,
            "dataschema": self.dataschema,
        }
        for name, value in self.extensions.items():
            if name in _CORE:
                found.append(
                    ContractViolation(
                        str(Rule.EXTENSION_NAME),
                        name,
                        value,
                        f"extension {name!r} clashes with the core attribute of that name",
                    )
                )
            else:
                attrs[name] = value
        _check_attributes(attrs, found, mode="event")
        if self.time is not None and (self.time.tzinfo is None or self.time.utcoffset() is None):
            found.append(
                ContractViolation(
                    str(Rule.INVALID_TIME), "time", repr(self.time), "time must be timezone-aware"
                )
            )
        return found

    def validate(self) -> CloudEvent:
        """Raise :class:`CloudEventError` for the first broken rule; return ``self`` if valid."""
        problems = self.violations()
        if problems:
            first = problems[0]
            raise CloudEventError(
                first.rule, first.message, attribute=first.attribute, value=first.value
            )
        return self


def new_event(
    type: str,
    source: str,
    data: Any = None,
    *,
    subject: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
    extensions: Mapping[str, Any] | None = None,
    datacontenttype: str | None = "application/json",
    dataschema: str | None = None,
) -> CloudEvent:
    """Build and validate an event (uuid4 id and the current UTC time unless given).

    ``data``: ``bytes`` are sent as they are; a ``str`` is UTF-8 encoded unless the content
    type is JSON; a pydantic model is serialised with ``model_dump_json``; anything else is
    compact JSON. ``None`` means no data. Extension values may be str, int or bool (stored in
    canonical string form). Raises :class:`CloudEventError` for an invalid attribute.
    """
    ext = {name: _ext_string(name, value) for name, value in (extensions or {}).items()}
    ev = CloudEvent(
        id=str(uuid.uuid4()) if id is None else id,
        source=source,
        type=type,
        time=datetime.now(UTC) if time is None else time,
        subject=subject,
        datacontenttype=datacontenttype,
        dataschema=dataschema,
        data=_encode_data(data, datacontenttype),
        extensions=ext,
    )
    return ev.validate()


def _encode_data(data: Any, content_type: str | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str) and not _is_json_type(content_type):
        return data.encode("utf-8")
    dump = getattr(data, "model_dump_json", None)
    if callable(dump):
        return str(dump()).encode("utf-8")
    return _dump_json(data)


def _dump_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _ext_string(name: str, value: Any) -> str:
    """Canonical string of an extension value (CloudEvents type system)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return format_time(value)
    raise CloudEventError(
        Rule.ATTRIBUTE_TYPE,
        f"extension {name!r} has a value of type {type(value).__name__} ({value!r}); expected "
        "a string, integer or boolean",
        attribute=name,
        value=value,
    )


# --------------------------------------------------------------------------------------------
# Encoding


def to_binary(ev: CloudEvent, *, validate: bool = True) -> tuple[dict[str, str], bytes]:
    """Binary-mode NATS headers and payload for ``ev`` (plus ``Nats-Msg-Id``).

    ``validate=False`` skips the attribute checks (for tests that must send invalid events).
    """
    if validate:
        ev.validate()
    headers = {CE_HEADER_PREFIX + k: encode_header_value(v) for k, v in ev.attributes().items()}
    headers[NATS_MSG_ID] = ev.id
    return headers, ev.data


def to_structured(ev: CloudEvent, *, validate: bool = True) -> tuple[dict[str, str], bytes]:
    """Structured-mode headers (``Content-Type``, ``Nats-Msg-Id``) and JSON event format payload.

    JSON data is embedded as ``data`` (so a receiver gets it back re-serialised compactly:
    equal as JSON, not necessarily byte for byte); text as a ``data`` string; anything else (or
    data that does not decode as its content type says) as ``data_base64``, byte-exact.
    """
    if validate:
        ev.validate()
    body: dict[str, Any] = dict(ev.attributes())
    if ev.data:
        if _is_json_type(ev.datacontenttype):
            try:
                body["data"] = json.loads(ev.data)
            except (ValueError, UnicodeDecodeError):
                body["data_base64"] = base64.b64encode(ev.data).decode("ascii")
        elif _is_text_type(ev.datacontenttype):
            try:
                body["data"] = ev.data.decode("utf-8")
            except UnicodeDecodeError:
                body["data_base64"] = base64.b64encode(ev.data).decode("ascii")
        else:
            body["data_base64"] = base64.b64encode(ev.data).decode("ascii")
    headers = {"Content-Type": STRUCTURED_CONTENT_TYPE, NATS_MSG_ID: ev.id}
    return headers, _dump_json(body)


def to_message(
    ev: CloudEvent, mode: Literal["binary", "structured"] = "binary", *, validate: bool = True
) -> tuple[dict[str, str], bytes]:
    """Headers and payload for ``ev`` in ``mode`` (``"binary"`` or ``"structured"``)."""
    if mode == "binary":
        return to_binary(ev, validate=validate)
    if mode == "structured":
        return to_structured(ev, validate=validate)
    raise ValueError(f"mode {mode!r} is not a content mode; expected 'binary' or 'structured'")


async def publish_event(
    js: JetStreamContext,
    subject: str,
    ev: CloudEvent,
    *,
    mode: Literal["binary", "structured"] = "binary",
    timeout_s: float = 2.0,
) -> PubAck:
    """Publish ``ev`` to JetStream on ``subject`` and return the PubAck.

    ``Nats-Msg-Id`` is the event id, so a retried publish inside the stream's duplicate window
    is stored once (the PubAck then has ``duplicate=True``).
    """
    headers, payload = to_message(ev, mode)
    return await js.publish(subject, payload, timeout=timeout_s, headers=headers)


# --------------------------------------------------------------------------------------------
# Decoding


def detect_mode(headers: Mapping[str, str] | None) -> Mode:
    """Content mode of a message by its headers (binding section 3).

    ``"structured"``: a ``Content-Type`` starting with ``application/cloudevents``
    (case-insensitive); ``"binary"``: any ``ce-`` header; ``"legacy"``: only underscore ``ce_``
    headers (the original QIKI platform); ``"none"``: no CloudEvents headers at all.
    """
    if not headers:
        return "none"
    legacy = False
    binary = False
    for key, value in headers.items():
        k = key.lower()
        if k == "content-type":
            if value.strip().lower().startswith("application/cloudevents"):
                return "structured"
        elif k.startswith(CE_HEADER_PREFIX):
            binary = True
        elif k.startswith(LEGACY_HEADER_PREFIX):
            legacy = True
    if binary:
        return "binary"
    return "legacy" if legacy else "none"


def from_message(
    headers: Mapping[str, str] | None,
    payload: bytes,
    *,
    max_size: int | None = None,
    legacy_ok: bool = False,
    check_data: bool = True,
) -> CloudEvent:
    """Decode and validate a NATS message (binary, structured or, with ``legacy_ok``, legacy).

    Raises :class:`CloudEventError` at the first broken rule. ``max_size`` bounds the payload
    in bytes; ``check_data`` verifies that data declared as JSON parses.
    """
    if headers and (max_size is None or len(payload) <= max_size):
        fast = _fast_binary(headers, payload, check_data)
        if fast is not None:
            return fast
    ev = _decode(headers, payload, max_size, legacy_ok, check_data, None)
    assert ev is not None  # _decode raises instead of returning None when not collecting
    return ev


# Values that passed validation before, so the fast path need not re-run their regexes:
# source, type, content type and schema repeat across a stream's events. Bounded by clearing.
_KNOWN_SOURCES: set[str] = set()
_KNOWN_SCHEMAS: set[str] = set()
_KNOWN_EXT_NAMES: set[str] = set()
_KNOWN_CONTENT_TYPES: dict[str, bool] = {}  # content type -> is JSON
_KNOWN_MAX: Final = 1024


#: Header name (as received) -> lowercase attribute name after ``ce-``, ``""`` for a header
#: the fast path ignores, None for one it leaves to the general decoder (``ce_``, a
#: ``Content-Type``). Saves a lower() and two startswith() per header per message.
_HEADER_KINDS: dict[str, str | None] = {}
_UNSEEN: Any = object()  # kinds.get() default: a header name not classified yet
_JSON_DECODE: Final = json.JSONDecoder().decode


def _json_check_stdlib(payload: bytes) -> None:
    _JSON_DECODE(payload.decode("utf-8"))


try:
    import orjson

    # 4x faster than the stdlib on event-sized payloads (issue 13: the registrar's budget per
    # event). It accepts a subset of what the stdlib accepts (strict UTF-8, no BOM, no NaN,
    # no lone surrogates, no overflowing floats; a unit test compares them), so the fast
    # path still never accepts what the general decoder rejects: the rest falls through.
    _json_check: Any = orjson.loads
    _JSON_ERRORS: tuple[type[Exception], ...] = (ValueError, orjson.JSONDecodeError)
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
    _json_check = _json_check_stdlib
    _JSON_ERRORS = (ValueError,)


def _header_kind(key: str) -> str | None:
    k = key.lower()
    if k.startswith("ce-"):
        # "ce-" alone gives "" here, which the fast path would ignore: not plain, bail out.
        return k[3:] or None
    if k.startswith("ce_") or k == "content-type":
        return None
    return ""


def _remember(known: set[str], value: str) -> None:
    if len(known) >= _KNOWN_MAX:
        known.clear()
    known.add(value)


def _fast_binary(headers: Mapping[str, str], payload: bytes, check_data: bool) -> CloudEvent | None:
    """Decode the common case (a valid binary event, plain ASCII values) with minimal work.

    Returns ``None`` whenever anything is unusual or invalid; the general decoder then runs
    and reports the exact rule. It must never accept what the general decoder rejects.
    """
    attrs: dict[str, str] = {}
    kinds = _HEADER_KINDS
    for key, raw in headers.items():
        name = kinds.get(key, _UNSEEN)
        if name is _UNSEEN:
            name = _header_kind(key)
            if len(kinds) >= _KNOWN_MAX:
                kinds.clear()
            kinds[key] = name
        if name:
            if name in attrs:
                return None
            attrs[name] = raw
        elif name is None:
            return None
    if len(attrs) < 4 or not _PLAIN_VALUE.fullmatch("".join(attrs.values())):
        return None
    id_ = attrs.pop("id", "")
    source = attrs.pop("source", "")
    type_ = attrs.pop("type", "")
    # Anything short of complete goes to the general decoder, which names the violation.
    if not id_ or not source or not type_ or attrs.pop("specversion", None) != SPECVERSION:
        return None
    if source not in _KNOWN_SOURCES:
        if not _URI_REFERENCE.fullmatch(source):
            return None
        _remember(_KNOWN_SOURCES, source)
    ev_time: datetime | None = None
    raw_time = attrs.pop("time", None)
    if raw_time is not None:
        try:
            ev_time = parse_time(raw_time)
        except ValueError:
            return None
    subject = attrs.pop("subject", None)
    content_type = attrs.pop("datacontenttype", None)
    schema = attrs.pop("dataschema", None)
    if subject == "" or content_type == "" or schema == "":
        return None
    is_json = False
    if content_type is not None:
        known = _KNOWN_CONTENT_TYPES.get(content_type)
        if known is None:
            if not _MEDIA_TYPE.fullmatch(content_type):
                return None
            if len(_KNOWN_CONTENT_TYPES) >= _KNOWN_MAX:
                _KNOWN_CONTENT_TYPES.clear()
            known = _KNOWN_CONTENT_TYPES[content_type] = _is_json_type(content_type)
        is_json = known
    if schema is not None and schema not in _KNOWN_SCHEMAS:
        if not _ABSOLUTE_URI.fullmatch(schema):
            return None
        _remember(_KNOWN_SCHEMAS, schema)
    for name in attrs:  # what is left are extensions
        if name not in _KNOWN_EXT_NAMES:
            if not _EXT_NAME.fullmatch(name) or name in _RESERVED:
                return None
            _remember(_KNOWN_EXT_NAMES, name)
    if check_data and is_json and payload:
        # Strict UTF-8 and no BOM/UTF-16/32 detection (json.loads on bytes does both): this
        # accepts a subset of what json.loads accepts; the rest goes to the general decoder.
        try:
            _json_check(payload)
        except _JSON_ERRORS:  # includes UnicodeDecodeError and JSONDecodeError
            return None
    # Skips the frozen dataclass __init__ (one object.__setattr__ per field): same result.
    ev = object.__new__(CloudEvent)
    ev.__dict__.update(
        id=id_,
        source=source,
        type=type_,
        specversion=SPECVERSION,
        time=ev_time,
        subject=subject,
        datacontenttype=content_type,
        dataschema=schema,
        data=payload,
        extensions=attrs,
    )
    return ev


def check_message(
    headers: Mapping[str, str] | None,
    payload: bytes,
    *,
    legacy_ok: bool = False,
    max_size: int | None = None,
    check_data: bool = True,
    require_msg_id: bool = True,
) -> list[ContractViolation]:
    """Every contract violation of a message (empty list: it is a valid CloudEvent).

    Besides what :func:`from_message` checks, ``require_msg_id`` checks that ``Nats-Msg-Id`` is
    present and equals the event id (every publish must set it for JetStream dedup).
    """
    return inspect_message(
        headers,
        payload,
        legacy_ok=legacy_ok,
        max_size=max_size,
        check_data=check_data,
        require_msg_id=require_msg_id,
    )[1]


def inspect_message(
    headers: Mapping[str, str] | None,
    payload: bytes,
    *,
    legacy_ok: bool = False,
    max_size: int | None = None,
    check_data: bool = True,
    require_msg_id: bool = True,
) -> tuple[CloudEvent | None, list[ContractViolation]]:
    """:func:`check_message` that also returns the decoded event (``None`` if the envelope is
    broken), so a caller validating the data against its contract decodes once."""
    found: list[ContractViolation] = []
    ev = _decode(headers, payload, max_size, legacy_ok, check_data, found)
    if require_msg_id and headers is not None and detect_mode(headers) != "none":
        msg_id = header_value(headers, NATS_MSG_ID)
        if msg_id is None:
            found.append(
                ContractViolation(
                    str(Rule.NATS_MSG_ID),
                    NATS_MSG_ID,
                    None,
                    "Nats-Msg-Id header is missing; every publish sets it to the event id so "
                    "JetStream can drop a duplicate publish",
                )
            )
        elif ev is not None and msg_id != ev.id:
            found.append(
                ContractViolation(
                    str(Rule.NATS_MSG_ID),
                    NATS_MSG_ID,
                    _short(msg_id),
                    f"Nats-Msg-Id {msg_id!r} differs from the event id {ev.id!r}; it must equal it",
                )
            )
    return ev, found


def header_value(headers: Mapping[str, str] | None, name: str) -> str | None:
    """The value of header ``name`` in ``headers``, matched case-insensitively (None if absent).

    NATS header names keep the sender's case; the CloudEvents binding compares them without it.
    """
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lname = name.lower()
    for k, v in headers.items():
        if k.lower() == lname:
            return v
    return None


def _report(
    found: list[ContractViolation] | None,
    rule: str,
    attribute: str | None,
    value: Any,
    message: str,
) -> None:
    """Raise (fail-fast decode) or record (``check_message``) one violation."""
    if found is None:
        raise CloudEventError(rule, message, attribute=attribute, value=value)
    found.append(ContractViolation(str(rule), attribute, _short(value), message))


def _decode(
    headers: Mapping[str, str] | None,
    payload: bytes,
    max_size: int | None,
    legacy_ok: bool,
    check_data: bool,
    found: list[ContractViolation] | None,
) -> CloudEvent | None:
    """The one decoder: raises at the first violation if ``found`` is None, else collects all."""
    start = len(found) if found is not None else 0
    if max_size is not None and len(payload) > max_size:
        _report(
            found,
            Rule.OVERSIZED,
            None,
            len(payload),
            f"payload is {len(payload)} bytes, more than the maximum of {max_size} bytes",
        )
    if not headers:
        _report_not_cloudevent(found, headers)
        return None
    # One pass over the headers classifies them; it is the hot path of the registrar.
    ce: list[tuple[str, str, str]] = []
    legacy: list[tuple[str, str, str]] = []
    content_type: str | None = None
    for key, raw in headers.items():
        prefix = key[:3].lower()
        if prefix == "ce-":
            ce.append((key[3:].lower(), key, raw))
        elif prefix == "ce_":
            legacy.append((key[3:].lower(), key, raw))
        elif len(key) == 12 and key.lower() == "content-type":
            content_type = raw
    plain: set[str] | None = None
    undecodable: set[str] = set()
    data_checked = False
    if content_type is not None and content_type.lstrip()[:23].lower() == (
        "application/cloudevents"
    ):
        got, data, data_checked = _structured_attrs(content_type, payload, found)
        if got is None:
            return None
        attrs = got
        mode = "structured"
    elif ce or legacy:
        attrs, plain = _binary_attrs(ce, legacy, legacy_ok, found, undecodable)
        if legacy and not legacy_ok and not ce:
            return None  # reported once as legacy-underscore-headers, not as missing ce- headers
        if "datacontenttype" not in attrs and content_type is not None:
            # Lenient: some producers put the data's media type in Content-Type in binary mode.
            attrs["datacontenttype"] = content_type
            if plain is not None and not _PLAIN_VALUE.fullmatch(content_type):
                plain.discard("datacontenttype")
        data = payload
        mode = "binary"
    else:
        _report_not_cloudevent(found, headers)
        return None
    _check_attributes(attrs, found, mode=mode, plain=plain, skip=undecodable)
    if (
        check_data
        and not data_checked
        and data
        and isinstance(attrs.get("datacontenttype"), str)
        and _is_json_type(attrs["datacontenttype"])
    ):
        try:
            json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            _report(
                found,
                Rule.BAD_DATA,
                "data",
                data[:_MAX_VALUE_IN_REPORT],
                f"data is not valid JSON although datacontenttype is "
                f"{attrs['datacontenttype']!r}: {exc}",
            )
    if found is not None and len(found) > start:
        return None
    return _build(attrs, data)


def _report_not_cloudevent(
    found: list[ContractViolation] | None, headers: Mapping[str, str] | None
) -> None:
    names = ", ".join(sorted(headers)) if headers else None
    _report(
        found,
        Rule.NOT_CLOUDEVENT,
        None,
        names,
        "not a CloudEvent: no ce- headers (binary mode) and no Content-Type "
        f"{STRUCTURED_CONTENT_TYPE} (structured mode)"
        + (f"; headers present: {names}" if names else "; the message has no headers"),
    )


def _binary_attrs(
    ce: list[tuple[str, str, str]],
    legacy: list[tuple[str, str, str]],
    legacy_ok: bool,
    found: list[ContractViolation] | None,
    undecodable: set[str],
) -> tuple[dict[str, Any], set[str]]:
    """Attributes from (name, header, raw value) triples, and the names whose value was plain."""
    attrs: dict[str, Any] = {}
    plain: set[str] = set()
    for name, key, raw in ce:
        if _PLAIN_VALUE.fullmatch(raw):
            value = raw  # fast path: printable ASCII, nothing to decode or re-check
            plain.add(name)
        else:
            try:
                value = decode_header_value(raw, header=key)
            except CloudEventError as exc:
                _report(found, exc.rule, name, raw, exc.message)
                undecodable.add(name)  # reported once, not again as "missing"
                continue
            plain.discard(name)
        if name in attrs and attrs[name] != value:
            _report(
                found,
                Rule.DUPLICATE_ATTRIBUTE,
                name,
                value,
                f"attribute {name!r} is sent twice with different values "
                f"({attrs[name]!r} and {value!r}); header names are case-insensitive",
            )
            continue
        attrs[name] = value
    if legacy and not legacy_ok:
        keys = ", ".join(key for _, key, _ in legacy)
        _report(
            found,
            Rule.LEGACY_HEADERS,
            legacy[0][1],
            keys,
            f"underscore headers {keys}: {_LEGACY_EXPLANATION}",
        )
    elif legacy:
        for name, key, raw in legacy:
            if name in attrs:
                continue  # a ce- header for the same attribute wins over the legacy one
            try:
                attrs[name] = decode_header_value(raw, header=key)
            except CloudEventError as exc:
                _report(found, exc.rule, name, raw, exc.message)
                undecodable.add(name)  # reported once, not again as "missing"
    return attrs, plain


def _structured_attrs(
    content_type: str, payload: bytes, found: list[ContractViolation] | None
) -> tuple[dict[str, Any] | None, bytes, bool]:
    content_type = content_type.strip()
    if content_type.lower().startswith("application/cloudevents-batch"):
        _report(
            found,
            Rule.NOT_CLOUDEVENT,
            "Content-Type",
            content_type,
            "batch content mode is not supported by the NATS binding; send one event per message",
        )
        return None, b"", False
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        _report(
            found,
            Rule.NOT_CLOUDEVENT,
            None,
            payload[:_MAX_VALUE_IN_REPORT],
            f"structured mode (Content-Type {content_type}) but the payload is not JSON: {exc}",
        )
        return None, b"", False
    if not isinstance(body, dict):
        _report(
            found,
            Rule.NOT_CLOUDEVENT,
            None,
            type(body).__name__,
            f"structured mode payload is a JSON {type(body).__name__}; expected a JSON object "
            "in the CloudEvents JSON event format",
        )
        return None, b"", False
    data = b""
    has_data = "data" in body
    has_b64 = "data_base64" in body
    if has_data and has_b64:
        _report(
            found,
            Rule.BAD_DATA,
            "data_base64",
            None,
            "both 'data' and 'data_base64' are present; the JSON event format allows only one",
        )
    elif has_b64:
        b64 = body["data_base64"]
        try:
            if not isinstance(b64, str):
                raise ValueError(f"expected a string, got {type(b64).__name__}")
            data = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error) as exc:
            _report(
                found, Rule.BAD_DATA, "data_base64", b64, f"data_base64 is not valid base64: {exc}"
            )
    elif has_data and body["data"] is not None:
        value = body["data"]
        ct = body.get("datacontenttype")
        if isinstance(value, str) and not _is_json_type(ct if isinstance(ct, str) else None):
            data = value.encode("utf-8")
        else:
            data = _dump_json(value)
    attrs = {k: v for k, v in body.items() if k != "data" and k != "data_base64"}
    # Embedded 'data' came out of a JSON document, so it needs no second JSON check.
    return attrs, data, has_data and not has_b64


def _check_attributes(
    attrs: dict[str, Any],
    found: list[ContractViolation] | None,
    *,
    mode: str,
    plain: AbstractSet[str] | None = None,
    skip: AbstractSet[str] = frozenset(),
) -> None:
    """Validate attribute values (in place: JSON ints/bools become canonical strings).

    ``plain`` names values already known to be printable ASCII (no control characters to look
    for); ``time`` is replaced by its parsed datetime.
    """
    known_plain: AbstractSet[str] = _NO_NAMES if plain is None else plain
    for name in _REQUIRED:
        if name in skip:
            continue
        value = attrs.get(name)
        if value is None or value == "":
            where = f"header ce-{name}" if mode == "binary" else f"attribute {name!r}"
            _report(
                found,
                Rule.MISSING_ATTRIBUTE,
                name,
                value,
                f"required attribute {name!r} is {'empty' if value == '' else 'missing'} "
                f"({where}); every CloudEvent needs non-empty id, source, specversion and type",
            )
            continue
        if not isinstance(value, str):
            _report(
                found,
                Rule.ATTRIBUTE_TYPE,
                name,
                value,
                f"attribute {name!r} is a JSON {type(value).__name__}; expected a string",
            )
            continue
        if name == "specversion" and value != SPECVERSION:
            _report(
                found,
                Rule.SPECVERSION,
                name,
                value,
                f"specversion is {value!r}; this platform speaks CloudEvents {SPECVERSION!r} only",
            )
        elif name not in known_plain and _BAD_STRING.search(value):
            _report_bad_string(found, name, value)
        elif name == "source" and not _URI_REFERENCE.fullmatch(value):
            _report(
                found,
                Rule.INVALID_URI,
                name,
                value,
                f"source {value!r} is not a URI-reference (RFC 3986); expected e.g. "
                "urn:qiki:q-sim-service:radar or /qiki/radar",
            )
    for name in _OPTIONAL:
        if name not in attrs:
            continue
        value = attrs[name]
        if value is None:
            del attrs[name]  # JSON null (or an unset field) means absent
            continue
        if not isinstance(value, str):
            _report(
                found,
                Rule.ATTRIBUTE_TYPE,
                name,
                value,
                f"attribute {name!r} is a JSON {type(value).__name__}; expected a string",
            )
            continue
        if value == "":
            _report(
                found,
                Rule.EMPTY_ATTRIBUTE,
                name,
                value,
                f"attribute {name!r} is present but empty; when present it must be non-empty",
            )
            continue
        if name not in known_plain and _BAD_STRING.search(value):
            _report_bad_string(found, name, value)
        elif name == "time":
            try:
                # Parsed once here; _build takes the datetime (keeps decode cheap).
                attrs[name] = parse_time(value)
            except ValueError as exc:
                _report(found, Rule.INVALID_TIME, name, value, str(exc))
        elif name == "dataschema":
            if not _ABSOLUTE_URI.fullmatch(value):
                _report(
                    found,
                    Rule.INVALID_URI,
                    name,
                    value,
                    f"dataschema {value!r} is not an absolute URI (RFC 3986); expected e.g. "
                    "https://example.com/schemas/frame.json",
                )
        elif name == "datacontenttype" and not _MEDIA_TYPE.fullmatch(value):
            _report(
                found,
                Rule.INVALID_MEDIA_TYPE,
                name,
                value,
                f"datacontenttype {value!r} is not an RFC 2046 media type; expected e.g. "
                "application/json",
            )
    for name in list(attrs):
        if name in _CORE:
            continue
        value = attrs[name]
        if not _EXT_NAME.fullmatch(name) or name in _RESERVED:
            if name in _RESERVED:
                why = "is reserved by the JSON event format"
            elif _EXT_NAME_LOOSE.fullmatch(name):
                why = f"is {len(name)} characters long; at most 20 are allowed"
            else:
                why = "must consist of lower-case ASCII letters and digits only"
            _report(
                found,
                Rule.EXTENSION_NAME,
                name,
                name,
                f"extension attribute name {name!r} {why}",
            )
            continue
        if isinstance(value, str):
            if name not in known_plain and _BAD_STRING.search(value):
                _report_bad_string(found, name, value)
        elif isinstance(value, bool):
            attrs[name] = "true" if value else "false"
        elif isinstance(value, int):
            attrs[name] = str(value)
        elif value is None and mode == "structured":
            del attrs[name]
        else:
            _report(
                found,
                Rule.ATTRIBUTE_TYPE,
                name,
                value,
                f"extension {name!r} is a JSON {type(value).__name__}; CloudEvents extension "
                "values are strings, integers or booleans",
            )


def _report_bad_string(found: list[ContractViolation] | None, name: str, value: str) -> None:
    m = _BAD_STRING.search(value)
    ch = m.group(0) if m else "?"
    _report(
        found,
        Rule.INVALID_STRING,
        name,
        value,
        f"attribute {name!r} contains U+{ord(ch):04X}; CloudEvents strings must not contain "
        "control characters, surrogates or Unicode noncharacters",
    )


def _build(attrs: dict[str, Any], data: bytes) -> CloudEvent:
    ev_time = attrs.get("time")  # a datetime: _check_attributes parsed it
    extensions = {k: v for k, v in attrs.items() if k not in _CORE}
    return CloudEvent(
        id=attrs["id"],
        source=attrs["source"],
        type=attrs["type"],
        specversion=attrs["specversion"],
        time=ev_time,
        subject=attrs.get("subject"),
        datacontenttype=attrs.get("datacontenttype"),
        dataschema=attrs.get("dataschema"),
        data=data,
        extensions=extensions,
    )
