"""Evidence JPEGs from real street photos: size, byte limit, scaled and drawn boxes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from streetwatch.edge.alerts import MAX_EVIDENCE_B64_CHARS, Alert, ModelRef
from streetwatch.edge.evidence import EvidenceTooLarge, render_evidence
from streetwatch.edge.types import EvidenceObject

# kerb_parked_cars_street.jpg: YOLOX-Nano's two best parked cars (assets/street/SOURCES.md)
CARS = (
    EvidenceObject("car", 0.73, (586.0, 322.0, 713.0, 367.0)),
    EvidenceObject("car", 0.71, (259.0, 321.0, 318.0, 363.0)),
)


@pytest.fixture(scope="module")
def street(street_dir: Path) -> np.ndarray:
    image = cv2.imread(str(street_dir / "kerb_parked_cars_street.jpg"))
    assert image is not None
    return image


@pytest.fixture(scope="module")
def full_hd(street: np.ndarray) -> np.ndarray:
    """The photo at 1920x1080 with strong sensor noise: a frame that compresses badly."""
    frame = cv2.resize(street, (1920, 1080), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(5).normal(0, 12, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def decode(b64: str) -> np.ndarray:
    data = base64.b64decode(b64, validate=True)
    assert data[:2] == b"\xff\xd8", "not a JPEG (no SOI marker)"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


@pytest.mark.parametrize(
    ("frame_size", "max_width", "expected_size"),
    [
        ((1920, 1080), 1280, (1280, 720)),
        ((958, 568), 480, (480, 285)),  # 568 * 480 / 958 = 284.6
        ((958, 568), 1280, (958, 568)),  # never upscaled
        ((640, 480), 640, (640, 480)),
    ],
)
def test_evidence_decodes_as_a_jpeg_of_the_right_size(street, frame_size, max_width, expected_size):
    frame = cv2.resize(street, frame_size)
    out = render_evidence(frame, CARS, max_width=max_width, jpeg_quality=80, max_bytes=250_000)
    image = decode(out.evidence.jpeg_b64)
    assert (image.shape[1], image.shape[0]) == expected_size
    assert (out.evidence.width, out.evidence.height) == expected_size
    assert out.scale == pytest.approx(expected_size[0] / frame_size[0])
    assert out.jpeg_quality == 80  # fits at the configured quality: no needless loss


@pytest.mark.parametrize("max_bytes", [10_000, 40_000, 120_000, 290_000])
def test_evidence_respects_max_bytes_on_a_full_hd_frame(full_hd, max_bytes):
    out = render_evidence(full_hd, CARS, max_width=1920, jpeg_quality=95, max_bytes=max_bytes)
    data = base64.b64decode(out.evidence.jpeg_b64)
    assert len(data) <= max_bytes
    assert len(out.evidence.jpeg_b64) <= MAX_EVIDENCE_B64_CHARS
    image = decode(out.evidence.jpeg_b64)
    assert (image.shape[1], image.shape[0]) == (out.evidence.width, out.evidence.height)
    assert out.jpeg_quality < 95  # this noisy frame does not fit at quality 95 under any of these limits


def test_limit_first_costs_quality_then_width(full_hd):
    roomy = render_evidence(full_hd, CARS, max_width=1280, jpeg_quality=90, max_bytes=290_000)
    tight = render_evidence(full_hd, CARS, max_width=1280, jpeg_quality=90, max_bytes=10_000)
    assert roomy.evidence.width == 1280
    assert tight.evidence.width < roomy.evidence.width and tight.jpeg_quality == 30
    assert tight.evidence.height == round(1080 * tight.evidence.width / 1920)


def test_a_limit_no_jpeg_can_meet_is_refused(full_hd):
    with pytest.raises(EvidenceTooLarge, match="max_bytes"):
        render_evidence(full_hd, CARS, max_width=1280, jpeg_quality=80, max_bytes=500)


@pytest.mark.parametrize(
    ("bbox", "expected"),
    [
        ((100.0, 200.0, 500.0, 600.0), (50.0, 100.0, 250.0, 300.0)),
        ((0.0, 0.0, 1920.0, 1080.0), (0.0, 0.0, 960.0, 540.0)),
        ((-40.0, 1000.0, 2000.0, 1200.0), (0.0, 500.0, 960.0, 540.0)),  # clipped to the image
    ],
)
def test_boxes_are_scaled_to_the_evidence_image(full_hd, bbox, expected):
    out = render_evidence(full_hd, [EvidenceObject("goods", 0.5, bbox)], max_width=960, max_bytes=290_000)
    assert out.scale == 0.5
    assert len(out.objects) == 1 and out.objects[0].cls == "goods" and out.objects[0].score == 0.5
    assert out.objects[0].bbox == pytest.approx(expected)


def test_boxes_and_labels_are_drawn_where_the_objects_are(street):
    frame = cv2.resize(street, (1916, 1136))  # 2x: evidence at 958 px puts the cars back at SOURCES.md boxes
    plain = decode(render_evidence(frame, [], max_width=958, max_bytes=290_000).evidence.jpeg_b64)
    doubled = [EvidenceObject(o.cls, o.score, (2 * o.bbox[0], 2 * o.bbox[1], 2 * o.bbox[2], 2 * o.bbox[3]))
               for o in CARS]
    out = render_evidence(frame, doubled, max_width=958, max_bytes=290_000)
    drawn = decode(out.evidence.jpeg_b64)
    for obj, car in zip(out.objects, CARS, strict=True):
        assert obj.bbox == pytest.approx(car.bbox, abs=0.01)
    changed = np.abs(drawn.astype(int) - plain.astype(int)).max(axis=2) > 60
    for obj in out.objects:
        x1, y1, x2, y2 = (round(v) for v in obj.bbox)
        left_edge, right_edge = changed[y1:y2, x1 - 1 : x1 + 2], changed[y1:y2, x2 - 1 : x2 + 2]
        assert left_edge.any(axis=1).mean() > 0.8 and right_edge.any(axis=1).mean() > 0.8
        inside = changed[y1 + 6 : y2 - 6, x1 + 6 : x2 - 6]
        assert inside.mean() < 0.05, "the object itself must stay visible"
    label_band = changed[: round(min(o.bbox[1] for o in out.objects)), :]
    assert label_band.sum() > 200, "a label sits above each box"


def test_evidence_goes_into_an_alert(street):
    out = render_evidence(street, CARS, max_width=640, max_bytes=60_000)
    alert = Alert(
        alert_id="al-1", episode_id="ep-1", state="active", edge_id="edge-1", camera_id="cam-1",
        violation="illegal_parking", started_at=datetime(2026, 1, 1, 8, 0, tzinfo=UTC),
        observed_at=datetime(2026, 1, 1, 8, 2, tzinfo=UTC),
        dwell_s=120, confidence=0.7, zone_id="kerb", track_id=3, objects=list(out.objects),
        evidence=out.evidence, model=ModelRef(name="yolox_nano", sha256="0" * 64),
    )
    assert len(alert.to_json()) < 100_000
