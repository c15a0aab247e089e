"""Skipping the detector where nothing changed (edge/change_gate.py).

Unit: the change test on real decoded street pictures. Replays: the same real clips run with every
frame detected (max_skip_s 0, the default) and with skipping (max_skip_s 10), through the real detector, give the
same episodes, while a real share of the frames is skipped.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import supervision as sv
from clips import Paste, still_scene, write_h264_clip

from streetwatch.edge.change_gate import ChangeGate, Detected, same_objects, zones_box
from streetwatch.edge.config import EdgeConfig
from streetwatch.edge.detector import Detector
from streetwatch.edge.replay import replay_alerts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_alerting import traffic_config  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def dets(boxes: list[tuple[float, float, float, float]], names: list[str]) -> sv.Detections:
    return sv.Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), confidence=np.full(len(boxes), 0.8),
                         class_id=np.zeros(len(boxes), int), data={"class_name": np.array(names, dtype=str)})


@pytest.fixture(scope="module")
def kerb(street_dir: Path) -> np.ndarray:
    return cv2.resize(cv2.imread(str(street_dir / "kerb_parked_cars_street.jpg")), (416, 247))


def test_unchanged_zone_is_skipped_a_change_inside_it_is_not(kerb: np.ndarray) -> None:
    gate = ChangeGate(max_skip_s=10, change_threshold=0.002, watch=(0, 150, 208, 247))
    size = (416, 247)
    noise = np.random.default_rng(1).normal(0, 3, kerb.shape)
    found = dets([(10, 160, 60, 200)], ["car"])
    assert gate.decide(kerb, t=0, frame_size=size).detect  # nothing to compare with yet
    gate.detected(kerb, t=0, frame_size=size, detections=found)
    assert gate.decide(kerb, t=1, frame_size=size).detect  # one detection: not yet known stable
    gate.detected(kerb, t=1, frame_size=size, detections=found)
    noisy = np.clip(kerb + noise, 0, 255).astype(np.uint8)
    assert not gate.decide(noisy, t=2, frame_size=size).detect  # sensor noise is no change
    assert gate.carried() is found
    outside = kerb.copy()
    outside[0:100, 250:400] = 255  # a bright patch outside the watched box
    assert not gate.decide(outside, t=3, frame_size=size).detect
    inside = kerb.copy()
    inside[180:200, 100:120] = 255  # 400 px changed inside a 208x97 box: ~2 %
    decision = gate.decide(inside, t=3, frame_size=size)
    assert decision.detect and decision.changed_share > 0.002
    assert not gate.decide(kerb, t=10.9, frame_size=size).detect
    assert gate.decide(kerb, t=11, frame_size=size).detect  # max_skip_s since the last detection: detect anyway


def test_a_slow_change_adds_up_against_the_last_detected_frame(kerb: np.ndarray) -> None:
    gate = ChangeGate(max_skip_s=600, change_threshold=0.002, watch=None)
    found = dets([], [])
    for t in (0.0, 1.0):
        gate.detected(kerb, t=t, frame_size=(416, 247), detections=found)
    decisions = []
    for step in range(1, 40):
        frame = kerb.copy()
        frame[100:100 + step, 100:140] = 0  # one more row darkened each frame: each step alone is tiny
        decisions.append(gate.decide(frame, t=1.0 + step, frame_size=(416, 247)).detect)
    assert not decisions[0] and any(decisions)


def test_detections_that_change_keep_the_detector_asked() -> None:
    car = dets([(0, 0, 10, 10)], ["car"])
    assert same_objects(car, dets([(0.5, 0, 10.5, 10)], ["car"]))
    assert not same_objects(car, dets([], []))
    assert not same_objects(car, dets([(0, 0, 10, 10)], ["truck"]))
    assert not same_objects(car, dets([(20, 20, 30, 30)], ["car"]))
    gate = ChangeGate(max_skip_s=10, change_threshold=0.002, watch=None)
    view = np.zeros((50, 50, 3), np.uint8)
    gate.detected(view, t=0, frame_size=(50, 50), detections=car)
    gate.detected(view, t=1, frame_size=(50, 50), detections=dets([], []))  # the car flickered away
    assert gate.decide(view, t=2, frame_size=(50, 50)).detect


def test_zones_box_spans_every_zone() -> None:
    assert zones_box([[(10, 20), (30, 20), (30, 40)], [(5, 50), (8, 60), (2, 55)]]) == (2, 20, 30, 60)
    assert zones_box([]) is None


# ---------------------------------------------------------------- same episodes both ways


def episodes(alerts: list[Any]) -> list[tuple[str, str, str, str, bool]]:
    """Each episode: violation, zone, subject, when its dwell began, whether it ended."""
    by_id: dict[str, list[Any]] = defaultdict(list)
    for alert in alerts:
        by_id[alert.episode_id].append(alert)
    return sorted((a[0].violation, a[0].zone_id, str(a[0].track_id), a[0].started_at.isoformat(),
                   any(x.state == "ended" for x in a)) for a in by_id.values())


def first_alerts(alerts: list[Any]) -> dict[tuple[str, str, str, str], list[float]]:
    firsts: dict[str, Any] = {}
    for alert in alerts:
        firsts.setdefault(alert.episode_id, alert)
    out: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for a in firsts.values():
        out[(a.violation, a.zone_id, str(a.track_id), a.started_at.isoformat())].append(a.observed_at.timestamp())
    return out


def both_ways(video: Path, config: dict[str, Any], detector: Detector) -> tuple[list[Any], list[Any], int, int]:
    runs = []
    for skip in (0, 10):
        edge = EdgeConfig.model_validate({**config, "cameras": [dict(c, max_skip_s=skip) for c in config["cameras"]]})
        skipped: list[bool] = []

        def seen(result: Detected, into: list[bool] = skipped) -> None:
            into.append(result.skipped)

        alerts = list(replay_alerts(video, config=edge, camera=edge.cameras[0], start_time=START,
                                    detector=detector, on_detected=seen))
        runs.append((alerts, skipped))
    (every, none_skipped), (skipping, skipped) = runs
    assert not any(none_skipped)
    return every, skipping, sum(skipped), len(skipped)


@pytest.fixture(scope="module")
def detector(model_dir: Path) -> Detector:
    from streetwatch.edge.config import ModelConfig

    return Detector.from_config(ModelConfig(name="yolox_nano", model_dir=model_dir))


def check_same(every: list[Any], skipping: list[Any], skipped: int, frames: int, *, min_share: float,
               max_shift_s: float) -> None:
    assert every, "the clip must raise episodes for the comparison to mean anything"
    assert skipped >= min_share * frames, f"only {skipped} of {frames} frames skipped"
    assert episodes(every) == episodes(skipping)
    a, b = first_alerts(every), first_alerts(skipping)
    shifts = [abs(x - y) for key in a for x, y in zip(sorted(a[key]), sorted(b[key]), strict=True)]
    print(f"{frames} frames, {skipped} skipped; {len(episodes(every))} episodes, the same; "
          f"first alerts shifted by at most {max(shifts):.2f} s")
    assert max(shifts) <= max_shift_s


def test_traffic_cam_same_episodes_with_skipping(assets_dir: Path, detector: Detector, model_dir: Path) -> None:
    """The real traffic-cam clip: cars parked along both kerbs, traffic passing through the zones."""
    config = {**traffic_config(), "model": {"name": "yolox_nano", "model_dir": str(model_dir)}}
    every, skipping, skipped, frames = both_ways(assets_dir / "video" / "cvtrafficcam_street_parking.mp4", config,
                                                 detector)
    # An episode restarted within end_after_s (2 s here) may see its first alert a few frames later:
    # the carried frames repeat a score, so the track's median score crosses the bar a little later.
    check_same(every, skipping, skipped, frames, min_share=0.25, max_shift_s=2.5)


def test_kerb_street_same_episodes_with_skipping(street_dir: Path, detector: Detector, model_dir: Path,
                                                 tmp_path: Path) -> None:
    """The kerb street photo held for 4 minutes with noise; a wall crop hides the parked car for 20 s,
    goods are set down on the pavement at 60 s."""
    image = cv2.imread(str(street_dir / "kerb_parked_cars_street.jpg"))
    market = cv2.imread(str(street_dir / "market_hanoi_goods_on_ground.jpg"))
    occluder = image[150:250, 560:760].copy()
    goods = cv2.resize(market[255:300, 310:400], (180, 90))
    frames = still_scene(image, seconds=240, fps=1, noise_sigma=2.0, seed=1,
                         pastes=[Paste(occluder, (560, 290), 150.0, 170.0), Paste(goods, (150, 470), 60.0, 1e9)])
    clip = write_h264_clip(tmp_path / "kerb.mp4", frames, fps=1)
    config = {"edge_id": "box-test", "model": {"name": "yolox_nano", "model_dir": str(model_dir)},
              "rules": {"reminder_interval_s": 60, "end_after_s": 10},
              "cameras": [{"id": "cam-kerb", "url": "unused.mp4", "sample_fps": 1, "zones": [
                  {"id": "kerb", "violations": ["illegal_parking"], "dwell_s": 30,
                   "polygon_px": [[620, 340], [740, 340], [740, 385], [620, 385]]},
                  {"id": "pavement", "violations": ["stacked_goods"], "dwell_s": 60,
                   "polygon_px": [[0, 450], [400, 450], [400, 568], [0, 568]]}]}]}
    every, skipping, skipped, count = both_ways(clip, config, detector)
    check_same(every, skipping, skipped, count, min_share=0.5, max_shift_s=0.0)


def test_bench_footage_same_episodes_with_skipping(street_dir: Path, detector: Detector, model_dir: Path,
                                                   tmp_path: Path) -> None:
    """scripts/bench_edge.py's scene (a cyclist and a car crossing every 30 s, goods set down), 2 min
    of its 640x360 sub-stream."""
    sys.path.insert(0, str(REPO / "scripts"))
    import bench_edge

    base = bench_edge.encode_base(street_dir, tmp_path / "base.mp4", bench_edge.CYCLE_S, size=(640, 360))
    clip = bench_edge.loop_clip(base, tmp_path / "long.mp4", 120)
    # The sub-stream: detected at 640x360, zones and calibration in the main stream's 1920x1080 pixels.
    config = bench_edge.edge_config(model_dir, tmp_path / "main-unused.mp4", detect=clip).model_dump(mode="json")  # type: ignore[attr-defined]
    every, skipping, skipped, count = both_ways(clip, config, detector)
    check_same(every, skipping, skipped, count, min_share=0.2, max_shift_s=0.0)
