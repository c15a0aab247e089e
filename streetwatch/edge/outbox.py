"""The edge's durable outbox: alerts wait here (SQLite) until the broker acknowledges them.

Durability: `put()` returns only after its transaction is committed with journal_mode=WAL and
synchronous=FULL, so an alert that `put()` accepted survives a process kill *and* a power cut
(edge boxes lose power). WAL with synchronous=NORMAL would survive a process kill but could lose
the last commits on power loss; alerts are a few per minute, so the extra fsync per put is cheap.

Threads: one connection guarded by one lock. The pipeline thread puts while the publisher thread
(and paho's network thread, which acks on PUBACK) read and delete. SQLite serialises writers
anyway, so a connection per thread would only add SQLITE_BUSY retries between our own threads;
every statement here is sub-millisecond, so a lock costs nothing and keeps `close()` simple.

Bounded: `max_rows` and `max_bytes` cap what a long broker outage can pile up on the edge's disk.
When full, `put()` raises `OutboxFull`; it never drops an alert silently.

Delivery audit (wire revision 1.1): `put()` numbers each alert it accepts 1, 2, 3 ... per outbox
file (`outbox_id`, made when the file is created) and writes the number into the payload as
`seq`. A delivered alert is not deleted but kept for `retention_s` (default 24 h), within the
caps: when room is needed the oldest delivered alerts go first, waiting ones never. When the
broker loses alerts it had acknowledged to the box, central sees a gap in the box's numbers and
asks for them again (`resend`): they wait once more and the publisher sends them again.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from streetwatch.edge.alerts import Alert, MediaRef, alert_topic, media_chunks, media_topic, new_id

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024  # 1 GiB: ~3,000 alerts with full-size evidence
DEFAULT_RETENTION_S = 24 * 3600.0
MAX_MISSING_RANGES = 100  # a resend answer names at most this many missing ranges

# seq orders the queue (oldest first) and, as INTEGER PRIMARY KEY, is stable across VACUUM;
# alert_id is the idempotency key, so a re-put of the same alert is a no-op. delivery_seq is the
# number on the wire (NULL for alerts a version-1 outbox stored: they had none); acked_at is NULL
# while the alert waits, else the time the broker acknowledged it.
_TABLES = (
    """CREATE TABLE IF NOT EXISTS outbox (
        seq          INTEGER PRIMARY KEY,
        alert_id     TEXT    NOT NULL UNIQUE,
        camera_id    TEXT    NOT NULL,
        topic        TEXT    NOT NULL,
        payload      BLOB    NOT NULL,
        size         INTEGER NOT NULL,
        created_at   TEXT    NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        delivery_seq INTEGER,
        acked_at     TEXT
    )""",
    "CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # Evidence-set pieces (wire 1.2): sent after the alerts, deleted on PUBACK (no resend: central
    # keeps what it received by hash). `key` (MEDIA_KEY + sha256:chunk) makes a piece idempotent.
    """CREATE TABLE IF NOT EXISTS media (
        id         INTEGER PRIMARY KEY,
        key        TEXT    NOT NULL UNIQUE,
        alert_id   TEXT    NOT NULL,
        camera_id  TEXT    NOT NULL,
        topic      TEXT    NOT NULL,
        payload    BLOB    NOT NULL,
        size       INTEGER NOT NULL,
        created_at TEXT    NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0
    )""",
)
MEDIA_KEY = "media:"  # an OutboxItem whose alert_id starts so is an evidence-set piece
DEFAULT_MEDIA_MAX_BYTES = 256 * 1024 * 1024
_UPGRADE_FROM_1 = (
    "ALTER TABLE outbox ADD COLUMN delivery_seq INTEGER",
    "ALTER TABLE outbox ADD COLUMN acked_at TEXT",
)
_INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS outbox_delivery_seq ON outbox (delivery_seq)",
    "CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox (acked_at, seq)",
)


class OutboxError(RuntimeError):
    """The outbox file cannot be used; the message names the path."""


class OutboxFull(OutboxError):
    """The outbox reached its row or byte limit; the alert was NOT stored (caller logs and counts)."""

    def __init__(self, *, alert_id: str, rows: int, size_bytes: int, max_rows: int, max_bytes: int) -> None:
        super().__init__(
            f"outbox full: alert {alert_id} not stored ({rows}/{max_rows} alerts, "
            f"{size_bytes}/{max_bytes} bytes waiting); is the broker reachable?"
        )
        self.alert_id = alert_id
        self.rows = rows
        self.size_bytes = size_bytes


@dataclass(frozen=True)
class OutboxItem:
    """One waiting alert: its wire payload (`Alert.to_json()`) and the topic to publish it on."""

    alert_id: str
    camera_id: str
    topic: str
    payload: bytes
    created_at: datetime
    attempts: int


@dataclass(frozen=True)
class ResendResult:
    """What a resend request found: how many delivered alerts wait again, and the ranges (first,
    last) of the requested numbers this outbox no longer holds (past retention, evicted for room,
    or numbered by another outbox file)."""

    requeued: int
    missing: tuple[tuple[int, int], ...]


class Outbox:
    """A bounded, durable FIFO of alerts keyed by alert_id. Safe to share between threads."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        retention_s: float = DEFAULT_RETENTION_S,
        media_max_bytes: int = DEFAULT_MEDIA_MAX_BYTES,
    ) -> None:
        """`media_max_bytes`: evidence-set bytes that may wait; a set beyond it is dropped (logged)."""
        if max_rows < 1 or max_bytes < 1 or retention_s < 0:
            raise ValueError(f"outbox limits: expected max_rows >= 1, max_bytes >= 1, retention_s >= 0, got "
                             f"{max_rows}, {max_bytes}, {retention_s}")
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.retention = timedelta(seconds=retention_s)
        self.media_max_bytes = media_max_bytes
        self._lock = threading.Lock()
        check_outbox_path(self.path)
        self._conn = self._open()
        self.outbox_id = self._read_meta("outbox_id")

    def _open(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a commit is where we say.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, SCHEMA_VERSION):
                conn.execute("ROLLBACK")
                raise OutboxError(f"outbox {self.path}: schema version {version}, this edge reads "
                                  f"{SCHEMA_VERSION}; move the file away or upgrade the edge")
            _create_schema(conn, upgrade=version == 1)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: cannot open as SQLite: {exc}") from None
        return conn

    def _read_meta(self, key: str) -> str:
        with self._lock:
            return str(self._conn.execute("SELECT value FROM outbox_meta WHERE key = ?", (key,)).fetchone()[0])

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; committed (durably) when the block ends."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:  # e.g. disk full or I/O error: name the file
                self._rollback()
                raise OutboxError(f"outbox {self.path}: {exc}") from exc
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def put(self, alert: Alert) -> int | None:
        """Number the alert and store it; committed when this returns. Returns its `seq`, or None
        for a re-put of a stored alert_id (a no-op).

        Raises OutboxFull (nothing stored) when the waiting alerts would exceed a limit.
        """
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM outbox WHERE alert_id = ?", (alert.alert_id,)).fetchone():
                log.debug("camera %s: alert %s already in the outbox", alert.camera_id, alert.alert_id)
                return None
            now = datetime.now(UTC)
            expired = (now - self.retention).isoformat(timespec="microseconds")
            conn.execute("DELETE FROM outbox WHERE acked_at < ?", (expired,))
            seq = int(_meta(conn, "next_seq"))
            payload = alert.model_copy(update={"seq": seq, "outbox_id": self.outbox_id}).to_json()
            self._make_room(conn, alert_id=alert.alert_id, size=len(payload))
            conn.execute(
                "INSERT INTO outbox (alert_id, camera_id, topic, payload, size, created_at, delivery_seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (alert.alert_id, alert.camera_id, alert_topic(alert.edge_id, alert.camera_id),
                 payload, len(payload), now.isoformat(timespec="microseconds"), seq),
            )
            conn.execute("UPDATE outbox_meta SET value = ? WHERE key = 'next_seq'", (str(seq + 1),))
            return seq

    def put_media(self, alert: Alert, items: Sequence[tuple[MediaRef, bytes]]) -> bool:
        """Store the evidence-set pieces of `alert` (already put) to be sent after the alerts; False
        (nothing stored, logged) if they would pass `media_max_bytes`: the set is dropped, the alert
        goes without it. A piece already waiting (same hash and number) is not stored twice."""
        messages = [
            (f"{MEDIA_KEY}{ref.sha256}:{chunk.chunk}", chunk.to_json())
            for ref, data in items for chunk in media_chunks(alert.alert_id, alert.edge_id, ref, data)
        ]
        if not messages:
            return True
        topic = media_topic(alert.edge_id, alert.camera_id)
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        with self._transaction() as conn:
            held = {row[0] for row in conn.execute(
                f"SELECT key FROM media WHERE key IN ({','.join('?' * len(messages))})", [k for k, _ in messages])}
            messages = [(key, payload) for key, payload in messages if key not in held]
            size = sum(len(payload) for _, payload in messages)
            waiting = int(conn.execute("SELECT coalesce(sum(size), 0) FROM media").fetchone()[0])
            if waiting + size > self.media_max_bytes:
                log.warning("camera %s: evidence set of alert %s (%d bytes) dropped: %d of %d media bytes "
                            "already wait", alert.camera_id, alert.alert_id, size, waiting, self.media_max_bytes)
                return False
            conn.executemany(
                "INSERT OR IGNORE INTO media (key, alert_id, camera_id, topic, payload, size, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(key, alert.alert_id, alert.camera_id, topic, payload, len(payload), now)
                 for key, payload in messages],
            )
        return True

    def _make_room(self, conn: sqlite3.Connection, *, alert_id: str, size: int) -> None:
        """Refuse if the waiting alerts fill the caps; else evict the oldest delivered ones that
        stand in the way (kept only for resends, so they are the first to go)."""
        rows, size_waiting = conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM outbox WHERE acked_at IS NULL").fetchone()
        if rows + 1 > self.max_rows or size_waiting + size > self.max_bytes:
            raise OutboxFull(alert_id=alert_id, rows=rows, size_bytes=size_waiting,
                             max_rows=self.max_rows, max_bytes=self.max_bytes)
        all_rows, all_size = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
        extra_rows, extra_bytes = all_rows + 1 - self.max_rows, all_size + size - self.max_bytes
        if extra_rows <= 0 and extra_bytes <= 0:
            return
        cutoff = None
        for seq, kept_size in conn.execute("SELECT seq, size FROM outbox WHERE acked_at IS NOT NULL ORDER BY seq"):
            cutoff, extra_rows, extra_bytes = seq, extra_rows - 1, extra_bytes - kept_size
            if extra_rows <= 0 and extra_bytes <= 0:
                break
        conn.execute("DELETE FROM outbox WHERE acked_at IS NOT NULL AND seq <= ?", (cutoff,))

    def pending(self, limit: int = 100) -> list[OutboxItem]:
        """Up to `limit` waiting alerts, oldest first, then evidence-set pieces (their `alert_id` is
        their MEDIA_KEY key). Reading does not remove them: see `ack`."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT alert_id, camera_id, topic, payload, created_at, attempts "
                "FROM outbox WHERE acked_at IS NULL ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
            if len(rows) < limit:
                rows += self._conn.execute(
                    "SELECT key, camera_id, topic, payload, created_at, attempts FROM media ORDER BY id LIMIT ?",
                    (limit - len(rows),),
                ).fetchall()
        return [
            OutboxItem(alert_id=r[0], camera_id=r[1], topic=r[2], payload=bytes(r[3]),
                       created_at=datetime.fromisoformat(r[4]), attempts=r[5])
            for r in rows
        ]

    def ack(self, alert_id: str) -> bool:
        """Mark a waiting alert delivered (kept for resends); True if it was still waiting (False
        for a repeated ack)."""
        with self._transaction() as conn:
            if alert_id.startswith(MEDIA_KEY):
                return conn.execute("DELETE FROM media WHERE key = ?", (alert_id,)).rowcount > 0
            cursor = conn.execute("UPDATE outbox SET acked_at = ? WHERE alert_id = ? AND acked_at IS NULL",
                                  (datetime.now(UTC).isoformat(timespec="microseconds"), alert_id))
            return cursor.rowcount > 0

    def resend(self, *, outbox_id: str, first: int, last: int) -> ResendResult:
        """Queue the delivered alerts numbered first..last again (central lost them); say which
        numbers this outbox no longer holds."""
        if outbox_id != self.outbox_id:
            return ResendResult(0, ((first, last),))
        with self._transaction() as conn:
            held = [row[0] for row in conn.execute(
                "SELECT delivery_seq FROM outbox WHERE delivery_seq BETWEEN ? AND ? ORDER BY delivery_seq",
                (first, last))]
            cursor = conn.execute(
                "UPDATE outbox SET acked_at = NULL WHERE delivery_seq BETWEEN ? AND ? AND acked_at IS NOT NULL",
                (first, last))
        return ResendResult(cursor.rowcount, missing_ranges(held, first=first, last=last))

    def last_seq(self) -> int:
        """The highest number given so far (0 before the first alert)."""
        with self._lock:
            try:
                return int(_meta(self._conn, "next_seq")) - 1
            except sqlite3.Error as exc:
                raise OutboxError(f"outbox {self.path}: {exc}") from exc

    def record_attempt(self, alert_id: str) -> None:
        """Count one publish attempt (visible in `OutboxItem.attempts`, for diagnosing stuck alerts)."""
        with self._transaction() as conn:
            if alert_id.startswith(MEDIA_KEY):
                conn.execute("UPDATE media SET attempts = attempts + 1 WHERE key = ?", (alert_id,))
            else:
                conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE alert_id = ?", (alert_id,))

    def depth(self) -> int:
        """How many alerts are waiting."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM outbox WHERE acked_at IS NULL").fetchone()[0])

    def media_depth(self) -> int:
        """How many evidence-set pieces are waiting."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM media").fetchone()[0])

    def size_bytes(self) -> int:
        """Total payload bytes waiting (what `max_bytes` bounds, with the delivered alerts kept)."""
        with self._lock:
            query = "SELECT coalesce(sum(size), 0) FROM outbox WHERE acked_at IS NULL"
            return int(self._conn.execute(query).fetchone()[0])

    def retained(self) -> int:
        """How many delivered alerts are kept for resends."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM outbox WHERE acked_at IS NOT NULL").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _create_schema(conn: sqlite3.Connection, *, upgrade: bool) -> None:
    """Tables, indexes and the numbering; a version-1 file keeps its waiting alerts (unnumbered)."""
    if upgrade:
        for statement in _UPGRADE_FROM_1:
            conn.execute(statement)
    for statement in (*_TABLES, *_INDEXES):
        conn.execute(statement)
    conn.execute("INSERT OR IGNORE INTO outbox_meta (key, value) VALUES ('outbox_id', ?)", (new_id("ob"),))
    conn.execute("INSERT OR IGNORE INTO outbox_meta (key, value) VALUES ('next_seq', '1')")


def _meta(conn: sqlite3.Connection, key: str) -> str:
    return str(conn.execute("SELECT value FROM outbox_meta WHERE key = ?", (key,)).fetchone()[0])


def missing_ranges(held: Sequence[int], *, first: int, last: int) -> tuple[tuple[int, int], ...]:
    """The ranges of first..last not in `held` (sorted), at most MAX_MISSING_RANGES of them."""
    ranges: list[tuple[int, int]] = []
    expected = first
    for seq in (*held, last + 1):
        if seq > expected:
            ranges.append((expected, seq - 1))
            if len(ranges) == MAX_MISSING_RANGES:
                break
        expected = max(expected, seq + 1)
    return tuple(ranges)


def check_outbox_path(path: Path) -> None:
    """Fail early, naming the path, if SQLite could not create the file and its -wal/-shm files."""
    folder = path.absolute().parent
    if not folder.is_dir():
        raise OutboxError(f"outbox {path}: folder {folder} does not exist; create it or point "
                          "`outbox:` in the edge config at a writable folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutboxError(f"outbox {path}: folder {folder} is not writable by this user (SQLite needs "
                          "to create the database and its -wal/-shm files there)")
    if path.exists() and (not path.is_file() or not os.access(path, os.R_OK | os.W_OK)):
        raise OutboxError(f"outbox {path}: exists but is not a readable and writable file")


__all__ = ["Outbox", "OutboxError", "OutboxFull", "OutboxItem", "ResendResult", "check_outbox_path",
           "missing_ranges"]
