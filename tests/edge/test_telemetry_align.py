"""Frame time -> pose: interpolation (angles on the circle), clock offset, gap rule, live buffer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streetwatch.edge.telemetry import Gimbal, Pose, PoseTrack, lerp_angle

T0 = datetime(2026, 1, 1, 8, 0, 0, tzinfo=UTC)


def pose(s: float, *, lat: float = 31.3, lon: float = 120.5, heading: float | None = 0.0,
         roll: float | None = 0.0, alt: float | None = 10.0, gimbal: Gimbal | None = None) -> Pose:
    return Pose(t=T0 + timedelta(seconds=s), lat=lat, lon=lon, alt_m=alt, heading_deg=heading, pitch_deg=0.0,
                roll_deg=roll, speed_mps=5.0, source="test", gimbal=gimbal)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


@pytest.mark.parametrize(
    ("a", "b", "f", "expected"),
    [
        (359.0, 1.0, 0.5, 0.0),  # through north, not through 180
        (359.0, 1.0, 0.25, 359.5),
        (1.0, 359.0, 0.75, 359.5),
        (10.0, 30.0, 0.5, 20.0),
        (170.0, 190.0, 0.5, 180.0),
        (90.0, 270.0, 0.5, 0.0),  # exactly opposite: both arcs are as short; the rule picks -180
        (0.0, 0.0, 0.3, 0.0),
    ],
)
def test_lerp_angle_takes_the_short_arc(a: float, b: float, f: float, expected: float) -> None:
    assert lerp_angle(a, b, f) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("query_s", "offset_s", "max_gap_s", "method", "lat", "heading"),
    [
        pytest.param(0.0, 0.0, 2.0, "exact", 31.300, 359.0, id="exact"),
        pytest.param(0.5, 0.0, 2.0, "interpolated", 31.301, 0.0, id="midpoint-wraps-heading-359-to-1"),
        pytest.param(0.25, 0.0, 2.0, "interpolated", 31.3005, 359.5, id="quarter"),
        pytest.param(-0.5, 1.0, 2.0, "interpolated", 31.301, 0.0, id="clock-offset-shifts-the-lookup"),
        pytest.param(1.5, -1.0, 2.0, "interpolated", 31.301, 0.0, id="negative-offset"),
        pytest.param(1.5, 0.0, 2.0, "held", 31.302, 1.0, id="live-frame-after-last-fix-held"),
        pytest.param(-1.5, 0.0, 2.0, "held", 31.300, 359.0, id="before-first-fix-held"),
        pytest.param(3.5, 0.0, 2.0, "none", None, None, id="too-long-after-last-fix"),
        pytest.param(-3.0, 0.0, 2.0, "none", None, None, id="too-long-before-first-fix"),
        pytest.param(0.5, 0.0, 0.5, "held", 31.300, 359.0, id="bracket-wider-than-max-gap-holds-nearest"),
        pytest.param(0.5, 0.0, 0.4, "none", None, None, id="gap-rule-no-pose-within-max-gap"),
    ],
)
def test_pose_at_table(query_s: float, offset_s: float, max_gap_s: float, method: str, lat: float | None,
                       heading: float | None) -> None:
    track = PoseTrack([pose(0, lat=31.300, heading=359.0), pose(1, lat=31.302, heading=1.0)], name="van-7")
    match = track.match(at(query_s), max_gap_s=max_gap_s, clock_offset_s=offset_s)

    assert match.method == method
    if lat is None:
        assert match.pose is None and "van-7" in match.reason and "max_gap_s" in match.reason
        assert track.pose_at(at(query_s), max_gap_s=max_gap_s, clock_offset_s=offset_s) is None
        return
    assert match.pose is not None
    assert match.pose.lat == pytest.approx(lat)
    assert match.pose.heading_deg == pytest.approx(heading)
    assert match.pose.t == at(query_s + offset_s)  # stamped in telemetry time


def test_telemetry_dropout_inside_the_track_is_not_bridged() -> None:
    track = PoseTrack([pose(0), pose(1), pose(31), pose(32)], name="van-7")
    match = track.match(at(16), max_gap_s=2.0)
    assert match.pose is None and "gap of 30.000 s" in match.reason
    assert track.match(at(1.5), max_gap_s=2.0).method == "held"  # still near the last fix before it


def test_unknown_values_stay_unknown_and_other_angles_wrap() -> None:
    a = pose(0, heading=None, roll=179.0, alt=None, lon=179.9999, gimbal=Gimbal(350.0, -80.0, 0.0, "earth"))
    b = pose(2, heading=90.0, roll=-179.0, alt=20.0, lon=-179.9999, gimbal=Gimbal(10.0, -90.0, 0.0, "earth"))
    mid = PoseTrack([a, b]).pose_at(at(1), max_gap_s=5)
    assert mid is not None
    assert mid.heading_deg is None and mid.alt_m is None  # known on one side only: not invented
    assert mid.roll_deg == pytest.approx(180.0)  # 179 -> -179 through 180, not through 0
    assert abs(mid.lon) == pytest.approx(180.0)  # the antimeridian, not Greenwich
    assert mid.gimbal == Gimbal(pytest.approx(0.0), pytest.approx(-85.0), pytest.approx(0.0), "earth")  # type: ignore[arg-type]


def test_live_track_is_bounded_keeps_the_newest_and_accepts_late_poses() -> None:
    track = PoseTrack(maxlen=100, name="uav-1")
    for i in range(1000):
        track.append(pose(i * 0.1, lat=30.0 + i * 1e-5))
    assert 100 <= len(track) <= 200  # bounded
    assert track.poses[-1].t == at(99.9)
    assert track.pose_at(at(99.85), max_gap_s=1) is not None
    assert track.match(at(1.0), max_gap_s=1).method == "none"  # dropped from the buffer

    track.append(pose(99.95, lat=45.0))  # arrives late: inserted in order
    late = track.match(at(99.95), max_gap_s=1)
    assert late.method == "exact" and late.pose is not None and late.pose.lat == 45.0
    assert [p.t for p in track.poses] == sorted(p.t for p in track.poses)


def test_empty_track_and_naive_times() -> None:
    track = PoseTrack(name="van-7")
    assert track.match(at(0), max_gap_s=1).reason == "van-7: no poses yet"
    with pytest.raises(ValueError, match="timezone-aware"):
        track.match(datetime(2026, 1, 1, 8), max_gap_s=1)
    with pytest.raises(ValueError, match="maxlen must be >= 2"):
        PoseTrack(maxlen=1)
