"""A patrol car's pass along a kerb, built from a real street photo and a synthetic GPS track.

There is no moving-camera footage among the shared assets, so tests and the benchmark build one:
a patrol car drives north along a straight street at constant speed with a camera on its right
side looking at the east kerb (mount yaw +90 deg, level, `mount_height_m` above the road). A real
photo of parked cars (assets/street/kerb_parked_cars_street.jpg) stands in for what that camera
sees: each frame is a window of the photo, shifted so that the photo's `anchor_px` (the bottom
centre of one parked car) lands exactly where the camera model puts that car's true ground
position for the car's pose at that instant. The detector therefore really finds real cars in
every frame, and the one anchored car is geometrically consistent with the track (other cars in
the photo are not: they sit at other depths but move with the same image speed).

The track is written as GPX (1 Hz, what a phone or dash-cam logger records). `bias_m` shifts a
whole pass by a fixed GPS error (a receiver's error is correlated over seconds, not white), so
the benchmark can measure the geo error the projection makes of it.

- ``PatrolGeometry``: the street, the car's motion and the camera.
- ``kerb_scene(photo) -> np.ndarray``: the kerb photo with the car right behind the anchored one
  painted over (see there).
- ``car_truth(geom) -> (lat, lon)``: the anchored parked car's true ground point.
- ``pass_frames(photo, geom, *, seed) -> Iterator[np.ndarray]``: the BGR frames of one pass.
- ``gpx_track(geom, starts, *, biases_m=None) -> str``: GPX text with one segment per pass start.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import cv2
import numpy as np

from streetwatch.edge.geo import (
    Intrinsics,
    MountOffsets,
    TangentPlane,
    Uncertainty,
    ground_to_image,
    project_to_ground,
    vehicle_camera_pose,
)
from streetwatch.edge.telemetry import Pose
from streetwatch.footage import still_scene

KERB_PHOTO = "kerb_parked_cars_street.jpg"
GREEN_CAR_ANCHOR_PX = (649.5, 367.0)  # bottom centre of YOLOX's box [586,322,713,367] (SOURCES.md)


@dataclass(frozen=True)
class PatrolGeometry:
    """A pass: the track line starts at `origin` (lat, lon) and runs north; times in seconds."""

    origin: tuple[float, float] = (31.300400, 120.585100)
    mount_height_m: float = 1.5
    yaw_offset_deg: float = 90.0
    pitch_offset_deg: float = 0.0
    hfov_deg: float = 60.0
    frame_size: tuple[int, int] = (640, 568)
    speed_mps: float = 2.0
    start_north_m: float = -10.0
    seconds: float = 10.0
    fps: float = 2.0
    anchor_px: tuple[float, float] = GREEN_CAR_ANCHOR_PX

    @property
    def plane(self) -> TangentPlane:
        return TangentPlane(*self.origin)

    @property
    def intrinsics(self) -> Intrinsics:
        return Intrinsics.from_hfov(self.hfov_deg, *self.frame_size)

    @property
    def offsets(self) -> MountOffsets:
        return MountOffsets(yaw_deg=self.yaw_offset_deg, pitch_deg=self.pitch_offset_deg)

    def north_at(self, t_s: float) -> float:
        return self.start_north_m + self.speed_mps * t_s


def kerb_scene(photo: np.ndarray) -> np.ndarray:
    """The kerb photo with the red hatchback parked right behind the green car painted over by the
    pavement and facade base beside it. Looking down the street, the two stand ~5 m apart in depth;
    seen from the side by this synthetic camera they would be 1.6 m apart, one car inside another."""
    scene = photo.copy()
    scene[308:360, 546:588] = photo[308:360, 760:802]
    return scene


def pose_at(geom: PatrolGeometry, t_s: float, *, at: datetime, bias_m: tuple[float, float] = (0.0, 0.0)) -> Pose:
    """The patrol car's GPS-only pose (heading = course, no pitch/roll) `t_s` into a pass."""
    lat, lon = geom.plane.to_latlon(np.array([bias_m[0]]), np.array([geom.north_at(t_s) + bias_m[1]]))
    return Pose(t=at, lat=float(lat[0]), lon=float(lon[0]), alt_m=None, heading_deg=0.0, pitch_deg=None,
                roll_deg=None, speed_mps=geom.speed_mps, source="patrol-sim")


def car_truth(geom: PatrolGeometry) -> tuple[float, float]:
    """Where the anchored car stands: the ground point seen at the frame's centre column on the
    anchor's row when the patrol car is level with it (north = 0)."""
    t0 = -geom.start_north_m / geom.speed_mps
    cam = vehicle_camera_pose(pose_at(geom, t0, at=datetime.fromtimestamp(0).astimezone()),
                              mount_height_m=geom.mount_height_m, offsets=geom.offsets, uncertainty=Uncertainty())
    pixel = np.array([[geom.frame_size[0] / 2.0, geom.anchor_px[1]]])
    ground = project_to_ground(cam, geom.intrinsics, pixel)
    return float(ground.lat[0]), float(ground.lon[0])


def pass_frames(photo: np.ndarray, geom: PatrolGeometry, *, seed: int = 0) -> Iterator[np.ndarray]:
    """The frames of one pass (BGR uint8, geom.frame_size), each with its own sensor noise."""
    width, height = geom.frame_size
    if photo.shape[0] != height:
        raise ValueError(f"photo height {photo.shape[0]} != frame height {height}")
    canvas = cv2.copyMakeBorder(photo, 0, 0, width, width, cv2.BORDER_REPLICATE)
    truth = np.array([car_truth(geom)])
    epoch = datetime.fromtimestamp(0).astimezone()
    for i in range(round(geom.seconds * geom.fps)):
        cam = vehicle_camera_pose(pose_at(geom, i / geom.fps, at=epoch), mount_height_m=geom.mount_height_m,
                                  offsets=geom.offsets, uncertainty=Uncertainty())
        x_frame = float(ground_to_image(cam, geom.intrinsics, truth)[0, 0])
        x0 = round(geom.anchor_px[0] - x_frame) + width  # canvas column of the frame's left edge
        window = canvas[:, x0 : x0 + width] if 0 <= x0 <= canvas.shape[1] - width else np.full_like(
            canvas[:, :width], 114)
        yield next(still_scene(np.ascontiguousarray(window), seconds=1, fps=1, seed=seed * 1000 + i))


def gpx_track(
    geom: PatrolGeometry, starts: Sequence[datetime], *, biases_m: Sequence[tuple[float, float]] | None = None
) -> str:
    """GPX 1.1 text: one track segment per pass, 1 Hz fixes from 2 s before to 2 s after the clip."""
    segments = []
    for k, start in enumerate(starts):
        bias = biases_m[k] if biases_m is not None else (0.0, 0.0)
        points = []
        for second in range(-2, math.ceil(geom.seconds) + 3):
            pose = pose_at(geom, float(second), at=start + timedelta(seconds=second), bias_m=bias)
            stamp = pose.t.strftime("%Y-%m-%dT%H:%M:%SZ")
            points.append(f'<trkpt lat="{pose.lat:.8f}" lon="{pose.lon:.8f}"><time>{stamp}</time></trkpt>')
        segments.append("<trkseg>" + "".join(points) + "</trkseg>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="streetwatch-patrol-sim" '
            'xmlns="http://www.topografix.com/GPX/1/1"><trk><name>patrol</name>' + "".join(segments) + "</trk></gpx>\n")
