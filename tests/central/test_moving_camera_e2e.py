"""Moving camera end to end: real footage + synthetic GPS -> `edge replay` -> sightings -> a confirmed case.

How the footage and the track are built (streetwatch/patrol_footage.py): a patrol car drives north
at 2 m/s past the kerb street photo's parked cars, with a kerb-facing camera (mount yaw +90 deg,
1.5 m high, 60 deg HFOV). Each frame is a window of the real photo shifted so that the dark green
car's bottom centre lands where the camera model puts that car's true ground position for the
patrol car's pose at that instant (the red car parked right behind it is painted over: seen from
the side it would stand 1.6 m from the green one); the frames (with sensor noise) are encoded as real H.264. The
test writes the track as a GPX file (1 Hz fixes, heading from the course: GPS-only, so the camera
is assumed level) with two passes 6 minutes apart; each pass is its own clip, replayed through the
real CLI with the real YOLOX-Nano, so the detector really finds the cars. The alerts go through
central's real ingest on the test database (SQLite, or PostgreSQL with
STREETWATCH_TEST_DATABASE_URL), with merchants imported from a GeoJSON file the test writes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.merchants import import_merchants
from streetwatch.central.models import Alert, Case
from streetwatch.central.offline import ingest_jsonl
from streetwatch.central.sightings import PendingSighting, sighting_partners
from streetwatch.edge import cli
from streetwatch.edge.geo import TangentPlane
from streetwatch.footage import load_image, write_h264_clip
from streetwatch.patrol_footage import KERB_PHOTO, PatrolGeometry, car_truth, gpx_track, kerb_scene, pass_frames

PASS_1 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)  # 17:00 in Asia/Shanghai
PASS_2 = PASS_1 + timedelta(minutes=6)
GEOM = PatrolGeometry()


def square(
    centre: tuple[float, float], *, half_east: float, half_north: float, shift_east: float = 0.0
) -> list[list[float]]:
    """(lat, lon) corners of a rectangle of +-half metres around a (lat, lon) centre (shifted east)."""
    plane = TangentPlane(*centre)
    corners = [(-half_east, -half_north), (half_east, -half_north), (half_east, half_north), (-half_east, half_north)]
    corners = [(east + shift_east, north) for east, north in corners]
    out = []
    for east, north in corners:
        lat, lon = plane.to_latlon(east, north)  # type: ignore[arg-type]
        out.append([float(lat), float(lon)])
    return out


@pytest.fixture(scope="module")
def passes(street_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Two clips (one per pass) and the GPX track covering both."""
    folder = tmp_path_factory.mktemp("patrol")
    photo = kerb_scene(load_image(street_dir / KERB_PHOTO))
    clip1 = write_h264_clip(folder / "pass1.mp4", pass_frames(photo, GEOM, seed=1), fps=GEOM.fps)
    clip2 = write_h264_clip(folder / "pass2.mp4", pass_frames(photo, GEOM, seed=2), fps=GEOM.fps)
    track = folder / "patrol.gpx"
    track.write_text(gpx_track(GEOM, [PASS_1, PASS_2]))
    return clip1, clip2, track


def edge_config(folder: Path, track: Path) -> Path:
    truth = car_truth(GEOM)
    config = {
        "edge_id": "patrol-box",
        "outbox": str(folder / "outbox.sqlite"),
        "cameras": [{
            "id": "patrol-7-right", "kind": "vehicle", "url": "unused.mp4", "sample_fps": GEOM.fps,
            "timezone": "Asia/Shanghai",
            "camera_model": {"hfov_deg": GEOM.hfov_deg, "mount_height_m": GEOM.mount_height_m,
                             "yaw_deg": GEOM.yaw_offset_deg, "pitch_deg": GEOM.pitch_offset_deg},
            "telemetry": {"source": "gpx", "path": str(track), "max_gap_s": 2.0},
            "zones": [{"id": "kerb-no-parking", "violations": ["illegal_parking"],
                       # the parking lane along the kerb: 2 m wide from the cars' near side, 6 m long
                       "polygon_geo": square(truth, half_east=1.0, half_north=3.0, shift_east=0.2)}],
        }],
    }
    path = folder / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def merchants_file(folder: Path) -> Path:
    """The shop whose storefront zone covers the kerb spot, and its neighbour 20 m north."""
    truth = car_truth(GEOM)
    plane = TangentPlane(*truth)
    features = []
    for merchant_id, north in (("m-kerb-cafe", 0.0), ("m-neighbour", 20.0)):
        lat, lon = plane.to_latlon(0.0, north)  # type: ignore[arg-type]
        ring = [[lo, la] for la, lo in square((float(lat), float(lon)), half_east=4.0, half_north=5.0)]
        features.append({"type": "Feature", "properties": {"id": merchant_id, "name": merchant_id},
                         "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}})
    path = folder / "merchants.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def replay(video: Path, config: Path, out: Path, start: datetime) -> list[dict]:
    code = cli.main(["replay", str(video), "--config", str(config), "--camera", "patrol-7-right",
                     "--out", str(out), "--start-time", start.isoformat(), "--no-progress"])
    assert code == 0
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_two_passes_six_minutes_apart_confirm_one_parking_case_for_the_right_merchant(
    tmp_path: Path, passes: tuple[Path, Path, Path], model_dir: Path, monkeypatch: pytest.MonkeyPatch,
    session_factory: sessionmaker[Session], central_settings: CentralSettings,
) -> None:
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
    clip1, clip2, track = passes
    config = edge_config(tmp_path, track)
    with session_scope(session_factory) as session:
        import_merchants(session, merchants_file(tmp_path))

    first = replay(clip1, config, tmp_path / "pass1.jsonl", PASS_1)
    # One sighting per (object, pass), not one per frame: the anchored car, in the zone, once.
    assert [(a["state"], a["violation"], a["source_kind"], a["zone_id"]) for a in first] == [
        ("sighting", "illegal_parking", "vehicle", "kerb-no-parking")]
    truth = car_truth(GEOM)
    plane = TangentPlane(*truth)
    east, north = plane.to_enu(first[0]["location"]["lat"], first[0]["location"]["lon"])  # type: ignore[arg-type]
    assert float((east**2 + north**2) ** 0.5) <= max(2.0, first[0]["location"]["accuracy_m"])
    assert {o["cls"] for o in first[0]["objects"]} <= {"car", "truck"}

    summary = ingest_jsonl(tmp_path / "pass1.jsonl", session_factory=session_factory, settings=central_settings)
    assert (summary.pending, summary.created) == (1, 0)
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count(Case.id))) == 0  # a single pass confirms nothing

    second = replay(clip2, config, tmp_path / "pass2.jsonl", PASS_2)
    assert [(a["state"], a["zone_id"]) for a in second] == [("sighting", "kerb-no-parking")]
    summary = ingest_jsonl(tmp_path / "pass2.jsonl", session_factory=session_factory, settings=central_settings)
    assert (summary.pending, summary.created) == (0, 1)

    with session_scope(session_factory) as session:
        cases = session.scalars(select(Case)).all()
        assert [(c.violation, c.status, c.merchant_id, c.attribution_method) for c in cases] == [
            ("illegal_parking", "new", "m-kerb-cafe", "inside_zone")]
        case = cases[0]
        alerts = session.scalars(select(Alert).where(Alert.case_id == case.id).order_by(Alert.observed_at)).all()
        assert [a.alert_id for a in alerts] == [first[0]["alert_id"], second[0]["alert_id"]]
        assert (case.alert_count, case.episode_count, case.active) == (2, 2, False)
        assert case.last_seen - case.first_seen >= timedelta(minutes=5)


def test_second_pass_too_soon_confirms_nothing(
    tmp_path: Path, passes: tuple[Path, Path, Path], model_dir: Path, monkeypatch: pytest.MonkeyPatch,
    session_factory: sessionmaker[Session], central_settings: CentralSettings,
) -> None:
    """The same two passes, with sighting_interval_s raised to 10 minutes: both stay pending."""
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
    clip1, clip2, track = passes
    config = edge_config(tmp_path, track)
    settings = central_settings.model_copy(
        update={"cases": central_settings.cases.model_copy(update={"sighting_interval_s": 600})})
    replay(clip1, config, tmp_path / "both.jsonl", PASS_1)
    replay(clip2, config, tmp_path / "both.jsonl", PASS_2)
    summary = ingest_jsonl(tmp_path / "both.jsonl", session_factory=session_factory, settings=settings)
    assert (summary.pending, summary.created, summary.joined) == (2, 0, 0)
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count(Case.id))) == 0
        assert session.scalar(select(func.count(Alert.alert_id)).where(Alert.case_id.is_(None))) == 2


def test_frames_outside_the_track_are_not_geo_matched(
    tmp_path: Path, passes: tuple[Path, Path, Path], model_dir: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Replayed an hour off the track's times: no pose within max_gap_s, no sighting, a log line per gap."""
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
    clip1, _clip2, track = passes
    with caplog.at_level("WARNING", logger="streetwatch.edge.moving"):
        alerts = replay(clip1, edge_config(tmp_path, track), tmp_path / "off.jsonl", PASS_1 + timedelta(hours=1))
    assert alerts == []
    lines = [r.getMessage() for r in caplog.records if "not geo-matched" in r.getMessage()]
    assert len(lines) == 1 and "camera patrol-7-right" in lines[0]


T = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def _s(alert_id: str, episode: str, minutes: float, north_m: float = 0.0, accuracy: float = 3.0) -> PendingSighting:
    lat, lon = TangentPlane(31.3, 120.58).to_latlon(0.0, north_m)  # type: ignore[arg-type]
    return PendingSighting(alert_id, episode, T + timedelta(minutes=minutes), float(lat), float(lon), accuracy)


@pytest.mark.parametrize(
    ("new", "pending", "expected"),
    [
        (_s("b", "p2", 6), [_s("a", "p1", 0)], ["a"]),  # two passes 6 min apart, same spot
        (_s("b", "p2", 4), [_s("a", "p1", 0)], []),  # too soon
        (_s("b", "p1", 6), [_s("a", "p1", 0)], []),  # same pass (episode) is not a second pass
        (_s("b", "p2", 6, north_m=6.0), [_s("a", "p1", 0)], []),  # 6 m away with 3 m accuracy: another spot
        (_s("b", "p2", 6, north_m=6.0, accuracy=8.0), [_s("a", "p1", 0)], ["a"]),  # within the accuracy
        (_s("b", "p2", 6, north_m=20.0, accuracy=40.0), [_s("a", "p1", 0)], []),  # capped at radius 15 m
        (_s("c", "p3", 6), [_s("a", "p1", 0), _s("b", "p2", 2)], ["a", "b"]),  # all passes at the spot join
        (_s("b", "p2", 0), [_s("a", "p1", 6)], ["a"]),  # a late-arriving earlier pass confirms too
        (_s("b", "p2", 200), [_s("a", "p1", 0)], []),  # beyond max_gap (2 h)
    ],
)
def test_sighting_partners(new: PendingSighting, pending: list[PendingSighting], expected: list[str]) -> None:
    got = sighting_partners(new, pending, interval=timedelta(minutes=5), max_gap=timedelta(hours=2),
                            min_radius_m=5.0, max_radius_m=15.0)
    assert got == expected
