"""Engines, sessions and migrations for the central database (SQLite or PostgreSQL).

Factories only: nothing connects at import time.

SQLite: WAL journal (readers do not block the writer), foreign keys on, a busy timeout so a writer
waits for another instead of failing, and SQLAlchemy (not the sqlite3 module) emits BEGIN, so a
transaction starts where the session says it does. A transaction that will write after reading (the
case engine) asks for `BEGIN IMMEDIATE` through `session_scope(..., write_lock=True)`: it takes the
database write lock up front, so two writers run one after the other instead of one failing with
"database is locked" half-way.

PostgreSQL: psycopg 3 (`postgresql+psycopg://`), READ COMMITTED; the case engine serialises its
decisions with row locks (see cases.py).
"""

from __future__ import annotations

import logging
import os
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

DATABASE_URL_ENV = "STREETWATCH_DATABASE_URL"
DEFAULT_SQLITE_PATH = Path("var") / "central.sqlite"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# A per-connection execution option that session_scope sets to ask for BEGIN IMMEDIATE.
_SQLITE_IMMEDIATE = "streetwatch_sqlite_immediate"


def default_database_url() -> str:
    """$STREETWATCH_DATABASE_URL, else SQLite under ./var/."""
    return os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{DEFAULT_SQLITE_PATH}"


def make_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for `url` with the SQLite pragmas or PostgreSQL pool settings StreetWatch needs."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _make_sqlite_engine(parsed, echo=echo)
    return create_engine(parsed, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _make_sqlite_engine(url: URL, *, echo: bool) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit BEGIN comes too late).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes in WAL mode
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        immediate = connection.get_execution_options().get(_SQLITE_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


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
