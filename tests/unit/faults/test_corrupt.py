"""The corrupt fault's file work without NATS: which block, which offset, what changed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from harness.faults.corrupt import block_files, corrupt_block
from harness.faults.engine import FaultTargetError


def _store(tmp_path: Path, sizes: dict[str, int]) -> Path:
    msgs = tmp_path / "jetstream" / "$G" / "streams" / "S" / "msgs"
    msgs.mkdir(parents=True)
    rng = random.Random(1)
    for name, size in sizes.items():
        (msgs / name).write_bytes(bytes(rng.randrange(256) for _ in range(size)))
    return tmp_path


def test_blocks_are_the_non_empty_ones_in_numeric_order(tmp_path: Path) -> None:
    store = _store(tmp_path, {"10.blk": 5, "2.blk": 5, "3.blk": 0, "index.db": 9})
    assert [p.name for p in block_files(store, "S")] == ["2.blk", "10.blk"]


def test_bitflip_changes_exactly_one_bit_and_says_where(tmp_path: Path) -> None:
    store = _store(tmp_path, {"1.blk": 4096, "2.blk": 4096})
    before = {p.name: p.read_bytes() for p in block_files(store, "S")}
    done = corrupt_block(store, "S", "bitflip", seed=3)
    path = store / done["file"]
    after = path.read_bytes()
    diff = [i for i, (a, b) in enumerate(zip(before[path.name], after, strict=True)) if a != b]
    assert diff == [done["offset"]]
    assert bin(done["byte_before"] ^ done["byte_after"]).count("1") == 1
    assert done["byte_before"] ^ done["byte_after"] == 1 << done["bit"]
    assert done["size_before"] == done["size_after"] == 4096 and done["blocks"] == 2
    other = next(n for n in before if n != path.name)
    assert (path.parent / other).read_bytes() == before[other]  # one file only


def test_the_same_seed_picks_the_same_place(tmp_path: Path) -> None:
    a = _store(tmp_path / "a", {"1.blk": 1000, "2.blk": 1000})
    b = _store(tmp_path / "b", {"1.blk": 1000, "2.blk": 1000})
    da, db = corrupt_block(a, "S", "bitflip", 9), corrupt_block(b, "S", "bitflip", 9)
    assert (da["file"], da["offset"], da["bit"]) == (db["file"], db["offset"], db["bit"])
    dc = corrupt_block(_store(tmp_path / "c", {"1.blk": 1000, "2.blk": 1000}), "S",
                       "bitflip", 10)
    assert (dc["file"], dc["offset"]) != (da["file"], da["offset"])


def test_truncate_cuts_the_file_at_the_offset(tmp_path: Path) -> None:
    store = _store(tmp_path, {"1.blk": 1000})
    done = corrupt_block(store, "S", "truncate", seed=0)
    assert 0 <= done["offset"] < 1000
    assert (store / done["file"]).stat().st_size == done["size_after"] == done["offset"]


def test_no_block_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(FaultTargetError, match="no non-empty message block of stream 'S'"):
        corrupt_block(tmp_path, "S", "bitflip", 0)
