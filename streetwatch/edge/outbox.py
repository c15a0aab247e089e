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
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from streetwatch.edge.alerts import Alert, alert_topic

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024  # 1 GiB: ~3,000 alerts with full-size evidence

# seq orders the queue (oldest first) and, as INTEGER PRIMARY KEY, is stable across VACUUM;
# alert_id is the idempotency key, so a re-put of the same alert is a no-op.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY,
    alert_id   TEXT    NOT NULL UNIQUE,
    camera_id  TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    size       INTEGER NOT NULL,
    created_at TEXT    NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0
)
"""


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


class Outbox:
    """A bounded, durable FIFO of alerts keyed by alert_id. Safe to share between threads."""

    def __init__(
        self, path: str | Path, *, max_rows: int = DEFAULT_MAX_ROWS, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if max_rows < 1 or max_bytes < 1:
            raise ValueError(f"outbox limits must be >= 1, got max_rows={max_rows} max_bytes={max_bytes}")
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        check_outbox_path(self.path)
        self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a commit is where we say.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise OutboxError(f"outbox {self.path}: schema version {version}, this edge reads "
                                  f"{SCHEMA_VERSION}; move the file away or upgrade the edge")
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: cannot open as SQLite: {exc}") from None
        return conn

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

    def put(self, alert: Alert) -> None:
        """Store the alert; committed when this returns. A re-put of a stored alert_id is a no-op.

        Raises OutboxFull (nothing stored) when the row or byte limit would be exceeded.
        """
        payload = alert.to_json()
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM outbox WHERE alert_id = ?", (alert.alert_id,)).fetchone():
                log.debug("camera %s: alert %s already in the outbox", alert.camera_id, alert.alert_id)
                return
            rows, size = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
            if rows + 1 > self.max_rows or size + len(payload) > self.max_bytes:
                raise OutboxFull(alert_id=alert.alert_id, rows=rows, size_bytes=size,
                                 max_rows=self.max_rows, max_bytes=self.max_bytes)
            conn.execute(
                "INSERT INTO outbox (alert_id, camera_id, topic, payload, size, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (alert.alert_id, alert.camera_id, alert_topic(alert.edge_id, alert.camera_id),
                 payload, len(payload), datetime.now(UTC).isoformat()),
            )

    def pending(self, limit: int = 100) -> list[OutboxItem]:
        """Up to `limit` waiting alerts, oldest first. Reading does not remove them: see `ack`."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT alert_id, camera_id, topic, payload, created_at, attempts "
                "FROM outbox ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            OutboxItem(alert_id=r[0], camera_id=r[1], topic=r[2], payload=bytes(r[3]),
                       created_at=datetime.fromisoformat(r[4]), attempts=r[5])
            for r in rows
        ]

    def ack(self, alert_id: str) -> bool:
        """Delete a delivered alert; True if it was still waiting (False for a repeated ack)."""
        with self._transaction() as conn:
            return conn.execute("DELETE FROM outbox WHERE alert_id = ?", (alert_id,)).rowcount > 0

    def record_attempt(self, alert_id: str) -> None:
        """Count one publish attempt (visible in `OutboxItem.attempts`, for diagnosing stuck alerts)."""
        with self._transaction() as conn:
            conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE alert_id = ?", (alert_id,))

    def depth(self) -> int:
        """How many alerts are waiting."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def size_bytes(self) -> int:
        """Total payload bytes waiting (what `max_bytes` bounds)."""
        with self._lock:
            return int(self._conn.execute("SELECT coalesce(sum(size), 0) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


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


__all__ = ["Outbox", "OutboxError", "OutboxFull", "OutboxItem", "check_outbox_path"]
