"""The corrupt fault's file work without NATS: which block, which offset, what changed."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from harness.faults.corrupt import block_files, block_records, corrupt_block, locate
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


def _record(seq: int, subject: bytes, payload: bytes, headers: bytes = b"") -> bytes:
    """One record as nats-server's filestore writes it (little-endian; see corrupt.py)."""
    length = 22 + len(subject) + (4 + len(headers) if headers else 0) + len(payload) + 8
    flag = 1 << 31 if headers else 0
    out = struct.pack("<IQqH", length | flag, seq, 1_700_000_000_000_000_000 + seq,
                      len(subject)) + subject
    if headers:
        out += struct.pack("<I", len(headers)) + headers
    return out + payload + b"\xcc" * 8


def _block_store(tmp_path: Path, records: bytes) -> Path:
    msgs = tmp_path / "jetstream" / "$G" / "streams" / "S" / "msgs"
    msgs.mkdir(parents=True)
    (msgs / "1.blk").write_bytes(records)
    return tmp_path


def test_records_and_fields_are_located() -> None:
    data = (_record(1, b"a.b", b"PAYLOAD1") + _record(2, b"a.c", b"P2", headers=b"NATS/1.0\r\n")
            + _record(3, b"a.d", b""))
    records = block_records(data + b"\x07torn")  # a torn tail stops the walk
    assert [r.seq for r in records] == [1, 2, 3]
    first = len(_record(1, b"a.b", b"PAYLOAD1"))
    assert locate(records, 0) == {"record_seq": 1, "field": "length"}
    assert locate(records, 4) == {"record_seq": 1, "field": "sequence"}
    assert locate(records, 22) == {"record_seq": 1, "field": "subject"}
    assert locate(records, 25) == {"record_seq": 1, "field": "payload"}
    assert locate(records, first - 1) == {"record_seq": 1, "field": "checksum"}
    assert locate(records, first + 25) == {"record_seq": 2, "field": "headers length"}
    assert data[slice(*records[1].payload)] == b"P2"
    assert records[2].payload[0] == records[2].payload[1]  # no payload
    assert locate(records, len(data) + 1) == {"record_seq": None, "field": "unparsed"}
    assert block_records(b"\xff" * 64) == []  # not a block that parses


def test_region_payload_flips_a_payload_byte_and_says_which_record(tmp_path: Path) -> None:
    data = b"".join(_record(s, b"x.y", bytes([65 + s]) * 40) for s in range(1, 30))
    for seed in range(20):
        store = _block_store(tmp_path / str(seed), data)
        done = corrupt_block(store, "S", "bitflip", seed, region="payload")
        assert done["field"] == "payload" and done["region"] == "payload", done
        assert done["byte_before"] == 65 + done["record_seq"]  # that record's payload
    # region any on the same block keeps the old offsets (same seed, same place)
    anywhere = corrupt_block(_block_store(tmp_path / "any", data), "S", "bitflip", 0)
    rng = random.Random(0)
    rng.choice([0])  # the block pick
    assert anywhere["offset"] == int(rng.random() * len(data))
    assert anywhere["region"] == "any" and anywhere["field"] in {
        "length", "sequence", "timestamp", "subject length", "subject", "payload", "checksum"}


def test_region_payload_without_payload_bytes_is_a_named_error(tmp_path: Path) -> None:
    store = _block_store(tmp_path, _record(1, b"x.y", b"") + _record(2, b"x.y", b""))
    with pytest.raises(FaultTargetError, match="holds no message payload byte"):
        corrupt_block(store, "S", "bitflip", 0, region="payload")


async def test_a_node_that_does_not_come_back_is_named_with_the_damage(tmp_path: Path) -> None:
    """Both restarts fail (as when a flipped sequence number keeps nats-server in its
    restore): the error says which node, what was damaged where, and how to avoid it."""
    from types import SimpleNamespace

    from harness.errors import HarnessError, SetupError
    from harness.faults.corrupt import _corrupt
    from harness.scenario.model import FaultStep

    store = _block_store(tmp_path, b"".join(_record(s, b"x.y", b"p" * 40) for s in (1, 2)))

    class Stuck:
        name, running, store_dir = "n2", True, store

        async def stop(self) -> None:
            self.running = False

        async def restart(self) -> None:
            raise HarnessError("nats-server n2 did not start: it was not ready within 15 s")

    events: list[dict[str, object]] = []
    platform = SimpleNamespace(
        broker=SimpleNamespace(nodes=[Stuck()]), services={},
        event=lambda kind, **data: events.append({"kind": kind, **data}))
    step = FaultStep(action="corrupt", target="broker:n2", stream="S", seed=0)
    with pytest.raises(SetupError) as info:
        await _corrupt(platform, step, "broker:n2")  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("n2 did not come back after the corruption (flipped bit ")
    assert "of record" in message and "region any" in message and "region: payload" in message
    assert "not ready within 15 s" in message  # the server's own failure follows
    assert [e["kind"] for e in events] == ["storage.corrupt", "storage.corrupt_restart_retry"]
