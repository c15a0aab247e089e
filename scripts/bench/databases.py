"""The database of a benchmark run: a migrated SQLite file in a temporary folder, or a fresh
PostgreSQL schema (dropped afterwards), both built by the project's own Alembic migrations.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.db import migrate

BACKENDS = ("sqlite", "postgresql")


@contextmanager
def migrated_database(backend: str, base_url: str | None) -> Iterator[str]:
    """A URL to an empty database at the newest revision: SQLite in a temp folder, or a fresh
    schema of the PostgreSQL database at `base_url` (its connections use it first)."""
    if backend == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="bench-central-sqlite-"))
        url = f"sqlite:///{folder / 'central.sqlite'}"
        try:
            migrate(url)
            yield url
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if base_url is None:
        raise ValueError("PostgreSQL needs a base URL (--database-url)")
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    try:
        migrate(rendered)
        yield rendered
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def storage_bytes(factory: sessionmaker[Session], db_url: str) -> int:
    """Bytes the database uses now (PostgreSQL: every relation of the schema; SQLite: the file, once
    its WAL is moved into it: a reader polling all run long keeps SQLite from restarting the WAL)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        with factory() as session:
            session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        path = Path(url.database or "")
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    relations = text(
        "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')"
    )
    with factory() as session:
        return int(session.scalar(relations) or 0)
