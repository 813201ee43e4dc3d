"""Percent-encoding of NATS header values (CloudEvents NATS binding, section 3.1.3.2)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.cloudevents import (
    CloudEventError,
    Rule,
    decode_header_value,
    encode_header_value,
)

# Any Unicode string that has a UTF-8 form (lone surrogates have none).
unicode_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60)

# What an encoded value may contain: printable ASCII except space, '"' and a bare '%'.
_ENCODED = re.compile(r"(?:[\x21\x23\x24\x26-\x7e]|%[0-9A-F]{2})*")


def test_spec_example_is_encoded_exactly() -> None:
    # The binding's own example: "Euro € 😀".
    assert encode_header_value("Euro \u20ac \U0001f600") == "Euro%20%E2%82%AC%20%F0%9F%98%80"


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("plain-value_1.0", "plain-value_1.0"),
        ("a b", "a%20b"),
        ('say "hi"', "say%20%22hi%22"),
        ("100%", "100%25"),
        ("tab\there", "tab%09here"),
        ("del\x7f", "del%7F"),
        ("c1\x85", "c1%C2%85"),
        ("urn:qiki:q-sim-service:radar", "urn:qiki:q-sim-service:radar"),
        ("", ""),
    ],
)
def test_encode_examples(raw: str, encoded: str) -> None:
    assert encode_header_value(raw) == encoded
    assert decode_header_value(encoded) == raw


@settings(max_examples=300, deadline=None)
@given(unicode_text)
def test_any_unicode_string_round_trips(value: str) -> None:
    assert decode_header_value(encode_header_value(value)) == value


@settings(max_examples=300, deadline=None)
@given(unicode_text)
def test_encoded_output_uses_only_allowed_characters_and_uppercase_hex(value: str) -> None:
    encoded = encode_header_value(value)
    assert _ENCODED.fullmatch(encoded), encoded
    assert encoded.isascii()
    assert " " not in encoded and '"' not in encoded


@settings(max_examples=200, deadline=None)
@given(unicode_text)
def test_decoder_accepts_lowercase_hex(value: str) -> None:
    lowered = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encode_header_value(value))
    assert decode_header_value(lowered) == value


def test_unnecessarily_encoded_characters_are_accepted() -> None:
    assert decode_header_value("%61%62c") == "abc"


def test_double_quoted_values_from_older_producers_are_unescaped() -> None:
    assert decode_header_value('"hello world"') == "hello world"
    assert decode_header_value('"a \\"quoted\\" word"') == 'a "quoted" word'
    assert decode_header_value('"back\\\\slash"') == "back\\slash"
    # Percent-decoding happens once, after the quotes are removed.
    assert decode_header_value('"100%25 sure"') == "100% sure"


def test_unencoded_space_from_older_producers_is_accepted() -> None:
    assert decode_header_value("a b") == "a b"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("%C0%A0", "not valid UTF-8"),  # the spec's overlong encoding of U+0020
        ("%ED%A0%80", "not valid UTF-8"),  # an encoded surrogate
        ("%FF", "not valid UTF-8"),
        ("%E2%82", "not valid UTF-8"),  # truncated sequence
        ("%zz", "bad escape"),
        ("50%", "bad escape"),
        ("%4", "bad escape"),
        ("caf\u00e9", "raw character"),
        ("line\nbreak", "raw character"),
        ('"unclosed', "not closed"),
        ('"escaped close\\"', "not closed"),
        ('"in"side"', "unescaped"),
    ],
)
def test_decoder_rejects_bad_values(value: str, why: str) -> None:
    with pytest.raises(CloudEventError) as info:
        decode_header_value(value, header="ce-subject")
    assert info.value.rule == Rule.HEADER_ENCODING == "header-encoding"
    assert why in str(info.value)
    assert "ce-subject" in str(info.value)


def test_encoder_rejects_lone_surrogate() -> None:
    with pytest.raises(CloudEventError) as info:
        encode_header_value("bad\ud800")
    assert info.value.rule == "header-encoding"
