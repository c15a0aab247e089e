"""Engines, sessions and migrations for the central database (SQLite or PostgreSQL).

Factories only: nothing connects at import time. The URL comes from the settings
(`CentralSettings.database_url`: --database-url, $STREETWATCH_DATABASE_URL, the file, or SQLite
under ./var/).

SQLite: WAL journal (readers do not block the writer), foreign keys on, a busy timeout so a writer
waits for another instead of failing, and SQLAlchemy (not the sqlite3 module) emits BEGIN, so a
transaction starts where the session says it does. A transaction that will write after reading (the
case engine) asks for `BEGIN IMMEDIATE` through `session_scope(..., write_lock=True)`: it takes the
database write lock up front, so two writers run one after the other instead of one failing with
"database is locked" half-way. No commit checkpoints the WAL: a thread per engine does
(`WalCheckpointer`).

PostgreSQL: psycopg 3 (`postgresql+psycopg://`), READ COMMITTED; the case engine serialises its
decisions with row locks (see cases.py).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import urllib.parse
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
WAL_CHECKPOINT_INTERVAL_S = 1.0  # a WAL of 1 s of ingest (~1-2 MB at 1,000 alerts/s) between checkpoints
# A per-connection execution option that session_scope sets to ask for BEGIN IMMEDIATE.
_SQLITE_IMMEDIATE = "streetwatch_sqlite_immediate"


def make_engine(
    url: str | URL, *, echo: bool = False, checkpoint_interval_s: float = WAL_CHECKPOINT_INTERVAL_S
) -> Engine:
    """An engine for `url` with the SQLite pragmas or PostgreSQL pool settings StreetWatch needs.

    checkpoint_interval_s: how often a SQLite file database's WAL is checkpointed (WalCheckpointer).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _make_sqlite_engine(parsed, echo=echo, checkpoint_interval_s=checkpoint_interval_s)
    return create_engine(parsed, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _make_sqlite_engine(url: URL, *, echo: bool, checkpoint_interval_s: float) -> Engine:
    on_disk = bool(url.database) and url.database != ":memory:"
    if on_disk:
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})
    checkpointer = WalCheckpointer(str(url.database), interval_s=checkpoint_interval_s) if on_disk else None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit BEGIN comes too late).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes in WAL mode
        if checkpointer is not None:
            # The checkpointer thread moves the WAL into the database; no commit of ours pays for it.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            checkpointer.start(engine)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        immediate = connection.get_execution_options().get(_SQLITE_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class WalCheckpointer:
    """Checkpoints one SQLite database's WAL from a thread and connection of its own.

    SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1,000 pages: that
    commit copies the pages into the database and fsyncs it (commits of 13-113 ms in the central
    benchmark on this VM's ext4), and ingest acks nothing meanwhile (most of its p99). The
    engine's connections never checkpoint; this thread does, PASSIVE (it waits for no reader or
    writer; SQLite restarts the WAL from its start once a checkpoint has caught up). The thread ends
    with its engine or its file; closing the last connection checkpoints too, as SQLite always does.
    """

    def __init__(self, path: str, *, interval_s: float = WAL_CHECKPOINT_INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, engine: Engine) -> None:
        """Start the thread once (every new connection of `engine` calls this)."""
        with self._lock:
            if self._thread is None:
                alive = weakref.ref(engine)
                self._thread = threading.Thread(
                    target=self._run, args=(alive,), name="sqlite-wal-checkpoint", daemon=True
                )
                self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def checkpoint(self) -> bool:
        """One PASSIVE checkpoint; False once the database file is gone."""
        uri = f"file:{urllib.parse.quote(self.path)}?mode=rw"  # rw: never create a deleted database again
        try:
            connection = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        except sqlite3.OperationalError:
            return False
        try:
            busy, wal_pages, moved = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if busy:
                log.debug("sqlite %s: checkpoint busy (%d of %d WAL pages moved)", self.path, moved, wal_pages)
        except sqlite3.Error as exc:  # a locked or broken file: try again next round
            log.warning("sqlite %s: WAL checkpoint failed: %s", self.path, exc)
        finally:
            connection.close()
        return True

    def _run(self, engine: weakref.ref[Engine]) -> None:
        while engine() is not None and self.checkpoint():
            time.sleep(self.interval_s)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (handy for results handed to callers)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session], *, write_lock: bool = False) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception (and re-raise).

    `write_lock=True` starts the transaction with the database write lock on SQLite
    (BEGIN IMMEDIATE); on PostgreSQL it changes nothing (locking is done row-wise).
    """
    session = factory()
    try:
        if write_lock and session.get_bind().dialect.name == "sqlite":
            session.connection(execution_options={_SQLITE_IMMEDIATE: True})
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str | URL) -> Config:
    """Alembic configuration from the alembic.ini shipped inside the package, for `url`."""
    ini = files("streetwatch.central") / "migrations" / "alembic.ini"
    config = Config(str(ini))
    config.set_main_option("script_location", str(files("streetwatch.central") / "migrations"))
    rendered = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    # ConfigParser interpolates '%': escape it so URL-encoded passwords survive.
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def migrate(url: str | URL, *, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` (default: the newest)."""
    log.info("migrating database %s to %s", make_url(url).render_as_string(hide_password=True), revision)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | URL, *, revision: str = "base") -> None:
    """Downgrade the database at `url` to `revision` (default: empty)."""
    command.downgrade(alembic_config(url), revision)
