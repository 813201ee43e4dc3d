"""Which failures the registrar treats as its disk refusing writes (930 STORAGE_FAILED)."""

from __future__ import annotations

import errno
import sqlite3

from services.registrar.service import is_storage_error, storage_error


def _chained(inner: BaseException, outer: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 - the implicit context is what SQLite's rollback leaves
    except BaseException as exc:
        return exc


def test_sqlite_full_behind_a_failed_rollback_is_found() -> None:
    full = sqlite3.OperationalError("database or disk is full")
    exc = _chained(full, sqlite3.OperationalError("cannot rollback - no transaction is active"))
    assert storage_error(exc) is full


def test_os_disk_errors_count() -> None:
    assert is_storage_error(OSError(errno.ENOSPC, "No space left on device"))
    assert is_storage_error(OSError(errno.EIO, "Input/output error"))
    assert is_storage_error(sqlite3.OperationalError("disk I/O error"))


def test_bugs_are_not_disk_errors() -> None:
    assert not is_storage_error(ValueError("bad row"))
    assert not is_storage_error(sqlite3.OperationalError("no such table: records"))
    assert not is_storage_error(OSError(errno.ECONNREFUSED, "refused"))
