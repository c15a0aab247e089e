"""The main stream kept for evidence (edge/main_stream.py) and the sub-stream's pixel mapping
(edge/substream.py), on real H.264 files of the kerb street at two resolutions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import Paste, still_scene, write_h264_clip

from streetwatch.edge.config import ConfigError, load_edge_config
from streetwatch.edge.main_stream import FullResolution, MainStream, MainStreamOptions
from streetwatch.edge.picture import ArrayPicture
from streetwatch.edge.substream import ScenePicture, map_box, pictures_agree
from streetwatch.edge.types import EvidenceObject, Frame, ViolationEvent

MAIN, SUB = (1280, 720), (640, 360)


@pytest.fixture(scope="module")
def kerb(street_dir: Path) -> np.ndarray:
    return cv2.imread(str(street_dir / "kerb_parked_cars_street.jpg"))


@pytest.fixture(scope="module")
def main_clip(kerb: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s at 5 fps, GOP 2 s; a white block appears at 6.0 s, so pictures before and after differ."""
    block = np.full((120, 200, 3), 255, np.uint8)
    frames = still_scene(kerb, seconds=12, fps=5, size=MAIN, pastes=[Paste(block, (100, 100), 6.0, 100.0)])
    return write_h264_clip(tmp_path_factory.mktemp("main") / "main.mp4", frames, fps=5, gop=10)


def test_a_file_main_stream_is_demuxed_paced_and_decoded_at_the_moment_asked(main_clip: Path) -> None:
    main = MainStream("cam", str(main_clip)).start()
    try:
        before = main.picture_at(5.8)  # waits (bounded) for the demuxer to get there
        after = main.picture_at(6.6)
        assert before is not None and after is not None
        assert (before.width, before.height) == MAIN
        assert before.bgr()[150, 200].mean() < 250 < after.bgr()[150, 200].mean()  # the block is there at 6.6
        assert main.decodes == 2 and main.packets_demuxed < 60  # paced: not the whole 12 s file
        assert main.picture_at(-1.0) is None  # before its first key frame: nothing to decode
    finally:
        main.stop()


def test_evidence_maps_boxes_to_the_main_picture_and_falls_back_when_down(
    main_clip: Path, kerb: np.ndarray, tmp_path: Path
) -> None:
    sub = ScenePicture(ArrayPicture(cv2.resize(kerb, SUB)), (1920, 1080))  # zones in 1920x1080 pixels
    frame = Frame("cam", sub, 4.0, datetime(2026, 11, 21, 9, tzinfo=UTC), 4)
    car = EvidenceObject(cls="car", score=0.9, bbox=(1176.0, 612.0, 1428.0, 697.0))
    event = ViolationEvent("start", "illegal_parking", "kerb", "ep-1", 1, 0.0, 4.0, 0.9, (1300.0, 697.0),
                           objects=(car,))
    main = MainStream("cam", str(main_clip)).start()
    try:
        chooser = FullResolution("cam", main)
        chosen, mapped = chooser.choose(frame, event)
        assert (chosen.width, chosen.height) == MAIN
        assert mapped.objects[0].bbox == pytest.approx((784.0, 408.0, 952.0, 464.67), abs=0.01)
    finally:
        main.stop()
    dead = FullResolution("cam", MainStream("cam", str(tmp_path / "missing.mp4")).start())
    chosen, mapped = dead.choose(frame, event)
    assert (chosen.width, chosen.height) == SUB  # the sub-stream's own picture
    assert mapped.objects[0].bbox == pytest.approx((392.0, 204.0, 476.0, 232.33), abs=0.01)
    assert sum(dead.fallbacks.values()) == 1
    dead.main.stop()


def test_first_seen_is_the_main_streams_key_frame_of_the_dwell_start_at_full_resolution(
    main_clip: Path, kerb: np.ndarray
) -> None:
    """Key frames every 2 s, one kept every 4 s: the dwell began at 2.3 s, before the block appeared
    at 6.0 s; the alert is at 8.0 s. `first seen` is the key frame at 0 s or 4 s (the nearest kept),
    decoded alone, at the main stream's size and without the block; its time is the key frame's."""
    sub = ScenePicture(ArrayPicture(cv2.resize(kerb, SUB)), (1920, 1080))
    at = datetime(2026, 11, 21, 9, tzinfo=UTC)
    frame = Frame("cam", sub, 8.0, at, 40)
    event = ViolationEvent("start", "illegal_parking", "kerb", "ep-1", 1, 2.3, 8.0, 0.9, (1300.0, 697.0))
    main = MainStream("cam", str(main_clip), options=MainStreamOptions(keyframe_every_s=4.0)).start()
    try:
        chooser = FullResolution("cam", main)
        chooser.choose(frame, event)  # the alert's own picture: main and sub show one view
        found = chooser.first_seen(frame, event)
        assert found is not None
        picture, when = found
        assert (picture.width, picture.height) == MAIN
        assert picture.bgr()[150, 200].mean() < 250  # before the block: the dwell's start, not the alert's moment
        assert when == at - timedelta(seconds=4.0)
        assert main.keyframes_held[0] == 3  # 0, 4 and 8 s (demuxed for the alert); 2, 6 and 10 s came too soon
        far = ViolationEvent("start", "illegal_parking", "kerb", "ep-2", 1, -60.0, 8.0, 0.9, (1300.0, 697.0))
        assert chooser.first_seen(frame, far) is None  # nothing kept near a minute before the clip began
    finally:
        main.stop()


def test_a_cropped_sub_stream_is_told_apart_from_the_same_view(kerb: np.ndarray) -> None:
    main = ArrayPicture(cv2.resize(kerb, MAIN))
    same = ArrayPicture(cv2.resize(kerb, SUB))
    cropped = ArrayPicture(cv2.resize(kerb[100:400, 300:800], SUB))
    assert pictures_agree(same, main) > 0.9
    assert pictures_agree(cropped, main) < 0.6


def test_boxes_map_axis_by_axis_and_clip() -> None:
    assert map_box((64, 36, 128, 72), (640, 360), (1920, 1080)) == (192, 108, 384, 216)
    assert map_box((0, 0, 704, 576), (704, 576), (1920, 1080)) == pytest.approx((0, 0, 1920, 1080))  # D1 beside 16:9
    assert map_box((600, 300, 700, 400), (640, 360), (640, 360)) == (600, 300, 640, 360)


def test_detect_url_needs_pixel_size(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("edge_id: box\ncameras:\n  - id: cam\n    url: rtsp://h/main\n    detect_url: rtsp://h/sub\n")
    with pytest.raises(ConfigError) as error:
        load_edge_config(path)
    assert "detect_url needs pixel_size" in str(error.value) and "edge.yaml" in str(error.value)
