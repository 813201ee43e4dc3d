"""Registrar-code checks: includes, excludes, counts, order, both directions."""

from __future__ import annotations

from harness.checks import RegistrarRecord, check_registrar_codes


def recs(*codes: int) -> list[RegistrarRecord]:
    return [
        RegistrarRecord(code=c, source="urn:x", event_id=str(i), type="t", subject="s",
                        stored_at=float(i), reason="bad header" if c >= 920 else None)
        for i, c in enumerate(codes)
    ]


def test_includes_and_excludes() -> None:
    records = recs(100, 101, 410, 210, 210)
    assert check_registrar_codes(records, includes=[101, 410, 210], excludes=[900]).passed
    missing = check_registrar_codes(records, includes=[702])
    assert not missing.passed and "702 expected but never recorded" in missing.details[0]
    excluded = check_registrar_codes(records, excludes=[210])
    assert not excluded.passed and "recorded 2 time(s)" in excluded.details[0]


def test_excluded_code_reports_reason() -> None:
    result = check_registrar_codes(recs(101, 921), excludes=[921])
    assert "reason: bad header" in result.details[0]


def test_counts() -> None:
    records = recs(210, 210, 210)
    assert check_registrar_codes(records, counts={210: (3, 3)}).passed
    assert not check_registrar_codes(records, counts={210: (4, None)}).passed
    assert not check_registrar_codes(records, counts={210: (None, 2)}).passed


def test_order_uses_first_occurrences() -> None:
    records = recs(100, 101, 410, 411, 410, 910, 911)
    assert check_registrar_codes(records, order=[100, 101, 410, 411, 910, 911]).passed
    bad = check_registrar_codes(records, order=[411, 410, 101])
    assert not bad.passed and "not in order" in bad.details[0]


def test_order_with_missing_code_fails() -> None:
    assert not check_registrar_codes(recs(100, 101), order=[100, 702]).passed
