"""``--qiki-ctrf PATH``: a pytest session's results as CTRF JSON."""

from __future__ import annotations

import json

import pytest


def test_ctrf_option_writes_every_outcome(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_it="""
        import pytest

        def test_ok():
            pass

        def test_bad():
            assert 1 == 2, "one is not two"

        @pytest.mark.skip(reason="not today")
        def test_skipped():
            pass

        @pytest.fixture
        def broken():
            raise RuntimeError("fixture broke")

        def test_setup_error(broken):
            pass
    """)
    out = pytester.path / "out" / "ctrf.json"
    result = pytester.runpytest("--qiki-ctrf", str(out), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, skipped=1, errors=1)
    doc = json.loads(out.read_text())
    assert doc["reportFormat"] == "CTRF" and doc["results"]["tool"]["name"] == "pytest"
    s = doc["results"]["summary"]
    assert (s["tests"], s["passed"], s["failed"], s["skipped"]) == (4, 1, 2, 1)
    by = {t["name"].split("::")[-1]: t for t in doc["results"]["tests"]}
    assert by["test_bad"]["status"] == "failed" and "one is not two" in by["test_bad"]["trace"]
    assert by["test_setup_error"]["rawStatus"] == "error in setup"
    assert by["test_skipped"]["message"] == "Skipped: not today"
    assert all(isinstance(t["duration"], int) for t in by.values())
