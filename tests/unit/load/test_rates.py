"""Rate schedules: intended send offsets, counts, argument checks, reprs."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.load.rates import Burst, Constant, MaxRate, Ramp, Steps, parse_rate


def first(rate: object, n: int) -> list[float]:
    return list(itertools.islice(rate.offsets(), n))  # type: ignore[attr-defined]


def test_constant_offsets_are_evenly_spaced_without_drift() -> None:
    offs = first(Constant(1000), 5)
    assert offs == [0.0, 0.001, 0.002, 0.003, 0.004]
    # multiplied, not accumulated: message one million is exactly at 1000 s
    assert Constant(1000).offset_of(1_000_000) == 1000.0


def test_constant_count_and_target_rate() -> None:
    assert Constant(20_000).count_before(30) == 600_000
    assert Constant(3).count_before(1) == 3
    assert Constant(3).count_before(1.01) == 4  # t = 1.0 is inside [0, 1.01)
    assert Constant(20_000).target_rate_per_s(30) == pytest.approx(20_000)


@pytest.mark.parametrize("bad", [0, -1, math.inf, math.nan])
def test_constant_rejects_bad_rates(bad: float) -> None:
    with pytest.raises(ValueError, match="Constant: rate_per_s"):
        Constant(bad)


def test_constant_rejects_non_numbers() -> None:
    with pytest.raises(TypeError, match="rate_per_s must be a number"):
        Constant("fast")  # type: ignore[arg-type]


def test_ramp_up_follows_the_integral_of_a_linear_rate() -> None:
    ramp = Ramp(0, 100, 10)  # N(t) = 5 t^2: message 5 at 1 s, 20 at 2 s, 500 at 10 s
    assert ramp.offset_of(0) == 0.0
    assert ramp.offset_of(5) == pytest.approx(1.0)
    assert ramp.offset_of(20) == pytest.approx(2.0)
    assert ramp.offset_of(500) == pytest.approx(10.0)
    # after the ramp the end rate holds
    assert ramp.offset_of(600) == pytest.approx(11.0)
    assert ramp.count_before(10) == 500


def test_ramp_down_to_zero_ends_the_schedule() -> None:
    ramp = Ramp(100, 0, 2)  # 100 messages in total
    offs = list(ramp.offsets())
    assert len(offs) == 101  # indices 0..100 (the 100th lands exactly at the end)
    assert offs[-1] == pytest.approx(2.0)
    assert all(b >= a for a, b in itertools.pairwise(offs))


def test_ramp_with_equal_ends_is_constant() -> None:
    assert first(Ramp(10, 10, 5), 4) == pytest.approx(first(Constant(10), 4))


def test_ramp_argument_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="both 0"):
        Ramp(0, 0, 1)
    with pytest.raises(ValueError, match="Ramp: duration_s must be > 0"):
        Ramp(1, 2, 0)
    with pytest.raises(ValueError, match="Ramp: start_per_s must be >= 0"):
        Ramp(-1, 2, 1)


def test_burst_sends_groups_at_the_period() -> None:
    b = Burst(rate_per_s=1000, burst_size=3, every_s=1)
    assert first(b, 7) == pytest.approx([0, 0.001, 0.002, 1, 1.001, 1.002, 2])
    assert b.count_before(2.0015) == 8
    assert b.count_before(3) == 9


def test_burst_that_does_not_fit_its_period_is_refused() -> None:
    with pytest.raises(ValueError, match=r"longer than every_s"):
        Burst(rate_per_s=10, burst_size=100, every_s=1)
    with pytest.raises(ValueError, match="burst_size must be an int >= 1"):
        Burst(rate_per_s=10, burst_size=0, every_s=1)


def test_steps_are_piecewise_constant_and_pause_on_zero() -> None:
    s = Steps([(2, 1), (0, 1), (4, 1)])
    offs = first(s, 8)
    assert offs == pytest.approx([0, 0.5, 2, 2.25, 2.5, 2.75, 3.0, 3.25])
    assert s.count_before(3) == 6


def test_steps_errors_name_the_step() -> None:
    with pytest.raises(ValueError, match=r"step\[1\].duration_s"):
        Steps([(1, 1), (1, 0)])
    with pytest.raises(ValueError, match=r"step\[0\] must be a \(rate_per_s, duration_s\) pair"):
        Steps([(1,)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="last step holds forever"):
        Steps([(1, 1), (0, 1)])


def test_maxrate_has_no_schedule_or_target() -> None:
    m = MaxRate()
    assert m.unbounded
    assert first(m, 3) == [0.0, 0.0, 0.0]
    assert math.isinf(m.target_rate_per_s(1))
    with pytest.raises(ValueError, match="no target count"):
        m.count_before(1)


def test_reprs_are_readable() -> None:
    assert repr(Constant(1000)) == "Constant(1000/s)"
    assert repr(Ramp(0, 500.5, 10)) == "Ramp(0/s -> 500.5/s over 10s)"
    assert repr(Burst(1000, 50, 2)) == "Burst(50 at 1000/s every 2s)"
    assert repr(Steps([(10, 1), (20, 2)])) == "Steps(10/s for 1s, 20/s for 2s)"
    assert repr(MaxRate()) == "MaxRate()"


@given(start=st.floats(0, 5000), end=st.floats(0, 5000), dur=st.floats(0.1, 100),
       n=st.integers(0, 10_000))
def test_ramp_offsets_are_monotone_and_invert_the_count(start: float, end: float, dur: float,
                                                        n: int) -> None:
    if start == 0 and end == 0:
        return
    ramp = Ramp(start, end, dur)
    a, b = ramp.offset_of(n), ramp.offset_of(n + 1)
    assert b >= a
    if math.isfinite(a) and a > 0:
        # the count of messages intended before a is n (the closed form agrees with search)
        assert ramp.count_before(a) in (n, n - 1, n + 1)


@given(rate=st.floats(0.5, 1e6), dur=st.floats(0.01, 100))
def test_constant_count_matches_walking_the_schedule(rate: float, dur: float) -> None:
    c = Constant(rate)
    n = c.count_before(dur)
    assert n >= 1
    assert c.offset_of(n - 1) < dur + 1e-9
    assert c.offset_of(n) >= dur - 1e-9


@pytest.mark.parametrize(("text", "expected"), [
    ("1000", "Constant(1000/s)"),
    ("constant:250/s", "Constant(250/s)"),
    ("ramp:100:5000:30", "Ramp(100/s -> 5000/s over 30s)"),
    ("burst:10000:500:2", "Burst(500 at 10000/s every 2s)"),
    ("steps:1000x10,5000x20", "Steps(1000/s for 10s, 5000/s for 20s)"),
    ("MAX", "MaxRate()"),
])
def test_parse_rate_forms(text: str, expected: str) -> None:
    assert repr(parse_rate(text)) == expected


@pytest.mark.parametrize(("text", "fragment"), [
    ("fast", "could not convert"),
    ("ramp:1:2", "not understood"),
    ("constant:-5", "rate_per_s must be > 0"),
    ("steps:10-5", "not RATExSECONDS"),
])
def test_parse_rate_errors_name_the_text_and_the_forms(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="expected N, constant:N") as info:
        parse_rate(text)
    assert repr(text) in str(info.value)
    assert fragment in str(info.value)
