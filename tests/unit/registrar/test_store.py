"""RegistrarStore: idempotent batches, per-code counts of new rows, queries, read-only use."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from services.registrar.store import (
    RegistrarStore,
    Row,
    StoreError,
    record_key,
    rejection_key,
)


def row(code: int, source: str, event_id: str, *, stored_at: float = 1000.0,
        data: bytes = b"{}") -> Row:
    return (code, source, event_id, "t", None, "qiki.events.v1.x", None, stored_at,
            "QIKI_EVENTS_V1", 1, None, data, len(data))


def test_batch_is_idempotent_on_source_and_id(tmp_path: Path) -> None:
    with RegistrarStore(tmp_path / "r.db") as st:
        assert st.write_batch([row(210, "a", "1"), row(210, "a", "2"), row(201, "b", "1")]) == {
            210: 2, 201: 1}
        # A redelivered batch (plus one new record) stores only the new one.
        again = st.write_batch([row(210, "a", "1"), row(210, "a", "2"), row(702, "c", "9")])
        assert again == {702: 1}
        assert st.write_batch([row(210, "a", "1")]) == {}
        assert st.count() == 4
        assert st.counts_by_code() == {201: 1, 210: 2, 702: 1}


def test_unique_key_is_in_the_schema(tmp_path: Path) -> None:
    """The guarantee must hold for any writer, not just write_batch's INSERT OR IGNORE."""
    with RegistrarStore(tmp_path / "r.db") as st:
        st.write_batch([row(210, "a", "1")])
    conn = sqlite3.connect(tmp_path / "r.db")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO records (key, code, source, event_id, stored_at, data_size) "
                     "VALUES (?, 210, 'a', '1', 0, 0)", (record_key("a", "1"),))
    conn.close()


def test_hash_collisions_never_shadow_another_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Force every (source, id) onto the same key: each event is still stored exactly once."""
    import services.registrar.store as store_mod

    monkeypatch.setattr(store_mod, "record_key", lambda source, event_id: 42)
    with RegistrarStore(tmp_path / "r.db") as st:
        assert st.write_batch([row(210, "a", "1"), row(210, "b", "1"), row(211, "a", "2")]) == {
            210: 2, 211: 1}
        # Redeliveries, interleaved with one new event, in one batch.
        assert st.write_batch([row(211, "a", "2"), row(201, "c", "3"), row(210, "a", "1")]) == {
            201: 1}
        assert st.count() == 4
        assert {(r.source, r.event_id) for r in st.query()} == {
            ("a", "1"), ("b", "1"), ("a", "2"), ("c", "3")}
        (rec,) = st.query(source="b", event_id="1")
        assert rec.code == 210


def test_in_batch_duplicates_are_stored_once(tmp_path: Path) -> None:
    with RegistrarStore(tmp_path / "r.db") as st:
        assert st.write_batch([row(210, "a", "1"), row(210, "a", "1")]) == {210: 1}
        assert st.query(source="a", event_id="1")[0].event_id == "1"


def test_query_filters_and_paging(tmp_path: Path) -> None:
    with RegistrarStore(tmp_path / "r.db") as st:
        st.write_batch([row(210, "a", str(i), stored_at=1000.0 + i) for i in range(10)])
        st.write_batch([row(920, *rejection_key("QIKI_EVENTS_V1", 77, "x"), stored_at=2000.0)])
        assert [r.event_id for r in st.query(code=210, limit=3)] == ["0", "1", "2"]
        assert len(st.query(code=[210, 920], limit=None)) == 11
        assert [r.event_id for r in st.query(since=1008.0)] == ["8", "9", "77"]
        assert [r.event_id for r in st.query(since="1970-01-01T00:16:49Z")] == ["9", "77"]
        (rej,) = st.query(source="nats-stream:QIKI_EVENTS_V1")
        assert (rej.code, rej.event_id) == (920, "77")
        first = st.query(limit=4)
        assert [r.event_id for r in st.query(after_seq=first[-1].seq, limit=2)] == ["4", "5"]
        assert len(list(st.iter_all(chunk=3))) == 11
        assert st.query(event_id="3")[0].to_json()["data"] == "{}"


def test_bad_since_names_the_value(tmp_path: Path) -> None:
    with RegistrarStore(tmp_path / "r.db") as st, pytest.raises(StoreError, match="yesterday"):
        st.query(since="yesterday")


def test_readonly_reader_sees_commits_while_writer_is_open(tmp_path: Path) -> None:
    with RegistrarStore(tmp_path / "r.db") as writer:
        writer.write_batch([row(210, "a", "1")])
        with RegistrarStore(tmp_path / "r.db", readonly=True) as reader:
            assert reader.count() == 1
            writer.write_batch([row(210, "a", "2")])
            assert reader.count() == 2
            with pytest.raises(StoreError, match="read-only"):
                reader.write_batch([row(210, "a", "3")])


def test_readonly_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        RegistrarStore(tmp_path / "nope.db", readonly=True)


def test_not_a_registrar_store(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE x (a)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a registrar store"):
        RegistrarStore(path, readonly=True)


def test_truncated_flag(tmp_path: Path) -> None:
    with RegistrarStore(tmp_path / "r.db") as st:
        r = row(210, "a", "1", data=b"abc")
        st.write_batch([(*r[:11], b"ab", 3)])  # type: ignore[list-item]
        (rec,) = st.query()
        assert rec.truncated and rec.to_json()["truncated"] is True


def test_checkpoint_from_a_second_connection_while_writing(tmp_path: Path) -> None:
    with RegistrarStore(tmp_path / "r.db", autocheckpoint=False) as writer, \
            RegistrarStore(tmp_path / "r.db") as ckpt:
        for b in range(5):
            writer.write_batch([row(210, "a", f"{b}-{i}", data=b"x" * 500) for i in range(200)])
        wal = tmp_path / "r.db-wal"
        assert wal.stat().st_size > 0
        assert ckpt.checkpoint() == 0  # everything copied
        writer.write_batch([row(210, "a", "after")])
        assert writer.count() == 1001


def test_large_batches_keep_every_row_once_and_in_order(tmp_path: Path) -> None:
    # Rows go in as multi-row INSERTs of several sizes (multiples of 64, then the rest): every
    # row of an odd-sized batch must be stored exactly once, in batch order, also when redelivered
    # rows are mixed with new ones.
    with RegistrarStore(tmp_path / "r.db") as st:
        first = [row(210, "a", str(i), data=str(i).encode()) for i in range(1000)]
        assert st.write_batch(first) == {210: 1000}
        mixed = [row(210, "a", str(i)) for i in range(900, 1000)]  # redelivered
        mixed += [row(702, "b", str(i)) for i in range(77)]  # new
        assert st.write_batch(mixed) == {702: 77}
        recs = st.query(limit=None)
        assert [(r.source, r.event_id) for r in recs] == [("a", str(i)) for i in range(1000)] + [
            ("b", str(i)) for i in range(77)
        ]
        assert [r.data for r in recs[:1000]] == [str(i).encode() for i in range(1000)]
        assert [r.seq for r in recs] == list(range(1, 1078))


def test_a_batch_is_one_statement_and_new_counts_stay_exact(tmp_path: Path) -> None:
    # Each SQLite call hands the GIL back and forth with the event loop thread (issue 13), so
    # a batch is one multi-row INSERT run as its own transaction (no BEGIN / COMMIT, no query
    # for the last rowid), padded with copies of its last row to a cached statement size.
    # The copies must store nothing, and the rowid remembered must stay right: the counts of
    # a later batch that mixes redelivered rows in are read from it.
    with RegistrarStore(tmp_path / "r.db") as st:
        seen: list[str] = []
        st._conn.set_trace_callback(seen.append)
        for n in (1000, 1, 16, 17, 63, 65, 777):
            base = st.count()
            seen.clear()
            assert st.write_batch([row(210, "a", f"{n}-{i}") for i in range(n)]) == {210: n}
            assert len(seen) == 1 and seen[0].startswith("INSERT OR IGNORE"), (n, seen[:3])
            assert st.count() == base + n
        again = [row(210, "a", f"777-{i}") for i in range(5)] + [row(702, "b", "x")]
        seen.clear()
        assert st.write_batch(again) == {702: 1}
        # Redelivered rows make the second transaction only read: the batch's one write and
        # fsync stay in the first.
        second = seen[seen.index("BEGIN IMMEDIATE"):]
        assert second[-2] == "COMMIT" and not [s for s in second if s.startswith("INSERT")]
        st._conn.set_trace_callback(None)
        assert st.write_batch([row(703, "c", "y"), row(703, "c", "z")]) == {703: 2}
        assert st.counts_by_code() == {210: 1939, 702: 1, 703: 2}
        assert [r.seq for r in st.query(limit=None)] == list(range(1, 1943))


def test_a_batch_larger_than_one_statement_is_one_transaction(tmp_path: Path) -> None:
    with RegistrarStore(tmp_path / "r.db") as st:
        st._max_rows = 100  # as if SQLite allowed only 1,400 variables
        seen: list[str] = []
        st._conn.set_trace_callback(seen.append)
        assert st.write_batch([row(210, "a", str(i)) for i in range(250)]) == {210: 250}
        assert seen[0] == "BEGIN IMMEDIATE" and seen[-2] == "COMMIT", seen[:1] + seen[-2:]
        assert st.write_batch([row(210, "a", str(i)) for i in range(240, 260)]) == {210: 10}
        assert st.count() == 260
