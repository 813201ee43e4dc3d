"""WalKeeper: the WAL stays under its bound however long batches are written (issue 13).

Real SQLite files, a real background checkpoint thread. Before issue 13 the registrar ran only
a PASSIVE checkpoint every second from a second connection: under continuous writes the WAL
was never reset and grew without bound (test_wal_stays_under_its_bound fails on that policy:
test_old_policy_grows_past_the_bound shows it; with ``WalKeeper._truncate`` made a no-op,
test_wal_stays_under_its_bound fails within the first second).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from services.registrar.store import RegistrarStore, Row
from services.registrar.wal import WalKeeper

MiB = 1024 * 1024


def _rows(n: int) -> list[Row]:
    # Random UUID ids, like real events: each row lands on a random page of the key index,
    # which is what makes the WAL grow fast (about 3 KB of frames per event).
    now = time.time()
    data = b'{"v": "' + b"x" * 380 + b'"}'
    return [
        (210, "sim://radar", str(uuid.uuid4()), "qiki.radar.v1.track", None,
         "qiki.events.v1.radar", None, now, "QIKI_EVENTS_V1", i, None, data, len(data))
        for i in range(n)
    ]


def test_wal_stays_under_its_bound(tmp_path: Path) -> None:
    """Write continuously until about 25x the bound has gone through the WAL; the file never
    exceeds the bound (margin: none; by design it stays under 3/4 of the bound plus one batch
    of 100 rows, about 0.4 MiB here)."""
    bound = 4 * MiB
    db = tmp_path / "r.db"
    wal_file = Path(f"{db}-wal")
    with RegistrarStore(db, autocheckpoint=False) as store, \
            WalKeeper(store, max_bytes=bound, interval_s=0.2) as keeper:
        largest = 0
        written = 0
        deadline = time.monotonic() + 60
        while keeper.stats.truncates < 25 and time.monotonic() < deadline:
            rows = _rows(100)
            assert sum(keeper.write_batch(rows).values()) == len(rows)
            written += len(rows)
            # The file only grows during a commit, so sampling after each one sees its peak.
            largest = max(largest, wal_file.stat().st_size)
            assert largest <= bound, (
                f"WAL file {largest} bytes > bound {bound} after {written} rows "
                f"({keeper.stats})"
            )
        assert keeper.stats.truncates >= 25, f"the WAL was not reset often enough: {keeper.stats}"
        assert keeper.stats.wal_max_bytes_seen == largest
        assert store.count() == written  # nothing lost to the checkpoints


def test_old_policy_grows_past_the_bound(tmp_path: Path) -> None:
    """The failure this guards against, shown: PASSIVE checkpoints alone (every 0.2 s here,
    the registrar's policy before issue 13) never reset the WAL under continuous writes."""
    bound = 4 * MiB
    db = tmp_path / "r.db"
    wal_file = Path(f"{db}-wal")
    with RegistrarStore(db, autocheckpoint=False) as store, \
            WalKeeper(store, max_bytes=bound, interval_s=0.2) as keeper:
        keeper.trigger_bytes = keeper.hard_bytes = 1 << 62  # never TRUNCATE: PASSIVE only
        deadline = time.monotonic() + 60
        # Writes go on until the WAL passes 3x the bound (or the deadline): how many fit
        # between five checkpoints depends on the machine's load, not on the policy.
        while (keeper.stats.passive < 5 or wal_file.stat().st_size <= 3 * bound) and (
            time.monotonic() < deadline
        ):
            keeper.write_batch(_rows(200))
        assert keeper.stats.passive >= 5  # the checkpoints ran, and did not help
        assert wal_file.stat().st_size > 3 * bound


def test_a_lull_lets_the_background_checkpoint_shrink_the_wal(tmp_path: Path) -> None:
    """When writes stop, the WAL is copied back and the next write resets it; the file is
    then cut to journal_size_limit (the trigger size) although it had grown past that."""
    bound = 16 * MiB
    db = tmp_path / "r.db"
    wal_file = Path(f"{db}-wal")
    with RegistrarStore(db, autocheckpoint=False) as store, \
            WalKeeper(store, max_bytes=bound, interval_s=30) as keeper:
        # Past the limit by hand (a long interval and no trigger yet: nothing reset it).
        store.set_journal_size_limit(-1)
        while wal_file.stat().st_size < 3 * MiB:
            store.write_batch(_rows(200))
        grown = wal_file.stat().st_size
        keeper.trigger_bytes = 2 * MiB
        store.set_journal_size_limit(keeper.trigger_bytes)
        keeper._wake.set()  # the background PASSIVE checkpoint, now
        deadline = time.monotonic() + 10
        while keeper.stats.passive < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        keeper._truncate_due = False  # leave the reset to SQLite (the lull path)
        keeper.write_batch(_rows(1))
        assert keeper.wal_bytes() <= 2 * MiB < grown
        assert keeper.stats.truncates == 0


def test_arguments_are_checked(tmp_path: Path) -> None:
    with RegistrarStore(tmp_path / "r.db", autocheckpoint=False) as store:
        with pytest.raises(ValueError, match="max_bytes=1000"):
            WalKeeper(store, max_bytes=1000)
        with pytest.raises(ValueError, match="interval_s=0"):
            WalKeeper(store, interval_s=0)


def test_the_writer_resets_the_wal_in_place_down_to_the_journal_limit(tmp_path: Path) -> None:
    """The writer-side reset is a RESTART checkpoint: the next commit writes the WAL from its
    start and the file is cut to journal_size_limit, not to zero (a TRUNCATE made every later
    commit append, and took up to 68 ms itself: the p99 spikes of issue 13)."""
    bound = 4 * MiB
    db = tmp_path / "r.db"
    wal_file = Path(f"{db}-wal")
    with RegistrarStore(db, autocheckpoint=False) as store, \
            WalKeeper(store, max_bytes=bound, interval_s=30) as keeper:
        assert keeper.journal_limit_bytes == keeper.trigger_bytes * 7 // 8
        while wal_file.stat().st_size < keeper.trigger_bytes:
            keeper.write_batch(_rows(100))
        # Past the trigger the background thread runs a PASSIVE checkpoint, then asks the
        # writer for the reset.
        deadline = time.monotonic() + 20
        while keeper.stats.passive < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        keeper._truncate_due = True
        keeper.write_batch(_rows(1))
        assert keeper.stats.truncates == 1, keeper.stats
        assert keeper.wal_bytes() == keeper.journal_limit_bytes
        # The commits after the reset overwrite the file's blocks (no new size to fsync) for
        # most of the next cycle: the file does not grow while the frames written since the
        # reset stay under the limit, e.g. at 3/4 of the trigger (with the limit at half the
        # trigger, the first choice, the second half of every cycle appended).
        while _current_frames_bytes(wal_file) < keeper.trigger_bytes * 3 // 4:
            keeper.write_batch(_rows(20))
            assert keeper.wal_bytes() == keeper.journal_limit_bytes


def _current_frames_bytes(wal_file: Path) -> int:
    """Bytes of the frames written since the WAL's last reset: those carrying the salts of
    the file's header (frames of earlier cycles carry older ones)."""
    raw = wal_file.read_bytes()
    page = int.from_bytes(raw[8:12], "big")
    salts = raw[16:24]
    pos = 32
    while pos + 24 + page <= len(raw) and raw[pos + 8 : pos + 16] == salts:
        pos += 24 + page
    return pos - 32
