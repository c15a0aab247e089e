"""Fault-suite fixtures: the demo street footage (built once), a migrated database, a Mosquitto
the test controls, and a `FaultRig` that runs and tears down the real processes.

The database is the backend under test: SQLite in tmp_path, or a fresh PostgreSQL schema when
$STREETWATCH_TEST_DATABASE_URL is set (the same scheme as tests/central/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_harness import Mosquitto, Process
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from support import free_port

from streetwatch import demo
from streetwatch.central.db import migrate

if shutil.which("mosquitto") is None:
    pytest.fail("the fault suite runs its own Mosquitto: install it (scripts/setup.sh does)", pytrace=False)


@pytest.fixture(scope="session")
def street_clip(assets_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's street camera: the real kerb photo held for 7 minutes, goods set down at 60 s."""
    return demo.street_clip(assets_dir, tmp_path_factory.mktemp("footage") / "street.mp4")


def _admin(base: str, statement: str) -> None:
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture()
def fault_db(tmp_path: Path) -> Iterator[str]:
    """A migrated database URL that child processes can open too."""
    base = os.environ.get("STREETWATCH_TEST_DATABASE_URL")
    if not base:
        url = f"sqlite:///{tmp_path / 'central.sqlite'}"
        migrate(url)
        yield url
        return
    schema = f"f_{uuid.uuid4().hex[:16]}"
    _admin(base, f'CREATE SCHEMA "{schema}"')
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    try:
        migrate(url)
        yield url
    finally:
        _admin(base, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    own = Mosquitto(tmp_path / "broker", free_port())
    own.start()
    try:
        yield own
    finally:
        own.kill()


@pytest.fixture()
def processes() -> Iterator[list[Process]]:
    """Register every child here; whatever is still alive at the end is killed."""
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()
