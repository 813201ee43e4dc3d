"""The write-tracking model of the storage-fault filesystem, on a plain directory (no FUSE)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# ------------------------------------------------------------------ coalesced appends


def test_appends_coalesce_into_one_record_and_still_drop_exactly(t: WriteTracker) -> None:
    (t.backing / "blk").write_bytes(b"")
    _write(t, "blk", b"synced", 0)
    t.fsync("blk")
    for i in range(1000):  # nats-server: one pwrite per message, each at the end
        _write(t, "blk", b"m%03d" % i, 6 + 4 * i)
    assert len(t._files["blk"].undo) == 1  # not one record per write
    assert t.stats().bytes_pending == 4000
    lost = t.drop()
    assert (t.backing / "blk").read_bytes() == b"synced"
    assert lost.bytes_dropped == 4000


def test_overwrite_between_appends_is_kept_and_undone_in_order(t: WriteTracker) -> None:
    (t.backing / "f").write_bytes(b"")
    _write(t, "f", b"abcdef", 0)
    t.fsync("f")
    _write(t, "f", b"ghi", 6)  # append
    _write(t, "f", b"jk", 8)  # overlaps the end: keeps "i" as overwritten bytes
    _write(t, "f", b"XY", 1)  # overwrite inside the synced part
    _write(t, "f", b"lmn", 10)  # append again
    _write(t, "f", b"o", 13)  # and again (coalesces with the previous one)
    assert (t.backing / "f").read_bytes() == b"aXYdefghjklmno"
    assert len(t._files["f"].undo) == 4
    t.drop()
    assert (t.backing / "f").read_bytes() == b"abcdef"


def test_append_past_a_hole_and_growing_truncate_coalesce(t: WriteTracker) -> None:
    (t.backing / "f").write_bytes(b"base")
    t.truncate("f", 10)  # grows: a pure "truncate back to 4" record
    _write(t, "f", b"zz", 20)  # past a hole
    _write(t, "f", b"yy", 22)
    assert len(t._files["f"].undo) == 1
    t.drop()
    assert (t.backing / "f").read_bytes() == b"base"


def test_shrinking_truncate_then_appends_restore_the_cut_bytes(t: WriteTracker) -> None:
    (t.backing / "f").write_bytes(b"0123456789")
    _write(t, "f", b"ab", 10)  # append (coalesces nothing before it: first record)
    t.truncate("f", 4)  # cuts "456789ab": must come back
    _write(t, "f", b"cd", 4)
    _write(t, "f", b"ef", 6)
    assert (t.backing / "f").read_bytes() == b"0123cdef"
    t.drop()
    assert (t.backing / "f").read_bytes() == b"0123456789"


_op = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 64), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("append"), st.just(0), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("truncate"), st.integers(0, 64), st.just(b"")),
    st.tuples(st.just("fsync"), st.just(0), st.just(b"")),
)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op, max_size=40))
def test_drop_returns_every_file_to_its_last_fsync(tmp_path: Path,
                                                    ops: list[tuple[str, int, bytes]]) -> None:
    """Any mix of writes, appends, truncates and fsyncs: a drop leaves the last fsynced
    content, byte for byte (a reference model keeps it), and counts what was written since."""
    backing = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
    backing.mkdir()
    t = WriteTracker(backing)
    path = backing / "f"
    path.write_bytes(b"initial")
    synced, pending = b"initial", 0
    for op, pos, data in ops:
        if op == "write":
            _write(t, "f", data, pos)
            pending += len(data)
        elif op == "append":
            _write(t, "f", data, path.stat().st_size)
            pending += len(data)
        elif op == "truncate":
            t.truncate("f", pos)
        else:
            t.fsync("f")
            synced, pending = path.read_bytes(), 0
    assert t.stats().bytes_pending == pending
    lost = t.drop()
    assert path.read_bytes() == synced
    assert lost.bytes_dropped == pending
