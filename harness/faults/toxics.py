"""Toxics: network faults as values, modelled on Toxiproxy's toxics.

A toxic describes *what* goes wrong on a link; `FaultProxy.add` decides *where* (which proxy,
which direction) and *when* (added and removed live). Toxics are frozen dataclasses: they check
their arguments at construction, compare by value and have a short readable repr that leaves
out defaults, e.g. ``Latency(latency_ms=100, jitter_ms=10)``.

Every toxic has a keyword-only ``toxicity`` in [0, 1]: the probability, drawn once per
connection, that the toxic applies to that connection. A toxic whose draw fails is never put
on the connection's link at all, so a toxicity of 0 can never disturb traffic (Toxiproxy issue
603: a ``reset_peer`` with toxicity 0 still reset connections now and then).

Directions: ``"upstream"`` is client -> server, ``"downstream"`` is server -> client,
``"both"`` is each of them (each direction draws toxicity on its own).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

__all__ = [
    "DIRECTIONS",
    "Bandwidth",
    "Blackhole",
    "Direction",
    "Down",
    "Latency",
    "LimitData",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "Toxic",
    "check_direction",
]

Direction = Literal["upstream", "downstream", "both"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)


def check_direction(direction: object) -> Direction:
    """Return `direction` if it is one of `DIRECTIONS`, else raise a ValueError naming it."""
    if direction not in DIRECTIONS:
        raise ValueError(
            f"direction={direction!r} is not valid: expected one of {', '.join(DIRECTIONS)} "
            "(upstream = client->server, downstream = server->client)"
        )
    return direction  # type: ignore[return-value]


def _check_number(toxic: str, name: str, value: object, *, minimum: float = 0.0,
                  maximum: float | None = None, strict_min: bool = False) -> None:
    # bool is an int subclass; Latency(True) is certainly a mistake.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{toxic}({name}={value!r}): expected a number, got {type(value).__name__}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{toxic}({name}={value!r}): expected a finite number")
    too_small = value <= minimum if strict_min else value < minimum
    if too_small:
        bound = f"> {minimum:g}" if strict_min else f">= {minimum:g}"
        raise ValueError(f"{toxic}({name}={value!r}): expected a value {bound}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{toxic}({name}={value!r}): expected a value <= {maximum:g}")


@dataclass(frozen=True)
class Toxic:
    """Base of every toxic. Not used directly: pick one of the subclasses."""

    toxicity: float = field(default=1.0, kw_only=True)

    #: Short type name used for default toxic names ("latency_downstream").
    kind: ClassVar[str] = "toxic"

    def __post_init__(self) -> None:
        if type(self) is Toxic:
            raise TypeError("Toxic is abstract: use Latency, Bandwidth, Blackhole, ... instead")
        _check_number(type(self).__name__, "toxicity", self.toxicity, maximum=1.0)
        self._check()

    def _check(self) -> None:
        """Check the subclass's own fields; raise ValueError/TypeError naming the bad one."""

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value: Any = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def describe(self) -> dict[str, Any]:
        """Journal-friendly description: {"type": ..., <fields>...}."""
        return {"type": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True, repr=False)
class Latency(Toxic):
    """Delay every chunk by `latency_ms` (+- uniform `jitter_ms`) counted from its arrival.

    The delay is measured from when the data reached the proxy, not stacked per chunk: a
    stream of chunks each delayed 100 ms comes out about 100 ms late in total. Order is kept
    even when jitter would let a later chunk overtake an earlier one (it waits instead).
    The latency is one-way: added to the direction it is applied to; on ``"both"`` a
    request/response round trip grows by twice `latency_ms`.
    """

    latency_ms: float
    jitter_ms: float = 0.0
    kind: ClassVar[str] = "latency"

    def _check(self) -> None:
        _check_number("Latency", "latency_ms", self.latency_ms)
        _check_number("Latency", "jitter_ms", self.jitter_ms)


@dataclass(frozen=True, repr=False)
class Bandwidth(Toxic):
    """Limit the link to `rate_bytes_per_s` (smoothly, in slices of at most ~20 ms of data)."""

    rate_bytes_per_s: float
    kind: ClassVar[str] = "bandwidth"

    def _check(self) -> None:
        _check_number("Bandwidth", "rate_bytes_per_s", self.rate_bytes_per_s, strict_min=True)


@dataclass(frozen=True, repr=False)
class Blackhole(Toxic):
    """Accept and read data but forward nothing; the connection stays open.

    Data that arrives while the blackhole is on is dropped for good (Toxiproxy's ``timeout``
    toxic with timeout 0). A NATS client notices only through missed PONGs, so proxied
    clients need a short ``ping_interval``; the connection it abandons is useless afterwards
    (bytes are missing from the protocol stream) and the client reconnects on a new one.
    """

    kind: ClassVar[str] = "blackhole"


@dataclass(frozen=True, repr=False)
class ResetPeer(Toxic):
    """Reset the connection (TCP RST, SO_LINGER 0) `timeout_ms` after the toxic takes effect.

    Takes effect when a connection is accepted while the toxic is on, or when the toxic is
    added to an open connection. The peer the direction flows towards gets the RST
    (downstream: the client, upstream: the server); the other side is closed. Removing the
    toxic cancels pending resets and new connections pass normally (Toxiproxy issue 465).
    """

    timeout_ms: float = 0.0
    kind: ClassVar[str] = "reset_peer"

    def _check(self) -> None:
        _check_number("ResetPeer", "timeout_ms", self.timeout_ms)


@dataclass(frozen=True, repr=False)
class SlowClose(Toxic):
    """Delay passing on a close (EOF) in this direction by `delay_ms`."""

    delay_ms: float
    kind: ClassVar[str] = "slow_close"

    def _check(self) -> None:
        _check_number("SlowClose", "delay_ms", self.delay_ms)


@dataclass(frozen=True, repr=False)
class Slicer(Toxic):
    """Cut data into slices of `average_size` +- `size_variation` bytes, `delay_us` apart.

    Exercises a peer's parser on protocol lines split across reads.
    """

    average_size: int
    size_variation: int = 0
    delay_us: float = 0.0
    kind: ClassVar[str] = "slicer"

    def _check(self) -> None:
        for name in ("average_size", "size_variation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Slicer({name}={value!r}): expected an int")
        _check_number("Slicer", "average_size", self.average_size, minimum=1)
        _check_number("Slicer", "size_variation", self.size_variation)
        if self.size_variation >= self.average_size:
            raise ValueError(
                f"Slicer(average_size={self.average_size}, size_variation="
                f"{self.size_variation}): size_variation must be < average_size so every "
                "slice has at least one byte"
            )
        _check_number("Slicer", "delay_us", self.delay_us)


@dataclass(frozen=True, repr=False)
class LimitData(Toxic):
    """Close the connection once `bytes` bytes have passed in this direction."""

    bytes: int
    kind: ClassVar[str] = "limit_data"

    def _check(self) -> None:
        if isinstance(self.bytes, bool) or not isinstance(self.bytes, int):
            raise TypeError(f"LimitData(bytes={self.bytes!r}): expected an int")
        _check_number("LimitData", "bytes", self.bytes)


@dataclass(frozen=True, repr=False)
class Down(Toxic):
    """The whole proxy is down: it stops listening (connects are refused) and drops open
    connections. Same as ``proxy.set_down(True)`` while the toxic is on.

    Direction does not apply; toxicity must be 1 (a proxy is either listening or not).
    """

    kind: ClassVar[str] = "down"

    def _check(self) -> None:
        if self.toxicity != 1.0:
            raise ValueError(
                f"Down(toxicity={self.toxicity!r}): Down acts on the whole proxy, so toxicity "
                "must be 1.0; to reset a share of connections use ResetPeer(toxicity=...)"
            )
