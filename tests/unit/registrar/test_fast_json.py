"""The CloudEvents fast path's JSON check (orjson, issue 13) never accepts what the stdlib
check of the general decoder rejects: otherwise a payload the registrar must reject (923)
would be stored as valid."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import cloudevents

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _accepts(check: object, payload: bytes) -> bool:
    try:
        check(payload)  # type: ignore[operator]
    except (ValueError, RecursionError):
        return False
    return True


@settings(max_examples=500, deadline=None)
@given(_json_values, st.binary(max_size=3), st.integers(min_value=0, max_value=60))
def test_fast_check_accepts_a_subset_of_the_stdlib(value: object, noise: bytes, at: int) -> None:
    text = json.dumps(value, allow_nan=True)  # NaN/Infinity: the stdlib accepts, orjson not
    for payload in (text.encode(), text.encode()[:at] + noise + text.encode()[at:]):
        if _accepts(cloudevents._json_check, payload):
            assert _accepts(cloudevents._json_check_stdlib, payload), payload


@pytest.mark.parametrize("payload", [b"\xef\xbb\xbf{}", b'"\\ud800"', b"1e400", b"[1,]",
                                     b'"\x01"', b"\xff", b"[" * 2000 + b"]" * 2000])
def test_known_differences_fall_through(payload: bytes) -> None:
    # Either both reject, or only the stdlib accepts (then the general decoder decides).
    assert not _accepts(cloudevents._json_check, payload)
