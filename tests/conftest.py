"""Shared fixtures: real assets, a real MQTT broker, a real database URL.

- Assets and model: $STREETWATCH_ASSETS_DIR / $STREETWATCH_MODEL_DIR, else ../shared/assets.
- MQTT: $STREETWATCH_TEST_MQTT_URL (Mosquitto in CI), else an embedded broker (iotcore) on a free port.
- Database: $STREETWATCH_TEST_DATABASE_URL (PostgreSQL in CI), else SQLite in a temp folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from support import BrokerEndpoint, free_port

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ASSETS = REPO.parent / "shared" / "assets"


def _dir_from_env(name: str) -> Path:
    path = Path(os.environ.get(name) or DEFAULT_ASSETS)
    if not path.is_dir():
        pytest.fail(f"{name}={path} is not a folder: point it at the shared assets (see README)")
    return path


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    return _dir_from_env("STREETWATCH_ASSETS_DIR")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return _dir_from_env("STREETWATCH_MODEL_DIR")


@pytest.fixture(scope="session")
def street_dir(assets_dir: Path) -> Path:
    return assets_dir / "street"


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[BrokerEndpoint]:
    """A running broker for the whole session: the configured one or an embedded one."""
    url = os.environ.get("STREETWATCH_TEST_MQTT_URL")
    if url:
        parsed = urlparse(url)
        yield BrokerEndpoint(url, parsed.hostname or "127.0.0.1", parsed.port or 1883, "5", False)
        return
    from streetwatch.embedded_broker import start_embedded_broker

    port = free_port()
    broker = start_embedded_broker(port)  # payload limit above the wire limit (see that module)
    try:
        yield BrokerEndpoint(f"mqtt://127.0.0.1:{port}", "127.0.0.1", port, "3.1.1", True)
    finally:
        broker.stop()


@pytest.fixture()
def database_url(tmp_path: Path) -> str:
    """A database URL for one test. PostgreSQL tests get a clean schema via the central fixtures."""
    return os.environ.get("STREETWATCH_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'central.sqlite'}"
