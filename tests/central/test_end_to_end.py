"""End to end: `edge run` on real footage → real MQTT broker → central ingest → database → API.

The edge runs as its own process on the demo's street camera (the real kerb-street photo held for
7 minutes as H.264 with sensor noise, goods set down on the pavement at t=60 s; see
streetwatch/demo.py), publishing to the test broker; central's consumer ingests into the test
database (PostgreSQL in CI); the cases are then read through the token-authenticated JSON API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from shapely import wkt
from shapely.geometry import Point
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from support import BrokerEndpoint

from streetwatch import demo
from streetwatch.central.api.tokens import issue_token
from streetwatch.central.app import build_app
from streetwatch.central.config import BrokerSettings, CentralSettings, WebSettings
from streetwatch.central.consumer import AlertConsumer
from streetwatch.central.merchants import import_merchants
from streetwatch.central.models import Alert, Merchant, User
from streetwatch.central.passwords import hash_password


def _seed(session_factory: sessionmaker[Session], tmp_path: Path) -> str:
    merchants = tmp_path / "merchants.geojson"
    merchants.write_text(json.dumps(demo.merchants_geojson()))
    with session_factory.begin() as session:
        import_merchants(session, merchants)
        session.add(User(username="city-admin", password_hash=hash_password("a long passphrase"), role="admin"))
    return issue_token(session_factory, username="city-admin", name="e2e").secret


def _run_edge(tmp_path: Path, broker: BrokerEndpoint, model_dir: Path, assets_dir: Path, edge_id: str) -> str:
    clip = demo.street_clip(assets_dir, tmp_path / "street.mp4")
    config = demo.edge_config(tmp_path, {"cam-street": clip}, broker.url, broker.protocol)
    config["edge_id"] = edge_id
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "STREETWATCH_MODEL_DIR": str(model_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "streetwatch.edge.cli", "run", "--config", str(path)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_edge_to_central_case_attributed_and_visible_through_api(
    tmp_path: Path,
    mqtt_broker: BrokerEndpoint,
    model_dir: Path,
    assets_dir: Path,
    session_factory: sessionmaker[Session],
) -> None:
    token = _seed(session_factory, tmp_path)
    edge_id = f"box-e2e-{uuid.uuid4().hex[:6]}"
    # A share group and client id of this test's own, so no other consumer session takes its messages.
    settings = CentralSettings(
        broker=BrokerSettings(
            url=mqtt_broker.url, protocol=mqtt_broker.protocol,  # type: ignore[arg-type]
            client_id=f"central-{edge_id}",
            subscription=f"$share/{edge_id}/streetwatch/v1/alerts/{edge_id}/#",
        ),
        evidence_dir=tmp_path / "evidence",
    )
    consumer = AlertConsumer(settings=settings, session_factory=session_factory)
    consumer.start()
    try:
        assert consumer.subscribed.wait(15), "central did not subscribe"
        log = _run_edge(tmp_path, mqtt_broker, model_dir, assets_dir, edge_id)
        published = log.count(" start ")  # the edge logs one line per episode start it alerts on
        assert published >= 2, log[-3000:]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with session_factory() as session:
                stored = session.scalar(select(func.count()).select_from(Alert))
            if stored >= published:
                break
            time.sleep(0.5)
    finally:
        consumer.stop()
    assert stored == published, "every alert the edge published is in the database exactly once"

    app = build_app(settings.model_copy(update={"web": WebSettings(mode="development")}), session_factory)
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/cases").status_code == 401
        body = client.get("/api/cases", headers=headers, params={"limit": 100}).json()
        cases = body["data"]
        assert body["count"] == len(cases) >= 2

        goods = [c for c in cases if c["violation"] == "stacked_goods"]
        assert len(goods) == 1
        assert goods[0]["merchant"]["id"] == "m-105"  # the bakery answers for the pavement in front

        parking = [c for c in cases if c["violation"] == "illegal_parking"]
        assert parking, "the parked cars at the kerbs give illegal_parking cases"
        with session_factory() as session:
            zones = {m.id: wkt.loads(m.zone_wkt) for m in session.scalars(select(Merchant))}
        for case in parking:
            merchant = case["merchant"]["id"]
            assert merchant in {"m-101", "m-102", "m-103", "m-104"}
            assert case["attribution"]["method"] == "inside_zone"
            assert zones[merchant].contains(Point(case["lon"], case["lat"]))

        detail = client.get(f"/api/cases/{goods[0]['id']}", headers=headers)
        assert detail.status_code == 200
        assert detail.json()["alerts"][0]["camera_id"] == "cam-street"


pytestmark = pytest.mark.slow
