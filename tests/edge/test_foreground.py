"""Static foreground on clips built from the real street photos.

There is no street-level video among the assets, so each test holds a real photo still for
minutes at 1 fps, with fresh Gaussian sensor noise on every frame (sigma 4 grey levels) and a
slow lighting drift (the scene darkens by 2.4 % a minute, as in late afternoon), and pastes a
crop of real goods from the Hanoi market photo onto the street where the test wants an object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from streetwatch.edge.foreground import ForegroundParams, StaticForeground, StaticRegion

NOISE_SIGMA = 4.0
DRIFT = 0.20  # fraction the light falls over DRIFT_SPAN_S
DRIFT_SPAN_S = 500.0
PASTE_AT = (620, 420)  # top-left (x, y) of the goods on the street's right-hand kerb lane


@pytest.fixture(scope="module")
def scene(street_dir: Path) -> np.ndarray:
    image = cv2.imread(str(street_dir / "kerb_parked_cars_street.jpg"))
    assert image is not None, "kerb_parked_cars_street.jpg is missing from the street assets"
    return image


@pytest.fixture(scope="module")
def goods(street_dir: Path) -> np.ndarray:
    """The vendor's basin and crates of goods on the ground, enlarged 1.5x."""
    image = cv2.imread(str(street_dir / "market_hanoi_goods_on_ground.jpg"))
    assert image is not None, "market_hanoi_goods_on_ground.jpg is missing from the street assets"
    return cv2.resize(image[262:300, 310:460], None, fx=1.5, fy=1.5, interpolation=cv2.INTER_LINEAR)


def paste_box(goods: np.ndarray) -> tuple[float, float, float, float]:
    x, y = PASTE_AT
    return (x, y, x + goods.shape[1], y + goods.shape[0])


def with_goods(scene: np.ndarray, goods: np.ndarray) -> np.ndarray:
    out = scene.copy()
    x, y = PASTE_AT
    out[y : y + goods.shape[0], x : x + goods.shape[1]] = goods
    return out


def clip(
    scene: np.ndarray,
    *,
    changed: np.ndarray | None,
    present: Callable[[int], bool],
    seconds: int,
    every_s: int = 1,
) -> Iterator[tuple[int, np.ndarray]]:
    """(t, frame) every `every_s` seconds: the still scene, or `changed` where present(t), with
    noise and drift."""
    noise = np.empty(scene.shape, np.float32)
    cv2.setRNGSeed(11)
    base_plain = scene.astype(np.float32)
    base_changed = base_plain if changed is None else changed.astype(np.float32)
    for t in range(0, seconds, every_s):
        gain = 1.0 - DRIFT * t / DRIFT_SPAN_S
        cv2.randn(noise, np.zeros(3), np.full(3, NOISE_SIGMA))  # every channel (a bare float: blue only)
        base = base_changed if present(t) else base_plain
        yield t, cv2.convertScaleAbs(cv2.scaleAdd(base, gain, noise))


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def run(frames: Iterator[tuple[int, np.ndarray]]) -> dict[int, list[StaticRegion]]:
    detector = StaticForeground("cam-test")
    return {t: detector.update(frame, float(t)) for t, frame in frames}


@pytest.mark.parametrize("every_s", [1, 3], ids=["1fps", "one-frame-per-3s"])
def test_goods_left_on_the_street_become_a_static_region_until_removed(scene, goods, every_s: int):
    """The same timing in seconds whatever the sampling rate: learning rates follow stream time."""
    arrive, leave = 42, 360  # after the 30 s warm-up; 318 s on the street: past the 300 s goods rule
    present = lambda t: arrive <= t < leave  # noqa: E731
    seen = run(clip(scene, changed=with_goods(scene, goods), present=present, seconds=381, every_s=every_s))
    truth = paste_box(goods)

    assert all(not regions for t, regions in seen.items() if t < arrive), "nothing static before arrival"
    settled = [t for t in seen if arrive + 60 <= t < leave]  # once the fast background absorbed them
    for t in settled:
        assert len(seen[t]) == 1, f"t={t}: expected the goods as one region, got {seen[t]}"
        region = seen[t][0]
        assert iou(region.box, truth) >= 0.5, f"t={t}: box {region.box} vs pasted {truth}"
        assert abs(region.static_since_t - arrive) <= 3, f"t={t}: static since {region.static_since_t}"
    first = min(t for t, regions in seen.items() if regions)
    assert 10 <= first - arrive <= 45, f"goods first reported {first - arrive} s after they arrived"
    assert all(not regions for t, regions in seen.items() if t >= leave), "the region goes with the goods"


def test_still_scene_with_noise_and_lighting_drift_has_no_static_region(scene):
    seen = run(clip(scene, changed=None, present=lambda t: False, seconds=240))
    assert [t for t, regions in seen.items() if regions] == []


@pytest.mark.parametrize(
    ("present", "case"),
    [
        (lambda t: 60 <= t < 66, "passing: goods carried through for 6 s"),
        (lambda t: t < 50, "ghost: goods in view at start-up, taken away at 50 s"),
    ],
    ids=["transient", "ghost"],
)
def test_objects_that_do_not_stay_are_not_reported(scene, goods, present: Callable[[int], bool], case: str):
    seen = run(clip(scene, changed=with_goods(scene, goods), present=present, seconds=160))
    assert [t for t, regions in seen.items() if regions] == [], case


def test_a_shadow_that_falls_and_stays_is_not_an_object(scene):
    """A truck's or a building's shadow across the right lane: the road darkens to 55 %, keeps
    its colour and texture, and stays: lighting, not goods."""
    shaded = scene.astype(np.float32)
    shaded[400:540, 520:900] *= 0.55
    seen = run(clip(scene, changed=shaded.astype(np.uint8), present=lambda t: t >= 50, seconds=160))
    assert [t for t, regions in seen.items() if regions] == []


def test_a_moved_camera_restarts_instead_of_reporting_the_whole_view(scene, street_dir: Path):
    """The view switches to another street (camera bumped, PTZ preset changed) and stays."""
    other = cv2.imread(str(street_dir / "kerb_pickup_truck_scooter.jpg"))
    assert other is not None
    other = cv2.resize(other, (scene.shape[1], scene.shape[0]))
    seen = run(clip(scene, changed=other, present=lambda t: t >= 50, seconds=160))
    assert [t for t, regions in seen.items() if regions] == []


@pytest.mark.parametrize("shape", [(480, 640), (480, 640, 4), (480, 640, 1)])
def test_a_frame_that_is_not_bgr_is_refused_naming_the_camera(shape: tuple[int, ...]):
    with pytest.raises(ValueError, match=r"camera cam-test: expected an \(H, W, 3\) BGR image"):
        StaticForeground("cam-test").update(np.zeros(shape, np.uint8), 0.0)


def test_goods_that_stay_past_absorb_after_become_background(scene, goods):
    """A lasting change of the scene (here after 60 s instead of the default 2 h) is absorbed:
    the region goes and does not come back while the goods stay."""
    detector = StaticForeground("cam-test", ForegroundParams(absorb_after_s=60.0))
    frames = clip(scene, changed=with_goods(scene, goods), present=lambda t: t >= 40, seconds=200)
    seen = {t: detector.update(frame, float(t)) for t, frame in frames}
    assert any(seen[t] for t in range(60, 100)), "reported before it is absorbed"
    assert [t for t in range(102, 200) if seen[t]] == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fast_tau_s": 600.0, "slow_tau_s": 20.0}, "expected 0 < fast < slow"),
        ({"work_width": 32}, "work_width"),
        ({"shade_range": (1.2, 1.5)}, "shade_range"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(params: dict[str, object], message: str):
    with pytest.raises(ValueError, match=message):
        ForegroundParams(**params)  # type: ignore[arg-type]
