"""NATS subject matching: `*` is one token, `>` one or more trailing tokens."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.botspec import subject_matches


@pytest.mark.parametrize(
    ("filt", "subject", "expected"),
    [
        ("qiki.radar.v1.frames", "qiki.radar.v1.frames", True),
        ("qiki.radar.v1.frames", "qiki.radar.v1.frame", False),
        ("qiki.radar.v1.*", "qiki.radar.v1.frames", True),
        # The original QIKI bug: one-token wildcard misses the LR/SR variants.
        ("qiki.radar.v1.*", "qiki.radar.v1.frames.lr", False),
        ("qiki.radar.v1.*", "qiki.radar.v1", False),
        ("qiki.radar.v1.>", "qiki.radar.v1.frames.lr", True),
        ("qiki.radar.v1.>", "qiki.radar.v1.frames", True),
        ("qiki.radar.v1.>", "qiki.radar.v1", False),  # '>' needs at least one token
        ("qiki.radar.v1.frames.>", "qiki.radar.v1.frames", False),
        ("qiki.*.v1.frames", "qiki.radar.v1.frames", True),
        ("qiki.*.v1.frames", "qiki.radar.v2.frames", False),
        ("*", "qiki", True),
        ("*", "qiki.radar", False),
        (">", "qiki", True),
        (">", "a.b.c", True),
        ("*.>", "a", False),
        ("*.>", "a.b", True),
        ("qiki.events.v1.>", "qiki.dlq.v1.registrar", False),
        ("a.b", "a.b.c", False),
        ("a.b.c", "a.b", False),
    ],
)
def test_subject_matches(filt: str, subject: str, expected: bool) -> None:
    assert subject_matches(filt, subject) is expected


@pytest.mark.parametrize(
    ("filt", "subject", "message"),
    [
        ("a.>.b", "a.x.b", "'>' is only allowed as the last token"),
        ("a..b", "a.x.b", "empty or blank token"),
        ("", "a", "must not be empty"),
        ("a.*", "a.*", "must be a literal subject"),
        ("a.>", "a.>", "must be a literal subject"),
        ("a.b", "a..b", "empty or blank token"),
        ("a b", "a", "empty or blank token"),
    ],
)
def test_malformed_input_is_a_value_error(filt: str, subject: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        subject_matches(filt, subject)


_token = st.text(alphabet="abcxyz019_-", min_size=1, max_size=4)
_subject = st.lists(_token, min_size=1, max_size=6)


@given(_subject)
def test_literal_matches_itself_and_gt_matches_longer(tokens: list[str]) -> None:
    subject = ".".join(tokens)
    assert subject_matches(subject, subject)
    assert subject_matches(">", subject)
    for i in range(1, len(tokens)):
        assert subject_matches(".".join([*tokens[:i], ">"]), subject)
        assert not subject_matches(".".join(tokens[:i]), subject)


@given(_subject, st.data())
def test_star_matches_exactly_one_token(tokens: list[str], data: st.DataObject) -> None:
    subject = ".".join(tokens)
    i = data.draw(st.integers(0, len(tokens) - 1))
    starred = [*tokens[:i], "*", *tokens[i + 1:]]
    assert subject_matches(".".join(starred), subject)
    assert not subject_matches(".".join(starred), subject + ".extra")
    assert not subject_matches(".".join([*starred, "*"]), subject)
