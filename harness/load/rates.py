"""Send-rate schedules for the injector: values that check their arguments and print readably.

A rate is a *schedule*: message ``i`` has an intended send offset ``t_i`` (seconds from the
start of the run). The injector sends each message at (or as soon as possible after) its
intended time and measures latency from ``t_i``, not from the moment it actually managed to
send: a stalled broker then shows up as latency instead of silently lowering the send rate
(coordinated omission, issue 5).

``MaxRate()`` is the one exception: there is no schedule, messages go out as fast as the
in-flight window allows and latency is measured from the actual send time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["Burst", "Constant", "MaxRate", "Ramp", "Rate", "Steps", "parse_rate"]


def _check_rate(owner: str, field: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``value`` as float, or raise ValueError naming the owner, field and value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {field} must be a number, got {value!r}")
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        raise ValueError(f"{owner}: {field} must be finite, got {value!r}")
    if v < 0 or (v == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}: {field} must be {expected}, got {value!r}")
    return v


def _num(v: float) -> str:
    """Short number for reprs: 1000.0 -> 1000, 0.5 -> 0.5."""
    return str(int(v)) if float(v).is_integer() else repr(v)


class Rate:
    """Base of every schedule: an infinite, non-decreasing sequence of intended send offsets."""

    #: True only for :class:`MaxRate`: no schedule, send as fast as the window allows.
    unbounded: bool = False

    def offsets(self) -> Iterator[float]:
        """Yield the intended send offset (s from start) of message 0, 1, 2, ... forever.

        A schedule whose rate drops to zero for good (a ramp down to 0) simply ends.
        """
        raise NotImplementedError

    def offset_of(self, index: int) -> float:
        """Intended offset of message ``index`` (the default walks :meth:`offsets`)."""
        if index < 0:
            raise ValueError(f"{self!r}: index must be >= 0, got {index}")
        for i, t in enumerate(self.offsets()):
            if i == index:
                return t
        return math.inf

    def count_before(self, duration_s: float) -> int:
        """Number of messages the schedule intends to send in ``[0, duration_s)``."""
        n = 0
        for t in self.offsets():
            if t >= duration_s:
                break
            n += 1
        return n

    def target_rate_per_s(self, duration_s: float) -> float:
        """Mean intended rate over ``[0, duration_s)``: what "achieved / target" compares with."""
        if duration_s <= 0:
            raise ValueError(f"{self!r}: duration_s must be > 0, got {duration_s}")
        return self.count_before(duration_s) / duration_s


@dataclass(frozen=True, repr=False)
class MaxRate(Rate):
    """As fast as the in-flight window allows; latency is measured from the actual send."""

    unbounded = True

    def offsets(self) -> Iterator[float]:
        """Every message is due at once (offset 0): the window is the only limit."""
        while True:
            yield 0.0

    def offset_of(self, index: int) -> float:
        """Always 0: there is no schedule."""
        return 0.0

    def count_before(self, duration_s: float) -> int:
        """Unknown in advance: there is no target count."""
        raise ValueError("MaxRate() has no target count; it sends as fast as it can")

    def target_rate_per_s(self, duration_s: float) -> float:
        """Unbounded: there is no target rate to compare with."""
        return math.inf

    def __repr__(self) -> str:
        return "MaxRate()"


@dataclass(frozen=True, repr=False)
class Constant(Rate):
    """``rate_per_s`` messages per second, evenly spaced: ``t_i = i / rate_per_s``."""

    rate_per_s: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate_per_s", _check_rate("Constant", "rate_per_s",
                                                           self.rate_per_s))

    def offsets(self) -> Iterator[float]:
        """``i / rate_per_s`` for i = 0, 1, 2, ... (multiplied, not summed: no drift)."""
        r = self.rate_per_s
        i = 0
        while True:
            yield i / r
            i += 1

    def offset_of(self, index: int) -> float:
        """Closed form ``index / rate_per_s``."""
        return index / self.rate_per_s

    def count_before(self, duration_s: float) -> int:
        """Closed form: ``ceil(duration_s * rate_per_s)``."""
        return max(0, math.ceil(duration_s * self.rate_per_s - 1e-9))

    def __repr__(self) -> str:
        return f"Constant({_num(self.rate_per_s)}/s)"


@dataclass(frozen=True, repr=False)
class Ramp(Rate):
    """Rate rising (or falling) linearly from ``start_per_s`` to ``end_per_s`` over
    ``duration_s``, then holding ``end_per_s`` (a ramp down to 0 ends the schedule)."""

    start_per_s: float
    end_per_s: float
    duration_s: float

    def __post_init__(self) -> None:
        a = _check_rate("Ramp", "start_per_s", self.start_per_s, allow_zero=True)
        b = _check_rate("Ramp", "end_per_s", self.end_per_s, allow_zero=True)
        d = _check_rate("Ramp", "duration_s", self.duration_s)
        if a == 0 and b == 0:
            raise ValueError("Ramp: start_per_s and end_per_s are both 0; nothing would be sent")
        object.__setattr__(self, "start_per_s", a)
        object.__setattr__(self, "end_per_s", b)
        object.__setattr__(self, "duration_s", d)

    def offset_of(self, index: int) -> float:
        """Invert the cumulative count ``N(t) = a t + (b - a) t^2 / (2 D)`` at ``N = index``."""
        if index < 0:
            raise ValueError(f"{self!r}: index must be >= 0, got {index}")
        a, b, d = self.start_per_s, self.end_per_s, self.duration_s
        in_ramp = (a + b) * d / 2.0
        if index <= in_ramp:
            if index == 0:
                return 0.0
            k = (b - a) / (2.0 * d)
            # 2i / (a + sqrt(a^2 + 4ki)) is the root of k t^2 + a t - i = 0 written so that
            # it stays exact for k -> 0 (constant) and a = 0 (ramp up from nothing).
            disc = max(0.0, a * a + 4.0 * k * index)
            return min(d, 2.0 * index / (a + math.sqrt(disc)))
        if b == 0:
            return math.inf
        return d + (index - in_ramp) / b

    def offsets(self) -> Iterator[float]:
        """Offsets from :meth:`offset_of`; ends when a ramp down to 0 has sent everything."""
        i = 0
        while True:
            t = self.offset_of(i)
            if math.isinf(t):
                return
            yield t
            i += 1

    def count_before(self, duration_s: float) -> int:
        """Binary search on :meth:`offset_of` (monotone), so long ramps stay cheap."""
        if duration_s <= 0:
            return 0
        lo, hi = 0, 1
        while self.offset_of(hi) < duration_s:
            lo, hi = hi, hi * 2
        while lo < hi:  # first index whose offset is >= duration_s
            mid = (lo + hi) // 2
            if self.offset_of(mid) < duration_s:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def __repr__(self) -> str:
        return (f"Ramp({_num(self.start_per_s)}/s -> {_num(self.end_per_s)}/s "
                f"over {_num(self.duration_s)}s)")


@dataclass(frozen=True, repr=False)
class Burst(Rate):
    """``burst_size`` messages every ``every_s`` seconds, sent at ``rate_per_s`` within the
    burst (bursts start at 0, every_s, 2 every_s, ...). ``rate_per_s`` must fit the burst in
    its period, so the schedule never overlaps itself."""

    rate_per_s: float
    burst_size: int
    every_s: float

    def __post_init__(self) -> None:
        r = _check_rate("Burst", "rate_per_s", self.rate_per_s)
        if isinstance(self.burst_size, bool) or not isinstance(self.burst_size, int) \
                or self.burst_size < 1:
            raise ValueError(f"Burst: burst_size must be an int >= 1, got {self.burst_size!r}")
        e = _check_rate("Burst", "every_s", self.every_s)
        if self.burst_size / r > e:
            raise ValueError(
                f"Burst: {self.burst_size} messages at {_num(r)}/s take "
                f"{self.burst_size / r:g}s, longer than every_s={_num(e)}s; "
                "raise rate_per_s or every_s, or lower burst_size")
        object.__setattr__(self, "rate_per_s", r)
        object.__setattr__(self, "every_s", e)

    def offset_of(self, index: int) -> float:
        """Burst ``index // burst_size`` at ``k * every_s``, then ``j / rate_per_s`` inside."""
        if index < 0:
            raise ValueError(f"{self!r}: index must be >= 0, got {index}")
        k, j = divmod(index, self.burst_size)
        return k * self.every_s + j / self.rate_per_s

    def offsets(self) -> Iterator[float]:
        """Offsets from :meth:`offset_of`, forever."""
        i = 0
        while True:
            yield self.offset_of(i)
            i += 1

    def count_before(self, duration_s: float) -> int:
        """Whole bursts before ``duration_s`` plus the part of the last one."""
        if duration_s <= 0:
            return 0
        k, rem = divmod(duration_s, self.every_s)
        part = min(self.burst_size, max(0, math.ceil(rem * self.rate_per_s - 1e-9)))
        return int(k) * self.burst_size + part

    def __repr__(self) -> str:
        return (f"Burst({self.burst_size} at {_num(self.rate_per_s)}/s "
                f"every {_num(self.every_s)}s)")


@dataclass(frozen=True, repr=False)
class Steps(Rate):
    """Piecewise-constant rate: ``[(rate_per_s, duration_s), ...]``; the last step holds.

    A step with rate 0 is a pause.
    """

    steps: tuple[tuple[float, float], ...]

    def __init__(self, steps: Sequence[tuple[float, float]]) -> None:
        if not steps:
            raise ValueError("Steps: needs at least one (rate_per_s, duration_s) step")
        checked: list[tuple[float, float]] = []
        for n, step in enumerate(steps):
            try:
                rate, dur = step
            except (TypeError, ValueError):
                raise ValueError(
                    f"Steps: step[{n}] must be a (rate_per_s, duration_s) pair, got {step!r}"
                ) from None
            checked.append((
                _check_rate("Steps", f"step[{n}].rate_per_s", rate, allow_zero=True),
                _check_rate("Steps", f"step[{n}].duration_s", dur),
            ))
        if checked[-1][0] == 0:
            raise ValueError("Steps: the last step holds forever, so its rate_per_s must be > 0")
        object.__setattr__(self, "steps", tuple(checked))

    def offsets(self) -> Iterator[float]:
        """Within a step starting at ``t0`` with ``n0`` messages already sent by it:
        ``t0 + j / rate``; the last step continues past its duration."""
        t0 = 0.0
        last = len(self.steps) - 1
        for idx, (rate, dur) in enumerate(self.steps):
            if rate == 0:
                t0 += dur
                continue
            j = 0
            while True:
                t = t0 + j / rate
                if idx != last and t >= t0 + dur:
                    break
                yield t
                j += 1
            t0 += dur

    def __repr__(self) -> str:
        inner = ", ".join(f"{_num(r)}/s for {_num(d)}s" for r, d in self.steps)
        return f"Steps({inner})"


def parse_rate(text: str) -> Rate:
    """A rate from its command-line / scenario form, e.g. for ``qiki-harness load --rate``:

    ``1000`` or ``constant:1000`` -> Constant(1000/s); ``ramp:100:5000:30`` -> Ramp(100/s ->
    5000/s over 30s); ``burst:10000:500:2`` -> Burst(500 at 10000/s every 2s);
    ``steps:1000x10,5000x20`` -> Steps(1000/s for 10s, 5000/s for 20s); ``max`` -> MaxRate().

    Raises ValueError naming the text and the expected forms.
    """
    expected = ("expected N, constant:N, ramp:START:END:SECONDS, burst:RATE:SIZE:EVERY_S, "
                "steps:RATExSECONDS,... or max")
    raw = text.strip().lower()
    kind, _, rest = raw.partition(":")
    try:
        if raw == "max":
            return MaxRate()
        if not rest:
            return Constant(float(raw.removesuffix("/s")))
        args = rest.split(":")
        if kind == "constant" and len(args) == 1:
            return Constant(float(args[0].removesuffix("/s")))
        if kind == "ramp" and len(args) == 3:
            return Ramp(float(args[0]), float(args[1]), float(args[2]))
        if kind == "burst" and len(args) == 3:
            return Burst(float(args[0]), int(args[1]), float(args[2]))
        if kind == "steps" and len(args) == 1:
            steps = []
            for part in args[0].split(","):
                rate, sep, dur = part.partition("x")
                if not sep:
                    raise ValueError(f"step {part!r} is not RATExSECONDS")
                steps.append((float(rate), float(dur)))
            return Steps(steps)
    except ValueError as e:
        raise ValueError(f"rate {text!r}: {e}; {expected}") from None
    raise ValueError(f"rate {text!r} not understood; {expected}")
