"""Moving-camera projection against geometry with a known answer (edge/geo.py, section 3).

Every expected value is computed here from first principles (trigonometry of a camera at a height,
a footprint of a nadir image), not from the code under test. Tolerance 0.5 m, as the issue asks.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from streetwatch.edge.geo import (
    GroundPoints,
    Intrinsics,
    MountOffsets,
    PoseUnusable,
    TangentPlane,
    Uncertainty,
    drone_camera_pose,
    ground_accuracy,
    ground_to_image,
    project_to_ground,
    vehicle_camera_pose,
)
from streetwatch.edge.telemetry import Gimbal, Pose

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
LAT, LON = 31.30, 120.58
W, H = 1280, 720
TOL_M = 0.5


def pose(**kw: object) -> Pose:
    fields: dict[str, object] = dict(t=T0, lat=LAT, lon=LON, alt_m=None, heading_deg=0.0, pitch_deg=None,
                                     roll_deg=None, speed_mps=None, source="test")
    fields.update(kw)
    return Pose(**fields)  # type: ignore[arg-type]


def ground_enu(points: GroundPoints) -> np.ndarray:
    """(N, 2) east/north metres from the platform's position, independent of the projection's plane."""
    east, north = TangentPlane(LAT, LON).to_enu(points.lat, points.lon)
    return np.column_stack([east, north])


@pytest.mark.parametrize(
    ("height", "pitch", "heading"),
    [(1.5, 10.0, 0.0), (1.5, 5.0, 90.0), (2.2, 20.0, 213.0), (8.0, 35.0, 359.0), (3.0, 60.0, 45.0)],
)
def test_image_centre_lands_h_over_tan_theta_ahead(height: float, pitch: float, heading: float) -> None:
    cam = vehicle_camera_pose(pose(heading_deg=heading), mount_height_m=height,
                              offsets=MountOffsets(pitch_deg=-pitch), uncertainty=Uncertainty())
    got = ground_enu(project_to_ground(cam, Intrinsics.from_hfov(70, W, H), np.array([[W / 2, H / 2]])))[0]
    ahead = height / math.tan(math.radians(pitch))
    want = ahead * np.array([math.sin(math.radians(heading)), math.cos(math.radians(heading))])
    assert np.hypot(*(got - want)) <= TOL_M


@pytest.mark.parametrize(("altitude", "hfov", "yaw"), [(50.0, 80.0, 0.0), (120.0, 60.0, 0.0), (80.0, 70.0, 90.0)])
def test_nadir_drone_corners_match_footprint(altitude: float, hfov: float, yaw: float) -> None:
    """Straight down: the footprint half-width is altitude * tan(hfov / 2), half-height scaled by H/W."""
    cam = drone_camera_pose(pose(heading_deg=None, rel_alt_m=altitude, gimbal=Gimbal(yaw, -90.0, 0.0, "earth")),
                            offsets=MountOffsets(), uncertainty=Uncertainty())
    corners = np.array([[0, 0], [W, 0], [W, H], [0, H]], dtype=float)
    got = ground_enu(project_to_ground(cam, Intrinsics.from_hfov(hfov, W, H), corners))
    half_w = altitude * math.tan(math.radians(hfov) / 2)
    half_h = half_w * H / W
    # image top = the direction the camera's top points to (yaw), image right = 90 deg clockwise of it
    up = np.array([math.sin(math.radians(yaw)), math.cos(math.radians(yaw))])
    right = np.array([up[1], -up[0]])
    want = np.array([-half_w * right + half_h * up, half_w * right + half_h * up,
                     half_w * right - half_h * up, -half_w * right - half_h * up])
    assert np.max(np.hypot(*(got - want).T)) <= TOL_M


def test_platform_referenced_gimbal_composes_with_airframe_heading() -> None:
    """MISB style: a gimbal 90 deg right of a nose pointing east, 30 deg down, looks south."""
    cam = drone_camera_pose(pose(heading_deg=90.0, pitch_deg=0.0, roll_deg=0.0, rel_alt_m=40.0,
                                 gimbal=Gimbal(90.0, -30.0, 0.0, "platform")),
                            offsets=MountOffsets(), uncertainty=Uncertainty())
    got = ground_enu(project_to_ground(cam, Intrinsics.from_hfov(60, W, H), np.array([[W / 2, H / 2]])))[0]
    assert np.hypot(got[0], got[1] + 40.0 / math.tan(math.radians(30))) <= TOL_M


def test_kerb_facing_camera_looks_right_of_course() -> None:
    """Mounted yaw +90 on a car heading north: it sees the east kerb; GPS-only pose assumed level."""
    cam = vehicle_camera_pose(pose(heading_deg=0.0), mount_height_m=1.5,
                              offsets=MountOffsets(yaw_deg=90.0, pitch_deg=-10.0), uncertainty=Uncertainty())
    assert cam.assumed == ("level vehicle (no pitch/roll in telemetry)",)
    got = ground_enu(project_to_ground(cam, Intrinsics.from_hfov(60, W, H), np.array([[W / 2, H / 2]])))[0]
    assert np.hypot(got[0] - 1.5 / math.tan(math.radians(10)), got[1]) <= TOL_M


def test_vehicle_pitch_and_roll_from_telemetry_change_the_ray() -> None:
    """A car nose-down 3 deg with a level camera mount is a camera pitched 3 deg more."""
    cam = vehicle_camera_pose(pose(pitch_deg=-3.0, roll_deg=0.0), mount_height_m=1.5,
                              offsets=MountOffsets(pitch_deg=-7.0), uncertainty=Uncertainty())
    assert cam.assumed == ()
    got = ground_enu(project_to_ground(cam, Intrinsics.from_hfov(60, W, H), np.array([[W / 2, H / 2]])))[0]
    assert abs(got[1] - 1.5 / math.tan(math.radians(10))) <= TOL_M


def test_pixels_above_horizon_are_invalid_and_round_trip_holds_below() -> None:
    cam = vehicle_camera_pose(pose(heading_deg=30.0), mount_height_m=1.5,
                              offsets=MountOffsets(pitch_deg=-5.0), uncertainty=Uncertainty())
    intr = Intrinsics.from_hfov(60, W, H)
    xy = np.array([[W / 2, 0.0], [100.0, 700.0], [1000.0, 600.0]])
    g = project_to_ground(cam, intr, xy)
    assert g.valid.tolist() == [False, True, True]
    assert math.isnan(g.lat[0]) and math.isnan(g.accuracy_m[0])
    back = ground_to_image(cam, intr, np.column_stack([g.lat[1:], g.lon[1:]]))
    np.testing.assert_allclose(back, xy[1:], atol=1e-3)


def test_accuracy_grows_with_range_and_attitude_uncertainty() -> None:
    u = Uncertainty(position_sigma_m=0.0, height_sigma_m=0.0, box_bottom_px=0.0)
    rho = np.array([5.0, 10.0, 20.0])
    one = ground_accuracy(rho, height_m=1.5, focal_px=1000.0, attitude_sigma_rad=math.radians(1), uncertainty=u)
    three = ground_accuracy(rho, height_m=1.5, focal_px=1000.0, attitude_sigma_rad=math.radians(3), uncertainty=u)
    assert np.all(np.diff(one) > 0) and np.all(three > one)
    # along-ray term D^2 / h * sigma dominates: 10 m range, 1.5 m height, 1 deg
    d2 = 1.5**2 + 10.0**2
    expected = math.hypot(d2 / 1.5, 10.0) * math.radians(1)
    assert one[1] == pytest.approx(expected)


def test_gps_only_pose_is_less_certain_than_a_measured_attitude() -> None:
    intr = Intrinsics.from_hfov(60, W, H)
    px = np.array([[W / 2, H / 2 + 100]])
    level = vehicle_camera_pose(pose(), mount_height_m=1.5, offsets=MountOffsets(pitch_deg=-8),
                                uncertainty=Uncertainty())
    measured = vehicle_camera_pose(pose(pitch_deg=0.0, roll_deg=0.0), mount_height_m=1.5,
                                   offsets=MountOffsets(pitch_deg=-8), uncertainty=Uncertainty())
    assert project_to_ground(level, intr, px).accuracy_m[0] > project_to_ground(measured, intr, px).accuracy_m[0]


@pytest.mark.parametrize(
    ("kw", "kind", "message"),
    [
        ({"heading_deg": None}, "vehicle", "no heading"),
        ({"rel_alt_m": None, "gimbal": Gimbal(0, -90, 0, "earth")}, "drone", "no relative altitude"),
        ({"rel_alt_m": 0.1, "gimbal": Gimbal(0, -90, 0, "earth")}, "drone", "airborne"),
        ({"rel_alt_m": 30.0, "heading_deg": None, "gimbal": Gimbal(0, -90, 0, "platform")}, "drone", "heading"),
    ],
)
def test_unusable_poses_say_why(kw: dict[str, object], kind: str, message: str) -> None:
    with pytest.raises(PoseUnusable, match=message):
        if kind == "vehicle":
            vehicle_camera_pose(pose(**kw), mount_height_m=1.5, offsets=MountOffsets(), uncertainty=Uncertainty())
        else:
            drone_camera_pose(pose(**kw), offsets=MountOffsets(), uncertainty=Uncertainty())


def test_matrix_intrinsics_scale_to_the_frame() -> None:
    k = [[1000.0, 0.0, 960.0], [0.0, 1000.0, 540.0], [0.0, 0.0, 1.0]]
    intr = Intrinsics.from_matrix(k, calibrated_size=(1920, 1080), image_size=(960, 540))
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (500.0, 500.0, 480.0, 270.0)
    assert Intrinsics.from_hfov(90.0, 1000, 500).fx == pytest.approx(500.0)
