"""Per-consumer lag thresholds and the crossing state machine (pure, no I/O).

A consumer is *over* once ``lag > threshold`` and back *under* once
``lag <= clear_level`` where ``clear_level = floor(threshold * clear_ratio)`` (``clear_ratio``
1.0 by default: back to the threshold clears; a lower ratio adds a hysteresis band so a lag
hovering at the threshold does not flap).  Only changes of state produce a transition, so a
consumer that stays over for a thousand polls yields one ``ThresholdCrossed``.

A transition is *committed* only once its event was published: if the broker is down the
transition is offered again on the next poll, with the same event id (so a publish whose PubAck
was lost but that was stored is deduplicated by JetStream).  The state is in memory; a
restarted monitor rebuilds it from the events it published (:meth:`ThresholdTracker.restore`,
:mod:`services.lagmon.state`), so a consumer still over produces no second ``ThresholdCrossed``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from services.lagmon.events import THRESHOLD_CLEARED, THRESHOLD_CROSSED

Key = tuple[str, str]
"""(stream, consumer)."""

_SPEC = re.compile(r"^(?:(?P<stream>[^:=\s]+):)?(?P<consumer>[^:=\s]+)=(?P<value>.*)$")


class ThresholdSpecError(ValueError):
    """A ``--threshold`` argument that does not parse."""


@dataclass(frozen=True)
class ThresholdSpec:
    """One threshold: ``stream`` None matches the consumer name on every stream."""

    consumer: str
    threshold: int
    stream: str | None = None

    @classmethod
    def parse(cls, text: str) -> ThresholdSpec:
        """Parse ``STREAM:CONSUMER=N`` or ``CONSUMER=N`` (N an integer >= 0)."""
        m = _SPEC.match(text.strip())
        if m is None:
            raise ThresholdSpecError(
                f"--threshold {text!r}: expected STREAM:CONSUMER=N or CONSUMER=N, "
                "e.g. QIKI_EVENTS_V1:registrar-events=1000"
            )
        raw = m.group("value").strip()
        try:
            value = int(raw)
        except ValueError:
            raise ThresholdSpecError(
                f"--threshold {text!r}: N={raw!r} is not an integer (expected a lag >= 0)"
            ) from None
        if value < 0:
            raise ThresholdSpecError(f"--threshold {text!r}: N={value} must be >= 0")
        return cls(consumer=m.group("consumer"), threshold=value, stream=m.group("stream"))


class Thresholds:
    """Threshold lookup: exact ``(stream, consumer)`` first, then consumer name, then default.

    Specs apply in order and a later one wins over an earlier one it covers.
    """

    def __init__(
        self,
        specs: Iterable[ThresholdSpec] = (),
        *,
        default: int | None = None,
        clear_ratio: float = 1.0,
    ) -> None:
        if default is not None and default < 0:
            raise ValueError(f"default threshold must be >= 0, got {default}")
        if not (math.isfinite(clear_ratio) and 0.0 <= clear_ratio <= 1.0):
            raise ValueError(f"clear_ratio must be within [0, 1], got {clear_ratio}")
        self._exact: dict[Key, int] = {}
        self._by_name: dict[str, int] = {}
        self.default = default
        self.clear_ratio = clear_ratio
        for spec in specs:
            self.set(spec)

    def set(self, spec: ThresholdSpec) -> None:
        """Add or replace one threshold: later specs win, so CLI overrides config.

        A name-only spec replaces earlier exact ones for that consumer name, so
        ``--threshold registrar-events=5`` overrides the BotSpec's per-stream value.
        """
        if spec.stream is None:
            for key in [k for k in self._exact if k[1] == spec.consumer]:
                del self._exact[key]
            self._by_name[spec.consumer] = spec.threshold
        else:
            self._exact[(spec.stream, spec.consumer)] = spec.threshold

    def for_consumer(self, stream: str, consumer: str) -> int | None:
        """The threshold of a consumer, or None when it has none."""
        found = self._exact.get((stream, consumer))
        if found is None:
            found = self._by_name.get(consumer, self.default)
        return found

    def clear_level(self, threshold: int) -> int:
        """Lag at or under which a consumer that was over counts as cleared."""
        return math.floor(threshold * self.clear_ratio)

    def as_dict(self) -> dict[str, int]:
        """Configured thresholds, ``"STREAM:CONSUMER"`` / ``"CONSUMER"`` -> N (for /lag)."""
        out = {f"{s}:{c}": v for (s, c), v in self._exact.items()}
        out.update(self._by_name)
        if self.default is not None:
            out["*"] = self.default
        return out


@dataclass(frozen=True)
class LagReading:
    """The numbers a threshold decision and its event need."""

    stream: str
    consumer: str
    lag: int
    num_pending: int
    num_ack_pending: int
    num_redelivered: int


class ReadingLike(Protocol):
    """Anything with a :class:`LagReading`'s fields (e.g. a poller's ``ConsumerLag``)."""

    @property
    def stream(self) -> str: ...
    @property
    def consumer(self) -> str: ...
    @property
    def lag(self) -> int: ...
    @property
    def num_pending(self) -> int: ...
    @property
    def num_ack_pending(self) -> int: ...
    @property
    def num_redelivered(self) -> int: ...


def _as_reading(r: ReadingLike) -> LagReading:
    if isinstance(r, LagReading):
        return r
    return LagReading(
        r.stream, r.consumer, r.lag, r.num_pending, r.num_ack_pending, r.num_redelivered
    )


@dataclass(frozen=True)
class Transition:
    """A change of state to announce: ``kind`` is the CloudEvent type."""

    kind: Literal["qiki.lagmon.v1.ThresholdCrossed", "qiki.lagmon.v1.ThresholdCleared"]
    reading: LagReading
    threshold: int

    @property
    def key(self) -> Key:
        """(stream, consumer)."""
        return (self.reading.stream, self.reading.consumer)

    def data(self) -> dict[str, int | str]:
        """The event's ``data`` (see :class:`services.lagmon.events.ThresholdData`)."""
        r = self.reading
        return {
            "stream": r.stream,
            "consumer": r.consumer,
            "lag": r.lag,
            "threshold": self.threshold,
            "num_pending": r.num_pending,
            "num_ack_pending": r.num_ack_pending,
            "num_redelivered": r.num_redelivered,
        }


@dataclass
class ThresholdTracker:
    """Remembers which consumers are over their threshold; yields state changes only."""

    thresholds: Thresholds
    _over: set[Key] = field(default_factory=set)

    def is_over(self, stream: str, consumer: str) -> bool:
        """Whether the consumer is (committed as) over its threshold."""
        return (stream, consumer) in self._over

    @property
    def over(self) -> frozenset[Key]:
        """Every consumer currently over its threshold."""
        return frozenset(self._over)

    def evaluate(self, readings: Iterable[ReadingLike]) -> list[Transition]:
        """Transitions the readings imply; none is applied until :meth:`commit`.

        Readings may be :class:`LagReading` or anything with its fields (the lag monitor
        passes its ``ConsumerLag`` tuples: building a LagReading for each of 2,000 consumers
        per poll cost more than the decision); transitions always carry a LagReading.
        """
        out: list[Transition] = []
        for_consumer = self.thresholds.for_consumer
        over = self._over
        for r in readings:
            stream, consumer = r.stream, r.consumer
            threshold = for_consumer(stream, consumer)
            if threshold is None:
                continue
            if (stream, consumer) not in over:
                if r.lag > threshold:
                    out.append(Transition(THRESHOLD_CROSSED, _as_reading(r), threshold))
            elif r.lag <= self.thresholds.clear_level(threshold):
                out.append(Transition(THRESHOLD_CLEARED, _as_reading(r), threshold))
        return out

    def restore(self, over: Iterable[Key]) -> None:
        """Mark ``over`` as over their threshold (state read back after a restart)."""
        self._over.update(over)

    def commit(self, transition: Transition) -> None:
        """Apply a transition whose event was published."""
        if transition.kind == THRESHOLD_CROSSED:
            self._over.add(transition.key)
        else:
            self._over.discard(transition.key)


def merge_specs(*groups: Mapping[str, int] | Iterable[ThresholdSpec]) -> list[ThresholdSpec]:
    """Flatten config mappings (``"STREAM:CONSUMER"``/``"CONSUMER"`` -> N) and spec lists."""
    out: list[ThresholdSpec] = []
    for group in groups:
        if isinstance(group, Mapping):
            out.extend(ThresholdSpec.parse(f"{k}={v}") for k, v in group.items())
        else:
            out.extend(group)
    return out
