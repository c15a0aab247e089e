"""Harvesting through central's JSON API gives the same dataset as harvesting from its database.

The real app runs under uvicorn in a thread over the seeded central (tests/training/conftest.py);
`ApiSource` talks to it over HTTP with a real API token, exactly as `harvest_dataset.py --api-url` does.
One case gets extra alerts (copies of other cases' alerts, so their boxes match their images; one
without evidence; two at the same instant) so picking, ordering and alert paging are exercised too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select
from workflow_support import serve_app

from streetwatch.central.api import cases as cases_api
from streetwatch.central.api.tokens import issue_token, revoke_token
from streetwatch.central.app import build_app
from streetwatch.central.config import CentralSettings, WebSettings
from streetwatch.central.db import make_engine, make_session_factory, session_scope
from streetwatch.central.models import Alert, Case, User
from streetwatch.training.classmap import DEFAULT_CLASS_MAP
from streetwatch.training.dataset import DatasetWriter
from streetwatch.training.harvest import ApiSource, CaseSource, DatabaseSource, HarvestError, HarvestOptions, harvest

REPO = Path(__file__).resolve().parents[2]
DEV_SECURITY = WebSettings(mode="development", secret_key="x" * 40, cookie_secure=False)  # type: ignore[arg-type]
OPTIONS = HarvestOptions(val_cameras=("cam-c",), progress=False)
BUSY_PHOTO = "kerb_parked_cars_street.jpg"  # the case that gets the extra alerts


@dataclass(frozen=True)
class ServedCentral:
    url: str  # the app's base URL
    db_url: str
    evidence_dir: Path
    token: str
    revoked_token: str
    busy_case_id: int
    old_edge_case: int


def _add_alerts(factory, case_id: int, *, skip_case: int) -> None:  # type: ignore[no-untyped-def]
    """Copies of every other case's alerts (their evidence, clean frame and boxes) filed under `case_id`
    (but the old edge's, which has no clean frame), one without evidence, and a tie on observed_at; the
    case's alert_count follows, as ingest keeps it."""
    with session_scope(factory) as session:
        own = session.scalars(select(Alert).where(Alert.case_id == case_id)).one()
        others = session.scalars(select(Alert).where(Alert.case_id.not_in([case_id, skip_case]))
                                 .order_by(Alert.alert_id)).all()
        columns = [c.key for c in Alert.__table__.columns]
        for i, other in enumerate(others):
            row = {c: getattr(other, c) for c in columns}
            row.update(
                alert_id=f"extra-{i}",
                case_id=case_id,
                camera_id=own.camera_id,
                observed_at=own.observed_at + timedelta(minutes=i // 2),
            )  # pairs share an instant
            if i == 1:
                row.update(evidence_sha256=None, payload={k: v for k, v in other.payload.items() if k != "evidence"})
            session.add(Alert(**row))
        case = session.get(Case, case_id)
        assert case is not None
        case.alert_count += len(others)


@pytest.fixture(scope="module")
def served(seeded_central) -> Iterator[ServedCentral]:  # type: ignore[no-untyped-def]
    engine = make_engine(seeded_central.url)
    factory = make_session_factory(engine)
    busy = seeded_central.case_ids[BUSY_PHOTO]
    _add_alerts(factory, busy, skip_case=seeded_central.old_edge_case)
    with session_scope(factory) as session:
        session.add(User(username="trainer", password_hash="!", role="admin", area_id=None))
    token = issue_token(factory, username="trainer", name="harvest")
    revoked = issue_token(factory, username="trainer", name="old harvest")
    assert revoke_token(factory, revoked.id)
    app = build_app(CentralSettings(evidence_dir=seeded_central.evidence_dir, web=DEV_SECURITY), factory)
    try:
        with serve_app(app) as base_url:
            yield ServedCentral(
                base_url, seeded_central.url, seeded_central.evidence_dir, token.secret, revoked.secret, busy,
                seeded_central.old_edge_case,
            )
    finally:
        engine.dispose()


def dataset_of(root: Path) -> dict[str, dict[str, bytes]]:
    """{split: {file name: content}} of a harvested dataset's images and labels."""
    return {
        split: {
            p.relative_to(root).as_posix(): p.read_bytes()
            for kind in ("images", "labels")
            for p in sorted((root / kind / split).iterdir())
        }
        for split in ("train", "val")
    }


def harvested(source: CaseSource, root: Path) -> tuple[int, dict[str, dict[str, bytes]]]:
    writer = DatasetWriter(root, DEFAULT_CLASS_MAP)
    report = harvest(source, writer, options=OPTIONS)
    writer.finish()
    return len(report.cases), dataset_of(root)


@pytest.mark.parametrize("detail_alerts", [cases_api.CASE_DETAIL_ALERTS, 2], ids=["detail", "paged"])
def test_api_harvest_equals_database_harvest(served, tmp_path, monkeypatch, detail_alerts):
    # "paged": the case detail shows 2 alerts, so the busy case's 7 come from /alerts, 3 per page
    monkeypatch.setattr(cases_api, "CASE_DETAIL_ALERTS", detail_alerts)
    monkeypatch.setattr(ApiSource, "PAGE", 3)
    db_used, from_db = harvested(DatabaseSource(served.db_url, served.evidence_dir), tmp_path / "db")
    api_used, from_api = harvested(ApiSource(served.url, served.token), tmp_path / "api")
    assert (api_used, from_api.keys()) == (db_used, from_db.keys())
    for split in from_db:
        assert sorted(from_api[split]) == sorted(from_db[split]), split
        for name, content in from_db[split].items():
            assert from_api[split][name] == content, name  # same JPEG bytes, same label lines
    busy_images = [n for n in from_db["train"] if n.startswith(f"images/train/case{served.busy_case_id}_")]
    assert len(busy_images) == 3  # per_case images picked out of 6 distinct evidence images
    busy_labels = [c for n, c in from_db["train"].items() if n.startswith(f"labels/train/case{served.busy_case_id}_")]
    # one reviewed box per frame (the alert's subject; no pseudo-label model here), but the copy of the lot
    # frame's alert, which had no box of a wanted class
    assert sorted(len(c.splitlines()) for c in busy_labels) == [0, 1, 1]


def test_case_alerts_carry_objects_and_evidence_size(served):
    source = ApiSource(served.url, served.token)
    (case,) = [c for c in source.cases() if c.case_id == served.busy_case_id]
    assert all(a.width > 0 and a.height > 0 and a.width <= 480 for a in case.alerts)
    assert any(cls == "car" for a in case.alerts for cls, _ in a.objects)
    spec = json.loads(source._get("/openapi.json"))
    alert = spec["components"]["schemas"]["AlertPublic"]["properties"]
    assert {"objects", "evidence", "clean_frame_url"} <= alert.keys()
    assert all(a.clean == f"/media/{a.alert_id}/clean" for a in case.alerts)
    frame = source.clean_frame(case, case.alerts[0])
    assert frame is not None and frame.startswith(b"\xff\xd8")
    assert frame != source.evidence(case, case.alerts[0])  # not the annotated evidence
    (old,) = [c for c in source.cases() if c.case_id == served.old_edge_case]
    assert [a.clean for a in old.alerts] == [None]  # an edge older than wire 1.2: no clean frame to fetch
    with pytest.raises(HarvestError, match="HTTP 404"):
        source._get("/media/al-nosuch/clean")


@pytest.mark.parametrize("which", ["wrong", "revoked"])
def test_a_token_without_access_names_the_url(served, tmp_path, which):
    token = "sw_not-a-token" if which == "wrong" else served.revoked_token
    with pytest.raises(HarvestError) as raised:
        harvest(ApiSource(served.url, token), DatasetWriter(tmp_path / "ds", DEFAULT_CLASS_MAP), options=OPTIONS)
    message = str(raised.value)
    assert message.startswith(f"GET {served.url}/api/cases?status=confirmed&limit=200: HTTP 401: ")
    assert "Invalid or revoked token" in message and token not in message


def test_harvest_script_through_the_api(served, tmp_path):
    env = {**os.environ, "STREETWATCH_API_TOKEN": served.token}
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "harvest_dataset.py"),
            "--api-url",
            served.url,
            "-o",
            str(tmp_path / "api"),
            "--val-camera",
            "cam-c",
            "--no-progress",
            "--pseudo-model",
            "none",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6 cases" in proc.stdout
    _, from_db = harvested(DatabaseSource(served.db_url, served.evidence_dir), tmp_path / "db")
    assert dataset_of(tmp_path / "api") == from_db


OLD_ALERT = {
    "alert_id": "al-1",
    "camera_id": "cam-1",
    "observed_at": "2026-03-01T08:00:00Z",
    "evidence_url": "/evidence/" + "ab" * 32,
}


@contextmanager
def old_central(detail: dict[str, object]) -> Iterator[str]:
    """A central from before AlertPublic carried objects/evidence: one confirmed case, the given detail."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            if self.path.startswith("/api/cases?status=confirmed"):
                body: dict[str, object] = {"data": [{"id": 7, "merged_into_id": None}], "count": 1}
            elif self.path.startswith("/api/cases?"):
                body = {"data": [], "count": 0}
            else:
                body = detail
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (quiet)
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize(
    ("alert", "field"),
    [
        (OLD_ALERT, "objects"),
        ({**OLD_ALERT, "objects": []}, "evidence"),
        ({**OLD_ALERT, "objects": [], "evidence": None}, "evidence"),
    ],
    ids=["old-server-objects", "old-server-evidence", "old-row"],
)
def test_missing_alert_fields_name_case_alert_and_field(alert, field):
    detail = {"id": 7, "alert_count": 1, "alerts": [alert], "audit": []}
    with old_central(detail) as base_url, pytest.raises(HarvestError, match=rf"^case 7 alert al-1: field {field}\b"):
        list(ApiSource(base_url, "sw_x").cases())
