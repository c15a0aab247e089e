"""Helpers for the workflow tests: a merchant at the factory alert's spot, real ingest, a reviewer, and
a local webhook receiver (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from factories import make_alert
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.case_service import Reviewer
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import ingest_alert
from streetwatch.central.models import Merchant, User
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.edge.alerts import Alert as WireAlert

T0 = datetime(2026, 1, 15, 8, 30, tzinfo=UTC)
LAT, LON = 31.2304, 121.4737  # the factory alert's position
DEG_PER_M = 1 / 111_320


def square(lat: float, lon: float, half_m: float = 6.0) -> str:
    d = half_m * DEG_PER_M
    ring = [(lon - d, lat - d), (lon + d, lat - d), (lon + d, lat + d), (lon - d, lat + d), (lon - d, lat - d)]
    return "POLYGON((" + ", ".join(f"{x} {y}" for x, y in ring) + "))"


def add_merchant(
    factory: sessionmaker[Session], merchant_id: str, *, lat: float = LAT, lon: float = LON, road: str = "Tea Street"
) -> None:
    with session_scope(factory) as session:
        session.add(
            Merchant(
                id=merchant_id,
                name=f"Shop {merchant_id}",
                address=f"{merchant_id} {road}",
                contact=f"+86-21-{merchant_id}",
                road=road,
                zone_wkt=square(lat, lon),
            )
        )


def undo_passed(clock: Callable[[], datetime]) -> Callable[[], datetime]:
    """A clock just past the default undo window behind `clock`: a decision made with it is one the
    workflow may act on at `clock()` (the notice waits for the undo window)."""
    return lambda: clock() - timedelta(seconds=WorkflowSettings().undo_window_s + 1)


def reviewer(factory: sessionmaker[Session]) -> Reviewer:
    with session_scope(factory) as session:
        user = session.scalars(select(User).where(User.username == "rev")).one_or_none()
        if user is None:
            user = User(username="rev", password_hash="x", role="reviewer")
            session.add(user)
            session.flush()
        return Reviewer(user_id=user.id, username=user.username)


def ingest(factory: sessionmaker[Session], settings: CentralSettings, alert: WireAlert) -> int:
    with session_scope(factory, write_lock=True) as session:
        result = ingest_alert(session, alert, topic=None, settings=settings)
    assert result.case_id is not None, result
    return result.case_id


def open_episode(
    factory: sessionmaker[Session],
    settings: CentralSettings,
    *,
    at: datetime,
    episode_id: str,
    lat: float = LAT,
    lon: float = LON,
    violation: str = "illegal_parking",
) -> int:
    alert = make_alert(
        episode_id=episode_id,
        observed_at=at,
        started_at=at - timedelta(seconds=150),
        violation=violation,
        location={"lat": lat, "lon": lon, "accuracy_m": 3.0},
    )
    return ingest(factory, settings, alert)


def end_episode(
    factory: sessionmaker[Session],
    settings: CentralSettings,
    *,
    at: datetime,
    episode_id: str,
    lat: float = LAT,
    lon: float = LON,
) -> int:
    alert = make_alert(
        episode_id=episode_id,
        state="ended",
        observed_at=at,
        started_at=at - timedelta(minutes=5),
        location={"lat": lat, "lon": lon, "accuracy_m": 3.0},
    )
    return ingest(factory, settings, alert)


@dataclass
class Webhook:
    """A webhook receiver; `fail_first` requests get HTTP 500, later ones 200."""

    url: str
    received: list[dict[str, object]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    fail_first: int = 0
    calls: int = 0


@contextmanager
def webhook_server(fail_first: int = 0) -> Iterator[Webhook]:
    state = Webhook(url="", fail_first=fail_first)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state.calls += 1
                failing = state.calls <= state.fail_first
                if not failing:
                    state.received.append(json.loads(body))
                    state.headers.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (quiet)
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/notify"
    thread = threading.Thread(target=server.serve_forever, name="webhook-test", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def serve_app(app: object) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread on a free 127.0.0.1 port; yields its base URL."""
    import time

    import uvicorn
    from support import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, name="uvicorn-workflow-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
