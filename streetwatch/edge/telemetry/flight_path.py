"""Distances and bearings on the WGS84 sphere, and a heading from the flight path where telemetry has none.

Most DJI sidecars carry a position but no attitude. A frame can still be geo-matched if the camera
looks along the flight path: the heading is the bearing of the chord from the pose to the next one
at least `min_move_m` away (DJI positions are quantised to 1e-4..1e-6 degree, so consecutive
blocks are too close to give a bearing), looked for up to `max_window_s` ahead (the last bearing
is held as long near the end of a move). A drone hovering longer gets no heading: its nose can
point anywhere. With `camera_model.gimbal_pitch_deg`
the camera is set on an earth-referenced gimbal at that pitch, yawed along the path.

Both are assumptions (a drone can fly sideways: a Phantom 4 RTK sample flies 90 degrees off its
nose), so the pose says so in `assumed` and geo uses the assumed-attitude sigma for its accuracy.
Pure functions, no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from streetwatch.edge.telemetry.pose import Gimbal, Pose

EARTH_RADIUS_M = 6_371_008.8
FLIGHT_PATH_HEADING = "heading from the flight path"


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from point 1 to point 2, degrees clockwise from true north in [0, 360)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def path_headings(poses: Sequence[Pose], *, min_move_m: float = 10.0, max_window_s: float = 15.0) -> list[float | None]:
    """Per pose, the bearing along the path (see the module docstring), or None while hovering.

    Near the end of the file (or of a move) there is no pose far enough ahead: the last bearing is
    held while it is at most `max_window_s` old. Linear time: the look-ahead index only moves forward.
    """
    headings: list[float | None] = []
    ahead = 0
    held: tuple[float, Pose] | None = None
    for i, pose in enumerate(poses):
        ahead = max(ahead, i + 1)
        while ahead < len(poses) and _near(pose, poses[ahead], min_move_m, max_window_s):
            ahead += 1
        if ahead < len(poses) and _within(pose, poses[ahead], max_window_s):
            held = (bearing_deg(pose.lat, pose.lon, poses[ahead].lat, poses[ahead].lon), pose)
            headings.append(held[0])
        elif held is not None and _within(held[1], pose, max_window_s):
            headings.append(held[0])
        else:
            headings.append(None)
    return headings


def _within(a: Pose, b: Pose, max_window_s: float) -> bool:
    return abs((b.t - a.t).total_seconds()) <= max_window_s


def _near(a: Pose, b: Pose, min_move_m: float, max_window_s: float) -> bool:
    """True while b is still inside the window and too close to a for a bearing."""
    return _within(a, b, max_window_s) and distance_m(a.lat, a.lon, b.lat, b.lon) < min_move_m


def with_flight_path_attitude(
    poses: Sequence[Pose], *, gimbal_pitch_deg: float | None, min_move_m: float = 10.0, max_window_s: float = 15.0,
) -> list[Pose]:
    """Poses without a camera attitude get a heading from the flight path and, given a gimbal pitch,
    an earth-referenced gimbal along it; poses with an attitude are returned unchanged."""
    needs = [p.gimbal is None and p.heading_deg is None for p in poses]
    if not any(needs) and gimbal_pitch_deg is None:
        return list(poses)
    path = path_headings(poses, min_move_m=min_move_m, max_window_s=max_window_s) if any(needs) else []
    out = []
    for i, pose in enumerate(poses):
        heading, assumed = pose.heading_deg, list(pose.assumed)
        if needs[i] and path[i] is not None:
            heading = path[i]
            assumed.append(FLIGHT_PATH_HEADING)
        if pose.gimbal is None and heading is not None and gimbal_pitch_deg is not None:
            gimbal = Gimbal(heading, gimbal_pitch_deg, 0.0, "earth")
            assumed.append(f"gimbal pitch {gimbal_pitch_deg:g} deg from camera_model.gimbal_pitch_deg")
            out.append(dataclasses.replace(pose, heading_deg=heading, gimbal=gimbal, assumed=tuple(assumed)))
        elif heading != pose.heading_deg:
            out.append(dataclasses.replace(pose, heading_deg=heading, assumed=tuple(assumed)))
        else:
            out.append(pose)
    return out
