"""Central fixtures: a clean, migrated database per test on SQLite or PostgreSQL.

- SQLite (default): a fresh file in tmp_path.
- PostgreSQL ($STREETWATCH_TEST_DATABASE_URL): a uniquely named schema per test, reached through
  `search_path` in the URL, dropped afterwards; tests never see each other's rows, and several
  test runs can share one database at the same time.
Either way the schema comes from the real Alembic migrations, not `create_all`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.config import CentralSettings
from streetwatch.central.db import make_engine, make_session_factory, migrate

PG_ENV = "STREETWATCH_TEST_DATABASE_URL"


def _fresh_postgres_schema(base_url: str) -> tuple[str, str]:
    """Create a unique schema; return (schema, a URL whose connections use it first)."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        admin.dispose()
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return schema, url.render_as_string(hide_password=False)


def _drop_postgres_schema(base_url: str, schema: str) -> None:
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture()
def db_backend() -> str:
    return "postgresql" if os.environ.get(PG_ENV) else "sqlite"


@pytest.fixture()
def empty_db_url(tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database (no tables) of the backend under test."""
    base = os.environ.get(PG_ENV)
    if not base:
        yield f"sqlite:///{tmp_path / 'central.sqlite'}"
        return
    schema, url = _fresh_postgres_schema(base)
    try:
        yield url
    finally:
        _drop_postgres_schema(base, schema)


@pytest.fixture()
def db_url(empty_db_url: str) -> str:
    """A URL to a database migrated to the newest revision."""
    migrate(empty_db_url)
    return empty_db_url


@pytest.fixture()
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture()
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture()
def central_settings(tmp_path: Path) -> CentralSettings:
    """Default settings with the evidence folder in tmp_path."""
    return CentralSettings(evidence_dir=tmp_path / "evidence")


# --- a real browser (Debian's chromium, headless) for the web queue tests -----------------------

CHROMIUM = os.environ.get("STREETWATCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture()
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium (or set STREETWATCH_CHROMIUM)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture()
def artefacts(tmp_path: Path) -> Path:
    """Where screenshots go: $STREETWATCH_TEST_ARTEFACTS (kept for a look), else the test's tmp dir."""
    folder = Path(os.environ.get("STREETWATCH_TEST_ARTEFACTS") or tmp_path / "artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
