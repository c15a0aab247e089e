"""The evidence set of one episode of each violation, on real footage with the real detector, through
`edge replay` (its media land in OUT.media/, named by sha256, as central stores them).

- illegal parking: the real traffic-cam clip (video/cvtrafficcam_street_parking.mp4, 75 s, cars
  parked along both kerbs the whole time, traffic passing), 1 fps, a zone over the near kerb with a
  30 s dwell: the clip is long enough as it is.
- stacked goods: the real kerb-street photo (street/kerb_parked_cars_street.jpg) held still for 6 min
  as H.264 with sensor noise, goods cut from the real Hanoi market photo set down on the pavement at
  t=40 s (the static-foreground path finds them; on real CCTV that path is another branch's work).
- street vending: the real Hanoi lane-market photo held for 4 min, the vendors' goods bicycles counted
  as carts (class → role is configuration: a manifest copy maps bicycle → vending_prop).

Each set is checked as a reviewer would use it: three frames (first seen, confirmed, latest) with the
zone outline and the subject drawn, a crop of the subject at full resolution, an H.264 clip that decodes
to the frame count and length it announces, and the clean frame at the photo's pixel size without any
drawing.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import pytest
import yaml
from clips import Paste, still_scene, write_h264_clip
from evidence_checks import SUBJECT_COLOUR, decode_clip, decode_jpeg, edge_run, zone_edge_colour_share

from streetwatch.edge import cli
from streetwatch.edge.alerts import Alert

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)  # 17:00 in Asia/Shanghai
NEAR_KERB = [[150, 200], [480, 200], [480, 330], [150, 330]]  # traffic cam: the yellow SUV and the white sedan
PAVEMENT = [[0, 450], [400, 450], [400, 568], [0, 568]]  # kerb street photo: the empty pavement, bottom left
LANE = [[180, 200], [640, 200], [640, 480], [180, 480]]  # Hanoi market: the lane with vendors
CLIP_S = 6.0


def _replay(folder: Path, video: Path, zone: dict[str, Any], manifest: Path | None = None) -> tuple[list[Alert], Path]:
    model: dict[str, Any] = {"name": "yolox_nano", **({"manifest": str(manifest)} if manifest else {})}
    config = {"edge_id": "box-set", "model": model, "outbox": str(folder / "outbox.sqlite"),
              "rules": {"reminder_interval_s": 900, "end_after_s": 60},
              "evidence": {"media": {"clip_s": CLIP_S, "first_seen_every_s": 5}},
              "cameras": [{"id": "cam-set", "url": "unused.mp4", "sample_fps": 1, "timezone": "Asia/Shanghai",
                           "zones": [zone]}]}
    path = folder / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    out = folder / "alerts.jsonl"
    assert cli.main(["replay", str(video), "--config", str(path), "--out", str(out),
                     "--start-time", START.isoformat(), "--no-progress"]) == 0
    alerts = [Alert.model_validate(json.loads(line)) for line in out.read_text().splitlines()]
    return alerts, folder / "alerts.jsonl.media"


def _media(folder: Path, alert: Alert) -> dict[str, tuple[Any, bytes]]:
    """kind -> (ref, bytes) for the alert's announced items (the confirming frame of a start alert is
    its own photo, announced by hash and not sent twice)."""
    photo = base64.b64decode(alert.evidence.jpeg_b64) if alert.evidence else b""
    found = {}
    for ref in alert.media or []:
        path = folder / f"{ref.sha256}.{'mp4' if ref.content_type == 'video/mp4' else 'jpg'}"
        found[ref.kind] = (ref, path.read_bytes() if path.exists() else photo)
    return found


def _check_set(alert: Alert, folder: Path, zone_px: list[list[int]], frame_size: tuple[int, int]) -> dict[str, Any]:
    """Every item of a start alert's set, checked; returns the decoded images for more checks."""
    assert alert.state == "active" and alert.evidence is not None and alert.subjects
    items = _media(folder, alert)
    assert set(items) == {"first", "confirmed", "crop", "clip", "clean"}, set(items)
    photo = decode_jpeg(base64.b64decode(alert.evidence.jpeg_b64))
    scale = alert.evidence.width / frame_size[0]
    zone = [(x * scale, y * scale) for x, y in zone_px]
    subject = alert.objects[alert.subjects[0]].bbox

    # The three frames: the zone outlined and the subject in thick amber on each, in time order.
    first, confirmed = decode_jpeg(items["first"][1]), decode_jpeg(items["confirmed"][1])
    for name, image in (("first", first), ("confirmed", confirmed), ("latest", photo)):
        assert image.shape[:2] == (alert.evidence.height, alert.evidence.width), name
        assert zone_edge_colour_share(image, zone) > 0.8, f"{name}: zone outline not drawn"
        share, width = edge_run(image, subject, SUBJECT_COLOUR)
        assert share > 0.8 and width >= 3, f"{name}: subject not highlighted ({share:.2f}, {width} px)"
    assert items["confirmed"][1] == base64.b64decode(alert.evidence.jpeg_b64)  # the start's photo confirms it
    first_at = items["first"][0].captured_at
    assert first_at is not None and abs((first_at - alert.started_at).total_seconds()) <= 5.0
    assert first_at < alert.observed_at

    # The clean frame: the photo's pixel size, nothing drawn (no zone, no amber at the subject).
    clean_ref, clean_bytes = items["clean"]
    clean = decode_jpeg(clean_bytes)
    assert clean.shape[:2] == photo.shape[:2] == (clean_ref.height, clean_ref.width)
    assert zone_edge_colour_share(clean, zone) < 0.2
    assert edge_run(clean, subject, SUBJECT_COLOUR)[0] < 0.2

    # The crop: the subject at the camera's full resolution (larger than in the photo when it was downscaled).
    crop_ref, crop_bytes = items["crop"]
    crop = decode_jpeg(crop_bytes)
    box_w, box_h = (subject[2] - subject[0]) / scale, (subject[3] - subject[1]) / scale
    assert crop.shape[1] >= box_w - 2 and crop.shape[0] >= box_h - 2
    assert (crop.shape[1], crop.shape[0]) == (crop_ref.width, crop_ref.height)

    # The clip: H.264 that decodes to the frames and length it states, ending at the confirmation.
    clip_ref, clip_bytes = items["clip"]
    frames, duration, size, codec = decode_clip(clip_bytes)
    assert codec == "h264" and frames == clip_ref.frames and frames >= CLIP_S  # 1 fps: one frame a second
    assert clip_ref.duration_s == pytest.approx(frames / 1.0, rel=0.05)  # sampled on stream time: ~1 s apart
    assert duration == pytest.approx(clip_ref.duration_s, abs=1.01)
    assert size == (clip_ref.width, clip_ref.height) and clip_ref.size == len(clip_bytes)
    assert clip_ref.captured_at == alert.observed_at
    return {"photo": photo, "first": first, "clean": clean, "crop": crop}


@pytest.fixture()
def artefacts(tmp_path: Path) -> Path:
    """Where the images go: $STREETWATCH_TEST_ARTEFACTS (kept for a look), else the test's tmp dir."""
    folder = Path(os.environ.get("STREETWATCH_TEST_ARTEFACTS") or tmp_path / "artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save(artefacts: Path, name: str, images: dict[str, Any]) -> None:
    for kind, image in images.items():
        cv2.imwrite(str(artefacts / f"{name}-{kind}.png"), image)


def test_parking_episode_evidence_set_on_the_real_traffic_cam(
    tmp_path: Path, assets_dir: Path, model_dir: Path, artefacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
    zone = {"id": "near-kerb", "violations": ["illegal_parking"], "polygon_px": NEAR_KERB, "dwell_s": 30}
    alerts, folder = _replay(tmp_path, assets_dir / "video" / "cvtrafficcam_street_parking.mp4", zone)
    starts = [a for a in alerts if a.violation == "illegal_parking" and a.state == "active"]
    assert starts
    _save(artefacts, "parking", _check_set(starts[0], folder, NEAR_KERB, (640, 360)))


def test_stacked_goods_episode_evidence_set(
    tmp_path: Path, street_dir: Path, model_dir: Path, artefacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
    street = cv2.imread(str(street_dir / "kerb_parked_cars_street.jpg"))
    market = cv2.imread(str(street_dir / "market_hanoi_goods_on_ground.jpg"))
    goods = market[250:310, 300:480].copy()
    frames = still_scene(street, seconds=420, fps=1, noise_sigma=2.0, seed=2,
                         pastes=[Paste(goods, (120, 440), 40.0, 10_000.0)])
    clip = write_h264_clip(tmp_path / "goods.mp4", frames, fps=1)
    zone = {"id": "pavement", "violations": ["stacked_goods"], "polygon_px": PAVEMENT, "dwell_s": 300}
    alerts, folder = _replay(tmp_path, clip, zone)
    assert [(a.violation, a.state) for a in alerts] == [("stacked_goods", "active")]
    images = _check_set(alerts[0], folder, PAVEMENT, (street.shape[1], street.shape[0]))
    _save(artefacts, "goods", images)


def test_vending_episode_evidence_set(
    tmp_path: Path, street_dir: Path, model_dir: Path, artefacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
    manifest = yaml.safe_load((REPO / "streetwatch" / "models" / "manifest.yaml").read_text())
    manifest["models"][0]["roles"]["bicycle"] = "vending_prop"
    manifest_path = tmp_path / "manifest.yaml"
    manifest_path.write_text(yaml.safe_dump(manifest))
    image = cv2.imread(str(street_dir / "market_hanoi_goods_on_ground.jpg"))
    clip = write_h264_clip(tmp_path / "market.mp4", still_scene(image, seconds=200, fps=1, seed=3), fps=1)
    zone = {"id": "lane", "violations": ["street_vending"], "polygon_px": LANE, "dwell_s": 180}
    alerts, folder = _replay(tmp_path, clip, zone, manifest=manifest_path)
    assert [(a.violation, a.state) for a in alerts] == [("street_vending", "active")]
    _save(artefacts, "vending", _check_set(alerts[0], folder, LANE, (image.shape[1], image.shape[0])))
