"""Pictures: each stage gets the frame at the size it asks for, converted once, and boxes found on a
small view land in full-frame pixels.

The street photo is scaled to 1916x1136 and turned into a yuv420p PyAV frame, as the decoder
hands it over.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import supervision as sv

from streetwatch.edge.config import ModelConfig
from streetwatch.edge.detector import Detector
from streetwatch.edge.evidence import render_evidence
from streetwatch.edge.foreground import ForegroundParams, StaticForeground
from streetwatch.edge.picture import ArrayPicture, AvPicture, downscale, scaled_size
from streetwatch.edge.types import EvidenceObject, Frame

# Cars at the kerb in kerb_parked_cars_street.jpg (958x568), from tests/edge/test_detector.py.
KERB_CARS = [(586, 322, 713, 367), (259, 321, 318, 363), (358, 314, 404, 349), (306, 314, 358, 356)]


@pytest.fixture(scope="module")
def detector(model_dir: Path) -> Detector:
    return Detector.from_config(ModelConfig(name="yolox_nano", model_dir=model_dir))


@pytest.fixture(scope="module")
def kerb_2x(street_dir: Path) -> np.ndarray:
    image = cv2.imread(str(street_dir / "kerb_parked_cars_street.jpg"))
    return cv2.resize(image, (image.shape[1] * 2, image.shape[0] * 2), interpolation=cv2.INTER_CUBIC)


def decoded(image: np.ndarray) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")


def cars_found(detections: sv.Detections, scale: float) -> int:
    cars = detections.xyxy[detections.data["class_name"] == "car"]
    reference = np.array(KERB_CARS, dtype=float) * scale
    return int((sv.box_iou_batch(reference, cars).max(axis=1) >= 0.8).sum()) if len(cars) else 0


def test_detecting_on_a_decoded_picture_finds_the_cars_in_full_frame_pixels(
    detector: Detector, kerb_2x: np.ndarray
) -> None:
    picture = AvPicture(decoded(kerb_2x))
    on_picture = detector.detect(picture)
    on_array = detector.detect(picture.bgr())
    assert cars_found(on_picture, 2.0) == len(KERB_CARS)
    assert cars_found(on_array, 2.0) == len(KERB_CARS)
    assert (on_picture.xyxy[:, [0, 2]] <= picture.width).all() and (on_picture.xyxy[:, [1, 3]] <= picture.height).all()
    # The view is the letterbox's content size and rendered once (the decode thread pre-renders it).
    view = detector.view(picture)
    assert (view.shape[1], view.shape[0]) == detector.view_size(picture.width, picture.height) == (416, 246)
    assert detector.view(picture) is view


def test_renders_are_cached_per_size_and_filter() -> None:
    image = np.random.default_rng(1).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    for picture in (ArrayPicture(image), AvPicture(decoded(image))):
        small = picture.bgr((416, 234))
        assert small.shape == (234, 416, 3) and small.dtype == np.uint8
        assert picture.bgr((416, 234)) is small
        assert picture.bgr((416, 234), fast=True) is not small  # another filter, another render
        assert picture.at_least(384) is small  # a cached render between 384 and 768 wide serves
        fresh = picture.at_least(200)  # none under 400 wide: a new one exactly 200 wide
        assert fresh.shape == (112, 200, 3)
        assert picture.bgr().shape == (1080, 1920, 3)
    assert ArrayPicture(image).bgr() is image


def test_renders_share_a_reformatter_yet_stay_each_pictures_own_pixels() -> None:
    """Renders reuse one swscale context per thread and size: every render must still equal
    PyAV's own conversion of that frame, and a later frame must not overwrite an earlier render."""
    rng = np.random.default_rng(2)
    frames = [decoded(rng.integers(0, 255, (540, 960, 3), dtype=np.uint8)) for _ in range(3)]
    renders = []
    for frame in frames:
        for size, fast, interpolation in (
            ((416, 234), True, "POINT"),
            ((640, 360), False, "AREA"),
            ((960, 540), False, "BILINEAR"),  # full size: PyAV's default, as `frame.to_ndarray()`
        ):
            got = AvPicture(frame).bgr(size, fast=fast)
            want = frame.to_ndarray(width=size[0], height=size[1], format="bgr24", interpolation=interpolation)
            assert np.array_equal(got, want)
            renders.append((got, got.copy()))
    assert all(np.array_equal(render, kept) for render, kept in renders)
    assert not np.array_equal(renders[0][0], renders[2][0])  # different frames, different pixels


def test_a_size_beyond_the_picture_is_refused_by_name() -> None:
    picture = ArrayPicture(np.zeros((100, 200, 3), np.uint8))
    with pytest.raises(ValueError, match=r"size: expected 1..200 x 1..100 px, got \(400, 200\)"):
        picture.bgr((400, 200))
    with pytest.raises(ValueError, match=r"expected a BGR uint8 image of shape \(H, W, 3\)"):
        ArrayPicture(np.zeros((100, 200), np.uint8))


def test_downscale_averages_like_an_area_filter() -> None:
    """Fine stripes one pixel wide average to grey (a point sample would keep black or white)."""
    stripes = np.zeros((1080, 1920, 3), np.uint8)
    stripes[:, ::2] = 255
    small = downscale(stripes, scaled_size(1920, 1080, 384))
    assert small.shape == (216, 384, 3)
    assert abs(float(small.mean()) - 127.5) < 2 and float(small.std()) < 3


def test_a_frame_built_from_an_array_still_gives_its_image() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    frame = Frame("cam-1", image, 0.0, __import__("datetime").datetime(2026, 11, 22), 0)  # type: ignore[arg-type]
    assert frame.image is image and (frame.width, frame.height) == (60, 40)


def test_the_background_model_on_a_small_view_reports_boxes_in_frame_pixels() -> None:
    """The same scene, an object set down at t=40 s: fed full 1080p frames, or the 416 px view the
    detector uses (frame_size given), the static region is the same box in frame pixels."""
    rng = np.random.default_rng(3)
    background = cv2.GaussianBlur(rng.integers(60, 200, (1080, 1920, 3), dtype=np.uint8), (31, 31), 0)
    full_model = StaticForeground("cam-full", ForegroundParams())
    view_model = StaticForeground("cam-view", ForegroundParams())
    for t in range(0, 120, 2):
        image = background.copy()
        if t >= 40:
            image[700:900, 600:1000] = (40, 40, 200)
        noisy = np.clip(image.astype(np.int16) + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
        picture = AvPicture(decoded(noisy))
        from_full = full_model.update(picture.bgr(), float(t))
        from_view = view_model.update(picture.bgr((416, 234), fast=True), float(t), frame_size=(1920, 1080))
    assert len(from_full) == len(from_view) == 1
    assert np.allclose(from_full[0].box, (600, 700, 1000, 900), atol=12)
    assert np.allclose(from_view[0].box, (600, 700, 1000, 900), atol=12)


def test_evidence_drawn_from_a_picture_leaves_its_cached_renders_clean(kerb_2x: np.ndarray) -> None:
    picture = AvPicture(decoded(kerb_2x))
    boxes = [EvidenceObject(cls="car", score=0.7, bbox=tuple(float(v) * 2 for v in KERB_CARS[0]))]  # type: ignore[arg-type]
    rendered = render_evidence(picture, boxes, max_width=1280, jpeg_quality=80, max_bytes=250_000)
    assert (rendered.evidence.width, rendered.evidence.height) == scaled_size(picture.width, picture.height, 1280)
    clean = AvPicture(decoded(kerb_2x)).bgr(scaled_size(picture.width, picture.height, 1280))
    assert np.array_equal(picture.bgr(scaled_size(picture.width, picture.height, 1280)), clean)
    assert rendered.objects[0].bbox == pytest.approx(tuple(v * 1280 / 1916 * 2 for v in KERB_CARS[0]), abs=1)
