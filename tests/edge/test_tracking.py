"""Tracking at ~1 fps: stable ids through gaps ByteTrack alone cannot bridge, stillness, score history.

Detections are built directly as sv.Detections (what the detector hands the tracker); boxes are
frame pixels of a 1280x720 street view, a parked car being ~200x100 px.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import supervision as sv

from streetwatch.edge.tracking import CameraTracker, TrackerSettings, TrackState, new_bytetrack

CLASS_IDS = {"person": 0, "car": 2, "umbrella": 25, "goods": 80}
ROLE_OF = {
    "person": "person",
    "car": "vehicle",
    "umbrella": "vending_prop",
    "goods": "goods",
    "kite": "ignore",
}
CAR = (100.0, 300.0, 300.0, 400.0)
Obj = tuple[tuple[float, float, float, float], float, str]


def detections(objects: Sequence[Obj]) -> sv.Detections:
    """sv.Detections as the detector emits them: xyxy float32, confidence, class_id, class_name, role."""
    if not objects:
        return sv.Detections.empty()
    boxes, scores, names = zip(*objects, strict=True)
    return sv.Detections(
        xyxy=np.array(boxes, dtype=np.float32),
        confidence=np.array(scores, dtype=np.float32),
        class_id=np.array([CLASS_IDS.get(n, 33) for n in names]),
        data={"class_name": np.array(names), "role": np.array([ROLE_OF[n] for n in names])},
    )


def seen_now(states: list[TrackState], t: float) -> list[TrackState]:
    return [s for s in states if s.last_seen_t == t]


def _still_car_with_gap(gap: range) -> list[tuple[float, sv.Detections]]:
    return [(float(t), detections([] if t in gap else [(CAR, 0.6, "car")])) for t in range(0, 120)]


def test_still_car_keeps_its_stable_id_through_a_30_s_gap_where_bytetrack_changes_id() -> None:
    frames = _still_car_with_gap(range(40, 70))
    settings = TrackerSettings()
    bare = new_bytetrack(settings)  # what CameraTracker runs per role, without stable ids
    bare_ids = {
        int(i) for t, d in frames for i in np.asarray(bare.update(d, timestamp=t).tracker_id) if i >= 0
    }
    assert len(bare_ids) == 2, (
        "ByteTrack alone should lose the car in a 30 s gap (else this test proves nothing)"
    )

    tracker = CameraTracker("cam-1", settings)
    ids = {s.stable_id for t, d in frames for s in seen_now(tracker.update(t=t, detections=d), t)}
    assert len(ids) == 1
    last = tracker.update(t=120.0, detections=detections([(CAR, 0.6, "car")]))[0]
    assert last.first_seen_t == 1.0  # confirmed on the second frame
    assert last.still_since_t == 1.0  # the gap did not restart its stillness


def test_two_cars_side_by_side_get_different_ids() -> None:
    left, right = CAR, (310.0, 300.0, 510.0, 400.0)
    tracker = CameraTracker("cam-1")
    per_frame = []
    for t in range(0, 60):
        objects = [(left, 0.6, "car"), (right, 0.55, "car")] if t not in range(20, 40) else []
        states = seen_now(tracker.update(t=float(t), detections=detections(objects)), float(t))
        per_frame.append({round(s.box[0]): s.stable_id for s in states})
    assert per_frame[10].keys() == {100, 310}
    assert per_frame[10][100] != per_frame[10][310]
    assert per_frame[59] == per_frame[10]  # both kept their ids through the 20 s gap


def test_a_new_car_next_to_where_one_left_gets_a_new_id() -> None:
    tracker = CameraTracker("cam-1")
    for t in range(0, 30):
        tracker.update(t=float(t), detections=detections([(CAR, 0.6, "car")]))
    first = tracker.update(t=30.0, detections=detections([(CAR, 0.6, "car")]))[0].stable_id
    neighbour = (330.0, 300.0, 530.0, 400.0)  # one car length to the right
    ids = set()
    for t in range(31, 90):
        objects = [(neighbour, 0.6, "car")] if t >= 60 else []
        ids |= {s.stable_id for s in seen_now(tracker.update(t=float(t), detections=detections(objects)), t)}
    assert ids and first not in ids


def test_low_scores_after_a_long_gap_keep_the_still_track() -> None:
    """Dusk: after a 30 s miss the car scores 0.35, below ByteTrack's activation, and stays the same track."""
    tracker = CameraTracker("cam-1")
    for t in range(0, 30):
        tracker.update(t=float(t), detections=detections([(CAR, 0.6, "car")]))
    for t in range(60, 120):
        states = tracker.update(t=float(t), detections=detections([(CAR, 0.35, "car")]))
        assert [(s.stable_id, s.last_seen_t) for s in states] == [(1, float(t))]
    assert states[0].median_score == pytest.approx(0.35)


@pytest.mark.parametrize(
    ("step_px", "still"),
    [
        (0.0, True),
        (3.0, True),  # jitter-sized drift is still (tolerance 0.25 x 100 px box height)
        (40.0, False),  # a car driving 40 px per sample
    ],
)
def test_still_since_follows_ground_point_motion(step_px: float, still: bool) -> None:
    tracker = CameraTracker("cam-1")
    rng = np.random.default_rng(7)
    for t in range(0, 20):
        dx = step_px * t if step_px >= 10 else step_px * rng.uniform(-1, 1)
        box = (CAR[0] + dx, CAR[1], CAR[2] + dx, CAR[3] + rng.uniform(-step_px, step_px))
        states = tracker.update(t=float(t), detections=detections([(box, 0.6, "car")]))
    (state,) = seen_now(states, 19.0)
    assert (state.still_since_t == state.first_seen_t) is still
    assert (state.still_for_s >= 18.0) is still


def test_score_history_median_and_last_score() -> None:
    tracker = CameraTracker("cam-1")
    scores = [0.5, 0.9, 0.45, 0.45, 0.95, 0.3, 0.4]
    for t, score in enumerate(scores):
        states = tracker.update(t=float(t), detections=detections([(CAR, score, "car")]))
    (state,) = states
    assert state.score == pytest.approx(0.4)
    assert state.median_score == pytest.approx(float(np.median(scores[1:])))  # first frame is unconfirmed


def test_roles_are_tracked_apart_and_ignore_is_dropped() -> None:
    person = (180.0, 250.0, 230.0, 400.0)  # standing right in front of the car
    tracker = CameraTracker("cam-1")
    for t in range(0, 10):
        objects = [(CAR, 0.6, "car"), (person, 0.7, "person"), ((0.0, 0.0, 50.0, 50.0), 0.9, "kite")]
        states = tracker.update(t=float(t), detections=detections(objects))
    assert sorted((s.role, s.class_name) for s in states) == [("person", "person"), ("vehicle", "car")]


def test_missed_track_is_reported_with_its_last_box_for_a_while() -> None:
    tracker = CameraTracker("cam-1", TrackerSettings(report_lost_s=5.0))
    for t in range(0, 10):
        tracker.update(t=float(t), detections=detections([(CAR, 0.6, "car")]))
    reported = [len(tracker.update(t=float(t), detections=detections([]))) for t in range(10, 20)]
    assert reported == [1] * 5 + [0] * 5
    state = tracker.update(t=20.0, detections=detections([(CAR, 0.6, "car")]))[0]
    assert state.stable_id == 1  # re-associated, not a new id


def test_callers_arrays_are_not_modified() -> None:
    dets = detections([(CAR, 0.6, "car"), ((400.0, 300.0, 450.0, 420.0), 0.7, "person")])
    before = (dets.xyxy.copy(), np.array(dets.confidence), np.array(dets.data["role"]))
    tracker = CameraTracker("cam-1")
    for t in range(0, 5):
        tracker.update(t=float(t), detections=dets)
    assert np.array_equal(dets.xyxy, before[0]) and np.array_equal(np.asarray(dets.confidence), before[1])
    assert np.array_equal(dets.data["role"], before[2]) and dets.tracker_id is None


@pytest.mark.parametrize(
    ("mutate", "phrase"),
    [
        (lambda d: d.data.pop("role"), r"cam-1.*data\['role'\]"),
        (lambda d: d.data.pop("class_name"), r"cam-1.*data\['class_name'\]"),
        (lambda d: setattr(d, "confidence", None), r"cam-1.*confidence"),
    ],
)
def test_bad_detections_are_named(mutate, phrase: str) -> None:  # type: ignore[no-untyped-def]
    dets = detections([(CAR, 0.6, "car")])
    mutate(dets)
    with pytest.raises(ValueError, match=phrase):
        CameraTracker("cam-1").update(t=0.0, detections=dets)


def test_stream_time_going_back_resets_tracks_with_fresh_ids() -> None:
    tracker = CameraTracker("cam-1")
    for t in range(100, 110):
        tracker.update(t=float(t), detections=detections([(CAR, 0.6, "car")]))
    for t in range(0, 3):
        states = tracker.update(t=float(t), detections=detections([(CAR, 0.6, "car")]))
    assert [(s.stable_id, s.first_seen_t) for s in states] == [(2, 1.0)]


def test_brief_occlusion_of_the_bottom_does_not_restart_stillness() -> None:
    """A pedestrian cuts the lower 40 px of the parked car's box for 1-2 frames every half minute."""
    tracker = CameraTracker("cam-1")
    for t in range(0, 200):
        cut = 40.0 if t % 30 in (10, 11) else 0.0
        states = tracker.update(
            t=float(t), detections=detections([((CAR[0], CAR[1], CAR[2], CAR[3] - cut), 0.6, "car")])
        )
    assert [(s.first_seen_t, s.still_since_t) for s in states] == [(1.0, 1.0)]


@pytest.mark.parametrize(("moved_frames", "restarted"), [(2, False), (3, True), (10, True)])
def test_a_move_restarts_stillness_once_it_holds(moved_frames: int, restarted: bool) -> None:
    tracker = CameraTracker("cam-1", TrackerSettings(move_confirm_frames=3))
    for t in range(0, 60):
        dx = 60.0 if 30 <= t < 30 + moved_frames else 0.0
        box = (CAR[0] + dx, CAR[1], CAR[2] + dx, CAR[3])
        states = tracker.update(t=float(t), detections=detections([(box, 0.6, "car")]))
    (state,) = states
    assert (state.still_since_t > 30.0) is restarted


def test_a_camera_tracks_only_the_roles_its_rules_read() -> None:
    from streetwatch.edge.rules import roles_read

    assert roles_read(["illegal_parking"]) == ("vehicle",)
    assert roles_read(["street_vending"]) == ("person", "vending_prop")
    assert roles_read(["stacked_goods", "illegal_parking"]) == ("vehicle", "person", "goods")
    person = (400.0, 200.0, 440.0, 330.0)
    parking_only = CameraTracker("cam-1", roles=roles_read(["illegal_parking"]))
    everything = CameraTracker("cam-1")
    for t in range(5):
        both = detections([(CAR, 0.7, "car"), (person, 0.8, "person")])
        kept = parking_only.update(t=float(t), detections=both)
        seen = everything.update(t=float(t), detections=both)
    assert {s.role for s in kept} == {"vehicle"}
    assert {s.role for s in seen} == {"vehicle", "person"}


def test_a_role_that_is_not_tracked_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"roles: expected some of .*'ignore'"):
        CameraTracker("cam-1", roles=("vehicle", "ignore"))  # type: ignore[arg-type]


def test_a_track_survives_frames_where_its_role_has_no_detection_at_all() -> None:
    """Roles with no detection and no live ByteTrack track are skipped; ones with live tracks are not."""
    tracker = CameraTracker("cam-1")
    for t in range(10):
        tracker.update(t=float(t), detections=detections([(CAR, 0.7, "car")]))
    states = [tracker.update(t=float(t), detections=sv.Detections.empty()) for t in range(10, 15)]
    for t in range(15, 20):
        last = tracker.update(t=float(t), detections=detections([(CAR, 0.7, "car")]))
    assert [s.stable_id for s in states[-1]] == [last[0].stable_id]  # reported while missed, same id after
    assert last[0].still_since_t == 1.0


def _without_ids(states: list[TrackState]) -> list[tuple[object, ...]]:
    """Everything of each state but its stable id (ids count per tracker)."""
    return [(s.box, s.score, s.median_score, s.first_seen_t, s.last_seen_t, s.still_since_t, s.class_name)
            for s in states]


def test_one_bytetrack_for_all_roles_tracks_each_role_as_if_alone() -> None:
    """The tracker runs one ByteTrack for every role (boxes shifted per role): a box of one role
    must never continue a track of another, even at the very same place, and every role's tracks
    must come out as a camera tracking that role alone would give."""
    def scene(t: int) -> list[Obj]:
        walker = (40.0 + 30 * t, 250.0, 90.0 + 30 * t, 400.0)  # walks across, over the car
        objects: list[Obj] = [(CAR, 0.8, "umbrella")] if 5 <= t < 12 else []  # exactly the car's box
        objects += [(CAR, 0.6 + 0.01 * (t % 5), "car"), (walker, 0.7, "person")]
        if t % 7 != 3:  # a vendor seen on most frames only
            objects.append(((600.0, 200.0, 650.0, 350.0), 0.35 + 0.1 * (t % 3), "person"))
        return objects

    roles = ("vehicle", "person", "vending_prop")
    together = CameraTracker("cam-1", roles=roles)
    alone = {role: CameraTracker("cam-1", roles=(role,)) for role in roles}
    seen_roles = set()
    for t in range(30):
        frame = detections(scene(t))
        mixed = together.update(t=float(t), detections=frame)
        seen_roles |= {s.role for s in mixed}
        for role, tracker in alone.items():
            expected = tracker.update(t=float(t), detections=frame)
            got = [s for s in mixed if s.role == role]
            assert _without_ids(got) == _without_ids(expected), f"frame {t}, role {role}"
    assert seen_roles == set(roles)


# --- appearance: stillness means one object present -------------------------------------------
# Real cars cut from the real street clip (assets/video/cvtrafficcam_street_parking.mp4, first
# frame) and set, one after the other, at one place of a real frame of that street.

QUEUE_AT = (330, 150, 450, 220)  # one spot of the 640x360 carriageway, 120x70 px


@pytest.fixture(scope="module")
def street_frame(assets_dir) -> np.ndarray:  # type: ignore[no-untyped-def]
    from street_composites import street_frames

    return street_frames(assets_dir)[0]


def _with_car(frame: np.ndarray, car: tuple[int, int, int, int] | None) -> np.ndarray:
    import cv2

    out = frame.copy()
    if car is not None:
        x1, y1, x2, y2 = car
        qx1, qy1, qx2, qy2 = QUEUE_AT
        out[qy1:qy2, qx1:qx2] = cv2.resize(frame[y1:y2, x1:x2], (qx2 - qx1, qy2 - qy1), interpolation=cv2.INTER_AREA)
    return out


YELLOW, WHITE, SILVER, DARK = (165, 215, 300, 300), (305, 235, 470, 312), (85, 108, 150, 145), (215, 80, 300, 130)


@pytest.mark.parametrize(
    ("cars", "expected_ids"),
    [
        pytest.param([WHITE, SILVER, DARK, YELLOW], 4, id="four-different-cars-queue-at-one-spot"),
        pytest.param([WHITE, WHITE, WHITE, WHITE], 1, id="one-car-gone-briefly-in-between"),
    ],
)
def test_cars_stopping_in_turn_at_one_spot_are_one_track_only_if_they_are_one_car(
    street_frame: np.ndarray, cars: list[tuple[int, int, int, int]], expected_ids: int
) -> None:
    """Each car stands 30 s, then 4 s of empty road: ByteTrack keeps its lost track that long and
    position alone re-associates within 5 minutes, so only the appearance tells the cars apart."""
    tracker = CameraTracker("cam-1")
    ids, t = [], 0.0
    for car in cars:
        for _ in range(30):
            states = tracker.update(t=t, detections=detections([(QUEUE_AT, 0.6, "car")]),
                                    image=_with_car(street_frame, car))
            ids += [s.stable_id for s in seen_now(states, t)]
            t += 1.0
        for _ in range(4):
            tracker.update(t=t, detections=detections([]), image=street_frame)
            t += 1.0
    assert len(set(ids)) == expected_ids
    if expected_ids == 1:
        last = seen_now(states, t - 5.0)[0]
        assert last.still_since_t <= 1.0 and 0.85 <= last.presence < 1.0  # seen in 119 of its 131 frames


def test_without_a_frame_tracks_match_by_position_alone(street_frame: np.ndarray) -> None:
    tracker = CameraTracker("cam-1")
    ids = set()
    for t in range(60):
        states = tracker.update(t=float(t), detections=detections([(QUEUE_AT, 0.6, "car")]))
        ids |= {s.stable_id for s in seen_now(states, float(t))}
    assert len(ids) == 1


@pytest.mark.parametrize("size", [(40, 22), (30, 16), (24, 13)])
def test_a_small_still_car_is_one_track_seen_in_every_frame(street_frame: np.ndarray, size: tuple[int, int]) -> None:
    """A distant parked car, a few pixels of the 320 px signature view, on noisy JPEG frames: its
    colours are noise (the same car measured further from itself than the bar), so it must match by
    position; an earlier tracker split it into 13 tracks that each held a fraction of its frames, so
    its dwell never reached rules.presence_share."""
    import cv2

    at = (330.0, 150.0, 330.0 + size[0], 150.0 + size[1])
    picture = street_frame.copy()
    x1, y1, x2, y2 = WHITE
    picture[150:150 + size[1], 330:330 + size[0]] = cv2.resize(street_frame[y1:y2, x1:x2], size,
                                                               interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(3)
    tracker = CameraTracker("cam-1")
    ids: set[int] = set()
    for t in range(60):
        noisy = np.clip(picture + rng.normal(0, 3, picture.shape), 0, 255).astype(np.uint8)
        noisy = cv2.imdecode(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_COLOR)
        view = cv2.resize(noisy, (320, 180), interpolation=cv2.INTER_AREA)  # as the pipeline reads it
        box = tuple(float(v + d) for v, d in zip(at, rng.integers(-1, 2, 4), strict=True))
        states = tracker.update(t=float(t), detections=detections([(box, 0.6, "car")]), image=view, frame_width=640)
        ids |= {s.stable_id for s in seen_now(states, float(t))}
    assert len(ids) == 1
    assert seen_now(states, 59.0)[0].presence == 1.0
