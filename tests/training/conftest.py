"""Training fixtures: a central database seeded with reviewed cases made from the real street photos.

Each photo becomes the evidence of one alert: the real YOLOX-Nano finds the objects, the edge's own
`render_evidence` draws and encodes them, central's own `ingest_alert` stores the alert (case, evidence
file), and the `ReviewService` confirms or dismisses the case, exactly as in production. Each alert
announces its clean frame (wire 1.2 `media`, the photo at the evidence's pixel size, unannotated), whose
bytes go into the evidence store as the media topic delivers them; the OLD_EDGE case's alert comes
from an edge older than 1.2 and has none.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from streetwatch.central.case_service import Reviewer
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import make_engine, make_session_factory, migrate, session_scope
from streetwatch.central.evidence_store import EvidenceStore
from streetwatch.central.ingest import ingest_alert
from streetwatch.central.review import ReviewService
from streetwatch.edge.alerts import Alert, Location, MediaRef, ModelRef
from streetwatch.edge.config import ModelConfig
from streetwatch.edge.detector import Detector
from streetwatch.edge.evidence import render_evidence
from streetwatch.edge.types import EvidenceObject

PG_ENV = "STREETWATCH_TEST_DATABASE_URL"
# source image, camera, review decision (dismissal reason): three cameras, so the split by camera has a
# val camera; "car-detection.mp4" stands for frame 30 of the real footage.
PLAN = (
    ("kerb_parked_cars_street.jpg", "cam-a", "confirm"),
    ("parked_cars_park_bench.jpg", "cam-a", "confirm"),
    ("aerial_winding_road_cars.jpg", "cam-a", "allowed_time_window"),  # real objects: not a hard negative
    ("kerb_pickup_truck_scooter.jpg", "cam-b", "false_detection"),
    ("street_cyclists_crowd.jpg", "cam-b", "confirm"),
    ("market_hanoi_goods_on_ground.jpg", "cam-c", "confirm"),
    ("car-detection.mp4", "cam-c", "false_detection"),
)
OLD_EDGE = ("kerb_parked_cars_street.jpg", "cam-b", "confirm")  # no clean frame: annotated evidence only
WANTED_CLASSES = {"car", "truck", "bus", "motorcycle", "person"}


@dataclass(frozen=True)
class SeededCentral:
    url: str
    evidence_dir: Path
    case_ids: dict[str, int]  # photo -> case id
    decisions: dict[int, str]  # case id -> "confirm" or the dismissal reason
    old_edge_case: int  # the confirmed case whose alert has no clean frame


@pytest.fixture(scope="module")
def training_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("central")


@pytest.fixture(scope="module")
def training_db_url(training_dir: Path) -> Iterator[str]:
    """An empty database per test module: a fresh PostgreSQL schema (CI) or a SQLite file."""
    base = os.environ.get(PG_ENV)
    if not base:
        yield f"sqlite:///{training_dir / 'central.sqlite'}"
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def yolox(model_dir: Path) -> Detector:
    return Detector.from_config(ModelConfig(name="yolox_nano", model_dir=model_dir, providers=["CPUExecutionProvider"]))


def read_source(path: Path) -> np.ndarray:
    """A street photo, or frame 30 of a video."""
    if path.suffix == ".mp4":
        capture = cv2.VideoCapture(str(path))
        capture.set(cv2.CAP_PROP_POS_FRAMES, 30)
        ok, frame = capture.read()
        capture.release()
        assert ok and frame is not None, path
        return np.asarray(frame)
    image = cv2.imread(str(path))
    assert image is not None, path
    return np.asarray(image)


def clean_jpeg(image: np.ndarray, width: int, height: int) -> bytes:
    """The frame behind the evidence: the same pixel size, nothing drawn."""
    ok, buffer = cv2.imencode(".jpg", cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA),
                              [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return bytes(buffer.tobytes())


def make_alert(index: int, image: np.ndarray, camera_id: str, detector: Detector, *,
               clean: bool = True) -> tuple[Alert, bytes | None]:
    """One alert whose evidence is the image (max 480 px wide) with YOLOX's best vehicle/person box, and
    its clean frame (announced in `media`; None for an edge older than wire 1.2)."""
    found = detector.detect(image)
    objects = [
        EvidenceObject(cls=str(name), score=float(score), bbox=tuple(float(v) for v in box))  # type: ignore[arg-type]
        for name, score, box in zip(found.data["class_name"], np.asarray(found.confidence), found.xyxy, strict=True)
        if str(name) in WANTED_CLASSES
    ]
    objects = sorted(objects, key=lambda o: -o.score)[:1]  # the subject only, as the edge's parking rule sends
    rendered = render_evidence(image, objects, max_width=480)
    now = datetime(2026, 3, 1, 8, 0, tzinfo=UTC) + timedelta(minutes=index)
    frame = clean_jpeg(image, rendered.evidence.width, rendered.evidence.height) if clean else None
    width, height = rendered.evidence.width, rendered.evidence.height
    media = [MediaRef(kind="clean", sha256=hashlib.sha256(frame).hexdigest(), content_type="image/jpeg",
                      size=len(frame), width=width, height=height)] if frame else None
    return Alert(
        alert_id=f"al-{index}",
        episode_id=f"ep-{index}",
        state="active",
        edge_id="edge-1",
        camera_id=camera_id,
        violation="illegal_parking",
        started_at=now,
        observed_at=now,
        dwell_s=300,
        confidence=max((o.score for o in objects), default=0.5),
        location=Location(lat=52.0 + index * 0.01, lon=4.0 + index * 0.01, accuracy_m=5),  # far apart: one case each
        zone_id="kerb",
        track_id=index,
        objects=list(rendered.objects),
        evidence=rendered.evidence,
        model=ModelRef(name=detector.entry.name, sha256=detector.entry.sha256),
        media=media,
    ), frame


@pytest.fixture(scope="module")
def seeded_central(training_db_url: str, training_dir: Path, assets_dir: Path, yolox: Detector) -> SeededCentral:
    """Seeded once per module: tests only read it (copy `evidence_dir` before changing files)."""
    migrate(training_db_url)
    settings = CentralSettings(evidence_dir=training_dir / "evidence")
    engine = make_engine(training_db_url)
    factory = make_session_factory(engine)
    case_ids: dict[str, int] = {}
    store = EvidenceStore(settings.evidence_dir)
    try:
        for index, (photo, camera, _) in enumerate((*PLAN, OLD_EDGE)):
            folder = assets_dir if photo.endswith(".mp4") else assets_dir / "street"
            alert, clean = make_alert(index, read_source(folder / photo), camera, yolox, clean=index < len(PLAN))
            with session_scope(factory, write_lock=True) as session:
                result = ingest_alert(session, alert, topic=None, settings=settings)
            assert result.outcome == "created" and result.case_id is not None
            if clean is not None:
                store.put(clean)  # what the media topic's ingest does with the announced bytes
            case_ids[photo if index < len(PLAN) else "old-edge"] = result.case_id
        review = ReviewService(factory)
        reviewer = Reviewer(user_id=1, username="reviewer-1")
        decisions = {}
        keys = [photo for photo, _, _ in PLAN] + ["old-edge"]
        for key, (_, _, decision) in zip(keys, (*PLAN, OLD_EDGE), strict=True):
            case_id = case_ids[key]
            if decision == "confirm":
                review.confirm(case_id, reviewer=reviewer)
            else:
                review.dismiss(case_id, reason=decision, reviewer=reviewer)
            decisions[case_id] = decision
    finally:
        engine.dispose()
    return SeededCentral(training_db_url, settings.evidence_dir, case_ids, decisions, case_ids["old-edge"])
