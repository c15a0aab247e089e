"""The review queue at scale: the cases table topped up to a million rows through the ORM's own
table (SQLAlchemy Core bulk inserts, no SQL of our own), then the median server time of the queue
page for a logged-in reviewer and of GET /api/cases (token), via FastAPI's TestClient.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bench_common import percentile
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from bench import central_truth as truth
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.models import Case, User

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

PASSWORD = "bench reviewer password"
CHUNK = 20_000
BULK_T0 = datetime(2025, 6, 1, tzinfo=UTC)
STATUS_BY_TWENTIETH = ["new"] + ["confirmed"] * 3 + ["dismissed"] * 4 + ["closed"] * 12  # 5 % new


def _bulk_rows(
    first: int, count: int, *, merchants: int, sha: str | None, rng: random.Random
) -> Iterator[dict[str, object]]:
    """Cases g = first .. first+count-1: kinds and statuses in turn, spread over the city, 13 s apart."""
    kinds = truth.VIOLATIONS
    created = datetime(2026, 3, 1, tzinfo=UTC)
    for g in range(first, first + count):
        seen = BULK_T0 + timedelta(seconds=13 * g)
        yield {
            "violation": kinds[g % len(kinds)], "status": STATUS_BY_TWENTIETH[g % 20],
            "lat": truth.LAT0 + (rng.random() - 0.5) * 0.06, "lon": truth.LON0 + (rng.random() - 0.5) * 0.08,
            "location_count": 10, "camera_id": "bulk-cam", "zone_id": "kerb",
            "first_seen": seen, "last_seen": seen + timedelta(minutes=10), "alert_count": 10, "episode_count": 2,
            "merchant_id": f"m{g % merchants:05d}", "attribution_method": "inside_zone", "attribution_distance_m": 0.0,
            "priority": 10 + (g * 37) % 60, "evidence_sha256": sha, "area_id": None, "active": False,
            "merged_into_id": None, "created_at": created, "updated_at": created,
        }


def bulk_insert_cases(factory: sessionmaker[Session], *, total: int, merchants: int) -> tuple[int, float]:
    """Top the cases table up to `total` rows, CHUNK rows per INSERT; (rows added, seconds)."""
    with factory() as session:
        have = session.scalar(select(func.count(Case.id))) or 0
        sha = session.scalar(select(Case.evidence_sha256).where(Case.evidence_sha256.is_not(None)).limit(1))
    n = max(0, total - have)
    rng = random.Random(11)
    started = time.perf_counter()
    for first in range(1, n + 1, CHUNK):
        rows = list(_bulk_rows(first, min(CHUNK, n + 1 - first), merchants=merchants, sha=sha, rng=rng))
        with session_scope(factory) as session:
            session.execute(insert(Case), rows)
    with session_scope(factory) as session:
        session.execute(text("ANALYZE"))  # fresh planner statistics, as autovacuum would give
    return n, time.perf_counter() - started


@dataclass
class PageTiming:
    server_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.server_ms) if self.server_ms else float("nan")

    def p90(self) -> float:
        return percentile(self.server_ms, 90)


def time_queue(factory: sessionmaker[Session], settings: CentralSettings, *, requests: int) -> dict[str, PageTiming]:
    """Median server time of the queue page (logged-in reviewer) and of GET /api/cases (token)."""
    from fastapi.testclient import TestClient

    from streetwatch.central.api.tokens import issue_token
    from streetwatch.central.app import build_app
    from streetwatch.central.config import WebSettings
    from streetwatch.central.passwords import hash_password

    with session_scope(factory) as session:
        session.add(User(username="bench-reviewer", password_hash=hash_password(PASSWORD), role="reviewer"))
    token = issue_token(factory, username="bench-reviewer", name="bench").secret
    web = WebSettings(mode="development", secret_key="b" * 40, cookie_secure=False)  # type: ignore[arg-type]
    app = build_app(settings.model_copy(update={"web": web}), factory)
    pages: dict[str, tuple[str, dict[str, str]]] = {
        "GET / (queue page)": ("/", {}),
        "GET /?violation=street_vending": ("/?violation=street_vending", {}),
        "GET /api/cases": ("/api/cases", {"Authorization": f"Bearer {token}"}),
    }
    with TestClient(app) as client:
        _log_in(client)
        return {name: _time_page(client, path, headers, requests=requests) for name, (path, headers) in pages.items()}


def _log_in(client: TestClient) -> None:
    login_form = client.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login_form)
    assert csrf, "no CSRF field on /login"
    response = client.post(
        "/login",
        data={"username": "bench-reviewer", "password": PASSWORD, "csrf_token": csrf.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303, f"login failed: {response.status_code}"


def _time_page(client: TestClient, path: str, headers: dict[str, str], *, requests: int) -> PageTiming:
    timing = PageTiming()
    for i in range(requests + 3):
        started = time.perf_counter()
        r = client.get(path, headers=headers, follow_redirects=False)
        wall = (time.perf_counter() - started) * 1000
        assert r.status_code == 200, f"{path}: HTTP {r.status_code}"
        if i < 3:
            continue  # warm-up: the first map page parses merchant zones
        server = re.search(r"app;dur=([0-9.]+)", r.headers.get("server-timing", ""))
        timing.server_ms.append(float(server.group(1)) if server else wall)
        timing.wall_ms.append(wall)
    return timing
