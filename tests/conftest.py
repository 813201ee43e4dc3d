"""Suite-wide test configuration (shared fixtures live in harness.pytest_plugin)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """``pytest -m NAME`` (one marker name) skips reading files that never mention NAME.

    Collecting the whole suite compiles and assertion-rewrites ~300 modules (10+ s here, as
    nothing is cached under PYTHONDONTWRITEBYTECODE or on a fresh clone) to run one smoke
    scenario: ``pytest -m smoke`` must stay under 10 s (issue 12). Rule this relies on: a
    test module or scenario file carrying a marker says its name (``pytest.mark.NAME``,
    ``pytestmark``, ``markers: [NAME]``); markers added by hooks elsewhere are not seen.
    """
    expr = (config.option.markexpr or "").strip()
    if not expr.isidentifier() or expr in {"not", "and", "or"}:
        return None
    if collection_path.suffix not in {".py", ".yaml", ".yml"} or collection_path.name == (
        "conftest.py"
    ):
        return None
    try:
        text = collection_path.read_bytes()
    except OSError:
        return None
    return None if expr.encode() in text else True
