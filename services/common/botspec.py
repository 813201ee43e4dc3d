"""BotSpec: the QIKI bot description, its validator and the runtime-configuration generator.

``scenarios/specs/BotSpec.yaml`` describes the bot's components and the event-bus channels they
talk over. This module

* loads it strictly (:func:`load_botspec`): unknown keys, wrong types, duplicate keys, missing
  required components or channels and references to channels that do not exist are errors; every
  error names the file, the key path (``components.hull.provides[2]``) and the line;
* generates the runtime configuration (:func:`generate`): the JetStream layout (streams, durable
  pull consumers), the channel -> NATS subject mapping and per-service settings;
* provisions that layout on a server (:func:`provision`), idempotently.

This module is THE one place stream, consumer and subject names live: services and the harness
read them from :class:`RuntimeConfig`, never spell them out.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

__all__ = [
    "DEFAULT_BOTSPEC_PATH",
    "REQUIRED_CHANNELS",
    "REQUIRED_COMPONENTS",
    "BotSpec",
    "BotSpecError",
    "Channel",
    "Component",
    "ComponentRoutes",
    "ConsumerConfig",
    "LagWatch",
    "Problem",
    "ProvisionError",
    "ProvisionResult",
    "RuntimeConfig",
    "ServiceConfig",
    "StreamConfig",
    "Subjects",
    "default_botspec_path",
    "dump_runtime_config",
    "generate",
    "load_botspec",
    "load_runtime_config",
    "parse_botspec",
    "provision",
    "subject_matches",
]

#: The shipped spec: ``scenarios/specs/BotSpec.yaml`` of the repository this module lives in.
#: :func:`default_botspec_path` lets the environment variable ``QIKI_BOTSPEC`` override it.
DEFAULT_BOTSPEC_PATH: Path = (
    Path(__file__).resolve().parent.parent.parent / "scenarios" / "specs" / "BotSpec.yaml"
)
BOTSPEC_ENV = "QIKI_BOTSPEC"

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
SUPPORTED_MAJOR_VERSION = 1

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
                "the file is empty; expected a mapping with version, kind, metadata, "
                "components and event_bus")])
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
_DURABLE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(_Strict):
    """Identity of the bot."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)
    name: str | None = None
    description: str | None = None


class Component(_Strict):
    """A bot component: what it is and which channels it writes (provides) and reads."""

    type: str = Field(min_length=1)
    description: str | None = None
    provides: list[str] = Field(default_factory=list)
    consumes: list[str] = Field(default_factory=list)


class Channel(_Strict):
    """An event-bus channel; its NATS subjects come from :class:`Subjects`, not the spec."""

    name: str = Field(pattern=_CHANNEL_NAME, max_length=64)
    description: str | None = None


class EventBus(_Strict):
    """The event bus: a list of channels."""

    channels: list[Channel]


class RadarSimSettings(_Strict):
    """Spec-level settings of the radar simulator."""

    rate_hz: float = Field(default=10.0, gt=0, le=10_000)


class LagmonSettings(_Strict):
    """Spec-level settings of the lag monitor; thresholds are keyed by durable consumer name."""

    poll_interval_s: float = Field(default=1.0, gt=0, le=3600)
    lag_thresholds: dict[str, int] = Field(default_factory=dict)

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


class RuntimeSection(_Strict):
    """Optional ``runtime:`` section of the spec: per-service knobs (defaults live here)."""

    radar_sim: RadarSimSettings = Field(default_factory=RadarSimSettings)
    lagmon: LagmonSettings = Field(default_factory=LagmonSettings)
    registrar: RegistrarSettings = Field(default_factory=RegistrarSettings)


class BotSpec(_Strict):
    """The validated BotSpec document. Build it with :func:`load_botspec`."""

    version: str = Field(pattern=r"^\d+\.\d+$")
    kind: Literal["BotSpec"]
    metadata: Metadata
    components: dict[str, Component]
    event_bus: EventBus
    runtime: RuntimeSection = Field(default_factory=RuntimeSection)

    def channel_names(self) -> list[str]:
        """Names of the declared channels, in spec order."""
        return [c.name for c in self.event_bus.channels]


_MODEL_AT: dict[tuple[str, ...], type[BaseModel]] = {
    (): BotSpec,
    ("metadata",): Metadata,
    ("components", "*"): Component,
    ("event_bus",): EventBus,
    ("event_bus", "channels", "#"): Channel,
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
                       data: Any) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc: PathT = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("[")))
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}{_format_allowed(loc[:-1], str(loc[-1]))}"
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


def _format_allowed(parent: PathT, key: str) -> str:
    """Name the keys allowed where an unknown key was found, so the fix is obvious."""
    shape = tuple("#" if isinstance(p, int) else p for p in parent)
    if shape[:1] == ("components",) and len(shape) == 2:
        shape = ("components", "*")
    model = _MODEL_AT.get(shape)
    if model is None:
        return ""
    allowed = list(model.model_fields)
    return f"{_closest(key, allowed)}; allowed keys here: {', '.join(allowed)}"


def _semantic_problems(spec: BotSpec, file: str, lines: Mapping[PathT, int]) -> list[Problem]:
    problems: list[Problem] = []

    def add(path: PathT, msg: str) -> None:
        problems.append(Problem(file, format_path(path), _line_for(lines, path), msg))

    major = int(spec.version.split(".")[0])
    if major != SUPPORTED_MAJOR_VERSION:
        add(("version",), f"unsupported version {spec.version!r}; this loader reads "
                          f"{SUPPORTED_MAJOR_VERSION}.x")

    for name in spec.components:
        if not _COMPONENT_NAME.match(name):
            add(("components", name),
                f"component name {name!r} must be snake_case (lowercase letters, digits, _)")
    missing = [c for c in REQUIRED_COMPONENTS if c not in spec.components]
    if missing:
        extra = [c for c in spec.components if c not in REQUIRED_COMPONENTS]
        hints = "".join(
            f" ({m!r}: is {hit[0]!r} a misspelling?)" for m in missing
            if (hit := difflib.get_close_matches(m, extra, n=1, cutoff=0.6)))
        add(("components",), f"missing required components: {', '.join(missing)}{hints}")

    seen: dict[str, int] = {}
    for i, ch in enumerate(spec.event_bus.channels):
        if ch.name in seen:
            add(("event_bus", "channels", i, "name"),
                f"duplicate channel {ch.name!r} (also event_bus.channels[{seen[ch.name]}])")
        else:
            seen[ch.name] = i
    missing_ch = [c for c in REQUIRED_CHANNELS if c not in seen]
    if missing_ch:
        extra_ch = [c for c in seen if c not in REQUIRED_CHANNELS]
        hints = "".join(
            f" ({m!r}: is {hit[0]!r} a misspelling?)" for m in missing_ch
            if (hit := difflib.get_close_matches(m, extra_ch, n=1, cutoff=0.6)))
        add(("event_bus", "channels"),
            f"missing required channels: {', '.join(missing_ch)}{hints}")

    names = list(seen)
    for cname, comp in spec.components.items():
        for field_name in ("provides", "consumes"):
            refs: list[str] = getattr(comp, field_name)
            for i, ref in enumerate(refs):
                if ref not in seen:
                    add(("components", cname, field_name, i),
                        f"unknown channel {ref!r}{_closest(ref, names)} "
                        f"(channels are declared in event_bus.channels)")

    durables = [c.durable for c in _consumer_layout()]
    for durable in spec.runtime.lagmon.lag_thresholds:
        if durable not in durables:
            add(("runtime", "lagmon", "lag_thresholds", durable),
                f"unknown consumer {durable!r}{_closest(durable, durables)}; "
                f"known: {', '.join(durables)}")
    return problems


def parse_botspec(text: str, *, source: str = "<string>") -> BotSpec:
    """Validate a BotSpec given as YAML text; ``source`` names it in error messages."""
    data, walk = _load_yaml(text, source)
    problems = list(walk.problems)
    if not isinstance(data, dict):
        problems.append(Problem(
            source, "<document>", walk.lines.get(()),
            f"expected a mapping with version, kind, metadata, components and event_bus, "
            f"got {_describe(data)}"))
        raise BotSpecError(problems)
    try:
        spec = BotSpec.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, source, walk.lines, data))
        problems.sort(key=lambda p: (p.line or 0))
        raise BotSpecError(problems) from None
    problems.extend(_semantic_problems(spec, source, walk.lines))
    if problems:
        problems.sort(key=lambda p: (p.line or 0))
        raise BotSpecError(problems)
    return spec


def load_botspec(path: Path | str) -> BotSpec:
    """Load and validate a BotSpec file; raises :class:`BotSpecError` naming file, path, line."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise BotSpecError([Problem(
            str(p), "<document>", None,
            f"cannot read the file: {exc.strerror or exc}; expected a BotSpec YAML file "
            f"(set {BOTSPEC_ENV} or pass a path)")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BotSpecError([Problem(
            str(p), "<document>", line, f"not UTF-8 text (byte {exc.start})")]) from None
    return parse_botspec(text, source=str(p))


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
    max_age_s: float | None = None
    max_bytes: int | None = None

    def captures(self, subject: str) -> bool:
        """True if a message published on ``subject`` lands in this stream."""
        return any(subject_matches(f, subject) for f in self.subjects)


class ConsumerConfig(_Frozen):
    """A durable pull consumer with explicit ack."""

    stream: str
    durable: str
    filter_subject: str | None = None
    ack_policy: Literal["explicit"] = "explicit"
    #: A registrar batch commits in milliseconds; what a crashed consumer had fetched comes
    #: back only after ack_wait, so a long wait (30 s) stalls every recovery.
    ack_wait_s: float = 5.0
    max_deliver: int = 5
    max_ack_pending: int = 20_000
    description: str = ""


class Subjects(_Frozen):
    """Every NATS subject of the platform. The only place subjects are spelled out."""

    radar_frames: str = "qiki.radar.v1.frames"
    radar_frames_lr: str = "qiki.radar.v1.frames.lr"
    radar_frames_sr: str = "qiki.radar.v1.frames.sr"
    radar_tracks: str = "qiki.radar.v1.tracks"
    sensor_events: str = "qiki.events.v1.sensor"
    power_events: str = "qiki.events.v1.power"
    shield_events: str = "qiki.events.v1.shields"
    nav_events: str = "qiki.events.v1.nav"
    thruster_cmd: str = "qiki.events.v1.cmd.thruster"
    mode_cmd: str = "qiki.events.v1.cmd.mode"
    protocol_cmd: str = "qiki.events.v1.cmd.protocol"
    health_events: str = "qiki.events.v1.health"
    registrar_events: str = "qiki.events.v1.registrar"
    dead_letter: str = "qiki.dlq.v1.registrar"

    def all(self) -> list[str]:
        """Every subject above, in field order."""
        return [str(v) for v in self.model_dump().values()]


# Channel -> Subjects field(s). A channel added to a spec beyond the required ones gets
# qiki.events.v1.<snake_name> so it still lands in QIKI_EVENTS_V1.
_CHANNEL_FIELDS: dict[str, tuple[str, ...]] = {
    "SensorFrame": ("radar_frames", "radar_frames_lr", "radar_frames_sr"),
    "TrackSet": ("radar_tracks",),
    "ThrusterCmd": ("thruster_cmd",),
    "ModeCmd": ("mode_cmd",),
    "ProtocolCmd": ("protocol_cmd",),
    "EnergyStatus": ("power_events",),
    "ShieldStatus": ("shield_events",),
    "NavState": ("nav_events",),
    "RegistrarEvent": ("registrar_events",),
}

STREAM_RADAR = "QIKI_RADAR_V1"
STREAM_EVENTS = "QIKI_EVENTS_V1"
STREAM_DLQ = "QIKI_DLQ_V1"


def _stream_layout() -> list[StreamConfig]:
    return [
        StreamConfig(name=STREAM_RADAR, subjects=["qiki.radar.v1.>"],
                     description="Radar frames (incl. .lr/.sr) and tracks",
                     max_age_s=24 * 3600.0),
        StreamConfig(name=STREAM_EVENTS, subjects=["qiki.events.v1.>"],
                     description="Platform events and commands (CloudEvents)",
                     max_age_s=7 * 24 * 3600.0),
        # Outside qiki.events.v1.> on purpose: the registrar consumes the events stream, so a
        # dead letter published there would be consumed, rejected and dead-lettered forever.
        StreamConfig(name=STREAM_DLQ, subjects=["qiki.dlq.v1.>"],
                     description="Raw copies of messages the registrar rejected",
                     max_age_s=30 * 24 * 3600.0),
    ]


def _consumer_layout() -> list[ConsumerConfig]:
    return [
        ConsumerConfig(stream=STREAM_EVENTS, durable="registrar-events",
                       description="registrar: every platform event"),
        # No filter: the whole radar stream. A filter "qiki.radar.v1.frames.>" would miss the
        # bare "qiki.radar.v1.frames" subject ('>' needs at least one more token).
        ConsumerConfig(stream=STREAM_RADAR, durable="registrar-radar",
                       description="registrar: radar frames and tracks"),
    ]


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


class ComponentRoutes(_Frozen):
    """Subjects a spec component publishes to and reads from (from provides/consumes)."""

    type: str
    publishes: list[str]
    consumes: list[str]


class RuntimeConfig(_Frozen):
    """Everything the platform and the harness need at run time, generated from a BotSpec."""

    bot_id: str
    spec_version: str
    streams: list[StreamConfig]
    consumers: list[ConsumerConfig]
    subjects: Subjects
    channels: dict[str, list[str]] = Field(description="channel name -> its subjects")
    components: dict[str, ComponentRoutes]
    services: dict[str, ServiceConfig]

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
        """Every subject a reference service or spec component publishes on, sorted, unique."""
        subjects: set[str] = set(self.subjects.all())
        for svc in self.services.values():
            subjects.update(svc.publishes)
        for routes in self.components.values():
            subjects.update(routes.publishes)
        for subs in self.channels.values():
            subjects.update(subs)
        return sorted(subjects)

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
        silently dropped everything published on ``qiki.radar.v1.frames.lr``.
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
            elif c.filter_subject is not None:
                stream = self.stream(c.stream)
                if not any(_filters_overlap(f, c.filter_subject) for f in stream.subjects):
                    out.append(f"consumer {c.durable!r} filter {c.filter_subject!r} selects "
                               f"nothing in stream {c.stream!r}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain data (for ``qiki-harness botspec generate`` and journals)."""
        return self.model_dump(mode="json")


def _filters_overlap(a: str, b: str) -> bool:
    """True if some literal subject matches both filters."""
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


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def generate(spec: BotSpec) -> RuntimeConfig:
    """Turn a validated spec into the runtime configuration (streams, consumers, subjects...)."""
    subjects = Subjects()
    channels: dict[str, list[str]] = {}
    for ch in spec.event_bus.channels:
        fields = _CHANNEL_FIELDS.get(ch.name)
        if fields is not None:
            channels[ch.name] = [getattr(subjects, f) for f in fields]
        else:
            channels[ch.name] = [f"qiki.events.v1.{_snake(ch.name)}"]

    components = {
        name: ComponentRoutes(
            type=comp.type,
            publishes=sorted({s for ch in comp.provides for s in channels[ch]}),
            consumes=sorted({s for ch in comp.consumes for s in channels[ch]}),
        )
        for name, comp in spec.components.items()
    }

    consumers = _consumer_layout()
    rt = spec.runtime
    default_threshold = 1000
    services = {
        "registrar": ServiceConfig(
            name="registrar",
            source="urn:qiki:registrar",
            publishes=[subjects.registrar_events, subjects.dead_letter],
            durables=[c.durable for c in consumers],
            batch_size=rt.registrar.batch_size,
            max_message_bytes=rt.registrar.max_message_bytes,
        ),
        "lagmon": ServiceConfig(
            name="lagmon",
            source="urn:qiki:lagmon",
            publishes=[subjects.health_events],
            watch=[
                LagWatch(stream=c.stream, durable=c.durable,
                         lag_threshold=rt.lagmon.lag_thresholds.get(c.durable, default_threshold))
                for c in consumers
            ],
            poll_interval_s=rt.lagmon.poll_interval_s,
        ),
        "radar_sim": ServiceConfig(
            name="radar_sim",
            source="urn:qiki:q-sim-service:radar",
            publishes=[subjects.radar_frames, subjects.radar_frames_lr, subjects.radar_frames_sr,
                       subjects.radar_tracks, subjects.sensor_events, subjects.power_events],
            rate_hz=rt.radar_sim.rate_hz,
        ),
    }
    config = RuntimeConfig(
        bot_id=spec.metadata.id,
        spec_version=spec.version,
        streams=_stream_layout(),
        consumers=consumers,
        subjects=subjects,
        channels=channels,
        components=components,
        services=services,
    )
    problems = config.coverage_problems()
    if problems:  # a programming error in this module, not bad input: say so loudly
        raise AssertionError("generated layout is inconsistent:\n" + "\n".join(problems))
    return config


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
            retention=api.RetentionPolicy.LIMITS,
        )
        try:
            info = await js.stream_info(s.name)
        except NotFoundError:
            await js.add_stream(want)
            result.created_streams.append(s.name)
            continue
        have = info.config
        if have.storage != want.storage:
            raise ProvisionError(
                f"stream {s.name!r} exists with storage {have.storage!r} but the configuration "
                f"wants {s.storage!r}; storage cannot change in place: delete the stream first")
        same = (
            sorted(have.subjects or []) == sorted(s.subjects)
            and (have.num_replicas or 1) == s.replicas
            and _close(have.duplicate_window, s.duplicate_window_s)
            and _close(have.max_age, want.max_age)
            and (have.max_bytes if have.max_bytes is not None else -1) == want.max_bytes
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
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=c.ack_wait_s,
            max_deliver=c.max_deliver,
            max_ack_pending=c.max_ack_pending,
            filter_subject=c.filter_subject,
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
            h.ack_policy == api.AckPolicy.EXPLICIT
            and _close(h.ack_wait, c.ack_wait_s)
            and h.max_deliver == c.max_deliver
            and h.max_ack_pending == c.max_ack_pending
            and (h.filter_subject or None) == c.filter_subject
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
