"""Alert building (edge/alerting.py): every field of the wire Alert, for fixed and moving cameras alike.

Two parts:
- `build_alert` on a real street photo, one row per event kind and camera kind: each of the 17
  fields is what the event, the frame and the camera say it is.
- Real footage through `edge replay`, one fixed camera and one moving camera, and every alert they
  publish checked field by field against the configuration, the episode it belongs to and the
  evidence it carries. The fixed camera is the shared traffic-cam clip (video/cvtrafficcam_street_parking.mp4,
  75 s of cars parked along both kerbs; dwell scaled down to 10-20 s, reminders every 10 s, an
  episode ends after 2 s unseen, so one clip yields starts, reminders and ends). The moving camera
  is the hand-held walk down a Tokyo side street (video/tokyo_street_walk_pov.mp4), whose minivan
  stays parked at the kerb as the camera approaches; the footage has no telemetry, so the test
  writes the GPX a phone would log on that walk (north at 1.2 m/s, 1 Hz fixes) and treats it as a
  ground platform with the lens 1.6 m up.
"""

from __future__ import annotations

import base64
import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from shapely.geometry import Point, Polygon

from streetwatch.edge import cli
from streetwatch.edge.alerting import AlertContext, build_alert
from streetwatch.edge.alerts import MAX_OBJECTS, Location, ModelRef
from streetwatch.edge.config import CameraConfig, EdgeConfig, load_edge_config
from streetwatch.edge.geo import TangentPlane, fit_homography, pixel_to_geo
from streetwatch.edge.manifest import load_manifest
from streetwatch.edge.types import EventKind, EvidenceObject, Frame, ViolationEvent
from streetwatch.footage import load_image

START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)  # 17:00 in Asia/Shanghai
MODEL = ModelRef(name="yolox_nano", sha256=load_manifest().entry("yolox_nano").sha256)
VEHICLE_CLASSES = {"car", "truck", "bus"}


def decoded_size(evidence: dict[str, Any]) -> tuple[int, int]:
    """(width, height) of the evidence JPEG as decoded."""
    jpeg = cv2.imdecode(np.frombuffer(base64.b64decode(evidence["jpeg_b64"]), np.uint8), cv2.IMREAD_COLOR)
    assert jpeg is not None, "evidence is not a JPEG"
    return jpeg.shape[1], jpeg.shape[0]


# ---------------------------------------------------------------- build_alert, field by field

BUILD_CASES = [
    pytest.param("start", "fixed", 7, Location(lat=31.3, lon=120.58, accuracy_m=1.25), "active", id="fixed-start"),
    pytest.param("reminder", "fixed", "static-2", None, "active", id="fixed-reminder-uncalibrated"),
    pytest.param("end", "fixed", 7, None, "ended", id="fixed-end"),
    pytest.param("sighting", "vehicle", "g3", Location(lat=31.3, lon=120.58, accuracy_m=4.78), "sighting",
                 id="vehicle-sighting"),
    pytest.param("start", "drone", "g1", Location(lat=31.3, lon=120.58, accuracy_m=2.08), "active", id="drone-start"),
]


@pytest.mark.parametrize(("kind", "source_kind", "track_id", "location", "state"), BUILD_CASES)
def test_build_alert_fills_every_field_from_event_frame_and_camera(
    street_dir: Path, kind: EventKind, source_kind: str, track_id: int | str, location: Location | None, state: str
) -> None:
    photo = load_image(street_dir / "kerb_parked_cars_street.jpg")  # 958 x 568
    frame = Frame("cam-7", photo, pts_s=100.0, captured_at=START + timedelta(seconds=100), index=100)
    event = ViolationEvent(
        kind=kind, violation="illegal_parking", zone_id="z-kerb", episode_id="ep-1234", track_id=track_id,
        started_t=12.34, observed_t=100.0, confidence=0.123456, anchor=(649.5, 367.0),
        objects=(EvidenceObject("car", 0.4, (0.0, 0.0, 10.0, 10.0)), EvidenceObject("car", 0.9, (586, 322, 713, 367))),
    )
    config = EdgeConfig(edge_id="box-1", evidence={"max_width": 479}, cameras=[camera_for(source_kind)])
    alert = build_alert(event, frame, camera=config.cameras[0], context=AlertContext("box-1", MODEL, config),
                        location=location)
    wire = json.loads(alert.to_json())  # the bytes the outbox publishes
    assert wire.pop("schema") == "streetwatch.alert/1"
    assert re.fullmatch(r"al-[0-9a-f]{32}", wire.pop("alert_id"))
    evidence = wire.pop("evidence")
    objects = wire.pop("objects")
    assert wire == {
        "episode_id": "ep-1234", "state": state, "edge_id": "box-1", "camera_id": "cam-7",
        "source_kind": source_kind, "violation": "illegal_parking",
        "started_at": "2026-11-21T09:00:12.340000Z", "observed_at": "2026-11-21T09:01:40Z",
        "dwell_s": 87.7, "confidence": 0.123, "zone_id": "z-kerb", "track_id": track_id,
        "model": {"name": "yolox_nano", "sha256": MODEL.sha256},
        **({"location": location.model_dump()} if location is not None else {}),
    }
    assert (evidence["width"], evidence["height"]) == (479, 284)  # the photo at max_width, aspect kept
    assert decoded_size(evidence) == (479, 284)
    # Highest score first, boxes scaled from frame pixels to the evidence image (factor 0.5).
    assert objects == [{"cls": "car", "score": 0.9, "bbox": pytest.approx([293.0, 161.0, 356.5, 183.5], abs=0.3)},
                       {"cls": "car", "score": 0.4, "bbox": pytest.approx([0.0, 0.0, 5.0, 5.0], abs=0.01)}]


def camera_for(source_kind: str) -> CameraConfig:
    if source_kind == "fixed":
        return CameraConfig(id="cam-7", url="street.mp4")
    telemetry = {"source": "gpx"} if source_kind == "vehicle" else {"source": "srt", "clock_tz": "Asia/Shanghai"}
    model = {"hfov_deg": 60, **({"mount_height_m": 1.5} if source_kind == "vehicle" else {})}
    return CameraConfig.model_validate({"id": "cam-7", "kind": source_kind, "url": "street.mp4",
                                        "camera_model": model, "telemetry": telemetry})


# ---------------------------------------------------------------- real footage, every alert

# A synthetic but self-consistent calibration of the traffic cam's road plane (640 x 360 frames).
TRAFFIC_CALIBRATION = [[[0, 360], [31.300100, 120.585050]], [[640, 360], [31.300100, 120.585250]],
                       [[560, 40], [31.300400, 120.585230]], [[80, 40], [31.300400, 120.585070]]]
NEAR_KERB = [[150, 200], [480, 200], [480, 330], [150, 330]]  # the yellow SUV and the white sedan
FAR_KERB = [[60, 100], [310, 100], [310, 160], [60, 160]]  # the silver and the red car, the dark one
WALK_ORIGIN = (31.300400, 120.585100)
WALK_SPEED_MPS = 1.2


def replay(folder: Path, video: Path, config: dict[str, Any]) -> tuple[list[dict[str, Any]], EdgeConfig]:
    path = folder / "edge.yaml"
    path.write_text(yaml.safe_dump({**config, "outbox": str(folder / "outbox.sqlite")}))
    out = folder / "alerts.jsonl"
    code = cli.main(["replay", str(video), "--config", str(path), "--out", str(out),
                     "--start-time", START.isoformat(), "--no-progress"])
    assert code == 0
    alerts = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return alerts, load_edge_config(path)


def traffic_config() -> dict[str, Any]:
    return {"edge_id": "box-traffic", "rules": {"reminder_interval_s": 10, "end_after_s": 2},
            "cameras": [{"id": "cam-traffic", "url": "unused.mp4", "sample_fps": 2, "timezone": "Asia/Shanghai",
                         "calibration": {"points": TRAFFIC_CALIBRATION},
                         "zones": [{"id": "near-kerb", "violations": ["illegal_parking"], "polygon_px": NEAR_KERB,
                                    "dwell_s": 10},
                                   {"id": "far-kerb", "violations": ["illegal_parking"], "polygon_px": FAR_KERB,
                                    "dwell_s": 20}]}]}


def walk_gpx() -> str:
    plane = TangentPlane(*WALK_ORIGIN)
    points = []
    for second in range(-2, 14):
        lat, lon = plane.to_latlon(0.0, WALK_SPEED_MPS * second)  # type: ignore[arg-type]
        stamp = (START + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")
        points.append(f'<trkpt lat="{float(lat):.8f}" lon="{float(lon):.8f}"><time>{stamp}</time></trkpt>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="phone" '
            'xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>' + "".join(points) + "</trkseg></trk></gpx>\n")


def walk_config(track: Path) -> dict[str, Any]:
    plane = TangentPlane(*WALK_ORIGIN)
    ahead = [plane.to_latlon(float(e), float(n)) for e, n in [(-15, 3), (15, 3), (15, 40), (-15, 40)]]  # type: ignore[arg-type]
    return {"edge_id": "walk-box", "rules": {"reminder_interval_s": 10, "end_after_s": 2,
                                             "moving": {"still_tolerance_m": 3.0, "min_frames": 2}},
            "cameras": [{"id": "walk-1", "kind": "vehicle", "url": "unused.mp4", "sample_fps": 3,
                         "timezone": "Asia/Shanghai",
                         "camera_model": {"hfov_deg": 65, "mount_height_m": 1.6, "pitch_deg": -5},
                         "telemetry": {"source": "gpx", "path": str(track), "max_gap_s": 2.0},
                         "zones": [{"id": "street-ahead",
                                    "violations": ["illegal_parking", "street_vending", "stacked_goods"],
                                    "polygon_geo": [[float(lat), float(lon)] for lat, lon in ahead],
                                    "dwell_s": 3}]}]}


@pytest.fixture(scope="module")
def traffic(assets_dir: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[list[dict[str, Any]], EdgeConfig]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
        return replay(tmp_path_factory.mktemp("traffic"), assets_dir / "video" / "cvtrafficcam_street_parking.mp4",
                      traffic_config())


@pytest.fixture(scope="module")
def walk_inputs(assets_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("walk")
    (folder / "walk.gpx").write_text(walk_gpx())
    return assets_dir / "video" / "tokyo_street_walk_pov.mp4", walk_config(folder / "walk.gpx")


@pytest.fixture(scope="module")
def walk(walk_inputs: tuple[Path, dict[str, Any]], model_dir: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[list[dict[str, Any]], EdgeConfig]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
        return replay(tmp_path_factory.mktemp("walk-run"), *walk_inputs)


def check_common_fields(alerts: list[dict[str, Any]], config: EdgeConfig, *, clip_s: float) -> None:
    """The fields every alert carries the same way whatever the camera: ids, source, times, rounding,
    objects, evidence and model."""
    camera = config.cameras[0]
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    for alert in alerts:
        assert alert["schema"] == "streetwatch.alert/1" and re.fullmatch(r"al-[0-9a-f]{32}", alert["alert_id"])
        assert (alert["edge_id"], alert["camera_id"], alert["source_kind"]) == (config.edge_id, camera.id, camera.kind)
        zone = next(z for z in camera.zones if z.id == alert["zone_id"])
        assert alert["violation"] in zone.violations
        observed, started = (datetime.fromisoformat(alert[k]) for k in ("observed_at", "started_at"))
        assert START <= started <= observed <= START + timedelta(seconds=clip_s)
        assert alert["dwell_s"] == round(alert["dwell_s"], 1)
        assert abs((observed - started).total_seconds() - alert["dwell_s"]) <= 0.05 + 1e-6
        assert alert["confidence"] == round(alert["confidence"], 3)
        assert config.rules.min_median_score <= alert["confidence"] <= 1
        evidence, objects = alert["evidence"], alert["objects"]
        assert decoded_size(evidence) == (evidence["width"], evidence["height"]) == (640, 360)
        assert 1 <= len(objects) <= MAX_OBJECTS
        assert [o["score"] for o in objects] == sorted((o["score"] for o in objects), reverse=True)
        for obj in objects:
            x1, y1, x2, y2 = obj["bbox"]
            assert 0 <= x1 <= x2 <= evidence["width"] and 0 <= y1 <= y2 <= evidence["height"]
        assert alert["model"] == MODEL.model_dump()


def check_episodes(alerts: list[dict[str, Any]], config: EdgeConfig) -> None:
    """Alerts of one episode: same start, zone, violation and subject; the first one after the zone's
    dwell; reminders at least reminder_interval_s apart; an `ended` alert only last."""
    episodes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for alert in alerts:
        if alert["state"] != "sighting":
            episodes[alert["episode_id"]].append(alert)
    for episode_id, run in episodes.items():
        assert re.fullmatch(r"ep-[0-9a-f]{32}", episode_id)
        assert len({(a["started_at"], a["zone_id"], a["violation"], a["track_id"]) for a in run}) == 1, run
        zone = next(z for z in config.cameras[0].zones if z.id == run[0]["zone_id"])
        assert run[0]["state"] == "active" and run[0]["dwell_s"] >= zone.dwell_for(run[0]["violation"]) - 0.05
        assert all(a["state"] == "active" for a in run[:-1]) and run[-1]["state"] in ("active", "ended")
        active = [datetime.fromisoformat(a["observed_at"]) for a in run if a["state"] == "active"]
        assert all((b - a).total_seconds() >= config.rules.reminder_interval_s for a, b in pairwise(active))


def test_fixed_camera_alerts_on_real_footage_carry_every_field(
    traffic: tuple[list[dict[str, Any]], EdgeConfig],
) -> None:
    alerts, config = traffic
    check_common_fields(alerts, config, clip_s=76)
    check_episodes(alerts, config)
    # The cars parked along both kerbs: episodes in both zones, reminded while they stay.
    assert {a["zone_id"] for a in alerts} == {"near-kerb", "far-kerb"}
    assert {a["violation"] for a in alerts} == {"illegal_parking"}
    assert any(a["dwell_s"] >= 50 for a in alerts)  # parked for the whole clip: reminders kept coming
    homography = fit_homography([((x, y), (lat, lon)) for (x, y), (lat, lon) in TRAFFIC_CALIBRATION])
    ground = {zone: Polygon([(loc.lon, loc.lat) for loc in (pixel_to_geo(homography, x, y) for x, y in pixels)])
              for zone, pixels in (("near-kerb", NEAR_KERB), ("far-kerb", FAR_KERB))}
    for alert in alerts:
        assert isinstance(alert["track_id"], int)  # a tracker id
        assert alert["objects"][0]["cls"] in VEHICLE_CLASSES
        location = alert["location"]  # the car's ground point, projected through the calibration
        assert ground[alert["zone_id"]].contains(Point(location["lon"], location["lat"]))
        assert 0 < location["accuracy_m"] < 5


def test_moving_camera_alerts_on_real_footage_carry_every_field(
    walk: tuple[list[dict[str, Any]], EdgeConfig],
) -> None:
    alerts, config = walk
    check_common_fields(alerts, config, clip_s=11)
    check_episodes(alerts, config)
    sightings = [a for a in alerts if a["state"] == "sighting"]
    # The parked minivan, still on the ground while the walker approaches: a parking sighting.
    assert any(a["violation"] == "illegal_parking" and a["objects"][0]["cls"] in VEHICLE_CLASSES for a in sightings)
    # One sighting per object and zone in a pass, never one per frame; each with its own pass id.
    assert len({(a["track_id"], a["zone_id"]) for a in sightings}) == len(sightings)
    assert all(re.fullmatch(r"ps-[0-9a-f]{32}", a["episode_id"]) for a in sightings)
    zone = config.cameras[0].zones[0]
    assert zone.polygon_geo is not None
    area = Polygon([(lon, lat) for lat, lon in zone.polygon_geo])
    for alert in alerts:
        assert re.fullmatch(r"g\d+", alert["track_id"])  # a ground object of this pass
        location = alert["location"]  # the object's ground point: inside the zone the rules tested
        assert area.buffer(1e-7).contains(Point(location["lon"], location["lat"]))
        assert location["accuracy_m"] == round(location["accuracy_m"], 2) and 0 < location["accuracy_m"] <= 25


def test_replaying_the_same_moving_clip_gives_the_same_alerts_but_their_ids(
    walk: tuple[list[dict[str, Any]], EdgeConfig], walk_inputs: tuple[Path, dict[str, Any]], tmp_path: Path,
    model_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Alerts depend on the input only (a replay on another box, or on the next version, must match
    the first, which is how a change to the alert path is checked), apart from the fresh ids."""
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
    again, _ = replay(tmp_path, *walk_inputs)
    assert without_ids(again) == without_ids(walk[0]) and without_ids(again)


def without_ids(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alerts with alert_id removed and episode ids numbered in order of first use."""
    numbered: dict[str, str] = {}
    return [{**{k: v for k, v in a.items() if k != "alert_id"},
             "episode_id": numbered.setdefault(a["episode_id"], f"{a['episode_id'][:2]}#{len(numbered)}")}
            for a in alerts]
