"""Ground rules of moving cameras (edge/moving_rules.py): sightings per pass, dwell on ground positions.

Observations are given directly in metres of the rules' plane (the zones' centroid), as the
projection would deliver them, so each row states where things stand on the ground.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from streetwatch.edge.config import CameraConfig, RulesConfig
from streetwatch.edge.moving import part_of_another
from streetwatch.edge.moving_rules import GroundObservation, GroundRules, associate, rules_plane
from streetwatch.edge.types import Role, ViolationEvent

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)  # 17:00 Asia/Shanghai
LAT, LON = 31.3, 120.58
DEG_PER_M_LAT = 1 / 110_850.0
DEG_PER_M_LON = 1 / 95_250.0


def rect(half_e: float, half_n: float) -> list[tuple[float, float]]:
    """(lat, lon) corners of +-half metres around (LAT, LON) (approximate degrees: fine for tests)."""
    return [(LAT + n * DEG_PER_M_LAT, LON + e * DEG_PER_M_LON)
            for e, n in ((-half_e, -half_n), (half_e, -half_n), (half_e, half_n), (-half_e, half_n))]


def camera(kind: str, zones: list[dict]) -> CameraConfig:
    telemetry = {"source": "gpx", "path": None}
    model: dict[str, object] = {"hfov_deg": 60.0}
    if kind == "vehicle":
        model["mount_height_m"] = 1.5
    else:
        telemetry = {"source": "srt", "clock_tz": "Asia/Shanghai"}
    return CameraConfig.model_validate({"id": f"cam-{kind}", "kind": kind, "url": "x.mp4",
                                        "timezone": "Asia/Shanghai", "camera_model": model,
                                        "telemetry": telemetry, "zones": zones})


def obs(role: Role, east: float, north: float, *, score: float = 0.8, acc: float = 2.0) -> GroundObservation:
    return GroundObservation(role=role, class_name={"vehicle": "car"}.get(role, role), score=score,
                             box=(0.0, 0.0, 10.0, 10.0), east=east, north=north, accuracy_m=acc)


def run(rules: GroundRules, frames: list[tuple[float, list[GroundObservation]]]) -> list[ViolationEvent]:
    events: list[ViolationEvent] = []
    for t, observations in frames:
        events += rules.update(t=t, captured_at=T0 + timedelta(seconds=t), observations=observations)
    return events


def engine(kind: str, violations: list[str], *, windows: list[str] | None = None, dwell: float | None = None,
           **rules: object) -> GroundRules:
    zone: dict[str, object] = {"id": "z", "violations": violations, "polygon_geo": rect(3, 5)}
    if windows:
        zone["allowed_windows"] = windows
    if dwell is not None:
        zone["dwell_s"] = dwell
    cam = camera(kind, [zone])
    plane = rules_plane(cam)
    assert plane is not None
    return GroundRules(cam, RulesConfig.model_validate(rules), plane=plane)


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        # a parked car seen on 6 frames of one pass: one sighting, not six
        ([(t, [obs("vehicle", 0.5, 0.3)]) for t in range(6)], 1),
        # seen on a single frame: min_frames (2) not met
        ([(0.0, [obs("vehicle", 0.5, 0.3)])], 0),
        # outside the zone (10 m east)
        ([(t, [obs("vehicle", 10.0, 0.0)]) for t in range(4)], 0),
        # a car driving through the zone: 4 m per frame, never still on two frames
        ([(t, [obs("vehicle", 0.0, -5.0 + 4.0 * t)]) for t in range(4)], 0),
        # weak detections (median score below min_median_score 0.35)
        ([(t, [obs("vehicle", 0.5, 0.3, score=0.3)]) for t in range(4)], 0),
        # two passes (unseen for more than pass_gap_s = 30 s): one sighting each
        ([(t, [obs("vehicle", 0.5, 0.3)]) for t in (0, 1, 2, 100, 101)], 2),
        # two cars 5 m apart in the zone: one sighting each
        ([(t, [obs("vehicle", 0.0, -2.5, acc=1.0), obs("vehicle", 0.0, 2.5, acc=1.0)]) for t in range(3)], 2),
        # jitter within the accuracy is still
        ([(t, [obs("vehicle", 0.5 + 0.8 * (-1) ** t, 0.3)]) for t in range(3)], 1),
    ],
)
def test_sightings_one_per_object_and_pass(frames: list, expected: int) -> None:
    events = run(engine("vehicle", ["illegal_parking"]), frames)
    assert [e.kind for e in events] == ["sighting"] * expected
    assert all(e.state == "sighting" and e.violation == "illegal_parking" for e in events)


def test_sighting_location_is_the_weighted_mean_and_dwell_counts_the_pass() -> None:
    events = run(engine("vehicle", ["illegal_parking"], moving={"min_frames": 3}),
                 [(0.0, [obs("vehicle", 1.0, 0.0, acc=1.0)]), (1.0, [obs("vehicle", 0.0, 0.0, acc=1.0)]),
                  (2.0, [obs("vehicle", 0.5, 0.0, acc=2.0)])])
    (event,) = events
    # weights 1, 1, 1/4: (1 + 0 + 0.125) / 2.25
    assert event.anchor[0] == pytest.approx(0.5)
    assert event.accuracy_m == 1.0 and event.dwell_s == 2.0 and event.started_t == 0.0


def test_no_sighting_inside_an_allowed_window() -> None:
    rules = engine("vehicle", ["illegal_parking"], windows=["16:00-18:00"])  # 17:00 local
    assert run(rules, [(t, [obs("vehicle", 0.5, 0.3)]) for t in range(4)]) == []


def test_goods_from_a_vehicle_are_sightings_from_a_drone_dwell() -> None:
    frames = [(float(t), [obs("goods", 0.0, 0.0)]) for t in range(0, 400, 10)]
    vehicle = run(engine("vehicle", ["stacked_goods"], moving={"pass_gap_s": 60}), frames)
    assert [(e.kind, e.violation) for e in vehicle] == [("sighting", "stacked_goods")]
    drone = run(engine("drone", ["stacked_goods"], moving={"pass_gap_s": 60}), frames)
    assert [(e.kind, e.violation) for e in drone] == [("start", "stacked_goods")]
    assert drone[0].observed_t == 300.0 and drone[0].dwell_s == 300.0  # the zone's default dwell


def test_drone_vending_dwell_start_reminder_end() -> None:
    """Hovering over a vendor: person still with a cart 2 m away for the dwell, then they leave."""
    frames = [(float(t), [obs("person", 0.0, 0.0), obs("vending_prop", 2.0, 0.0)]) for t in range(0, 250, 10)]
    frames += [(float(t), []) for t in range(250, 330, 10)]
    events = run(engine("drone", ["street_vending"], dwell=180, reminder_interval_s=60, end_after_s=60), frames)
    assert [(e.kind, e.observed_t) for e in events] == [("start", 180.0), ("reminder", 240.0), ("end", 300.0)]
    assert len({e.episode_id for e in events}) == 1
    assert {o.cls for o in events[0].objects} == {"person", "vending_prop"}


def test_vending_needs_a_prop_near_the_person() -> None:
    frames = [(float(t), [obs("person", 0.0, 0.0), obs("vending_prop", 30.0, 0.0)]) for t in range(0, 250, 10)]
    assert run(engine("drone", ["street_vending"], dwell=180), frames) == []


def test_a_moving_person_restarts_the_dwell() -> None:
    """Walking 2.5 m every 10 s (beyond accuracy 2 m) never stays still long enough."""
    frames = [(float(t), [obs("person", 0.0, -4.0 + 0.25 * t), obs("vending_prop", 0.0, 0.0)])
              for t in range(0, 40, 10)]
    assert run(engine("drone", ["street_vending"], dwell=20), frames) == []


def test_association_is_greedy_nearest_and_one_to_one() -> None:
    rules = engine("vehicle", ["illegal_parking"])
    run(rules, [(0.0, [obs("vehicle", 0.0, 0.0, acc=1.0), obs("vehicle", 0.0, 4.0, acc=1.0)])])
    first, second = rules.objects
    matched = associate(rules.objects, [obs("vehicle", 0.0, 3.5, acc=1.0), obs("vehicle", 0.0, 0.5, acc=1.0),
                                        obs("person", 0.0, 0.0, acc=1.0)], t=1.0, pass_gap_s=30, match_radius_m=3.0)
    assert matched == {0: second, 1: first}  # the person does not join a car


@pytest.mark.parametrize(
    ("boxes", "roles", "scores", "expected"),
    [
        # a car's rear boxed again inside the whole car, weaker: a part
        ([[100, 100, 300, 200], [100, 110, 150, 195]], ["vehicle", "vehicle"], [0.8, 0.4], [False, True]),
        # the same boxes, the part scoring higher: the whole is not a part of it
        ([[100, 100, 300, 200], [100, 110, 150, 195]], ["vehicle", "vehicle"], [0.4, 0.8], [False, False]),
        # a person in front of a car is not part of it (another role)
        ([[100, 100, 300, 200], [120, 110, 150, 195]], ["vehicle", "person"], [0.8, 0.6], [False, False]),
        # two cars overlapping a little: neither is a part
        ([[100, 100, 300, 200], [250, 100, 450, 200]], ["vehicle", "vehicle"], [0.8, 0.6], [False, False]),
    ],
)
def test_part_of_another(boxes: list, roles: list, scores: list, expected: list) -> None:
    got = part_of_another(np.array(boxes, float), np.array(roles), np.array(scores, float))
    assert got.tolist() == expected
