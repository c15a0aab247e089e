"""Real evidence sets for central tests: the edge's own builder run on the real traffic-cam footage
(video/cvtrafficcam_street_parking.mp4, sampled at 1 fps), then the alert and its media pieces through
central's real ingest paths (the alert's, and media_ingest's for each piece)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import ingest_payload
from streetwatch.central.media_ingest import ingest_media
from streetwatch.edge.alerting import AlertContext, build_alert_with_media
from streetwatch.edge.alerts import Alert, Location, ModelRef, alert_topic, media_chunks, media_topic, new_id
from streetwatch.edge.config import EdgeConfig
from streetwatch.edge.evidence_set import EvidenceSetBuilder, MediaItem
from streetwatch.edge.manifest import load_manifest
from streetwatch.edge.sources import iter_sampled_frames, open_container
from streetwatch.edge.types import EventKind, EvidenceObject, Frame, ViolationEvent

NEAR_KERB = [(150.0, 200.0), (480.0, 200.0), (480.0, 330.0), (150.0, 330.0)]
WHITE_SEDAN = (309.0, 234.0, 464.0, 306.0)  # the parked white sedan at the near kerb (640x360 frame)
YELLOW_SUV = (160.0, 212.0, 300.0, 295.0)  # beside it: context
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
MODEL = ModelRef(name="yolox_nano", sha256=load_manifest().entry("yolox_nano").sha256)


@dataclass(frozen=True)
class RealSet:
    alert: Alert
    media: list[MediaItem]


def traffic_frames(assets_dir: Path, seconds: int, *, start: datetime = START) -> list[Frame]:
    with open_container(str(assets_dir / "video" / "cvtrafficcam_street_parking.mp4")) as container:
        frames = []
        for frame in iter_sampled_frames(container, camera_id="cam-kerb", sample_fps=1, start_wall_time=start):
            frames.append(frame)
            if len(frames) >= seconds:
                break
        return frames


def real_sets(assets_dir: Path, *, lat: float, lon: float, violation: str = "illegal_parking",
              episode_id: str | None = None, camera_id: str = "cam-kerb", start: datetime = START,
              edge_id: str = "box-desk") -> list[RealSet]:
    """One episode of the white sedan: a start at t=12 s (first seen at t=0) and a reminder at t=20 s,
    each with its evidence set, the subject highlighted and the SUV beside it as context."""
    config = EdgeConfig.model_validate({
        "edge_id": edge_id, "evidence": {"media": {"clip_s": 6}},
        "cameras": [{"id": camera_id, "url": "unused.mp4", "sample_fps": 1,
                     "zones": [{"id": "near-kerb", "violations": [violation], "polygon_px": NEAR_KERB}]}],
    })
    builder = EvidenceSetBuilder(config.evidence, {"near-kerb": NEAR_KERB})
    context = AlertContext(edge_id=config.edge_id, model=MODEL, config=config)
    episode = episode_id or new_id("ep")
    made = []
    for frame in traffic_frames(assets_dir, 21, start=start):
        builder.observe(frame)
        kind: EventKind | None = {12: "start", 20: "reminder"}.get(frame.index)  # type: ignore[assignment]
        if kind is None:
            continue
        event = ViolationEvent(
            kind=kind, violation=violation, zone_id="near-kerb", episode_id=episode, track_id=7,  # type: ignore[arg-type]
            started_t=0.0, observed_t=frame.pts_s, confidence=0.8, anchor=(386.0, 306.0),
            objects=(EvidenceObject("car", 0.8, WHITE_SEDAN, "subject"),
                     EvidenceObject("car", 0.6, YELLOW_SUV, "context")),
        )
        alert, media = build_alert_with_media(event, frame, camera=config.cameras[0], context=context,
                                              location=Location(lat=lat, lon=lon, accuracy_m=2.0),
                                              evidence_set=builder)
        made.append(RealSet(alert, media))
    return made


def ingest_sets(factory: sessionmaker[Session], settings: CentralSettings, sets: list[RealSet]) -> int:
    """Each alert then its pieces through central's ingest; returns the case id."""
    case_id = None
    for item in sets:
        alert = item.alert
        with session_scope(factory, write_lock=True) as session:
            result = ingest_payload(session, alert.to_json(), topic=alert_topic(alert.edge_id, alert.camera_id),
                                    settings=settings, index=None)
            assert result.case_id is not None, result
            case_id = result.case_id
        for media in item.media:
            if media.data is None:
                continue
            for chunk in media_chunks(alert.alert_id, alert.edge_id, media.ref, media.data):
                with session_scope(factory, write_lock=True) as session:
                    outcome = ingest_media(session, chunk.to_json(), topic=media_topic(alert.edge_id, alert.camera_id),
                                           settings=settings)
                    assert outcome.outcome in ("stored", "partial", "duplicate"), outcome
    assert case_id is not None
    return case_id


__all__ = ["NEAR_KERB", "WHITE_SEDAN", "YELLOW_SUV", "RealSet", "ingest_sets", "real_sets", "traffic_frames"]
