"""Schema and engine: Alembic migrations up and down on the backend under test, SQLite pragmas."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.db import (
    WalCheckpointer,
    alembic_config,
    downgrade,
    make_engine,
    make_session_factory,
    migrate,
    session_scope,
)
from streetwatch.central.models import Base, DeadLetter

TABLES = {
    "alembic_version",
    "alerts",
    "citizen_reports",
    "api_tokens",
    "areas",
    "audit_log",
    "case_locks",
    "case_timers",
    "cases",
    "complaints",
    "dead_letters",
    "delivery_losses",
    "delivery_streams",
    "edge_boxes",
    "episodes",
    "hotspots",
    "inspections",
    "login_failures",
    "merchants",
    "notifications",
    "open311_clients",
    "strikes",
    "users",
    "web_sessions",
}


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_create_every_table_and_match_the_models(empty_db_url: str) -> None:
    assert table_names(empty_db_url) == set()
    migrate(empty_db_url)
    assert table_names(empty_db_url) == TABLES
    assert {t.name for t in Base.metadata.sorted_tables} == TABLES - {"alembic_version"}
    # autogenerate finds nothing to do: the migrations and the models agree (types included)
    command.check(alembic_config(empty_db_url))


def test_migrations_go_down_and_up_again(empty_db_url: str) -> None:
    migrate(empty_db_url)
    downgrade(empty_db_url)
    assert table_names(empty_db_url) <= {"alembic_version"}
    migrate(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert version == ScriptDirectory.from_config(alembic_config(empty_db_url)).get_current_head()


def test_timestamps_come_back_as_aware_utc(session_factory: sessionmaker[Session]) -> None:
    shanghai = timezone(timedelta(hours=8))
    at = datetime(2026, 1, 15, 16, 30, tzinfo=shanghai)
    with session_scope(session_factory) as session:
        session.add(DeadLetter(topic="t", reason="r", payload="p", received_at=at))
    with session_scope(session_factory) as session:
        stored = session.scalars(select(DeadLetter.received_at)).one()
    assert stored == at and stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    assert stored == datetime(2026, 1, 15, 8, 30, tzinfo=UTC)


def test_naive_timestamps_are_refused(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(Exception, match="naive datetime"), session_scope(session_factory) as session:
        session.add(DeadLetter(topic="t", reason="r", payload="p", received_at=datetime(2026, 1, 1)))
        session.flush()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    """SQLite is the default database whichever backend the rest of this run uses."""
    sqlite_url = f"sqlite:///{tmp_path / 'wal.sqlite'}"
    migrate(sqlite_url)
    with make_engine(sqlite_url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert (conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) >= 1000


def _wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _write_blobs(factory: sessionmaker[Session], count: int, *, pause_s: float = 0.0) -> None:
    for i in range(count):
        with session_scope(factory, write_lock=True) as session:
            session.add(DeadLetter(topic=f"t{i}", reason="r", payload="x" * 100_000))
        time.sleep(pause_s)


@pytest.mark.parametrize(
    ("interval_s", "pause_s", "wal_at_least", "wal_below"),
    [
        # no checkpoint comes: 6 MB of commits stay in the WAL, past SQLite's own 1,000-page (4 MB)
        # automatic checkpoint, which no commit runs any more
        (3600.0, 0.0, 5_000_000, None),
        # the thread checkpoints every 50 ms: the WAL restarts from its start and stays well below
        # the 6 MB it would reach without the thread (a margin for a slow machine)
        (0.05, 0.02, 0, 4_500_000),
    ],
)
def test_sqlite_commits_leave_the_wal_checkpoint_to_a_thread(
    tmp_path: Path, interval_s: float, pause_s: float, wal_at_least: int, wal_below: int | None
) -> None:
    """A commit that checkpoints copies the WAL into the database and fsyncs it, and ingest acks
    nothing meanwhile (it was the ingest p99): the checkpointer thread does that work instead."""
    path = tmp_path / "ckpt.sqlite"
    migrate(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}", checkpoint_interval_s=interval_s)
    factory = make_session_factory(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    _write_blobs(factory, 60, pause_s=pause_s)
    assert _wal_bytes(path) >= wal_at_least
    if wal_below is not None:
        assert _wal_bytes(path) < wal_below
    with factory() as session:
        assert len(session.scalars(select(DeadLetter)).all()) == 60
    engine.dispose()


def test_wal_checkpointer_stops_when_the_database_is_gone(tmp_path: Path) -> None:
    """A removed database file is never created again by the checkpointer; its thread just ends."""
    path = tmp_path / "gone.sqlite"
    assert not WalCheckpointer(str(path)).checkpoint()
    assert not path.exists()
    migrate(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}")
    checkpointer = WalCheckpointer(str(path), interval_s=0.05)
    checkpointer.start(engine)
    assert checkpointer.running
    for leftover in tmp_path.glob("gone.sqlite*"):
        leftover.unlink()
    deadline = time.monotonic() + 5
    while checkpointer.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not checkpointer.running
    assert not path.exists()
    engine.dispose()


def test_sqlite_write_lock_transactions_wait_for_each_other(tmp_path: Path) -> None:
    """Two SQLite writers with write_lock=True never fail with 'database is locked': one waits and
    then sees the other's rows (PostgreSQL serialises case decisions with row locks instead)."""
    db_url = f"sqlite:///{tmp_path / 'lock.sqlite'}"
    migrate(db_url)
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    first_in = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with session_scope(factory, write_lock=True) as session:
                session.add(DeadLetter(topic="a", reason="r", payload="p"))
                session.flush()
                first_in.set()
                release.wait(10)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(10)
    second_done = threading.Event()

    def second() -> None:
        try:
            with session_scope(factory, write_lock=True) as session:
                n = len(session.scalars(select(DeadLetter)).all())
                session.add(DeadLetter(topic="b", reason=f"saw {n}", payload="p"))
            second_done.set()
        except BaseException as exc:
            errors.append(exc)

    other = threading.Thread(target=second)
    other.start()
    time.sleep(0.3)  # let the second writer reach BEGIN IMMEDIATE and wait there
    release.set()
    thread.join(20)
    other.join(20)
    engine.dispose()
    assert errors == [] and second_done.is_set()
    check = make_engine(db_url)
    try:
        with Session(check) as session:
            reasons = [d.reason for d in session.scalars(select(DeadLetter).order_by(DeadLetter.id))]
    finally:
        check.dispose()
    assert reasons == ["r", "saw 1"]  # the second transaction began after the first committed
