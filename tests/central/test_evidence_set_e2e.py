"""End to end, the evidence set: `edge run` on the real traffic-cam footage → a real MQTT broker (alerts,
then their media pieces) → central's consumer → the evidence store → served over HTTP with the area
check, and `media.clean_frame` for the retraining.

The footage is video/cvtrafficcam_street_parking.mp4 (75 s, cars parked at both kerbs the whole time,
traffic passing), sampled at 1 fps with a 20 s dwell on the near kerb: long enough as it is. The
camera is calibrated onto a street in Suzhou; the street's area polygon covers the kerb, another
area lies 1 km away. A reviewer of the kerb's area gets every item; one of the other area gets 404 on
the same URLs (the item's existence is not revealed); no login gets 401.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from evidence_checks import decode_clip, decode_jpeg
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support import BrokerEndpoint
from workflow_support import serve_app

from streetwatch.central.api.tokens import issue_token
from streetwatch.central.app import build_app
from streetwatch.central.config import BrokerSettings, CentralSettings, MediaSettings, WebSettings
from streetwatch.central.consumer import AlertConsumer
from streetwatch.central.evidence_store import EvidenceStore
from streetwatch.central.media import announced, clean_frame, stored_items
from streetwatch.central.models import Alert, Area, User
from streetwatch.central.passwords import hash_password

NEAR_KERB = [[150, 200], [480, 200], [480, 330], [150, 330]]
CALIBRATION = [[[0, 360], [31.300100, 120.585050]], [[640, 360], [31.300100, 120.585250]],
               [[560, 40], [31.300400, 120.585230]], [[80, 40], [31.300400, 120.585070]]]
KERB_AREA = "POLYGON((120.5849 31.2999, 120.5854 31.2999, 120.5854 31.3006, 120.5849 31.3006, 120.5849 31.2999))"
FAR_AREA = "POLYGON((120.5950 31.3100, 120.5960 31.3100, 120.5960 31.3110, 120.5950 31.3110, 120.5950 31.3100))"


def _seed(factory: sessionmaker[Session]) -> dict[str, str]:
    with factory.begin() as session:
        session.add(Area(id="st-kerb", name="干将路街道", level="street", polygon_wkt=KERB_AREA))
        session.add(Area(id="st-far", name="人民路街道", level="street", polygon_wkt=FAR_AREA))
        for user, area in (("kerb-reviewer", "st-kerb"), ("far-reviewer", "st-far")):
            session.add(User(username=user, password_hash=hash_password("a long passphrase"), role="reviewer",
                             area_id=area))
    return {user: issue_token(factory, username=user, name="e2e").secret for user in ("kerb-reviewer", "far-reviewer")}


def _run_edge(tmp_path: Path, broker: BrokerEndpoint, model_dir: Path, clip: Path, edge_id: str) -> str:
    config = {
        "edge_id": edge_id, "outbox": str(tmp_path / "outbox.sqlite"),
        "broker": {"url": broker.url, "protocol": broker.protocol},
        "rules": {"reminder_interval_s": 900, "end_after_s": 60},
        "evidence": {"media": {"clip_s": 6}},
        "cameras": [{"id": "cam-kerb", "url": str(clip), "sample_fps": 1, "timezone": "Asia/Shanghai",
                     "calibration": {"points": CALIBRATION},
                     "zones": [{"id": "near-kerb", "violations": ["illegal_parking"], "polygon_px": NEAR_KERB,
                                "dwell_s": 20}]}],
    }
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "STREETWATCH_MODEL_DIR": str(model_dir)}
    done = subprocess.run([sys.executable, "-m", "streetwatch.edge.cli", "run", "--config", str(path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _get(url: str, token: str | None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _all_held(factory: sessionmaker[Session], store: EvidenceStore) -> tuple[int, int]:
    """(alerts, alerts whose every announced item is stored)."""
    with factory() as session:
        alerts = list(session.scalars(select(Alert)))
        whole = sum(1 for a in alerts if a.payload.get("media") and
                    len(stored_items(store, a)) == len({r.kind for r in announced(a)}))
    return len(alerts), whole


def test_evidence_set_reaches_central_and_is_served_with_the_area_check(
    tmp_path: Path, mqtt_broker: BrokerEndpoint, model_dir: Path, assets_dir: Path,
    session_factory: sessionmaker[Session],
) -> None:
    tokens = _seed(session_factory)
    edge_id = f"box-set-{uuid.uuid4().hex[:6]}"
    settings = CentralSettings(
        broker=BrokerSettings(url=mqtt_broker.url, protocol=mqtt_broker.protocol,  # type: ignore[arg-type]
                              client_id=f"central-{edge_id}",
                              subscription=f"$share/{edge_id}/streetwatch/v1/alerts/{edge_id}/#"),
        media=MediaSettings(subscription=f"$share/{edge_id}-media/streetwatch/v1/media/{edge_id}/#"),
        evidence_dir=tmp_path / "evidence",
    )
    store = EvidenceStore(settings.evidence_dir)
    consumer = AlertConsumer(settings=settings, session_factory=session_factory)
    consumer.start()
    try:
        assert consumer.subscribed.wait(15), "central did not subscribe"
        log = _run_edge(tmp_path, mqtt_broker, model_dir, assets_dir / "video" / "cvtrafficcam_street_parking.mp4",
                        edge_id)
        published = log.count(" start ")
        assert published >= 1, log[-3000:]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _all_held(session_factory, store) != (published, published):
            time.sleep(0.5)
    finally:
        consumer.stop()
    assert _all_held(session_factory, store) == (published, published), consumer.summary
    assert consumer.summary.media.get("dead_letter", 0) == 0 and consumer.summary.dead_letter == 0

    with session_factory() as session:
        alert = session.scalars(select(Alert).order_by(Alert.observed_at)).first()
        assert alert is not None and alert.case_id is not None
        refs = {ref.kind: ref for ref in announced(alert)}
        assert set(refs) == {"first", "confirmed", "crop", "clip", "clean"}
        clean = clean_frame(session, store, alert.alert_id)
        evidence = store.read(alert.evidence_sha256 or "")
    assert clean is not None and hashlib.sha256(clean).hexdigest() == refs["clean"].sha256
    assert decode_jpeg(clean).shape == decode_jpeg(evidence).shape  # the alert's boxes apply unchanged

    app = build_app(settings.model_copy(update={"web": WebSettings(mode="development")}), session_factory)
    with serve_app(app) as base:
        clip_url = f"{base}/media/{alert.alert_id}/clip"
        status, kind, body = _get(clip_url, tokens["kerb-reviewer"])
        assert (status, kind) == (200, "video/mp4")
        frames, duration, size, codec = decode_clip(body)
        assert codec == "h264" and frames == refs["clip"].frames >= 6 and size == (refs["clip"].width,
                                                                                  refs["clip"].height)
        assert duration == pytest.approx(refs["clip"].duration_s, abs=1.01)
        for kind_name in ("first", "confirmed", "crop", "clean"):
            status, kind, body = _get(f"{base}/media/{alert.alert_id}/{kind_name}", tokens["kerb-reviewer"])
            assert (status, kind) == (200, "image/jpeg") and hashlib.sha256(body).hexdigest() == refs[kind_name].sha256

        # Another area's reviewer: the same 404 as for an item that does not exist; nobody: 401.
        for kind_name in ("clip", "clean", "first", "crop"):
            assert _get(f"{base}/media/{alert.alert_id}/{kind_name}", tokens["far-reviewer"])[0] == 404
        assert _get(f"{base}/media/al-doesnotexist/clip", tokens["kerb-reviewer"])[0] == 404
        assert _get(clip_url, None)[0] == 401
        status, _kind, body = _get(f"{base}/api/cases/{alert.case_id}", tokens["far-reviewer"])
        assert status == 404, "the area check is the same as the case's own"

    payload = json.loads(json.dumps(alert.payload))
    assert payload["subjects"] and len(payload["zone_polygon_px"]) == 4


pytestmark = pytest.mark.slow
