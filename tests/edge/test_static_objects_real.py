"""Static objects on real footage, through `edge replay` with the real detector (issue 19).

The footage is the real street clip (assets/video/cvtrafficcam_street_parking.mp4: 75 s of a
residential street from an upper window, parked cars on both kerbs, passing traffic, a school bus,
bare trees, sun flare and auto-exposure drift), decoded at 1 fps and played forward and back again
(a ping-pong loop, tests/street_composites.py, so there is no jump at the seams) for as many minutes
as a dwell needs. Goods are real crops of the Hanoi market photo (a black bag, a grey crate) with
their own texture and a soft shadow, set on the light concrete footway and the dark paving of the
far footway; pedestrians cut from the same photo walk along the footways past and in front of
them. The walking-camera and drone clips are ping-ponged the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from clips import write_h264_clip
from street_composites import (
    DARK_GROUND,
    DARK_ZONE,
    LIGHT_GROUND,
    LIGHT_ZONE,
    Placed,
    Walk,
    car_cutout,
    composite,
    market_cutouts,
    matched_to_ground,
    ping_pong,
    street_frames,
)

from streetwatch.edge import cli

START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
ARRIVE_S = 90  # goods are set down after the background has formed (60 s warm-up)
GOODS_CLIP_S = 480  # 6.5 minutes with the goods: past the 300 s goods dwell
# The carriageway between the two rows of parked cars: traffic only drives through it.
CARRIAGEWAY = [[100, 150], [640, 150], [640, 225], [100, 225]]
STOP_LINE_AT = (330, 150)  # where the queued cars stand, one after the other (120x70 px each)


def replay(folder: Path, clip: Path, *, zones: list[dict[str, Any]], rules: dict[str, Any] | None = None,
           camera: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "edge_id": "box-real", "outbox": str(folder / "outbox.sqlite"),
        "rules": {"reminder_interval_s": 3600, "end_after_s": 60, **(rules or {})},
        "cameras": [{"id": "cam-street", "kind": "fixed", "url": "unused.mp4", "sample_fps": 1,
                     "zones": zones, **(camera or {})}],
    }
    (folder / "edge.yaml").write_text(yaml.safe_dump(config))
    out = folder / "alerts.jsonl"
    code = cli.main(["replay", str(clip), "--config", str(folder / "edge.yaml"), "--out", str(out),
                     "--start-time", START.isoformat(), "--no-progress"])
    assert code == 0
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def episodes(alerts: Iterable[dict[str, Any]], violation: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        if alert["violation"] == violation:
            found.setdefault(alert["episode_id"], []).append(alert)
    return found


def subject_box(alert: dict[str, Any]) -> tuple[float, float, float, float]:
    """The subject's box (the rules list it first) in the 640x360 frame (the evidence may be scaled)."""
    scale = alert["evidence"]["width"] / 640
    x1, y1, x2, y2 = alert["objects"][0]["bbox"]
    return (x1 / scale, y1 / scale, x2 / scale, y2 / scale)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def street(assets_dir: Path) -> list[np.ndarray]:
    return street_frames(assets_dir)


@pytest.fixture(autouse=True)
def _model(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))


def encode(path: Path, frames: Iterator[np.ndarray]) -> Path:
    return write_h264_clip(path, frames, fps=1)


# ---------------------------------------------------------------- parking on the real street

# The parked cars of the clip (640x360), found by looking at its first and last frames: they stay
# for all 75 s. Traffic (a red pickup, a white car, the school bus, a red car) only passes.
PARKED = {
    "yellow SUV, near kerb": (165, 215, 300, 300),
    "white sedan, near kerb": (305, 235, 470, 312),
    "silver car, far kerb": (85, 108, 150, 145),
    "red SUV, far kerb": (145, 85, 215, 140),
    "dark car, far kerb": (215, 80, 300, 130),
    "grey car, near kerb left": (10, 225, 80, 275),
}


def test_one_parking_episode_per_parked_car_and_none_for_traffic(tmp_path: Path, street: list[np.ndarray]) -> None:
    """The whole street is a no-parking zone (dwell 60 s) for 5 minutes of the clip looped."""
    clip = encode(tmp_path / "street.mp4", ping_pong(street, 300))
    zone = {"id": "z-street", "violations": ["illegal_parking"], "dwell_s": 60,
            "polygon_px": [[0, 0], [640, 0], [640, 360], [0, 360]]}
    found = episodes(replay(tmp_path / "run", clip, zones=[zone]), "illegal_parking")

    boxes = [subject_box(alerts[0]) for alerts in found.values()]
    print("parking episodes on the street clip:", len(found), [tuple(round(v) for v in b) for b in boxes])
    cars = [max(PARKED, key=lambda name: iou(PARKED[name], box)) for box in boxes]
    for box, car in zip(boxes, cars, strict=True):
        assert iou(PARKED[car], box) >= 0.4, f"episode at {box} is on no parked car: traffic"
    assert len(cars) == len(set(cars)), f"one episode per parked car, got {cars}"
    assert len(cars) >= 4, f"most parked cars are found, got {cars}"


def test_no_parking_episode_where_traffic_crosses_the_same_spot_every_loop(
    tmp_path: Path, street: list[np.ndarray]
) -> None:
    """A zone on the carriageway, the clip looped for 5 minutes: cars cross it again and again."""
    clip = encode(tmp_path / "street.mp4", ping_pong(street, 300))
    zone = {"id": "z-road", "violations": ["illegal_parking"], "dwell_s": 60, "polygon_px": CARRIAGEWAY}
    assert episodes(replay(tmp_path / "run", clip, zones=[zone]), "illegal_parking") == {}


def test_no_parking_episode_where_different_cars_queue_at_a_stop_line(
    tmp_path: Path, street: list[np.ndarray]
) -> None:
    """Five different real cars (cut from the clip, scaled to one size) stop at one spot in turn,
    45 s each with 5 s of empty road between: 250 s of a spot always taken, never by one car for
    the 60 s dwell. Position alone made them one parked car."""
    first = street[0]
    cars = [car_cutout(first, box, (120, 70)) for box in list(PARKED.values())[:5]]
    placed = [Placed(car, STOP_LINE_AT, 20 + 50 * i, 65 + 50 * i, shadow=False) for i, car in enumerate(cars)]
    clip = encode(tmp_path / "queue.mp4", composite(ping_pong(street, 290), placed=placed))
    zone = {"id": "z-stop-line", "violations": ["illegal_parking"], "dwell_s": 60,
            "polygon_px": [[300, 140], [480, 140], [480, 240], [300, 240]]}
    assert episodes(replay(tmp_path / "run", clip, zones=[zone]), "illegal_parking") == {}

    # The same spot held by one of those cars for as long does give one episode.
    one = [Placed(cars[1], STOP_LINE_AT, 20, 270, shadow=False)]
    clip = encode(tmp_path / "one.mp4", composite(ping_pong(street, 290), placed=one))
    assert len(episodes(replay(tmp_path / "one", clip, zones=[zone]), "illegal_parking")) == 1


# ---------------------------------------------------------------- goods on the real pavement

GOODS_ZONES = [
    {"id": "z-light-footway", "violations": ["stacked_goods"], "polygon_px": LIGHT_ZONE},
    {"id": "z-dark-footway", "violations": ["stacked_goods"], "polygon_px": DARK_ZONE},
]


def walkers(assets_dir: Path) -> list[Walk]:
    """People strolling along both footways, past and in front of the goods, every 40-50 s."""
    walker = market_cutouts(assets_dir)["walker"]
    return [Walk(walker, 0, 210, 300, ARRIVE_S + 5, 10_000, 40), Walk(walker, 340, 170, 22, ARRIVE_S, 10_000, 50)]


def goods_run(tmp_path: Path, street: list[np.ndarray], assets_dir: Path, placed: list[Placed],
              name: str) -> dict[str, list[dict[str, Any]]]:
    clip = encode(tmp_path / f"{name}.mp4", composite(ping_pong(street, GOODS_CLIP_S), placed=placed,
                                                       walks=walkers(assets_dir)))
    return episodes(replay(tmp_path / name, clip, zones=GOODS_ZONES), "stacked_goods")


def check_one_episode_at(found: dict[str, list[dict[str, Any]]], zone_id: str, item: Placed) -> None:
    mine = [alerts for alerts in found.values() if alerts[0]["zone_id"] == zone_id]
    assert len(mine) == 1, f"{zone_id}: expected one stacked_goods episode, got {len(mine)}"
    alert = mine[0][0]
    w, h = item.cutout.size
    truth = (item.xy[0], item.xy[1], item.xy[0] + w, item.xy[1] + h)
    box = subject_box(alert)
    assert iou(box, truth) >= 0.3, f"{zone_id}: episode at {box}, the goods are at {truth}"
    assert alert["dwell_s"] >= 300


@pytest.mark.parametrize("swap", [False, True], ids=["dark-bag-on-light_light-box-on-dark",
                                                      "light-box-on-light_dark-bag-on-dark"])
def test_goods_left_on_real_pavement_give_one_episode_each_through_passers_by(
    tmp_path: Path, street: list[np.ndarray], assets_dir: Path, swap: bool
) -> None:
    cut = market_cutouts(assets_dir)
    on_light, on_dark = (cut["light_box"], cut["dark_bag"]) if swap else (cut["dark_bag"], cut["light_box"])
    placed = [Placed(on_light, LIGHT_GROUND, ARRIVE_S, 10_000), Placed(on_dark, DARK_GROUND, ARRIVE_S, 10_000)]
    found = goods_run(tmp_path, street, assets_dir, placed, "goods")
    print("stacked_goods episodes:", {a[0]["zone_id"]: subject_box(a[0]) for a in found.values()})
    check_one_episode_at(found, "z-light-footway", placed[0])
    check_one_episode_at(found, "z-dark-footway", placed[1])


def test_goods_the_colour_of_the_pavement_are_found_by_their_shape(
    tmp_path: Path, street: list[np.ndarray], assets_dir: Path
) -> None:
    """The crate with its mean colour moved to the ground's under it: only its shape and pattern differ."""
    crate = market_cutouts(assets_dir)["light_box"]
    placed = [Placed(matched_to_ground(crate, street[0], LIGHT_GROUND), LIGHT_GROUND, ARRIVE_S, 10_000, shadow=False),
              Placed(matched_to_ground(crate, street[0], DARK_GROUND), DARK_GROUND, ARRIVE_S, 10_000, shadow=False)]
    found = goods_run(tmp_path, street, assets_dir, placed, "same-colour")
    check_one_episode_at(found, "z-light-footway", placed[0])
    check_one_episode_at(found, "z-dark-footway", placed[1])


def exposure_step(frames: Iterator[np.ndarray], *, at_s: int, gain: float) -> Iterator[np.ndarray]:
    """The camera's exposure drops to `gain` at `at_s` and stays (auto-exposure after a cloud)."""
    for t, frame in enumerate(frames):
        yield frame if t < at_s else np.clip(frame * gain, 0, 255).astype(np.uint8)


def test_a_shadow_or_an_exposure_change_gives_no_goods(
    tmp_path: Path, street: list[np.ndarray], assets_dir: Path
) -> None:
    """A soft shadow falls on each footway at 90 s and stays; at 200 s the exposure drops by 20 %."""
    (lx, ly), (dx, dy) = LIGHT_GROUND, DARK_GROUND
    frames = composite(ping_pong(street, GOODS_CLIP_S), walks=walkers(assets_dir),
                       shade=((lx, ly, lx + 60, ly + 30), 0.6, ARRIVE_S))
    frames = composite(frames, shade=((dx, dy, dx + 60, dy + 30), 0.6, ARRIVE_S))
    clip = encode(tmp_path / "shadow.mp4", exposure_step(frames, at_s=200, gain=0.8))
    assert episodes(replay(tmp_path / "run", clip, zones=GOODS_ZONES), "stacked_goods") == {}


# ---------------------------------------------------------------- moving views: nothing static

@pytest.mark.parametrize("name", ["tokyo_street_walk_pov.mp4", "degirum_aerial_crossing_drone.mp4"])
def test_nothing_static_from_a_moving_view(tmp_path: Path, assets_dir: Path, name: str) -> None:
    """The walking camera and the drone, ping-ponged to 6 minutes and run as if fixed (a camera on
    a pole that sways, a PTZ tour): the view never stays, so nothing in it is static."""
    frames = street_frames(assets_dir, name=f"video/{name}")
    clip = encode(tmp_path / "moving.mp4", ping_pong(frames, 360))
    width, height = frames[0].shape[1], frames[0].shape[0]
    zone = {"id": "z-all", "violations": ["stacked_goods", "illegal_parking"], "dwell_s": 120,
            "polygon_px": [[0, 0], [width, 0], [width, height], [0, height]]}
    alerts = replay(tmp_path / "run", clip, zones=[zone], camera={"sample_fps": 1})
    assert [(a["violation"], a["state"]) for a in alerts] == []
