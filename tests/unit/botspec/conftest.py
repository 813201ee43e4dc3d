"""Fixtures for BotSpec unit tests: the shipped spec's text and a line finder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

V1_SPEC = Path(__file__).parent / "data" / "BotSpec-v1.yaml"


@pytest.fixture(scope="session")
def spec_text() -> str:
    """Text of a version 1 spec (QIKI's before format 2): the v1 loader must keep reading it."""
    return V1_SPEC.read_text(encoding="utf-8")


def _line_of(text: str, needle: str, nth: int = 1) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) >= nth, f"{needle!r} not found {nth} time(s)"
    return hits[nth - 1]


@pytest.fixture(scope="session")
def line_of() -> Callable[..., int]:
    """``line_of(text, needle, nth=1)``: 1-based line of the nth line containing ``needle``."""
    return _line_of
