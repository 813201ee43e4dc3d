"""The write-tracking model of the storage-fault filesystem, on a plain directory (no FUSE)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from harness.faults.storage.model import WriteTracker


def _write(t: WriteTracker, rel: str, data: bytes, offset: int) -> None:
    fd = os.open(t.backing / rel, os.O_RDWR | os.O_CREAT)
    try:
        t.write(fd, rel, data, offset)
    finally:
        os.close(fd)


@pytest.fixture
def t(tmp_path: Path) -> WriteTracker:
    return WriteTracker(tmp_path)


def test_drop_restores_last_fsynced_content(t: WriteTracker) -> None:
    (t.backing / "f").write_bytes(b"")
    _write(t, "f", b"hello", 0)
    t.fsync("f")
    _write(t, "f", b" world", 5)  # append
    _write(t, "f", b"J", 0)  # overwrite inside the synced part
    assert (t.backing / "f").read_bytes() == b"Jello world"
    lost = t.drop()
    assert (t.backing / "f").read_bytes() == b"hello"
    assert lost.bytes_dropped == 7
    assert lost.rewound == ["f"]
    s = t.stats()
    assert (s.bytes_written, s.bytes_synced, s.bytes_dropped, s.bytes_pending) == (12, 5, 7, 0)


def test_file_created_and_never_synced_vanishes(t: WriteTracker) -> None:
    t.created("new")
    _write(t, "new", b"data", 0)
    t.created("kept")
    _write(t, "kept", b"data", 0)
    t.fsync("kept")
    lost = t.drop()
    assert not (t.backing / "new").exists()
    assert (t.backing / "kept").read_bytes() == b"data"
    assert (lost.files_vanished, lost.vanished) == (1, ["new"])


def test_truncate_is_undone(t: WriteTracker) -> None:
    (t.backing / "f").write_bytes(b"0123456789")
    t.truncate("f", 3)
    _write(t, "f", b"abc", 3)
    t.drop()
    assert (t.backing / "f").read_bytes() == b"0123456789"


def test_rename_carries_unsynced_state_and_unlink_forgets_it(t: WriteTracker) -> None:
    t.created("tmp")
    _write(t, "tmp", b"x", 0)
    os.rename(t.backing / "tmp", t.backing / "final")
    t.renamed("tmp", "final")
    (t.backing / "d").mkdir()
    t.created("d/gone")
    _write(t, "d/gone", b"y", 0)
    os.unlink(t.backing / "d/gone")
    t.unlinked("d/gone")
    lost = t.drop()
    assert not (t.backing / "final").exists()  # a never-synced file, under its new name
    assert lost.vanished == ["final"]


def test_drop_by_prefix_touches_one_node(t: WriteTracker) -> None:
    for node in ("n1", "n2"):
        (t.backing / node).mkdir()
        (t.backing / node / "blk").write_bytes(b"")
        _write(t, f"{node}/blk", b"abc", 0)
    lost = t.drop("n1")
    assert lost.bytes_dropped == 3
    assert (t.backing / "n1/blk").read_bytes() == b""
    assert (t.backing / "n2/blk").read_bytes() == b"abc"
    assert t.stats("n2").bytes_pending == 3
    assert t.stats("n1").bytes_dropped == 3


def test_quota_refuses_growth_with_enospc_then_space_returns(t: WriteTracker) -> None:
    (t.backing / "f").write_bytes(b"12345")
    used = t.set_quota(7)
    assert used == 5
    _write(t, "f", b"ab", 5)  # to 7 bytes: fits
    _write(t, "f", b"XY", 0)  # overwrite: no growth, fits
    with pytest.raises(OSError) as exc:
        _write(t, "f", b"c", 7)
    assert exc.value.errno == errno.ENOSPC
    assert (t.backing / "f").read_bytes() == b"XY345ab"  # the refused write left nothing
    assert t.stats().enospc == 1
    t.set_quota(None)
    _write(t, "f", b"c", 7)
    assert (t.backing / "f").read_bytes() == b"XY345abc"


def test_fsync_latency_by_prefix(t: WriteTracker) -> None:
    t.set_fsync_latency(0.25, "n2")
    assert t.fsync("n2/blk") == 0.25
    assert t.fsync("n1/blk") == 0.0
    t.set_fsync_latency(0, "n2")
    assert t.fsync("n2/blk") == 0.0
