"""The ``storage`` marker's gate: skip with the reason without FUSE, fail under
``QIKI_REQUIRE_FUSE=1`` (CI must not pass by skipping the storage-fault tests)."""

from __future__ import annotations

import pytest

import harness.faults.storage as storage
from harness.pytest_plugin import _storage_gate


def _no_fuse() -> tuple[bool, str]:
    return False, "/dev/fuse is missing"


def test_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "fuse_available", _no_fuse)
    monkeypatch.delenv("QIKI_REQUIRE_FUSE", raising=False)
    with pytest.raises(pytest.skip.Exception, match="/dev/fuse is missing"):
        _storage_gate()


def test_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "fuse_available", _no_fuse)
    monkeypatch.setenv("QIKI_REQUIRE_FUSE", "1")
    with pytest.raises(pytest.fail.Exception, match="QIKI_REQUIRE_FUSE=1 but /dev/fuse"):
        _storage_gate()


def test_passes_when_fuse_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "fuse_available", lambda: (True, ""))
    monkeypatch.setenv("QIKI_REQUIRE_FUSE", "1")
    _storage_gate()
