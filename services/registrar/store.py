"""SQLite audit store of the registrar.

One table, ``records``: every event the registrar accepted or rejected, and its own lifecycle
events. Writes come from one thread (the service's writer); readers (the HTTP query endpoint,
``qiki-harness registrar query``, checks) open their own connections and read while the
service runs, which is what WAL mode is for.

Idempotency (issue 2, section 4): every record has ``key``, a 64-bit hash of
(source, event_id), under a UNIQUE index, and rows go in with ``INSERT OR IGNORE``, so a
redelivered message never produces a second record. Why a hash and not
``UNIQUE(source, event_id)``: event ids are random UUIDs, so every insert lands on a random
index page and each batch rewrites (and fsyncs) hundreds of index pages; the text index was
measured at 10x the cost of the insert itself at 200k records, the 8-byte key at about a
third of that. Hash collisions are handled by open addressing (``key + 1``, ...), so two
different events never shadow each other (see :meth:`RegistrarStore.write_batch`).

Rejected messages have no trustworthy (source, id); they are keyed by where they came from
instead (``source`` = ``nats-stream:<STREAM>``, ``event_id`` = the stream sequence), see
:func:`rejection_key`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import lru_cache
from hashlib import blake2b
from itertools import chain
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "SCHEMA_VERSION",
    "Record",
    "RegistrarStore",
    "Row",
    "StoreError",
    "record_key",
    "rejection_key",
]

SCHEMA_VERSION = 2

#: Column order of a row handed to :meth:`RegistrarStore.write_batch`:
#: (code, source, event_id, type, subject, nats_subject, event_time, stored_at, stream,
#: stream_seq, reason, data, data_size).
Row = tuple[
    int,
    str,
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    float,
    str | None,
    int | None,
    str | None,
    bytes | None,
    int,
]

_COLUMNS = (
    "seq, code, source, event_id, type, subject, nats_subject, event_time, stored_at, "
    "stream, stream_seq, reason, data, data_size"
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS records (
    seq          INTEGER PRIMARY KEY,   -- store order (rowid); monotonic for one writer
    key          INTEGER NOT NULL,      -- idempotency key: record_key(source, event_id) (+probe)
    code         INTEGER NOT NULL,      -- RegistrarCode
    source       TEXT    NOT NULL,      -- CloudEvent source (or nats-stream:<STREAM> if rejected)
    event_id     TEXT    NOT NULL,      -- CloudEvent id (or stream sequence if rejected)
    type         TEXT,                  -- CloudEvent type (as claimed, for rejects)
    subject      TEXT,                  -- CloudEvent subject attribute
    nats_subject TEXT,                  -- NATS subject the message arrived on
    event_time   TEXT,                  -- CloudEvent time (ISO 8601) if present
    stored_at    REAL    NOT NULL,      -- unix seconds when the registrar stored it
    stream       TEXT,                  -- JetStream stream it came from
    stream_seq   INTEGER,               -- its stream sequence
    reason       TEXT,                  -- why it was rejected (rule: message), else NULL
    data         BLOB,                  -- payload, truncated to the store's max_data_bytes
    data_size    INTEGER NOT NULL       -- original payload size in bytes
);
CREATE UNIQUE INDEX IF NOT EXISTS records_key ON records (key);
CREATE INDEX IF NOT EXISTS records_code ON records (code);
PRAGMA user_version = {SCHEMA_VERSION};
"""

_INSERT = (
    "INSERT OR IGNORE INTO records (key, code, source, event_id, type, subject, nats_subject, "
    "event_time, stored_at, stream, stream_seq, reason, data, data_size) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
#: Largest multi-row INSERT: rows x 14 parameters stays under SQLite's default limit of
#: 32,766 variables (the connection's own limit is read too: a build may set it lower).
_MULTI_ROWS = 1024
#: A batch larger than one statement takes is inserted in statements of a multiple of this
#: many rows, plus one for the remainder.
_ROW_STEP = 64
_STATEMENT_CACHE = 128
_PARAMS_PER_ROW = 14


@lru_cache(maxsize=_STATEMENT_CACHE)
def _insert_rows(n: int) -> str:
    """The INSERT OR IGNORE statement of ``n`` rows (one VALUES tuple each)."""
    return _INSERT.removesuffix("(?,?,?,?,?,?,?,?,?,?,?,?,?,?)") + ",".join(
        ["(?,?,?,?,?,?,?,?,?,?,?,?,?,?)"] * n
    )


def _padded_rows(n: int, max_rows: int) -> int:
    """The statement size for a batch of ``n`` rows: ``n`` up to 16, else ``n`` rounded up to
    one of four steps per doubling (at most a quarter more rows; capped at ``max_rows``).

    Every size is a prepared statement kept in the connection's cache, and a prepared
    1,000-row INSERT holds about 0.8 MB: 40 sizes up to 1,024 rows hold ~5 MB, where one
    statement per batch size would hold ~56 MB once every size had been seen.
    """
    if n <= 16:
        return n
    step = 1 << (n.bit_length() - 3)
    return min(max_rows, -(-n // step) * step)


def _codes_of(rows: Sequence[Row]) -> dict[int, int]:
    """{code: rows} of a batch stored whole (every row newly inserted)."""
    counts: dict[int, int] = {}
    for row in rows:
        counts[row[0]] = counts.get(row[0], 0) + 1
    return counts


#: SQLite page cache of the writer connection, in KiB (64 MiB: the key index of ~3M records).
WRITER_CACHE_KIB = 64 * 1024

_chain = chain.from_iterable
_MAX_PROBES = 1024  # far beyond any real collision chain (2^-64 per pair)
_INT64 = 1 << 64


def record_key(source: str, event_id: str) -> int:
    """The 64-bit (signed, as SQLite stores it) idempotency key of (source, event_id)."""
    digest = blake2b(f"{source}\x00{event_id}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _next_probe(key: int) -> int:
    key += 1
    return key - _INT64 if key >= _INT64 // 2 else key


class StoreError(ValueError):
    """The store file cannot be used (missing when opened read-only, wrong schema, bad query)."""


def rejection_key(stream: str | None, stream_seq: int | None, fallback: str) -> tuple[str, str]:
    """The (source, event_id) key of a rejected message.

    A malformed message's own ``ce-source``/``ce-id`` cannot be trusted (they may be missing,
    or collide with a valid event's), so rejects are keyed by their stream position: a
    redelivery of the same stream message maps to the same key and is stored once.
    ``fallback`` (e.g. the reply subject) is used when the stream position is unknown.
    """
    if stream is not None and stream_seq is not None:
        return f"nats-stream:{stream}", str(stream_seq)
    return "nats-stream:unknown", fallback


@dataclass(frozen=True)
class Record:
    """One stored audit record (a row of ``records``)."""

    seq: int
    code: int
    source: str
    event_id: str
    type: str | None
    subject: str | None
    nats_subject: str | None
    event_time: str | None
    stored_at: float
    stream: str | None
    stream_seq: int | None
    reason: str | None
    data: bytes | None
    data_size: int

    @property
    def truncated(self) -> bool:
        """True when ``data`` holds only the first bytes of the payload."""
        return self.data is not None and len(self.data) < self.data_size

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; ``data`` is decoded as UTF-8 text (with replacement)."""
        out = asdict(self)
        out["data"] = None if self.data is None else self.data.decode("utf-8", "replace")
        out["truncated"] = self.truncated
        return out


def _since_to_epoch(since: float | datetime | str | None) -> float | None:
    if since is None:
        return None
    if isinstance(since, datetime):
        return since.timestamp()
    if isinstance(since, (int, float)):
        return float(since)
    try:
        return float(since)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise StoreError(
            f"since={since!r}: expected unix seconds (e.g. 1700000000.5) "
            "or an ISO 8601 time (e.g. 2026-01-01T00:00:00Z)"
        ) from None


class RegistrarStore:
    """The registrar's SQLite store.

    ``RegistrarStore(path)`` opens (creating if needed) a writable store;
    ``RegistrarStore(path, readonly=True)`` opens an existing one for queries only and can be
    used while the registrar writes (WAL). The object is also a context manager.

    ``synchronous`` is the SQLite ``PRAGMA synchronous`` level; the registrar uses ``FULL`` so
    that every batch commit is fsynced before the batch is acknowledged.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        readonly: bool = False,
        synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL",
        max_data_bytes: int = 65536,
        autocheckpoint: bool = True,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.max_data_bytes = max_data_bytes
        if readonly:
            if not self.path.exists():
                raise StoreError(
                    f"registrar store {self.path} does not exist: pass the --db the registrar "
                    "was started with"
                )
            uri = f"file:{self.path.resolve()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The writer runs in the service's single DB thread; readers use their own
            # connections, so sharing across threads is safe here.
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False,
                cached_statements=_STATEMENT_CACHE,
            )
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            # The idempotency index takes random keys, so every insert lands on a random leaf:
            # with SQLite's default 2 MB cache, a store of a few hundred MB re-read those
            # leaves with a pread each (9 KB read per event stored, the writer CPU-bound in
            # the kernel in a 5,000 events/s soak). A bounded cache that holds the index of a
            # few million records keeps them in memory (issue 13).
            self._conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            if not autocheckpoint:
                # The owner checkpoints from another connection (see checkpoint()), so a
                # commit never pays for copying the WAL into the database file.
                self._conn.execute("PRAGMA wal_autocheckpoint=0")
            self._conn.executescript(_SCHEMA)
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._check_schema()
        self._last_seq = self._max_seq()
        limit = self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._max_rows = max(1, min(_MULTI_ROWS, limit // _PARAMS_PER_ROW))

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (idempotent)."""
        try:
            self._conn.close()
        except sqlite3.Error:
            pass

    def __enter__(self) -> RegistrarStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_schema(self) -> None:
        try:
            (version,) = self._conn.execute("PRAGMA user_version").fetchone()
            self._conn.execute("SELECT seq FROM records LIMIT 0")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a registrar store: {exc}") from None
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has registrar schema version {version}, expected {SCHEMA_VERSION}"
            )

    def _max_seq(self) -> int:
        (seq,) = self._conn.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()
        return int(seq)

    # -- writing ------------------------------------------------------------------------
    def write_batch(self, rows: Sequence[Row]) -> dict[int, int]:
        """Store ``rows``; return {code: number of rows newly stored}.

        Rows whose (source, event_id) is already stored are ignored (redeliveries). When the
        call returns, every row is committed (and fsynced with ``synchronous=FULL``).

        A batch is normally ONE multi-row ``INSERT OR IGNORE`` run as its own transaction:
        every SQLite call hands the GIL to the event loop thread and must take it back, and
        an explicit BEGIN / INSERT / COMMIT cost three such round trips where this costs one
        (issue 13). When some rows were not inserted (a redelivery, or in theory another
        event with the same key hash), a second transaction walks each row's probe chain.
        The caller acknowledges the batch only after this returns, so a crash between the
        two transactions redelivers it and the store, being idempotent, completes it.
        """
        if self.readonly:
            raise StoreError(f"{self.path} was opened read-only")
        if not rows:
            return {}
        conn = self._conn
        params = [(record_key(r[1], r[2]), *r) for r in rows]
        n = len(params)
        before = self._last_seq
        if n <= self._max_rows:
            size = _padded_rows(n, self._max_rows)
            flat = list(_chain(params))
            if size > n:
                # Copies of the last row fill the statement up to a size whose prepared form
                # is cached (so sizes stay few); its key makes every copy a no-op.
                flat.extend(params[-1] * (size - n))
            try:
                cur = conn.execute(_insert_rows(size), flat)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            inserted = cur.rowcount
            if inserted == n:
                self._last_seq = cur.lastrowid or before
                return _codes_of(rows)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if n > self._max_rows:
                inserted = self._insert_many(params)
            if inserted == n:
                counts = _codes_of(rows)
            else:
                # Some keys were taken: by the same (source, id) (a redelivery: fine) or, in
                # theory, by another event with the same hash. Walk each row's probe chain.
                for p in params:
                    self._place(p)
                # Rowids are allocated max+1 by this single writer, so the new rows are
                # exactly those above the maximum before this call.
                counts = {
                    int(code): int(c)
                    for code, c in conn.execute(
                        "SELECT code, count(*) FROM records WHERE seq > ? GROUP BY code",
                        (before,),
                    )
                }
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._last_seq = self._max_seq()
        return counts

    def _insert_many(self, params: list[tuple[Any, ...]]) -> int:
        """INSERT OR IGNORE every row with few statements; return the rows inserted.

        ``executemany`` steps the statement once per row, and every step releases and
        re-takes the GIL: while the event loop thread is busy validating the next batch,
        each re-take waits, and a 1,000-row batch took 3x longer inside the registrar than
        alone (bench.registrar_ingest). Multi-row ``VALUES`` lists (each size's statement
        prepared once and cached by sqlite3) insert the same rows, in the same order: a
        multiple of ``_ROW_STEP`` rows, then the remainder (only for batches larger than
        one statement takes; see :meth:`write_batch`).
        """
        conn = self._conn
        inserted = 0
        i, n = 0, len(params)
        step = _ROW_STEP
        max_rows = self._max_rows
        while i < n:
            left = n - i
            size = min(left, max_rows)
            if size > step:
                size -= size % step
            chunk = params[i : i + size]
            i += size
            if size == 1:
                cur = conn.execute(_INSERT, chunk[0])
            else:
                cur = conn.execute(_insert_rows(size), list(_chain(chunk)))
            inserted += cur.rowcount
        return inserted

    def _place(self, p: tuple[Any, ...]) -> None:
        """Make sure row ``p`` (key first) is stored once: find it on its probe chain, or
        insert it at the first free key of the chain."""
        key, source, event_id = p[0], p[2], p[3]
        for _ in range(_MAX_PROBES):
            found = self._conn.execute(
                "SELECT source, event_id FROM records WHERE key = ?", (key,)
            ).fetchone()
            if found is None:
                self._conn.execute(_INSERT, (key, *p[1:]))
                return
            if found[0] == source and found[1] == event_id:
                return
            key = _next_probe(key)
        raise StoreError(f"no free idempotency key for ({source!r}, {event_id!r})")

    def set_journal_size_limit(self, limit_bytes: int) -> None:
        """``PRAGMA journal_size_limit``: when SQLite resets the WAL, it shrinks the file to
        this size (without it the file keeps its high-water size for good)."""
        self._conn.execute(f"PRAGMA journal_size_limit={int(limit_bytes)}").fetchone()

    def checkpoint_raw(
        self,
        mode: Literal["PASSIVE", "FULL", "RESTART", "TRUNCATE"],
        *,
        busy_timeout_ms: int | None = None,
    ) -> tuple[int, int, int]:
        """Run ``PRAGMA wal_checkpoint(mode)``; return SQLite's (busy, log frames, frames
        checkpointed). ``busy_timeout_ms`` bounds, for this call only, how long a
        FULL/RESTART/TRUNCATE checkpoint waits for readers and writers."""
        conn = self._conn
        if busy_timeout_ms is not None:
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        try:
            busy, log, done = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        finally:
            if busy_timeout_ms is not None:
                conn.execute("PRAGMA busy_timeout=5000")
        return int(busy), int(log), int(done)

    def checkpoint(self, mode: Literal["PASSIVE", "FULL", "TRUNCATE"] = "PASSIVE") -> int:
        """Copy committed WAL frames into the database file; return the frames still in the WAL.

        ``PASSIVE`` never blocks the writer, so it can run on its own connection in another
        thread while batches are committed.
        """
        busy, log, done = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return max(int(log) - int(done), 0) if not busy else int(log)

    # -- reading ------------------------------------------------------------------------
    def query(
        self,
        *,
        code: int | Iterable[int] | None = None,
        source: str | None = None,
        event_id: str | None = None,
        type: str | None = None,
        since: float | datetime | str | None = None,
        after_seq: int | None = None,
        limit: int | None = 1000,
    ) -> list[Record]:
        """Records matching every given filter, in store order.

        ``code`` is one code or several; ``since`` is unix seconds, a datetime or an ISO 8601
        string compared with ``stored_at``; ``after_seq`` pages (pass the last ``seq`` seen);
        ``limit=None`` returns everything.
        """
        where: list[str] = []
        args: list[Any] = []
        if code is not None:
            codes = [code] if isinstance(code, int) else list(code)
            where.append(f"code IN ({','.join('?' * len(codes))})")
            args.extend(int(c) for c in codes)
        if source is not None and event_id is not None:
            # Served by the key index: the record sits on its key's (short) probe chain.
            first = record_key(source, event_id)
            last = first + _MAX_PROBES
            if last < _INT64 // 2:
                where.append("key BETWEEN ? AND ?")
                args.extend((first, last))
        if source is not None:
            where.append("source = ?")
            args.append(source)
        if event_id is not None:
            where.append("event_id = ?")
            args.append(event_id)
        if type is not None:
            where.append("type = ?")
            args.append(type)
        epoch = _since_to_epoch(since)
        if epoch is not None:
            where.append("stored_at >= ?")
            args.append(epoch)
        if after_seq is not None:
            where.append("seq > ?")
            args.append(int(after_seq))
        sql = f"SELECT {_COLUMNS} FROM records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        if limit is not None:
            if limit < 0:
                raise StoreError(f"limit={limit}: expected a number >= 0")
            sql += " LIMIT ?"
            args.append(int(limit))
        return [Record(*row) for row in self._conn.execute(sql, args)]

    def iter_all(self, *, chunk: int = 10000) -> Iterator[Record]:
        """Every record in store order, read in chunks (for large stores)."""
        after = 0
        while True:
            page = self.query(after_seq=after, limit=chunk)
            if not page:
                return
            yield from page
            after = page[-1].seq

    def counts_by_code(self) -> dict[int, int]:
        """{code: number of records}, codes ascending."""
        rows = self._conn.execute("SELECT code, count(*) FROM records GROUP BY code ORDER BY code")
        return {int(c): int(n) for c, n in rows}

    def count(self) -> int:
        """Total number of records."""
        (n,) = self._conn.execute("SELECT count(*) FROM records").fetchone()
        return int(n)

    def keys(self) -> set[tuple[str, str]]:
        """Every stored (source, event_id) pair (for delivery accounting)."""
        return {(s, i) for s, i in self._conn.execute("SELECT source, event_id FROM records")}
