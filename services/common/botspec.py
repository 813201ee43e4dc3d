"""BotSpec: the platform description, its validator and the runtime-configuration generator.

A BotSpec (``scenarios/specs/BotSpec.yaml`` is the QIKI one) is the platform as data: the whole
JetStream layout (streams, durable consumers), the channels (NATS subjects, the CloudEvent types
each carries and their data contracts), the dead-letter subject and the registrar's code rules.
This module

* loads it strictly (:func:`load_botspec`): unknown keys, wrong types, duplicate keys and every
  semantic problem (a channel subject no stream captures, overlapping streams, a consumer
  filter that selects no channel, a dead-letter loop, a code outside 100-999, duplicate names, a
  contract file that does not exist...) are reported together, each with the file, the key path
  (``channels[2].subjects[1]``) and the line;
* reads format version 1 files too: their layout, subjects and codes are the QIKI defaults,
  taken from the shipped v2 spec (:data:`DEFAULT_BOTSPEC_PATH`);
* generates the runtime configuration (:func:`generate`): streams, consumers, channel ->
  subjects/types, contracts, code rules and per-service settings;
* provisions that layout on a server (:func:`provision`), idempotently.

No stream name, subject or code is spelled out in Python: they all come from a spec file.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from services.common.codes import RegistrarCode
from services.common.contract_ref import ContractRef, parse_contract_ref

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

__all__ = [
    "DEFAULT_BOTSPEC_PATH",
    "REQUIRED_CHANNELS",
    "REQUIRED_COMPONENTS",
    "BotSpec",
    "BotSpecError",
    "Channel",
    "CodeRule",
    "Codes",
    "Component",
    "ComponentRoutes",
    "ConsumerConfig",
    "ConsumerSpec",
    "DeadLetter",
    "LagWatch",
    "Problem",
    "ProvisionError",
    "ProvisionResult",
    "RuntimeConfig",
    "ServiceConfig",
    "StreamConfig",
    "StreamSpec",
    "Subjects",
    "TypeSpec",
    "default_botspec_path",
    "dump_runtime_config",
    "filter_covers",
    "filters_overlap",
    "generate",
    "load_botspec",
    "load_runtime_config",
    "parse_botspec",
    "provision",
    "stream_captures",
    "subject_matches",
]

#: The shipped spec: ``scenarios/specs/BotSpec.yaml`` of the repository this module lives in.
#: :func:`default_botspec_path` lets the environment variable ``QIKI_BOTSPEC`` override it.
DEFAULT_BOTSPEC_PATH: Path = (
    Path(__file__).resolve().parent.parent.parent / "scenarios" / "specs" / "BotSpec.yaml"
)
BOTSPEC_ENV = "QIKI_BOTSPEC"

#: Version 1 specs must declare these (the QIKI bot); version 2 specs declare what they have.
REQUIRED_COMPONENTS: tuple[str, ...] = (
    "hull",
    "power",
    "propulsion",
    "docking",
    "antenna_xpdr",
    "sensors",
    "comms",
    "shields",
    "navigation",
    "sensor_mounts",
    "protocols",
)
REQUIRED_CHANNELS: tuple[str, ...] = (
    "SensorFrame",
    "TrackSet",
    "ThrusterCmd",
    "ModeCmd",
    "ProtocolCmd",
    "EnergyStatus",
    "ShieldStatus",
    "NavState",
    "RegistrarEvent",
)
SUPPORTED_MAJOR_VERSIONS = (1, 2)

# A hostile document can expand aliases exponentially ("billion laughs"); a real spec has a few
# hundred nodes.
_MAX_NODES = 100_000

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

PathT = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    """Render a key path the way people write it: ``components.hull.provides[2]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<document>"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: where it is and what is expected."""

    file: str
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}"


class BotSpecError(ValueError):
    """The spec is unreadable or invalid; the message lists every problem found.

    ``problems`` holds each one; ``file``, ``path`` and ``line`` are those of the first.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("BotSpecError needs at least one problem")
        self.problems: list[Problem] = list(problems)
        first = self.problems[0]
        self.file: str = first.file
        self.path: str = first.path
        self.line: int | None = first.line
        if len(self.problems) == 1:
            text = f"invalid BotSpec: {first}"
        else:
            body = "\n".join(f"  {p}" for p in self.problems)
            text = f"invalid BotSpec: {len(self.problems)} problems:\n{body}"
        super().__init__(text)


class ProvisionError(RuntimeError):
    """The server holds a stream or consumer that cannot be changed into the configured one."""


# --------------------------------------------------------------------------------------------
# YAML with line numbers
# --------------------------------------------------------------------------------------------


class _MarkedLoader(yaml.SafeLoader):
    """SafeLoader that hands back the composed node graph; :func:`_to_python` walks it.

    Walking the nodes ourselves (instead of ``construct_document``) is what lets us record the
    line of every key and item, reject duplicate keys (PyYAML silently keeps the last one) and
    refuse recursive or exponentially aliased documents.
    """


@dataclass
class _Walk:
    file: str
    lines: dict[PathT, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    nodes: int = 0


def _to_python(loader: _MarkedLoader, node: yaml.Node, path: PathT, walk: _Walk,
               stack: tuple[int, ...]) -> Any:
    walk.nodes += 1
    if walk.nodes > _MAX_NODES:
        raise _TooLarge(node)
    if id(node) in stack:
        raise _Recursive(node, path)
    stack = (*stack, id(node))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                walk.problems.append(Problem(
                    walk.file, format_path(path), key_node.start_mark.line + 1,
                    "keys must be plain scalars, not a list or mapping"))
                continue
            key = loader.construct_object(key_node)
            if not isinstance(key, str | int | bool | float) or key is None:
                key = str(key)
            sub = (*path, str(key))
            if key in out:
                walk.problems.append(Problem(
                    walk.file, format_path(sub), key_node.start_mark.line + 1,
                    f"duplicate key {key!r} (first defined on line {walk.lines.get(sub, '?')})"))
                continue
            walk.lines[sub] = key_node.start_mark.line + 1
            out[key] = _to_python(loader, value_node, sub, walk, stack)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            sub = (*path, i)
            walk.lines[sub] = item.start_mark.line + 1
            items.append(_to_python(loader, item, sub, walk, stack))
        return items
    return loader.construct_object(node)


def _codepoint(char: object) -> int:
    """PyYAML's ReaderError.character is an int for text and bytes; be safe about str."""
    if isinstance(char, str) and char:
        return ord(char[0])
    if isinstance(char, bytes) and char:
        return char[0]
    return char if isinstance(char, int) else 0


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


class _Recursive(Exception):
    def __init__(self, node: yaml.Node, path: PathT) -> None:
        self.node = node
        self.path = path


def _load_yaml(text: str, file: str) -> tuple[Any, _Walk]:
    walk = _Walk(file)
    loader: _MarkedLoader | None = None
    try:
        # The reader checks the whole text for unprintable characters in its constructor.
        loader = _MarkedLoader(text)
        node = loader.get_single_node()
        if node is None:
            raise BotSpecError([Problem(
                file, "<document>", None,
                "the file is empty; expected a mapping with version, kind, metadata and "
                "streams, channels... (or components and event_bus in version 1)")])
        walk.lines[()] = node.start_mark.line + 1
        data = _to_python(loader, node, (), walk, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(s for s in (exc.context, exc.problem) if s)
        raise BotSpecError([Problem(file, "<document>", line, f"YAML syntax error: {what}")]) \
            from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise BotSpecError([Problem(
            file, "<document>", line,
            f"character #x{_codepoint(exc.character):04x} is not allowed in YAML: "
            f"{exc.reason}")]) from None
    except yaml.YAMLError as exc:
        raise BotSpecError([Problem(file, "<document>", None, f"YAML error: {exc}")]) from None
    except _TooLarge as exc:
        raise BotSpecError([Problem(
            file, "<document>", exc.node.start_mark.line + 1,
            f"document expands to more than {_MAX_NODES} nodes (alias bomb?)")]) from None
    except _Recursive as exc:
        raise BotSpecError([Problem(
            file, format_path(exc.path), exc.node.start_mark.line + 1,
            "recursive alias: a node contains itself")]) from None
    except RecursionError:
        raise BotSpecError([Problem(file, "<document>", None, "document nested too deeply")]) \
            from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, walk


# --------------------------------------------------------------------------------------------
# Spec model
# --------------------------------------------------------------------------------------------

_COMPONENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_CHANNEL_NAME = r"^[A-Z][A-Za-z0-9]*$"
_NAME = r"^[A-Za-z0-9_-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(_Strict):
    """Identity of the bot / platform."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)
    name: str | None = None
    description: str | None = None


class Component(_Strict):
    """A bot component: what it is and which channels it writes (provides) and reads."""

    type: str = Field(min_length=1)
    description: str | None = None
    provides: list[str] = Field(default_factory=list)
    consumes: list[str] = Field(default_factory=list)
    #: durable consumers (``consumers[].durable``) it pulls from; under ``auth: accounts`` a
    #: service named like this component gets the JetStream API and ack subjects they need
    durables: list[str] = Field(default_factory=list)


class ChannelV1(_Strict):
    """A version 1 channel: a name only; its subjects are the QIKI defaults."""

    name: str = Field(pattern=_CHANNEL_NAME, max_length=64)
    description: str | None = None


class EventBus(_Strict):
    """Version 1 event bus: a list of channels."""

    channels: list[ChannelV1]


class StreamSpec(_Strict):
    """A JetStream stream (``streams[]``)."""

    name: str = Field(pattern=_NAME, max_length=128)
    subjects: list[str] = Field(min_length=1)
    description: str | None = None
    storage: Literal["file", "memory"] = "file"
    replicas: int = Field(default=1, ge=1, le=5)
    retention: Literal["limits", "interest", "workqueue"] = "limits"
    max_age_s: float | None = Field(default=None, ge=0)
    max_bytes: int | None = Field(default=None, ge=-1)
    max_msg_size: int | None = Field(default=None, ge=-1)
    duplicate_window_s: float = Field(default=120.0, ge=0)


class ConsumerSpec(_Strict):
    """A durable pull consumer (``consumers[]``)."""

    durable: str = Field(pattern=_NAME, max_length=128)
    stream: str = Field(min_length=1)
    description: str | None = None
    #: empty: the whole stream
    filter_subjects: list[str] = Field(default_factory=list)
    ack_policy: Literal["explicit", "all", "none"] = "explicit"
    #: A registrar batch commits in milliseconds; what a crashed consumer had fetched comes
    #: back only after ack_wait, so a long wait (30 s) stalls every recovery.
    ack_wait_s: float = Field(default=5.0, gt=0)
    max_deliver: int = Field(default=5, ge=-1)
    max_ack_pending: int = Field(default=20_000, ge=-1)
    #: the lag monitor's threshold for this consumer (default 1000)
    lag_threshold: int | None = Field(default=None, ge=0)


class TypeSpec(_Strict):
    """A CloudEvent type a channel carries, with its optional data contract."""

    type: str = Field(min_length=1)
    description: str | None = None
    #: a contract reference (see :func:`services.common.contract_ref.parse_contract_ref`)
    contract: Any = None


class Channel(_Strict):
    """A channel: a name, the NATS subjects it is published on and the types it carries."""

    name: str = Field(pattern=_CHANNEL_NAME, max_length=64)
    description: str | None = None
    subjects: list[str] = Field(min_length=1)
    types: list[TypeSpec] = Field(default_factory=list)


class DeadLetter(_Strict):
    """Where the registrar publishes raw copies of the messages it rejects."""

    subject: str = Field(min_length=1)


class CodeRule(_Strict):
    """One code rule: conditions (all given ones must hold) and a code or outcome table.

    ``type``: fnmatch-style patterns on the CloudEvent type (``*``, ``?``; case-insensitive);
    ``subject``: NATS filters on the subject it arrived on; ``where``: top-level data fields
    equal to a value (or one of a list). ``code`` is the result; or ``outcomes`` maps outcome
    word classes (``codes.outcome_words``) to codes, read from the type's last token, else from
    the data's ``codes.outcome_fields``; ``fallback`` (default: the ``ok`` outcome's code) is
    stored, flagged "unclassified outcome", when neither names an outcome.
    """

    type: list[str] = Field(default_factory=list)
    subject: list[str] = Field(default_factory=list)
    where: dict[str, Any] | None = None
    code: int | None = None
    name: str | None = None
    outcomes: dict[str, int] | None = None
    fallback: int | None = None

    @field_validator("type", "subject", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class CodeDefault(_Strict):
    """The code of an event no rule matches."""

    code: int
    name: str | None = None


class Codes(_Strict):
    """The registrar's code rules (``codes:``); first match wins."""

    #: range name by hundreds digit
    classes: dict[int, str] = Field(default_factory=dict)
    #: outcome word classes used by ``outcomes:`` rules, e.g. ``ok: [ok, ready, done]``
    outcome_words: dict[str, list[str]] = Field(default_factory=dict)
    #: data fields an ``outcomes:`` rule reads when the type names no outcome
    outcome_fields: list[str] = Field(default_factory=lambda: ["level", "status", "state",
                                                               "outcome"])
    rules: list[CodeRule] = Field(default_factory=list)
    default: CodeDefault = Field(default_factory=lambda: CodeDefault(
        code=int(RegistrarCode.CRITICAL_ERROR), name=RegistrarCode.CRITICAL_ERROR.name))


class RadarSimSettings(_Strict):
    """Spec-level settings of the radar simulator and the channels it publishes on.

    ``frames`` names the channel whose subjects are, in order, the combined, long-range and
    short-range frame subjects.
    """

    rate_hz: float = Field(default=10.0, gt=0, le=10_000)
    frames: str = "SensorFrame"
    tracks: str = "TrackSet"
    sensor: str = "SensorStatus"
    power: str = "EnergyStatus"


class LagmonSettings(_Strict):
    """Spec-level settings of the lag monitor; thresholds are keyed by durable consumer name."""

    poll_interval_s: float = Field(default=1.0, gt=0, le=3600)
    lag_thresholds: dict[str, int] = Field(default_factory=dict)
    #: the channel its threshold events go to
    health: str = "HealthEvent"

    @field_validator("lag_thresholds")
    @classmethod
    def _non_negative(cls, v: dict[str, int]) -> dict[str, int]:
        for name, threshold in v.items():
            if threshold < 0:
                raise ValueError(f"threshold for {name!r} must be >= 0, got {threshold}")
        return v


class RegistrarSettings(_Strict):
    """Spec-level settings of the registrar."""

    batch_size: int = Field(default=1000, ge=1, le=100_000)
    max_message_bytes: int = Field(default=1_048_576, ge=1)
    #: the channel its lifecycle events go to
    events: str = "RegistrarEvent"
    #: the durables it pulls from (default: every consumer of the spec)
    consumers: list[str] | None = None
    #: validate every event's data against its type's contract (types without one pass);
    #: ``false`` switches it off (like the registrar's ``--no-validate-data``)
    validate_data: bool = True


class RuntimeSection(_Strict):
    """Optional ``runtime:`` section of the spec: per-service knobs (defaults live here)."""

    radar_sim: RadarSimSettings = Field(default_factory=RadarSimSettings)
    lagmon: LagmonSettings = Field(default_factory=LagmonSettings)
    registrar: RegistrarSettings = Field(default_factory=RegistrarSettings)


class BotSpecV1(_Strict):
    """A version 1 document (components and channel names; layout from the QIKI defaults)."""

    version: str = Field(pattern=r"^\d+\.\d+$")
    kind: Literal["BotSpec"]
    metadata: Metadata
    components: dict[str, Component]
    event_bus: EventBus
    runtime: RuntimeSection = Field(default_factory=RuntimeSection)


class BotSpec(_Strict):
    """The validated BotSpec (version 2 form; version 1 files are converted on load).

    Build it with :func:`load_botspec`; ``base_dir`` is the directory contract paths were
    resolved against.
    """

    version: str = Field(pattern=r"^\d+\.\d+$")
    kind: Literal["BotSpec"]
    metadata: Metadata
    streams: list[StreamSpec] = Field(default_factory=list)
    consumers: list[ConsumerSpec] = Field(default_factory=list)
    channels: list[Channel] = Field(default_factory=list)
    dead_letter: DeadLetter | None = None
    codes: Codes = Field(default_factory=Codes)
    components: dict[str, Component] = Field(default_factory=dict)
    runtime: RuntimeSection = Field(default_factory=RuntimeSection)

    _contracts: dict[str, ContractRef] = PrivateAttr(default_factory=dict)

    @property
    def contracts(self) -> dict[str, ContractRef]:
        """CloudEvent type -> its contract (paths resolved against the spec's directory)."""
        return dict(self._contracts)

    def channel_names(self) -> list[str]:
        """Names of the declared channels, in spec order."""
        return [c.name for c in self.channels]

    def channel(self, name: str) -> Channel | None:
        """The channel called ``name``, or None."""
        return next((c for c in self.channels if c.name == name), None)


_MODEL_AT: dict[tuple[str, ...], type[BaseModel]] = {
    (): BotSpec,
    ("metadata",): Metadata,
    ("components", "*"): Component,
    ("event_bus",): EventBus,
    ("event_bus", "channels", "#"): ChannelV1,
    ("streams", "#"): StreamSpec,
    ("consumers", "#"): ConsumerSpec,
    ("channels", "#"): Channel,
    ("channels", "#", "types", "#"): TypeSpec,
    ("dead_letter",): DeadLetter,
    ("codes",): Codes,
    ("codes", "rules", "#"): CodeRule,
    ("codes", "default"): CodeDefault,
    ("runtime",): RuntimeSection,
    ("runtime", "radar_sim"): RadarSimSettings,
    ("runtime", "lagmon"): LagmonSettings,
    ("runtime", "registrar"): RegistrarSettings,
}


def _closest(word: str, options: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if not match:
        # Case mistakes ("sensorframe") score low in difflib; compare case-folded too.
        folded = {o.casefold(): o for o in options}
        hit = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
        match = [folded[hit[0]]] if hit else []
    return f"; did you mean {match[0]!r}?" if match else ""


def _line_for(lines: Mapping[PathT, int], path: PathT) -> int | None:
    """Line of ``path`` or of its nearest ancestor present in the document."""
    p = tuple(path)
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return lines.get(())


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _pydantic_problems(exc: ValidationError, file: str, lines: Mapping[PathT, int],
                       data: Any, root: type[BaseModel] = BotSpec) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc: PathT = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("[")))
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}{_format_allowed(loc[:-1], str(loc[-1]), root)}"
        elif kind == "missing":
            msg = f"required key {loc[-1]!r} is missing"
        else:
            msg = err["msg"]
            if "input" in err and kind.endswith("_type"):
                msg += f", got {_describe(err['input'])}"
            elif "input" in err and not isinstance(err["input"], dict | list):
                msg += f" (got {err['input']!r})"
            if loc == ("version",):
                msg += '; write the version as a quoted string such as "1.0"'
        problems.append(Problem(file, format_path(loc), _line_for(lines, loc), msg))
    return problems



def _format_allowed(parent: PathT, key: str, root: type[BaseModel] = BotSpec) -> str:
    """Name the keys allowed where an unknown key was found, so the fix is obvious."""
    shape = tuple("#" if isinstance(p, int) else p for p in parent)
    if shape[:1] == ("components",) and len(shape) == 2:
        shape = ("components", "*")
    model = root if shape == () else _MODEL_AT.get(shape)
    if model is None:
        return ""
    allowed = list(model.model_fields)
    return f"{_closest(key, allowed)}; allowed keys here: {', '.join(allowed)}"


class _Problems:
    """Collects problems of one document, each located by key path and line."""

    def __init__(self, file: str, lines: Mapping[PathT, int]) -> None:
        self.file = file
        self.lines = lines
        self.items: list[Problem] = []

    def add(self, path: PathT, msg: str) -> None:
        self.items.append(Problem(self.file, format_path(path), _line_for(self.lines, path), msg))


def _check_filter(p: _Problems, path: PathT, subject: Any, what: str, *,
                  wildcards: bool = True) -> bool:
    try:
        _tokens(str(subject), what, wildcards=wildcards)
    except ValueError as exc:
        p.add(path, str(exc))
        return False
    return True


def _check_code(p: _Problems, path: PathT, code: int) -> None:
    if not 100 <= code <= 999:
        p.add(path, f"code {code} is outside 100..999 (the hundreds digit is the class)")


def _v1_problems(spec: BotSpecV1, p: _Problems) -> None:
    """Version 1 rules: the QIKI components and channels must all be there."""
    for name in spec.components:
        if not _COMPONENT_NAME.match(name):
            p.add(("components", name),
                  f"component name {name!r} must be snake_case (lowercase letters, digits, _)")
    missing = [c for c in REQUIRED_COMPONENTS if c not in spec.components]
    if missing:
        extra = [c for c in spec.components if c not in REQUIRED_COMPONENTS]
        hints = "".join(
            f" ({m!r}: is {hit[0]!r} a misspelling?)" for m in missing
            if (hit := difflib.get_close_matches(m, extra, n=1, cutoff=0.6)))
        p.add(("components",), f"missing required components: {', '.join(missing)}{hints}")

    seen: dict[str, int] = {}
    for i, ch in enumerate(spec.event_bus.channels):
        if ch.name in seen:
            p.add(("event_bus", "channels", i, "name"),
                  f"duplicate channel {ch.name!r} (also event_bus.channels[{seen[ch.name]}])")
        else:
            seen[ch.name] = i
    missing_ch = [c for c in REQUIRED_CHANNELS if c not in seen]
    if missing_ch:
        extra_ch = [c for c in seen if c not in REQUIRED_CHANNELS]
        hints = "".join(
            f" ({m!r}: is {hit[0]!r} a misspelling?)" for m in missing_ch
            if (hit := difflib.get_close_matches(m, extra_ch, n=1, cutoff=0.6)))
        p.add(("event_bus", "channels"),
              f"missing required channels: {', '.join(missing_ch)}{hints}")
    names = list(seen)
    for cname, comp in spec.components.items():
        for field_name in ("provides", "consumes"):
            for i, ref in enumerate(getattr(comp, field_name)):
                if ref not in seen:
                    p.add(("components", cname, field_name, i),
                          f"unknown channel {ref!r}{_closest(ref, names)} "
                          f"(channels are declared in event_bus.channels)")


def _duplicates(p: _Problems, items: Sequence[str], path_of: Any, what: str) -> None:
    first: dict[str, int] = {}
    for i, name in enumerate(items):
        if name in first:
            p.add(path_of(i), f"duplicate {what} {name!r} (first at "
                              f"{format_path(path_of(first[name]))})")
        else:
            first[name] = i


def _v2_problems(spec: BotSpec, p: _Problems, base_dir: Path) -> dict[str, ContractRef]:
    """Every semantic rule of a version 2 spec; returns the parsed contracts by type."""
    # -- names
    _duplicates(p, [s.name for s in spec.streams], lambda i: ("streams", i, "name"), "stream")
    _duplicates(p, [c.durable for c in spec.consumers], lambda i: ("consumers", i, "durable"),
                "consumer")
    _duplicates(p, [c.name for c in spec.channels], lambda i: ("channels", i, "name"),
                "channel")
    type_at: list[tuple[str, PathT]] = [
        (t.type, ("channels", ci, "types", ti, "type"))
        for ci, ch in enumerate(spec.channels) for ti, t in enumerate(ch.types)]
    first_type: dict[str, PathT] = {}
    for name, path in type_at:
        if name in first_type:
            p.add(path, f"duplicate type {name!r} (first at {format_path(first_type[name])}); "
                        "a type belongs to one channel")
        else:
            first_type.setdefault(name, path)

    # -- streams: valid filters, no overlaps (JetStream refuses overlapping stream subjects)
    filters: list[tuple[str, str, PathT]] = []  # (stream, filter, path)
    for si, s in enumerate(spec.streams):
        for fi, f in enumerate(s.subjects):
            path = ("streams", si, "subjects", fi)
            if _check_filter(p, path, f, "stream subject"):
                filters.append((s.name, f, path))
    for i, (sa, fa, _pa) in enumerate(filters):
        for sb, fb, pb in filters[i + 1:]:
            if filters_overlap(fa, fb):
                where = "the same stream" if sa == sb else f"stream {sa!r}"
                p.add(pb, f"subject {fb!r} of stream {sb!r} overlaps {fa!r} of {where}: "
                          "a message would belong to both (JetStream refuses this)")

    # -- channels: every subject captured by exactly one stream, all of it
    channel_subjects: list[str] = []
    for ci, ch in enumerate(spec.channels):
        for si, sub in enumerate(ch.subjects):
            path = ("channels", ci, "subjects", si)
            if not _check_filter(p, path, sub, "channel subject"):
                continue
            channel_subjects.append(sub)
            touching = sorted({name for name, f, _ in filters if filters_overlap(f, sub)})
            covering = {name for name, f, _ in filters if filter_covers(f, sub)}
            if not touching:
                bound = "; ".join(f"{s.name}: {', '.join(s.subjects)}" for s in spec.streams)
                p.add(path, f"subject {sub!r} of channel {ch.name!r} is captured by no stream "
                            f"({bound or 'no streams declared'}): messages published there "
                            "are lost")
            elif len(touching) > 1:
                p.add(path, f"subject {sub!r} of channel {ch.name!r} is captured by several "
                            f"streams: {', '.join(touching)}")
            elif not covering:
                p.add(path, f"subject {sub!r} of channel {ch.name!r} is only partly captured "
                            f"by stream {touching[0]!r}: some of its subjects are lost")

    # -- consumers: a known stream, filters inside it that select some channel
    streams = {s.name: s for s in spec.streams}
    for ci, c in enumerate(spec.consumers):
        stream = streams.get(c.stream)
        if stream is None:
            p.add(("consumers", ci, "stream"),
                  f"unknown stream {c.stream!r}{_closest(c.stream, list(streams))}; "
                  f"known: {', '.join(streams) or 'none'}")
        for fi, f in enumerate(c.filter_subjects):
            path = ("consumers", ci, "filter_subjects", fi)
            if not _check_filter(p, path, f, "filter subject"):
                continue
            if stream is not None and not any(filters_overlap(x, f) for x in stream.subjects):
                p.add(path, f"filter {f!r} selects nothing in stream {c.stream!r} "
                            f"({', '.join(stream.subjects)})")
            elif not any(filters_overlap(f, sub) for sub in channel_subjects):
                p.add(path, f"filter {f!r} matches no channel subject: the consumer would "
                            "never receive a declared message")

    # -- dead letters must not land where a consumer reads (rejected, dead-lettered, again...)
    if spec.dead_letter is not None:
        dl = spec.dead_letter.subject
        path = ("dead_letter", "subject")
        if _check_filter(p, path, dl, "dead-letter subject", wildcards=False):
            for c in spec.consumers:
                stream = streams.get(c.stream)
                if stream is None or not stream_captures(stream.subjects, dl):
                    continue
                if not c.filter_subjects or any(subject_matches(f, dl)
                                                for f in c.filter_subjects):
                    p.add(path, f"dead-letter subject {dl!r} is in stream {c.stream!r}, which "
                                f"consumer {c.durable!r} reads: every dead letter would be "
                                "consumed and rejected again (a loop); give dead letters a "
                                "stream of their own")

    # -- codes
    codes = spec.codes
    for digit in codes.classes:
        if not 1 <= digit <= 9:
            p.add(("codes", "classes", digit), f"class {digit} must be a digit 1..9")
    for ri, rule in enumerate(codes.rules):
        path = ("codes", "rules", ri)
        if (rule.code is None) == (rule.outcomes is None):
            p.add(path, "a rule gives exactly one of code: N or outcomes: {CLASS: N}")
        if rule.code is not None:
            _check_code(p, (*path, "code"), rule.code)
        for word_class, code in (rule.outcomes or {}).items():
            _check_code(p, (*path, "outcomes", word_class), code)
            if word_class not in codes.outcome_words:
                p.add((*path, "outcomes", word_class),
                      f"unknown outcome class {word_class!r}"
                      f"{_closest(word_class, list(codes.outcome_words))}; declared in "
                      f"codes.outcome_words: {', '.join(codes.outcome_words) or 'none'}")
        if rule.fallback is not None:
            _check_code(p, (*path, "fallback"), rule.fallback)
        for si, f in enumerate(rule.subject):
            _check_filter(p, (*path, "subject", si), f, "rule subject")
        if not rule.type and not rule.subject and not rule.where:
            p.add(path, "a rule needs at least one condition: type, subject or where")
    _check_code(p, ("codes", "default", "code"), codes.default.code)

    # -- components and runtime references
    names = spec.channel_names()
    for cname, comp in spec.components.items():
        for field_name in ("provides", "consumes"):
            for i, ref in enumerate(getattr(comp, field_name)):
                if ref not in names:
                    p.add(("components", cname, field_name, i),
                          f"unknown channel {ref!r}{_closest(ref, names)}")
        known = [c.durable for c in spec.consumers]
        for i, durable in enumerate(comp.durables):
            if durable not in known:
                p.add(("components", cname, "durables", i),
                      f"unknown consumer {durable!r}{_closest(durable, known)}; "
                      f"known: {', '.join(known) or 'none'}")
    rt = spec.runtime
    for section, settings in (("radar_sim", rt.radar_sim), ("lagmon", rt.lagmon),
                              ("registrar", rt.registrar)):
        for key in ("frames", "tracks", "sensor", "power", "health", "events"):
            # Only a channel written in the file must exist: the defaults name QIKI's.
            if key in settings.model_fields_set:
                ref = getattr(settings, key)
                if ref not in names:
                    p.add(("runtime", section, key),
                          f"unknown channel {ref!r}{_closest(ref, names)}")
    durables = [c.durable for c in spec.consumers]
    for durable in rt.lagmon.lag_thresholds:
        if durable not in durables:
            p.add(("runtime", "lagmon", "lag_thresholds", durable),
                  f"unknown consumer {durable!r}{_closest(durable, durables)}; "
                  f"known: {', '.join(durables) or 'none'}")
    for i, durable in enumerate(rt.registrar.consumers or []):
        if durable not in durables:
            p.add(("runtime", "registrar", "consumers", i),
                  f"unknown consumer {durable!r}{_closest(durable, durables)}; "
                  f"known: {', '.join(durables) or 'none'}")

    # -- contracts: parse every reference; files must exist
    contracts: dict[str, ContractRef] = {}
    for ci, ch in enumerate(spec.channels):
        for ti, t in enumerate(ch.types):
            if t.contract is None:
                continue
            path = ("channels", ci, "types", ti, "contract")
            try:
                ref = parse_contract_ref(t.contract, base_dir)
            except ValueError as exc:
                p.add(path, str(exc))
                continue
            if ref.kind != "pydantic" and not Path(ref.target).is_file():
                p.add(path, f"contract file {ref.target} does not exist (paths are relative "
                            f"to the spec file's directory {base_dir})")
                continue
            contracts[t.type] = ref
    return contracts


def _v1_to_v2(v1: BotSpecV1) -> BotSpec:
    """A version 1 spec with the QIKI layout, subjects and codes of the shipped spec."""
    qiki = _qiki_defaults()
    by_name = {c.name: c for c in qiki.channels}
    channels = list(qiki.channels)
    # Channels v1 declares beyond QIKI's get a subject next to the registrar's events (so they
    # land in the same stream), as version 1 always did.
    events = by_name.get(qiki.runtime.registrar.events)
    prefix = events.subjects[0].rsplit(".", 1)[0] if events else None
    for ch in v1.event_bus.channels:
        if ch.name not in by_name and prefix is not None:
            channels.append(Channel(name=ch.name, description=ch.description,
                                    subjects=[f"{prefix}.{_snake(ch.name)}"]))
    consumers = [
        # Version 1 thresholds: its runtime.lagmon.lag_thresholds, else the v1 default (1000).
        c.model_copy(update={"lag_threshold": v1.runtime.lagmon.lag_thresholds.get(c.durable)})
        for c in qiki.consumers]
    return BotSpec(
        version=v1.version, kind=v1.kind, metadata=v1.metadata, streams=qiki.streams,
        consumers=consumers, channels=channels, dead_letter=qiki.dead_letter,
        codes=qiki.codes, components=v1.components, runtime=v1.runtime)


@functools.lru_cache(maxsize=1)
def _qiki_defaults() -> BotSpec:
    spec = load_botspec(DEFAULT_BOTSPEC_PATH)
    if int(spec.version.split(".")[0]) != 2:
        raise BotSpecError([Problem(str(DEFAULT_BOTSPEC_PATH), "version", None,
                                    "the shipped spec must be version 2: version 1 files "
                                    "take their layout from it")])
    return spec


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _parse(text: str, source: str, base_dir: Path) -> BotSpec:
    data, walk = _load_yaml(text, source)
    problems = list(walk.problems)
    if not isinstance(data, dict):
        problems.append(Problem(
            source, "<document>", walk.lines.get(()),
            f"expected a mapping with version, kind, metadata, streams, consumers and "
            f"channels, got {_describe(data)}"))
        raise BotSpecError(problems)
    version = data.get("version")
    major = None
    if isinstance(version, str) and re.match(r"^\d+\.\d+$", version):
        major = int(version.split(".")[0])
        if major not in SUPPORTED_MAJOR_VERSIONS:
            problems.append(Problem(source, "version", _line_for(walk.lines, ("version",)),
                                    f"unsupported version {version!r}; this loader reads 1.x "
                                    "and 2.x"))
            raise BotSpecError(problems)
    if major is None:  # unreadable version: judge by the shape, to report the right keys
        major = 1 if "event_bus" in data and "channels" not in data else 2
    root: type[BaseModel] = BotSpecV1 if major == 1 else BotSpec
    try:
        model = root.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, source, walk.lines, data, root))
        problems.sort(key=lambda p: (p.line or 0))
        raise BotSpecError(problems) from None
    p = _Problems(source, walk.lines)
    if isinstance(model, BotSpecV1):
        _v1_problems(model, p)
        durables = [c.durable for c in _qiki_defaults().consumers]
        for durable in model.runtime.lagmon.lag_thresholds:
            if durable not in durables:
                p.add(("runtime", "lagmon", "lag_thresholds", durable),
                      f"unknown consumer {durable!r}{_closest(durable, durables)}; "
                      f"known: {', '.join(durables)}")
        problems.extend(p.items)
        if problems:
            problems.sort(key=lambda x: (x.line or 0))
            raise BotSpecError(problems)
        spec = _v1_to_v2(model)
        spec._contracts = _qiki_defaults().contracts
        return spec
    assert isinstance(model, BotSpec)
    contracts = _v2_problems(model, p, base_dir)
    problems.extend(p.items)
    if problems:
        problems.sort(key=lambda x: (x.line or 0))
        raise BotSpecError(problems)
    model._contracts = contracts
    return model


def parse_botspec(text: str, *, source: str = "<string>",
                  base_dir: Path | str | None = None) -> BotSpec:
    """Validate a BotSpec given as YAML text; ``source`` names it in error messages.

    Contract paths are resolved against ``base_dir`` (default: the current directory).
    """
    return _parse(text, source, Path(base_dir) if base_dir is not None else Path.cwd())


def _read(path: Path | str) -> tuple[str, Path]:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise BotSpecError([Problem(
            str(p), "<document>", None,
            f"cannot read the file: {exc.strerror or exc}; expected a BotSpec YAML file "
            f"(set {BOTSPEC_ENV} or pass a path)")]) from None
    try:
        return raw.decode("utf-8"), p
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BotSpecError([Problem(
            str(p), "<document>", line, f"not UTF-8 text (byte {exc.start})")]) from None


def load_botspec(path: Path | str) -> BotSpec:
    """Load and validate a BotSpec file; raises :class:`BotSpecError` naming file, path, line.

    Contract paths are resolved against the file's directory.
    """
    text, p = _read(path)
    return _parse(text, str(p), p.resolve().parent)


def default_botspec_path() -> Path:
    """``$QIKI_BOTSPEC`` if set, else :data:`DEFAULT_BOTSPEC_PATH`."""
    env = os.environ.get(BOTSPEC_ENV)
    return Path(env) if env else DEFAULT_BOTSPEC_PATH


# --------------------------------------------------------------------------------------------
# NATS subject matching
# --------------------------------------------------------------------------------------------


def _tokens(subject: str, what: str, *, wildcards: bool) -> list[str]:
    if not subject:
        raise ValueError(f"{what} must not be empty")
    toks = subject.split(".")
    for i, tok in enumerate(toks):
        if not tok or any(c.isspace() for c in tok):
            raise ValueError(f"{what} {subject!r} has an empty or blank token")
        if tok in ("*", ">"):
            if not wildcards:
                raise ValueError(f"{what} {subject!r} must be a literal subject (no * or >)")
            if tok == ">" and i != len(toks) - 1:
                raise ValueError(f"{what} {subject!r}: '>' is only allowed as the last token")
    return toks


def subject_matches(filter_subject: str, subject: str) -> bool:
    """True if the literal ``subject`` is matched by ``filter_subject`` (NATS semantics).

    ``*`` matches exactly one token, ``>`` (last token only) one or more trailing tokens. So
    ``qiki.radar.v1.*`` does NOT match ``qiki.radar.v1.frames.lr`` — the original QIKI bug.
    Raises ValueError for a malformed filter or a subject containing wildcards.
    """
    ftoks = _tokens(filter_subject, "filter", wildcards=True)
    stoks = _tokens(subject, "subject", wildcards=False)
    for i, ftok in enumerate(ftoks):
        if ftok == ">":
            return len(stoks) > i
        if i >= len(stoks):
            return False
        if ftok != "*" and ftok != stoks[i]:
            return False
    return len(stoks) == len(ftoks)


# --------------------------------------------------------------------------------------------


def filters_overlap(a: str, b: str) -> bool:
    """True if some literal subject matches both NATS filters."""
    ta, tb = a.split("."), b.split(".")
    for i in range(max(len(ta), len(tb))):
        x = ta[i] if i < len(ta) else None
        y = tb[i] if i < len(tb) else None
        if x == ">" or y == ">":
            return (x is not None) and (y is not None)
        if x is None or y is None:
            return False
        if x != "*" and y != "*" and x != y:
            return False
    return True


def filter_covers(outer: str, inner: str) -> bool:
    """True if every subject ``inner`` matches is matched by ``outer`` too."""
    to, ti = outer.split("."), inner.split(".")
    for i, o in enumerate(to):
        if o == ">":
            return len(ti) > i
        if i >= len(ti):
            return False
        t = ti[i]
        if t == ">":
            return False
        if o == "*":
            continue
        if t == "*" or o != t:
            return False
    return len(ti) == len(to)


def stream_captures(stream_subjects: Sequence[str], subject: str) -> bool:
    """True if a message on the literal ``subject`` lands in a stream bound to those filters."""
    return any(subject_matches(f, subject) for f in stream_subjects)


# --------------------------------------------------------------------------------------------
# Runtime configuration
# --------------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamConfig(_Frozen):
    """A JetStream stream of the platform (converted to nats-py's at provisioning)."""

    name: str
    subjects: list[str]
    description: str = ""
    storage: Literal["file", "memory"] = "file"
    duplicate_window_s: float = 120.0
    replicas: int = Field(default=1, ge=1, le=5)
    retention: Literal["limits", "interest", "workqueue"] = "limits"
    max_age_s: float | None = None
    max_bytes: int | None = None
    max_msg_size: int | None = None

    def captures(self, subject: str) -> bool:
        """True if a message published on ``subject`` lands in this stream."""
        return stream_captures(self.subjects, subject)


class ConsumerConfig(_Frozen):
    """A durable pull consumer."""

    stream: str
    durable: str
    filter_subjects: list[str] = Field(default_factory=list)
    ack_policy: Literal["explicit", "all", "none"] = "explicit"
    ack_wait_s: float = 5.0
    max_deliver: int = 5
    max_ack_pending: int = 20_000
    description: str = ""
    lag_threshold: int = 1000

    @property
    def filter_subject(self) -> str | None:
        """The single filter subject, or None (whole stream, or several filters)."""
        return self.filter_subjects[0] if len(self.filter_subjects) == 1 else None


class Subjects(_Frozen):
    """The subjects the reference services publish on, found through the spec's channels.

    An empty string means the spec has no such channel (a service that needs it refuses to
    start, naming the ``runtime`` key to set).
    """

    radar_frames: str = ""
    radar_frames_lr: str = ""
    radar_frames_sr: str = ""
    radar_tracks: str = ""
    sensor_events: str = ""
    power_events: str = ""
    health_events: str = ""
    registrar_events: str = ""
    dead_letter: str = ""

    def all(self) -> list[str]:
        """Every non-empty subject above, in field order."""
        return [str(v) for v in self.model_dump().values() if v]


class LagWatch(_Frozen):
    """A consumer the lag monitor watches, with the lag that raises a health event."""

    stream: str
    durable: str
    lag_threshold: int = Field(ge=0)


class ServiceConfig(_Frozen):
    """Settings of one reference service; fields a service does not use stay empty/None."""

    name: str
    source: str = Field(description="CloudEvents source of the events the service publishes")
    publishes: list[str] = Field(default_factory=list)
    durables: list[str] = Field(default_factory=list, description="consumers it pulls from")
    watch: list[LagWatch] = Field(default_factory=list, description="lagmon: watched consumers")
    rate_hz: float | None = None
    poll_interval_s: float | None = None
    batch_size: int | None = None
    max_message_bytes: int | None = None
    #: registrar: validate event data against the spec's contracts
    validate_data: bool | None = None


class ComponentRoutes(_Frozen):
    """Subjects a spec component publishes to and reads from (from provides/consumes)."""

    type: str
    publishes: list[str]
    consumes: list[str]
    #: durable consumers it pulls from
    durables: list[str] = Field(default_factory=list)


class RuntimeConfig(_Frozen):
    """Everything the platform and the harness need at run time, generated from a BotSpec."""

    bot_id: str
    spec_version: str
    streams: list[StreamConfig]
    consumers: list[ConsumerConfig]
    subjects: Subjects
    channels: dict[str, list[str]] = Field(description="channel name -> its subjects")
    channel_types: dict[str, list[str]] = Field(
        default_factory=dict, description="channel name -> the CloudEvent types it carries")
    contracts: dict[str, ContractRef] = Field(
        default_factory=dict, description="CloudEvent type -> its data contract")
    dead_letter: str | None = None
    codes: Codes = Field(default_factory=Codes)
    components: dict[str, ComponentRoutes]
    services: dict[str, ServiceConfig]

    @field_validator("contracts", mode="before")
    @classmethod
    def _contracts_as_written(cls, v: Any) -> Any:
        # to_dict() writes each contract as str(ref); reading a dumped configuration back
        # (a service given the generated JSON) must give the same refs.
        if isinstance(v, Mapping):
            return {t: ContractRef.from_str(r) if isinstance(r, str) else r for t, r in v.items()}
        return v

    @property
    def registrar(self) -> ServiceConfig:
        """Settings of the registrar."""
        return self.services["registrar"]

    @property
    def lagmon(self) -> ServiceConfig:
        """Settings of the lag monitor."""
        return self.services["lagmon"]

    @property
    def radar_sim(self) -> ServiceConfig:
        """Settings of the radar simulator."""
        return self.services["radar_sim"]

    def stream(self, name: str) -> StreamConfig:
        """The stream called ``name``; KeyError naming the known ones otherwise."""
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(f"no stream {name!r}; known: {', '.join(s.name for s in self.streams)}")

    def consumer(self, durable: str) -> ConsumerConfig:
        """The consumer with durable name ``durable``."""
        for c in self.consumers:
            if c.durable == durable:
                return c
        known = ", ".join(c.durable for c in self.consumers)
        raise KeyError(f"no consumer {durable!r}; known: {known}")

    def channel_subjects(self) -> list[str]:
        """Every channel subject of the spec, in spec order, unique (what the tap listens to)."""
        return list(dict.fromkeys(s for subs in self.channels.values() for s in subs))

    def channel_of_type(self, type_: str) -> str | None:
        """The channel carrying CloudEvent type ``type_``, or None."""
        for name, types in self.channel_types.items():
            if type_ in types:
                return name
        return None

    def with_overrides(self, *, storage: Literal["file", "memory"] | None = None,
                       replicas: int | None = None) -> RuntimeConfig:
        """A copy with every stream's storage and/or replica count replaced."""
        if replicas is not None and not 1 <= replicas <= 5:
            raise ValueError(f"replicas must be between 1 and 5, got {replicas}")
        if storage is not None and storage not in ("file", "memory"):
            raise ValueError(f"storage must be 'file' or 'memory', got {storage!r}")
        update: dict[str, Any] = {}
        if storage is not None:
            update["storage"] = storage
        if replicas is not None:
            update["replicas"] = replicas
        streams = [s.model_copy(update=update) for s in self.streams]
        return self.model_copy(update={"streams": streams})

    def all_publish_subjects(self) -> list[str]:
        """Every literal subject a service, component or channel publishes on, sorted, unique."""
        subjects: set[str] = set(self.subjects.all())
        for svc in self.services.values():
            subjects.update(svc.publishes)
        for routes in self.components.values():
            subjects.update(routes.publishes)
        for subs in self.channels.values():
            subjects.update(subs)
        if self.dead_letter:
            subjects.add(self.dead_letter)
        return sorted(s for s in subjects if "*" not in s.split(".") and not s.endswith(">"))

    def streams_for(self, subject: str) -> list[StreamConfig]:
        """Every stream capturing ``subject`` (JetStream forbids overlaps: 0 or 1 is sane)."""
        return [s for s in self.streams if s.captures(subject)]

    def stream_for(self, subject: str) -> StreamConfig | None:
        """The stream capturing ``subject``, or None when no stream would store it."""
        found = self.streams_for(subject)
        return found[0] if found else None

    def coverage_problems(self) -> list[str]:
        """Subjects published but captured by no stream or by several; consumers on no stream.

        This is the guard against the original QIKI bug: a stream bound to ``qiki.radar.v1.*``
        silently dropped everything published on ``qiki.radar.v1.frames.lr``. (The loader
        checks the same, with line numbers; this re-checks a config changed in code.)
        """
        out = []
        for subject in self.all_publish_subjects():
            found = self.streams_for(subject)
            if not found:
                bound = "; ".join(f"{s.name}: {', '.join(s.subjects)}" for s in self.streams)
                out.append(f"subject {subject!r} is captured by no stream ({bound}): "
                           f"messages published there are lost")
            elif len(found) > 1:
                out.append(f"subject {subject!r} is captured by several streams: "
                           f"{', '.join(s.name for s in found)}")
        names = {s.name for s in self.streams}
        for c in self.consumers:
            if c.stream not in names:
                out.append(f"consumer {c.durable!r} is on unknown stream {c.stream!r}")
                continue
            stream = self.stream(c.stream)
            for f in c.filter_subjects:
                if not any(filters_overlap(x, f) for x in stream.subjects):
                    out.append(f"consumer {c.durable!r} filter {f!r} selects "
                               f"nothing in stream {c.stream!r}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain data (for ``qiki-harness botspec generate`` and journals)."""
        data = self.model_dump(mode="json")
        data["contracts"] = {t: str(ref) for t, ref in self.contracts.items()}
        return data


def _role(spec: BotSpec, channel: str, index: int = 0) -> str:
    ch = spec.channel(channel)
    if ch is None or index >= len(ch.subjects):
        return ""
    return ch.subjects[index]


def generate(spec: BotSpec) -> RuntimeConfig:
    """Turn a validated spec into the runtime configuration (streams, consumers, subjects...)."""
    rt = spec.runtime
    channels = {ch.name: list(ch.subjects) for ch in spec.channels}
    subjects = Subjects(
        radar_frames=_role(spec, rt.radar_sim.frames, 0),
        radar_frames_lr=_role(spec, rt.radar_sim.frames, 1),
        radar_frames_sr=_role(spec, rt.radar_sim.frames, 2),
        radar_tracks=_role(spec, rt.radar_sim.tracks),
        sensor_events=_role(spec, rt.radar_sim.sensor),
        power_events=_role(spec, rt.radar_sim.power),
        health_events=_role(spec, rt.lagmon.health),
        registrar_events=_role(spec, rt.registrar.events),
        dead_letter=spec.dead_letter.subject if spec.dead_letter else "",
    )
    components = {
        name: ComponentRoutes(
            type=comp.type,
            publishes=sorted({s for ch in comp.provides for s in channels.get(ch, [])}),
            consumes=sorted({s for ch in comp.consumes for s in channels.get(ch, [])}),
            durables=list(comp.durables),
        )
        for name, comp in spec.components.items()
    }
    default_threshold = 1000
    consumers = [
        ConsumerConfig(
            stream=c.stream, durable=c.durable, filter_subjects=list(c.filter_subjects),
            ack_policy=c.ack_policy, ack_wait_s=c.ack_wait_s, max_deliver=c.max_deliver,
            max_ack_pending=c.max_ack_pending, description=c.description or "",
            lag_threshold=rt.lagmon.lag_thresholds.get(
                c.durable, c.lag_threshold if c.lag_threshold is not None else default_threshold),
        )
        for c in spec.consumers
    ]
    streams = [
        StreamConfig(
            name=s.name, subjects=list(s.subjects), description=s.description or "",
            storage=s.storage, duplicate_window_s=s.duplicate_window_s, replicas=s.replicas,
            retention=s.retention, max_age_s=s.max_age_s, max_bytes=s.max_bytes,
            max_msg_size=s.max_msg_size,
        )
        for s in spec.streams
    ]
    registrar_durables = (rt.registrar.consumers if rt.registrar.consumers is not None
                          else [c.durable for c in consumers])
    # CloudEvents sources of the reference services: names of the services, not of the platform.
    services = {
        "registrar": ServiceConfig(
            name="registrar",
            source="urn:qiki:registrar",
            publishes=[s for s in (subjects.registrar_events, subjects.dead_letter) if s],
            durables=list(registrar_durables),
            batch_size=rt.registrar.batch_size,
            max_message_bytes=rt.registrar.max_message_bytes,
            validate_data=rt.registrar.validate_data,
        ),
        "lagmon": ServiceConfig(
            name="lagmon",
            source="urn:qiki:lagmon",
            publishes=[s for s in (subjects.health_events,) if s],
            watch=[LagWatch(stream=c.stream, durable=c.durable, lag_threshold=c.lag_threshold)
                   for c in consumers],
            poll_interval_s=rt.lagmon.poll_interval_s,
        ),
        "radar_sim": ServiceConfig(
            name="radar_sim",
            source="urn:qiki:q-sim-service:radar",
            publishes=[s for s in (subjects.radar_frames, subjects.radar_frames_lr,
                                   subjects.radar_frames_sr, subjects.radar_tracks,
                                   subjects.sensor_events, subjects.power_events) if s],
            rate_hz=rt.radar_sim.rate_hz,
        ),
    }
    return RuntimeConfig(
        bot_id=spec.metadata.id,
        spec_version=spec.version,
        streams=streams,
        consumers=consumers,
        subjects=subjects,
        channels=channels,
        channel_types={ch.name: [t.type for t in ch.types] for ch in spec.channels},
        contracts=spec.contracts,
        dead_letter=spec.dead_letter.subject if spec.dead_letter else None,
        codes=spec.codes,
        components=components,
        services=services,
    )


def load_runtime_config(path: Path | str | None = None) -> RuntimeConfig:
    """Load the spec at ``path`` (default: :func:`default_botspec_path`) and generate from it."""
    return generate(load_botspec(path if path is not None else default_botspec_path()))


def dump_runtime_config(config: RuntimeConfig, fmt: Literal["yaml", "json"] = "yaml") -> str:
    """Render the runtime configuration as YAML or JSON text."""
    data = config.to_dict()
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    raise ValueError(f"fmt must be 'yaml' or 'json', got {fmt!r}")


# --------------------------------------------------------------------------------------------
# Provisioning
# --------------------------------------------------------------------------------------------


@dataclass
class ProvisionResult:
    """What :func:`provision` did: names of streams / durables per outcome."""

    created_streams: list[str] = field(default_factory=list)
    updated_streams: list[str] = field(default_factory=list)
    unchanged_streams: list[str] = field(default_factory=list)
    created_consumers: list[str] = field(default_factory=list)
    updated_consumers: list[str] = field(default_factory=list)
    unchanged_consumers: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True if anything was created or updated."""
        return bool(self.created_streams or self.updated_streams or self.created_consumers
                    or self.updated_consumers)

    def to_dict(self) -> dict[str, list[str]]:
        """Plain data for logs and journals."""
        return {k: list(v) for k, v in vars(self).items()}


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return (a or 0) == (b or 0)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


async def provision(js: JetStreamContext, config: RuntimeConfig, *, streams: bool = True,
                    consumers: bool = True) -> ProvisionResult:
    """Create or update the streams and durable pull consumers of ``config``; idempotent.

    A stream whose storage type differs on the server cannot be changed in place: that raises
    :class:`ProvisionError` (delete the stream, or use ``with_overrides(storage=...)``).
    ``streams=False`` touches consumers only: a service that just needs its durables must not
    fight the harness over stream settings (e.g. memory storage set by an override).
    """
    from nats.js import api
    from nats.js.errors import NotFoundError

    result = ProvisionResult()
    for s in config.streams if streams else []:
        want = api.StreamConfig(
            name=s.name,
            description=s.description or None,
            subjects=list(s.subjects),
            storage=api.StorageType.FILE if s.storage == "file" else api.StorageType.MEMORY,
            num_replicas=s.replicas,
            duplicate_window=s.duplicate_window_s,
            max_age=s.max_age_s if s.max_age_s is not None else 0,
            max_bytes=s.max_bytes if s.max_bytes is not None else -1,
            max_msg_size=s.max_msg_size if s.max_msg_size is not None else -1,
            retention=api.RetentionPolicy(s.retention),
        )
        try:
            info = await js.stream_info(s.name)
        except NotFoundError:
            await js.add_stream(want)
            result.created_streams.append(s.name)
            continue
        have = info.config
        if have.storage != want.storage or have.retention != want.retention:
            what = "storage" if have.storage != want.storage else "retention"
            raise ProvisionError(
                f"stream {s.name!r} exists with {what} {getattr(have, what)!r} but the "
                f"configuration wants {getattr(s, what)!r}; {what} cannot change in place: "
                "delete the stream first")
        same = (
            sorted(have.subjects or []) == sorted(s.subjects)
            and (have.num_replicas or 1) == s.replicas
            and _close(have.duplicate_window, s.duplicate_window_s)
            and _close(have.max_age, want.max_age)
            and (have.max_bytes if have.max_bytes is not None else -1) == want.max_bytes
            and (have.max_msg_size if have.max_msg_size is not None else -1)
            == want.max_msg_size
            and (have.description or None) == want.description
        )
        if same:
            result.unchanged_streams.append(s.name)
        else:
            await js.update_stream(want)
            result.updated_streams.append(s.name)

    for c in config.consumers if consumers else []:
        want_c = api.ConsumerConfig(
            durable_name=c.durable,
            description=c.description or None,
            ack_policy=api.AckPolicy(c.ack_policy),
            ack_wait=c.ack_wait_s,
            max_deliver=c.max_deliver,
            max_ack_pending=c.max_ack_pending,
            # One filter goes in filter_subject: servers before 2.10 know only that field.
            filter_subject=c.filter_subject,
            filter_subjects=list(c.filter_subjects) if len(c.filter_subjects) > 1 else None,
            deliver_policy=api.DeliverPolicy.ALL,
        )
        try:
            cinfo = await js.consumer_info(c.stream, c.durable)
        except NotFoundError:
            await js.add_consumer(c.stream, want_c)
            result.created_consumers.append(c.durable)
            continue
        h = cinfo.config
        same = (
            h.ack_policy == want_c.ack_policy
            and _close(h.ack_wait, c.ack_wait_s)
            and h.max_deliver == c.max_deliver
            and h.max_ack_pending == c.max_ack_pending
            and sorted(h.filter_subjects or ([h.filter_subject] if h.filter_subject else []))
            == sorted(c.filter_subjects)
            and (h.description or None) == want_c.description
        )
        if same:
            result.unchanged_consumers.append(c.durable)
        else:
            # The server treats a create for an existing durable as an update of the
            # editable fields (ack wait, max deliver...); it rejects forbidden changes.
            await js.add_consumer(c.stream, want_c)
            result.updated_consumers.append(c.durable)
    return result
