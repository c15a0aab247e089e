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

from streetwatch.edge import foreground
from streetwatch.edge.foreground import (
    ForegroundParams,
    StaticForeground,
    StaticRegion,
    _components,
    _difference,
    _edge_strength,
    _shading,
)

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


def run(
    frames: Iterator[tuple[int, np.ndarray]], *, watch: tuple[float, float, float, float] | None = None
) -> dict[int, list[StaticRegion]]:
    detector = StaticForeground("cam-test", watch=watch)
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


def test_watching_the_goods_zones_finds_what_the_whole_view_finds_there(scene, goods):
    """A camera whose goods zone is the right-hand kerb lane: the model works on that part of the
    view (plus margins) only, and reports the same goods at the same place, arriving at the same time."""
    frames = list(clip(scene, changed=with_goods(scene, goods), present=lambda t: t >= 40, seconds=150))
    whole = run(iter(frames))
    watched = run(iter(frames), watch=(560.0, 430.0, 958.0, 500.0))  # the goods stand up out of it
    for t in range(100, 150):
        assert len(whole[t]) == 1, f"t={t}: the whole view should see the goods, got {whole[t]}"
        assert len(watched[t]) == 1, f"t={t}: expected the goods as one region, got {watched[t]}"
        assert iou(watched[t][0].box, whole[t][0].box) >= 0.9, f"t={t}: {watched[t][0].box} vs {whole[t][0].box}"
        assert iou(watched[t][0].box, paste_box(goods)) >= 0.5
        assert abs(watched[t][0].static_since_t - whole[t][0].static_since_t) <= 2


def test_goods_outside_the_watched_box_and_its_margins_are_not_reported(scene, goods):
    frames = clip(scene, changed=with_goods(scene, goods), present=lambda t: t >= 40, seconds=150)
    seen = run(frames, watch=(0.0, 0.0, 300.0, 150.0))  # with margins up to x 396, y 207: goods at 620, 420
    assert [t for t, regions in seen.items() if regions] == []


def test_a_watched_box_that_is_not_a_box_is_refused_naming_the_camera():
    with pytest.raises(ValueError, match=r"camera cam-test: watch: expected \(x1, y1, x2, y2\)"):
        StaticForeground("cam-test", watch=(100.0, 50.0, 100.0, 80.0))


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
        ({"watch_margin": -0.1}, "watch_margin"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(params: dict[str, object], message: str):
    with pytest.raises(ValueError, match=message):
        ForegroundParams(**params)  # type: ignore[arg-type]


# The update works on the few candidate pixels and inside blob boxes for speed; these compare it
# with the straightforward whole-frame computation on a real frame, bit for bit.

GHOST_AT = (150, 470)  # goods that were there when the slow background formed, now gone
BORDER_AT = (0, 301)  # goods against the left edge of the view (odd row: another label grid)


def paste(image: np.ndarray, goods: np.ndarray, at: tuple[int, int]) -> np.ndarray:
    out = image.copy()
    x, y = at
    out[y : y + goods.shape[0], x : x + goods.shape[1]] = goods
    return out


def started(background: np.ndarray) -> StaticForeground:
    detector = StaticForeground("cam-test")
    detector.update(background, 0.0)  # the first frame becomes both backgrounds
    return detector


def test_candidate_only_shadow_test_matches_the_whole_frame_one(scene, goods):
    shaded = scene.astype(np.float32)
    shaded[400:540, 120:500] *= 0.55  # a shadow beside the goods: lighting, not an object
    detector = started(scene)
    frame = detector._prepare(paste(shaded.astype(np.uint8), goods, PASTE_AT), (scene.shape[1], scene.shape[0]))
    slow = detector._slow
    assert slow is not None
    threshold = 25.0

    candidate = _difference(frame, slow) > threshold
    shade = _shading(frame, slow, tolerance=0.5 * threshold, ratio_range=detector.params.shade_range)
    expected = candidate & ~shade
    assert np.count_nonzero(candidate & shade) > 1000, "the shadow is there and is recognised as lighting"
    assert np.count_nonzero(expected) > 500, "the goods are there and are not"

    got = detector._slow_foreground(frame, threshold)
    assert np.array_equal(got, expected), f"{np.count_nonzero(got ^ expected)} pixels differ"


Found = tuple[tuple[float, ...], float, tuple[float, float], float]  # box, area, centroid, since


def regions_whole_frame(
    detector: StaticForeground, frame: np.ndarray, static: np.ndarray, t: float, edges: list[tuple[float, float]]
) -> list[Found]:
    """StaticForeground._regions the plain way: label the whole frame and compute each blob's
    outline edges (appended to `edges`) on whole-frame edge maps, healing ghosts into detector's
    slow background."""
    assert detector._slow is not None
    mask = foreground._blobs(static, texture=detector.params.texture)  # the same morphology
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    s = detector._scale
    found = []
    for label in range(1, count):
        area = float(stats[label, cv2.CC_STAT_AREA]) * s * s
        if area < detector.params.min_area_px:
            continue
        blob = labels == label
        ring = cv2.morphologyEx(blob.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8)) > 0
        now = float(_edge_strength(frame)[ring].mean())
        before = float(_edge_strength(detector._slow)[ring].mean())
        edges.append((now, before))
        if now < detector.params.ghost_edge_ratio * before:
            detector._slow[blob] = frame[blob]
            detector._since[blob] = np.nan
            continue
        x, y, w, h = (int(v) for v in stats[label, :4])
        box = (x * s, y * s, (x + w) * s, (y + h) * s)
        centroid = (float(centroids[label, 0]) * s, float(centroids[label, 1]) * s)
        found.append((box, area, centroid, float(np.nanmedian(detector._since[blob]))))
    return found


def test_regions_in_blob_boxes_match_the_whole_frame_computation(scene, goods, monkeypatch):
    """Goods that arrived (one against the frame edge) are reported, departed goods are healed as
    a ghost, and both match the whole-frame computation, down to each outline's edge strengths."""
    before = paste(scene, goods, GHOST_AT)
    now = paste(paste(scene, goods, PASTE_AT), goods, BORDER_AT)
    detector = started(before)
    frame = detector._prepare(now, (scene.shape[1], scene.shape[0]))
    assert detector._slow is not None
    static = (_difference(frame, detector._slow) > 25.0).astype(np.uint8)
    detector._since[static > 0] = np.linspace(5.0, 9.0, np.count_nonzero(static), dtype=np.float32)
    reference = started(before)
    reference._slow, reference._since = detector._slow.copy(), detector._since.copy()

    expected_edges: list[tuple[float, float]] = []
    expected = regions_whole_frame(reference, frame, static, 60.0, expected_edges)
    got_edges: list[tuple[float, float]] = []
    outline_edges = foreground._outline_edges

    def recorded(*args: np.ndarray) -> tuple[float, float]:
        got_edges.append(outline_edges(*args))
        return got_edges[-1]

    monkeypatch.setattr(foreground, "_outline_edges", recorded)
    slow_before = detector._slow.copy()
    got = detector._regions(frame, static, 60.0)

    assert len(expected) == 2, f"the two pasted goods are found: {expected}"
    assert any(box[0] == 0 for box, *_ in expected), "one region touches the frame edge"
    assert len(expected_edges) == 3, "and one ghost is healed"
    assert got_edges == expected_edges
    assert [(r.box, r.area_px, r.static_since_t) for r in got] == [(b, a, t) for b, a, _, t in expected]
    assert [r.centroid for r in got] == [pytest.approx(c, abs=1e-9) for _, _, c, _ in expected]
    assert not np.array_equal(detector._slow, slow_before), "the ghost was healed"
    assert np.array_equal(detector._slow, reference._slow), "healed where the whole-frame computation heals"
    assert np.array_equal(detector._since, reference._since, equal_nan=True)


def test_labelling_the_box_around_a_mask_numbers_components_as_on_the_whole_frame():
    """Blobs of random sizes at random (odd and even) places: same labels, stats and centroids."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        mask = np.zeros((216, 384), np.uint8)
        for _ in range(rng.integers(0, 12)):
            x, y = rng.integers(0, 384), rng.integers(0, 216)
            mask[y : y + rng.integers(1, 20), x : x + rng.integers(1, 30)] = 1
        mask &= rng.random(mask.shape) < 0.9  # ragged outlines, some blobs split
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        got_count, got_labels, got_stats, got_centroids = _components(mask)
        assert got_count == count
        assert np.array_equal(got_labels, labels)
        assert np.array_equal(got_stats[1:], stats[1:])
        assert np.allclose(got_centroids[1:], centroids[1:], rtol=0, atol=1e-9)


def test_arrival_times_and_static_mask_kept_on_foreground_pixels_match_the_whole_frame_update():
    """since and the static mask, updated only at slow-foreground pixels, against the plain
    whole-frame expressions, over frames where blobs come, stay, and go."""
    rng = np.random.default_rng(3)
    shape = (216, 384)
    detector = StaticForeground("cam-test")
    detector._start(np.zeros((*shape, 3), np.float32), 0.0)
    since = np.full(shape, np.nan, np.float32)
    blobs = [(int(rng.integers(0, 360)), int(rng.integers(0, 200)), int(rng.integers(2, 12))) for _ in range(30)]
    for t in range(1, 40):
        fg_slow = np.zeros(shape, bool)
        for x, y, r in blobs[t % 7 : t % 7 + 12]:  # a sliding subset: blobs arrive and leave
            fg_slow[y : y + r, x : x + 2 * r] = True
        fg_fast = rng.random(shape) < 0.3
        since[fg_slow & np.isnan(since)] = t
        since[~fg_slow] = np.nan
        aged = (t - np.nan_to_num(since, nan=t)) >= detector.params.min_static_s

        at = np.flatnonzero(fg_slow)
        detector._mark_since(at, float(t))
        detector._fg_slow = fg_slow
        assert np.array_equal(detector._since, since, equal_nan=True), f"t={t}"
        static = detector._static(at, fg_fast, float(t))
        assert np.array_equal(static, (fg_slow & ~fg_fast & aged).astype(np.uint8)), f"t={t}"
    assert np.isfinite(since).any() and aged.any(), "some pixels stayed long enough to be static"
