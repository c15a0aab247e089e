"""Violation rules end to end over long stream times: detections -> CameraTracker -> ViolationEngine.

Scenes are synthetic sv.Detections sequences at 1 fps on a 1280x720 street view (there is no
street-level video in the assets): a parked car ~200x100 px, people ~50x150 px. Missed frames,
occlusions and box jitter are drawn from a seeded generator, so each run is the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import supervision as sv

from streetwatch.edge.config import CameraConfig, RulesConfig, ZoneConfig
from streetwatch.edge.rules import STATIC_REGION_CONFIDENCE, ViolationEngine
from streetwatch.edge.tracking import CameraTracker, TrackerSettings, TrackState, new_bytetrack
from streetwatch.edge.types import ViolationEvent

Box = tuple[float, float, float, float]
Obj = tuple[Box, float, str]  # box, score, class name
Frame = tuple[float, list[Obj], list[Box]]  # t, detections, static regions

ROLE_OF = {
    "person": "person",
    "car": "vehicle",
    "truck": "vehicle",
    "umbrella": "vending_prop",
    "chair": "vending_prop",
    "goods": "goods",
}
NOON_SHANGHAI = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai (UTC+8)

# Zones (pixels): a no-parking strip on the left, a no-vending lane on the right, a pavement below.
PARKING = ZoneConfig(
    id="z-park", violations=["illegal_parking"], polygon_px=[(0, 250), (640, 250), (640, 450), (0, 450)]
)
MARKET = ZoneConfig(
    id="z-market",
    violations=["street_vending"],
    polygon_px=[(700, 250), (1280, 250), (1280, 450), (700, 450)],
)
PAVEMENT = ZoneConfig(
    id="z-pavement", violations=["stacked_goods"], polygon_px=[(0, 500), (1280, 500), (1280, 720), (0, 720)]
)
CAR: Box = (100.0, 300.0, 300.0, 400.0)  # ground point (200, 400): inside z-park
PERSON: Box = (900.0, 250.0, 950.0, 400.0)  # ground point (925, 400): inside z-market
UMBRELLA: Box = (860.0, 120.0, 1000.0, 240.0)  # above the person: its bottom centre is outside the zone
GOODS: Box = (400.0, 560.0, 480.0, 640.0)  # 6400 px2 on the pavement
VENDOR: Obj = (PERSON, 0.7, "person")
STALL_UMBRELLA: Obj = (UMBRELLA, 0.5, "umbrella")


def _shifted(box: Box, dx: float) -> Box:
    return (box[0] + dx, box[1], box[2] + dx, box[3])


def camera(*zones: ZoneConfig, windows: Sequence[str] = ()) -> CameraConfig:
    zones = zones or (PARKING, MARKET, PAVEMENT)
    zones = tuple(z.model_copy(update={"allowed_windows": list(windows)}) for z in zones)
    return CameraConfig(id="cam-1", url="rtsp://127.0.0.1/x", timezone="Asia/Shanghai", zones=list(zones))


def detections(objects: Sequence[Obj]) -> sv.Detections:
    if not objects:
        return sv.Detections.empty()
    boxes, scores, names = zip(*objects, strict=True)
    return sv.Detections(
        xyxy=np.array(boxes, dtype=np.float32),
        confidence=np.array(scores, dtype=np.float32),
        class_id=np.zeros(len(boxes), dtype=int),
        data={"class_name": np.array(names), "role": np.array([ROLE_OF[n] for n in names])},
    )


def run(
    frames: Iterable[Frame],
    *,
    cam: CameraConfig | None = None,
    rules: RulesConfig | None = None,
    start: datetime = NOON_SHANGHAI,
) -> list[ViolationEvent]:
    """Feed the frames through a real tracker and the engine, as the pipeline does; all events."""
    cam = cam or camera()
    tracker, engine = CameraTracker(cam.id), ViolationEngine(cam, rules or RulesConfig())
    events: list[ViolationEvent] = []
    for t, objects, regions in frames:
        tracks = tracker.update(t=t, detections=detections(objects))
        captured_at = start + timedelta(seconds=t)
        events += engine.update(t=t, captured_at=captured_at, tracks=tracks, static_regions=regions)
    return events


def scene(
    duration: int, objects: Callable[[int], list[Obj]], regions: Callable[[int], list[Box]] | None = None
):  # type: ignore[no-untyped-def]
    return [(float(t), objects(t), regions(t) if regions else []) for t in range(duration + 1)]


def kinds(events: Sequence[ViolationEvent]) -> list[tuple[str, str]]:
    return [(e.kind, e.violation) for e in events]


# --- illegal parking ---------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "expected"), [(119, []), (121, [("start", "illegal_parking")])])
def test_parking_starts_only_after_the_dwell(seconds: int, expected: list[tuple[str, str]]) -> None:
    events = run(scene(seconds, lambda t: [(CAR, 0.6, "car")]))
    assert kinds(events) == expected
    for event in events:
        assert event.zone_id == "z-park" and event.anchor == (200.0, 400.0)
        assert event.dwell_s >= 120 and event.observed_t == 121.0
        assert [(o.cls, o.bbox) for o in event.objects] == [("car", CAR)]
        assert event.confidence == pytest.approx(0.6)


def test_parked_car_for_two_hours_is_one_episode_despite_misses_occlusion_jitter_and_id_changes() -> None:
    """2 h parked: 10 % missed frames, a 20 s full occlusion (ByteTrack drops its id), a few px of
    box jitter as the light changes; then it drives away. One start, reminders, one end."""
    rng = np.random.default_rng(42)
    leave = 7200
    missed = rng.random(leave + 200) < 0.10

    def objects(t: int) -> list[Obj]:
        if t >= leave or missed[t] or 3000 <= t < 3020:
            return []
        jitter = tuple(float(v) for v in np.array(CAR) + rng.normal(0, 2.0, 4))
        return [(jitter, float(rng.uniform(0.4, 0.75)), "car" if rng.random() < 0.8 else "truck")]  # type: ignore[list-item]

    frames = scene(leave + 120, objects)
    events = run(frames)
    rules = RulesConfig()
    bare = new_bytetrack(TrackerSettings())  # what CameraTracker runs per role, without stable ids
    bare_ids = {
        int(i) for t, o, _ in frames for i in np.asarray(bare.update(detections(o), timestamp=t).tracker_id)
    }
    assert len(bare_ids - {-1}) >= 2, "ByteTrack alone should lose the car's id (else this proves little)"

    assert len({e.episode_id for e in events}) == 1
    counts = Counter(e.kind for e in events)
    assert counts["start"] == 1 and counts["end"] == 1
    alerts = [e.observed_t for e in events if e.kind != "end"]
    gaps = np.diff(alerts)
    assert all(rules.reminder_interval_s <= g <= rules.reminder_interval_s + 5 for g in gaps), gaps
    last_present = max(t for t, objs, _ in frames if objs)
    assert alerts[-1] + rules.reminder_interval_s > last_present  # no reminder was skipped
    assert counts["reminder"] == len(gaps) >= 7
    end = events[-1]
    assert (
        end.kind == "end"
        and last_present + rules.end_after_s <= end.observed_t <= last_present + rules.end_after_s + 1
    )
    assert len({e.started_t for e in events}) == 1 and events[0].started_t <= 2.0


@pytest.mark.parametrize(
    "objects",
    [
        # driving up and down inside the zone for 5 minutes at 40 px per second
        pytest.param(lambda t: [(_shifted(CAR, abs(t * 40 % 800 - 400) - 100), 0.6, "car")], id="moving"),
        # parked for 5 minutes, but its ground point (200, 480) is below the zone
        pytest.param(lambda t: [((100.0, 380.0, 300.0, 480.0), 0.6, "car")], id="outside-zone"),
        # a parked person is not a vehicle
        pytest.param(lambda t: [((150.0, 250.0, 200.0, 400.0), 0.8, "person")], id="person-in-parking-zone"),
    ],
)  # fmt: skip
def test_no_parking_alert(objects: Callable[[int], list[Obj]]) -> None:
    assert run(scene(300, objects)) == []


@pytest.mark.parametrize(
    ("score_of", "expected"),
    [
        pytest.param(lambda t: 0.95 if t == 150 else 0.1, 0, id="one-0.95-among-0.1"),
        pytest.param(lambda t: 0.9 if t % 10 < 3 else 0.2, 0, id="30%-high-70%-low"),
        pytest.param(lambda t: 0.2 if t % 10 < 3 else 0.6, 1, id="70%-above-threshold"),
        pytest.param(lambda t: 0.42, 1, id="steady-0.42"),
        pytest.param(lambda t: 0.6 if t < 5 else 0.36, 1, id="then-0.36-just-above-median-threshold"),
        pytest.param(lambda t: 0.9 if t < 5 else 0.3, 0, id="strong-start-then-weak"),
    ],
)
def test_parking_is_confirmed_on_the_median_score(score_of: Callable[[int], float], expected: int) -> None:
    events = run(scene(400, lambda t: [(CAR, score_of(t), "car")]))
    assert [e.kind for e in events].count("start") == expected


@pytest.mark.parametrize(("median", "expected"), [(0.34, 0), (0.35, 1), (0.8, 1)])
def test_min_median_score_boundary(median: float, expected: int) -> None:
    """The rule alone, on a hand-made track: min_median_score (0.35) is inclusive."""
    engine = ViolationEngine(camera(), RulesConfig())
    track = TrackState(
        stable_id=7, role="vehicle", class_name="car", box=CAR, score=0.99, median_score=median,
        first_seen_t=0.0, last_seen_t=130.0, still_since_t=0.0,
    )  # fmt: skip
    events = engine.update(t=130.0, captured_at=NOON_SHANGHAI, tracks=[track], static_regions=[])
    assert len(events) == expected


@pytest.mark.parametrize(
    ("absent_s", "ends"),
    [(30, False), (58, False), (61, True), (300, True)],
)
def test_episode_ends_only_after_end_after_s_of_absence(absent_s: int, ends: bool) -> None:
    back = 200 + absent_s
    frames = scene(back + 30, lambda t: [(CAR, 0.6, "car")] if t < 200 or t >= back else [])
    events = run(frames)
    if ends:
        assert kinds(events)[:2] == [("start", "illegal_parking"), ("end", "illegal_parking")]
        assert events[1].observed_t == 199 + 60  # last seen at 199, end_after_s = 60
        assert events[1].episode_id == events[0].episode_id and events[1].state == "ended"
    else:
        assert kinds(events) == [("start", "illegal_parking")]


def test_new_track_id_at_the_same_place_continues_the_episode() -> None:
    """Safety net behind the tracker: if the car comes back under another id, it is the same episode."""
    engine = ViolationEngine(camera(), RulesConfig(reminder_interval_s=60))
    events = []
    for t in range(0, 400):
        sid = 1 if t < 200 else 2
        still = 0.0 if t < 200 else 200.0
        track = TrackState(sid, "vehicle", "car", CAR, 0.6, 0.6, still, float(t), still)
        events += engine.update(t=float(t), captured_at=NOON_SHANGHAI, tracks=[track], static_regions=[])
    assert len({e.episode_id for e in events}) == 1
    assert [e.kind for e in events] == ["start"] + ["reminder"] * 4
    assert {e.track_id for e in events} == {1}


# --- street vending ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "objects", "expected"),
    [
        pytest.param(181, [VENDOR, STALL_UMBRELLA], 1, id="person+umbrella-181s"),
        pytest.param(179, [VENDOR, STALL_UMBRELLA], 0, id="person+umbrella-179s"),
        pytest.param(400, [VENDOR], 0, id="person-alone"),
        pytest.param(400, [(UMBRELLA, 0.6, "umbrella")], 0, id="umbrella-alone"),
        pytest.param(400, [VENDOR, ((100.0, 120.0, 240.0, 240.0), 0.5, "umbrella")], 0, id="umbrella-far"),
        pytest.param(400, [VENDOR, ((1100.0, 380.0, 1180.0, 440.0), 0.5, "chair")], 1, id="chair-in-zone"),
    ],
)  # fmt: skip
def test_street_vending(seconds: int, objects: list[Obj], expected: int) -> None:
    events = run(scene(seconds, lambda t: objects))
    assert kinds(events) == [("start", "street_vending")] * expected
    for event in events:
        assert event.zone_id == "z-market" and event.anchor == (925.0, 400.0)
        assert sorted((o.cls, o.bbox) for o in event.objects) == sorted((o[2], o[0]) for o in objects)
        assert event.dwell_s >= 180


def test_the_vendor_and_the_props_are_the_subject_and_everyone_else_is_context() -> None:
    """The vendor stays under the umbrella; a shopper stands in the zone 300 px away from it, and a
    passer-by walks along the pavement below: only the vendor and the umbrella are highlighted."""
    shopper = (1200.0, 250.0, 1250.0, 400.0)

    def objects(t: int) -> list[Obj]:
        walker = (float(10 * (t % 120)), 480.0, float(10 * (t % 120) + 50), 630.0)
        return [VENDOR, STALL_UMBRELLA, (shopper, 0.7, "person"), (walker, 0.7, "person")]

    events = run(scene(200, objects))
    assert kinds(events) == [("start", "street_vending")]
    by_box = {o.bbox: o.emphasis for o in events[0].objects}
    assert by_box[PERSON] == "subject" and by_box[UMBRELLA] == "subject"
    assert by_box[shopper] == "context"
    assert sorted(by_box.values()).count("subject") == 2 and len(by_box) == 4


@pytest.mark.parametrize("people", [3, 8], ids=["three-at-a-crossing", "eight-in-a-bus-stop-queue"])
def test_people_merely_standing_are_never_vending(people: int) -> None:
    """People standing still in a no-vending zone for 10 minutes, with no prop: no vending."""
    queue = [((720.0 + 60 * i, 250.0, 770.0 + 60 * i, 400.0), 0.7, "person") for i in range(people)]
    assert run(scene(600, lambda t: queue)) == []


def test_several_vendors_in_a_zone_are_one_episode() -> None:
    second = (1100.0, 260.0, 1150.0, 410.0)
    objects = [(PERSON, 0.7, "person"), (second, 0.6, "person"), (UMBRELLA, 0.5, "umbrella")]
    events = run(scene(400, lambda t: objects if t >= 0 else []))
    assert kinds(events) == [("start", "street_vending")]
    assert sorted(o.cls for o in events[0].objects) == ["person", "person", "umbrella"]


def test_people_walking_past_a_stall_do_not_make_vending() -> None:
    def objects(t: int) -> list[Obj]:
        x = 700 + (t * 45) % 560  # a stream of passers-by crossing the lane
        return [((x, 250.0, x + 50.0, 400.0), 0.7, "person"), (UMBRELLA, 0.5, "umbrella")]

    assert run(scene(400, objects)) == []


# --- allowed time windows ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local_start", "windows", "expected"),
    [
        ("19:00", ["18:00-22:00"], 0),
        ("23:00", ["18:00-22:00"], 1),
        ("01:00", ["22:00-02:00"], 0),
        ("03:00", ["22:00-02:00"], 1),
        ("19:00", [], 1),
    ],
)
def test_allowed_window_suppresses_a_start(local_start: str, windows: list[str], expected: int) -> None:
    hour, minute = (int(v) for v in local_start.split(":"))
    start = datetime(2026, 6, 1, hour, minute, tzinfo=UTC) - timedelta(hours=8)  # Asia/Shanghai local
    objects = [(PERSON, 0.7, "person"), (UMBRELLA, 0.5, "umbrella")]
    events = run(scene(400, lambda t: objects), cam=camera(MARKET, windows=windows), start=start)
    assert kinds(events) == [("start", "street_vending")] * expected


def test_episode_running_into_an_allowed_window_sends_no_reminder_but_ends() -> None:
    """Vending from 17:56: starts 17:59:01, legal from 18:00 (no reminder at 18:00:01), ends on packing up."""
    start = datetime(2026, 6, 1, 9, 56, tzinfo=UTC)  # 17:56 local
    objects = [(PERSON, 0.7, "person"), (UMBRELLA, 0.5, "umbrella")]
    frames = scene(1500, lambda t: objects if t < 1200 else [])
    events = run(
        frames,
        cam=camera(MARKET, windows=["18:00-22:00"]),
        rules=RulesConfig(reminder_interval_s=60),
        start=start,
    )
    assert [e.kind for e in events] == ["start", "end"]
    assert events[0].observed_t == 181.0 and events[1].observed_t == 1199 + 60


# --- stacked goods -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(299, 0), (301, 1)],
)
def test_unexplained_static_region_becomes_stacked_goods(seconds: int, expected: int) -> None:
    events = run(scene(seconds, lambda t: [], lambda t: [GOODS]))
    assert kinds(events) == [("start", "stacked_goods")] * expected
    for event in events:
        assert event.zone_id == "z-pavement" and event.anchor == (440.0, 640.0)
        assert event.confidence == STATIC_REGION_CONFIDENCE and event.dwell_s == 300
        assert [o.bbox for o in event.objects] == [GOODS]
        assert isinstance(event.track_id, str)


def test_static_region_explained_by_a_parked_car_is_not_goods() -> None:
    """A car parked on the pavement is a static region too; its track (missed 10 % of frames) explains it."""
    rng = np.random.default_rng(3)
    car_on_pavement: Box = (500.0, 560.0, 700.0, 660.0)
    region: Box = (495.0, 570.0, 705.0, 662.0)
    missed = rng.random(700) < 0.10
    events = run(
        scene(600, lambda t: [] if missed[t] else [(car_on_pavement, 0.6, "car")], lambda t: [region])
    )
    assert events == []


@pytest.mark.parametrize(
    ("role", "median", "box", "expected"),
    [
        pytest.param("vehicle", 0.6, (395.0, 555.0, 485.0, 645.0), 0, id="confirmed-car-same-box"),
        pytest.param("person", 0.7, (390.0, 500.0, 490.0, 650.0), 0, id="person-covering-it"),
        pytest.param("vehicle", 0.2, (395.0, 555.0, 485.0, 645.0), 1, id="weak-car-does-not-veto"),
        pytest.param("vehicle", 0.6, (700.0, 555.0, 900.0, 645.0), 1, id="car-beside-it"),
    ],
)
def test_which_tracks_explain_a_static_region(role: str, median: float, box: Box, expected: int) -> None:
    """The rule alone: only a confirmed track over the region explains it away."""
    engine = ViolationEngine(camera(), RulesConfig())
    events = []
    for t in range(0, 320):
        track = TrackState(5, role, "x", box, median, median, 0.0, float(t), 0.0)  # type: ignore[arg-type]
        events += engine.update(t=float(t), captured_at=NOON_SHANGHAI, tracks=[track], static_regions=[GOODS])
    assert [e.violation for e in events if e.violation == "stacked_goods"] == ["stacked_goods"] * expected


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        pytest.param((400.0, 600.0, 415.0, 615.0), 0, id="225px2-below-static_min_area_px"),
        pytest.param((400.0, 300.0, 480.0, 380.0), 0, id="outside-goods-zone"),
        pytest.param(GOODS, 1, id="in-zone"),
    ],
)
def test_static_region_size_and_place(region: Box, expected: int) -> None:
    assert len(run(scene(400, lambda t: [], lambda t: [region]))) == expected


def test_flickering_static_region_keeps_one_episode_and_ends_when_cleared() -> None:
    rng = np.random.default_rng(5)
    present = rng.random(1200) > 0.2  # the background model drops it on 20 % of frames

    def regions(t: int) -> list[Box]:
        shift = float(rng.normal(0, 1.5))
        return [(GOODS[0] + shift, GOODS[1], GOODS[2] + shift, GOODS[3])] if t < 1000 and present[t] else []

    events = run(scene(1100, lambda t: [], regions), rules=RulesConfig(reminder_interval_s=300))
    assert [e.kind for e in events] == ["start", "reminder", "reminder", "end"]
    assert len({e.episode_id for e in events}) == 1


def test_goods_track_becomes_stacked_goods() -> None:
    events = run(scene(310, lambda t: [(GOODS, 0.5, "goods")], lambda t: [GOODS]))
    assert kinds(events) == [("start", "stacked_goods")]  # the region is the goods track: one episode
    assert events[0].track_id == 1 and events[0].objects[0].cls == "goods"


# --- robustness --------------------------------------------------------------------------------


def test_stream_restart_ends_running_episodes() -> None:
    engine = ViolationEngine(camera(), RulesConfig())
    track = TrackState(1, "vehicle", "car", CAR, 0.6, 0.6, 0.0, 500.0, 0.0)
    first = engine.update(t=500.0, captured_at=NOON_SHANGHAI, tracks=[track], static_regions=[])
    again = engine.update(t=0.0, captured_at=NOON_SHANGHAI, tracks=[], static_regions=[])
    assert [e.kind for e in first] == ["start"] and [e.kind for e in again] == ["end"]
    assert again[0].episode_id == first[0].episode_id and engine.active_episodes == 0


def test_goods_are_one_episode_through_passers_by_walking_in_front() -> None:
    """Goods on the pavement for 10 minutes; every minute a person walks across in front of them
    (their box covers the goods for a few seconds, and the region is not seen while they do)."""

    def walker(t: int) -> list[Obj]:
        x = 300.0 + 20 * (t % 60)  # crosses GOODS (x 400-480) at t % 60 in 5..9
        return [((x, 520.0, x + 50, 670.0), 0.7, "person")] if t % 60 < 20 else []

    def regions(t: int) -> list[Box]:
        return [] if 5 <= t % 60 <= 9 else [GOODS]

    events = run(scene(600, walker, regions))
    assert kinds(events) == [("start", "stacked_goods")]
    assert events[0].observed_t == pytest.approx(300.0, abs=1.0)  # the dwell never restarted


def test_a_vendor_hidden_by_shoppers_for_30_s_is_one_episode() -> None:
    def objects(t: int) -> list[Obj]:
        return [STALL_UMBRELLA] if 100 <= t < 130 else [VENDOR, STALL_UMBRELLA]

    events = run(scene(400, objects))
    assert kinds(events) == [("start", "street_vending")]
