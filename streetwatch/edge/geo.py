"""Ground positions for detections: pixel <-> WGS84.

Two parts, kept apart:

1. Local tangent plane (shared by every camera kind). Positions are handled as east/north metres
   around an origin (the calibration centroid). The conversion is a local equirectangular
   projection using the WGS84 meridian (M) and prime-vertical (N) radii of curvature at the
   origin latitude:  north = dlat * M,  east = dlon * N * cos(lat0).  Its error grows with the
   square of the distance: under 3 cm at 500 m and under 1 cm at 200 m from the origin at mid
   latitudes, far below what a box bottom is good for, so pyproj is not worth the dependency.

2. Fixed cameras: a ground-plane homography fitted from >= 4 pixel <-> (lat, lon) pairs maps
   image pixels to tangent-plane metres.

3. Moving cameras (patrol vehicles, drones): a pinhole camera posed per frame from telemetry;
   each pixel's ray is intersected with flat ground (see the section's own notes).

Everything here is a pure function of its arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from streetwatch.edge.alerts import Location
from streetwatch.edge.telemetry.pose import Pose

# --------------------------------------------------------------------------------------------
# 1. Local tangent plane
# --------------------------------------------------------------------------------------------

WGS84_A = 6_378_137.0  # semi-major axis, metres
WGS84_E2 = 6.694379990141317e-3  # first eccentricity squared

LatLon = tuple[float, float]
PointPair = tuple[tuple[float, float], tuple[float, float]]  # ((x_px, y_px), (lat, lon))


@dataclass(frozen=True)
class TangentPlane:
    """East/north metres around (lat0, lon0); see the module docstring for the accuracy."""

    lat0: float
    lon0: float

    @property
    def metres_per_rad(self) -> tuple[float, float]:
        """(east, north) metres per radian of longitude / latitude at the origin."""
        phi = math.radians(self.lat0)
        s2 = 1.0 - WGS84_E2 * math.sin(phi) ** 2
        north = WGS84_A * (1.0 - WGS84_E2) / s2**1.5  # meridian radius M
        east = WGS84_A / math.sqrt(s2) * math.cos(phi)  # N * cos(lat0)
        return east, north

    def to_enu(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(east, north) metres for arrays of latitude / longitude in degrees."""
        k_east, k_north = self.metres_per_rad
        dlon = (np.asarray(lon, dtype=np.float64) - self.lon0 + 180.0) % 360.0 - 180.0
        east = np.radians(dlon) * k_east
        north = np.radians(np.asarray(lat, dtype=np.float64) - self.lat0) * k_north
        return east, north

    def to_latlon(self, east: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) degrees for arrays of east / north metres."""
        k_east, k_north = self.metres_per_rad
        lat = self.lat0 + np.degrees(np.asarray(north, dtype=np.float64) / k_north)
        lon = self.lon0 + np.degrees(np.asarray(east, dtype=np.float64) / k_east)
        return lat, (lon + 180.0) % 360.0 - 180.0


# --------------------------------------------------------------------------------------------
# 2. Fixed cameras: ground homography
# --------------------------------------------------------------------------------------------

DEFAULT_BOX_BOTTOM_PX = 3.0
"""How far (pixels) a detector's box bottom typically sits from the true ground contact point."""

DEFAULT_POINT_SIGMA_M = 1.0
"""Assumed per-axis error of calibration points when an exact 4-point fit leaves no residual to
measure it (points picked on a web map or with a phone GPS are rarely better than a metre)."""

_COLLINEAR_TOL = 1e-3  # distance from a line, in units of the points' RMS spread, that counts as on it


class CalibrationError(ValueError):
    """Calibration points that cannot define a ground homography; the message says why."""


class BehindHorizonError(ValueError):
    """A pixel above the horizon, or a ground point behind the camera: it has no counterpart."""


@dataclass(frozen=True, eq=False)
class GroundHomography:
    """Fixed-camera ground mapping.

    matrix: (3, 3) float64, pixel (x, y, 1) -> tangent-plane metres (east, north, 1), scaled so
    that w = matrix[2] . (x, y, 1) > 0 for pixels on the visible ground. inverse: its inverse
    (metres -> pixels, w > 0 in front of the camera). rmse_m: ground reprojection RMSE over the
    inlier points. sigma_m: per-axis calibration error estimate used for accuracy_m (residuals
    with the 8 fitted degrees of freedom taken out; DEFAULT_POINT_SIGMA_M for an exact 4-point
    fit). inliers: per input point, whether the fit used it (all True without RANSAC).
    """

    plane: TangentPlane
    matrix: np.ndarray
    inverse: np.ndarray
    rmse_m: float
    sigma_m: float
    inliers: tuple[bool, ...]


@dataclass(frozen=True, eq=False)
class GeoPoints:
    """Parallel arrays of shape (N,): lat, lon, accuracy_m (NaN where the pixel is above the
    horizon) and valid (False there)."""

    lat: np.ndarray
    lon: np.ndarray
    accuracy_m: np.ndarray
    valid: np.ndarray


def fit_homography(
    points: Sequence[PointPair], *, ransac_threshold_m: float | None = None
) -> GroundHomography:
    """Fit pixel -> ground metres from >= 4 ((x_px, y_px), (lat, lon)) pairs.

    Least squares over all points by default (exact for 4); with ransac_threshold_m, RANSAC
    drops points whose ground error exceeds it. Raises CalibrationError naming the problem:
    too few pairs, non-finite or out-of-range values, collinear or otherwise degenerate points.
    """
    px, latlon = _validated_arrays(points)
    _check_geometry(px, "image")
    plane = TangentPlane(float(latlon[:, 0].mean()), float(latlon[:, 1].mean()))
    east, north = plane.to_enu(latlon[:, 0], latlon[:, 1])
    ground = np.stack([east, north], axis=1)
    _check_geometry(ground, "ground")
    if ransac_threshold_m is not None and len(px) > 4:
        matrix, mask = cv2.findHomography(px, ground, cv2.RANSAC, ransac_threshold_m)
    else:
        matrix, mask = cv2.findHomography(px, ground, 0)
    if matrix is None or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-12:
        raise CalibrationError("calibration points are degenerate: no homography fits them")
    inliers = np.ones(len(px), bool) if mask is None else mask.ravel().astype(bool)
    matrix = _orient(matrix, px[inliers])
    residual = _project(matrix, px[inliers])[0] - ground[inliers]
    sq = np.sum(residual**2, axis=1)
    n = int(inliers.sum())
    sigma = math.sqrt(sq.sum() / (2 * n - 8)) if n > 4 else DEFAULT_POINT_SIGMA_M
    return GroundHomography(
        plane=plane,
        matrix=_frozen(matrix),
        inverse=_frozen(np.linalg.inv(matrix)),
        rmse_m=float(np.sqrt(sq.mean())),
        sigma_m=sigma,
        inliers=tuple(bool(v) for v in inliers),
    )


def _validated_arrays(points: Sequence[PointPair]) -> tuple[np.ndarray, np.ndarray]:
    if len(points) < 4:
        raise CalibrationError(
            f"calibration.points: a homography needs at least 4 point pairs, got {len(points)}"
        )
    try:
        arr = np.array([[p[0][0], p[0][1], p[1][0], p[1][1]] for p in points], dtype=np.float64)
    except (TypeError, ValueError, IndexError):
        raise CalibrationError(
            "calibration.points: expected pairs ((x_px, y_px), (lat, lon)) of numbers"
        ) from None
    for i, row in enumerate(arr):
        if not np.all(np.isfinite(row)):
            raise CalibrationError(
                f"calibration.points[{i}]: non-finite value (NaN or inf) in {row.tolist()}"
            )
        if not (-90 <= row[2] <= 90 and -180 <= row[3] <= 180):
            raise CalibrationError(
                f"calibration.points[{i}]: (lat, lon) = ({row[2]}, {row[3]}) is out of range; "
                "expected lat in [-90, 90], lon in [-180, 180] (is the order lon, lat?)"
            )
    return arr[:, :2].copy(), arr[:, 2:].copy()


def _check_geometry(xy: np.ndarray, what: str) -> None:
    """Refuse point sets without 4 points in general position (no 3 on a line): that is the
    case exactly when all points, or all but one, lie on one line; the homography is then
    undetermined however many points there are."""
    centred = xy - xy.mean(axis=0)
    spread = float(np.sqrt(np.mean(np.sum(centred**2, axis=1))))
    if spread == 0.0:
        raise CalibrationError(f"calibration.points: all {what} points are identical")
    on_line = _most_collinear(centred / spread)
    if len(on_line) == len(xy):
        raise CalibrationError(
            f"calibration.points: all {len(xy)} {what} points are collinear; "
            "pick points spread over the ground, not along one line"
        )
    if len(on_line) == len(xy) - 1:
        names = ", ".join(str(i) for i in on_line[:-1]) + f" and {on_line[-1]}"
        raise CalibrationError(
            f"calibration.points: {what} points {names} are collinear and only one point is off "
            "that line; a homography needs 4 points with no three on one line (move or add points)"
        )


def _most_collinear(norm: np.ndarray) -> list[int]:
    """Indices of the largest set of points on one line (normalised coordinates, spread ~1)."""
    best: list[int] = []
    for i in range(len(norm)):
        for j in range(i + 1, len(norm)):
            direction = norm[j] - norm[i]
            length = float(np.hypot(*direction))
            if length < _COLLINEAR_TOL:
                continue
            rel = norm - norm[i]
            distance = np.abs(direction[0] * rel[:, 1] - direction[1] * rel[:, 0]) / length
            on = np.flatnonzero(distance < _COLLINEAR_TOL).tolist()
            if len(on) > len(best):
                best = on
    return best


def _orient(matrix: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Scale the matrix so that w > 0 on the calibration pixels (the visible ground)."""
    w = matrix[2, 0] * px[:, 0] + matrix[2, 1] * px[:, 1] + matrix[2, 2]
    if np.any(w > 0) and np.any(w < 0):
        raise CalibrationError("calibration points straddle the horizon: some lie above it")
    return matrix if w.mean() > 0 else -matrix


def _frozen(arr: np.ndarray) -> np.ndarray:
    out = np.array(arr, dtype=np.float64)
    out.setflags(write=False)
    return out


def _project(matrix: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply a homography to (N, 2) points: ((N, 2) result, (N,) w). Rows with w <= 0 are NaN."""
    hom = np.column_stack([xy, np.ones(len(xy))]) @ matrix.T
    w = hom[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = hom[:, :2] / w[:, None]
    out[w <= 0] = np.nan
    return out, w


def ground_sampling_distance(h: GroundHomography, xy: np.ndarray) -> np.ndarray:
    """Metres spanned by one pixel at each (N, 2) pixel, in the worst direction.

    The pixel -> metres Jacobian J of the homography at (x, y) (u = h1.p / w, v = h2.p / w):
        dU/dx = (h11 - u h31) / w,  dU/dy = (h12 - u h32) / w  (same for v with row 2);
    its largest singular value is the stretch along the worst direction (down the image, i.e.
    away from the camera, for a tilted camera). NaN above the horizon.
    """
    m = h.matrix
    ground, w = _project(m, xy)
    u, v = ground[:, 0], ground[:, 1]
    jac = np.empty((len(xy), 2, 2))
    jac[:, 0, 0] = (m[0, 0] - u * m[2, 0]) / w
    jac[:, 0, 1] = (m[0, 1] - u * m[2, 1]) / w
    jac[:, 1, 0] = (m[1, 0] - v * m[2, 0]) / w
    jac[:, 1, 1] = (m[1, 1] - v * m[2, 1]) / w
    gsd = np.full(len(xy), np.nan)
    ok = np.all(np.isfinite(jac), axis=(1, 2))
    if ok.any():
        gsd[ok] = np.linalg.svd(jac[ok], compute_uv=False)[:, 0]
    return gsd


def pixels_to_geo(
    h: GroundHomography, xy: np.ndarray, *, box_bottom_px: float = DEFAULT_BOX_BOTTOM_PX
) -> GeoPoints:
    """Vectorised pixel -> WGS84 for (N, 2) pixels (x, y).

    accuracy_m = sqrt(sigma_m**2 + (box_bottom_px * gsd(x, y))**2): the calibration error
    (GroundHomography.sigma_m) combined with the ground distance that box_bottom_px pixels span
    at that pixel (ground_sampling_distance). It grows towards the horizon, where one pixel
    covers many metres. Rows above the horizon are NaN with valid False.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    ground, _ = _project(h.matrix, xy)
    lat, lon = h.plane.to_latlon(ground[:, 0], ground[:, 1])
    gsd = ground_sampling_distance(h, xy)
    accuracy = np.sqrt(h.sigma_m**2 + (box_bottom_px * gsd) ** 2)
    valid = np.isfinite(lat) & np.isfinite(accuracy)
    return GeoPoints(lat=lat, lon=lon, accuracy_m=np.where(valid, accuracy, np.nan), valid=valid)


MAX_ACCURACY_M = 100_000.0  # Location's bound: beyond it a pixel is too close to the horizon to use


def pixel_to_geo(
    h: GroundHomography, x: float, y: float, *, box_bottom_px: float = DEFAULT_BOX_BOTTOM_PX
) -> Location:
    """One pixel -> Location(lat, lon, accuracy_m); see pixels_to_geo for the accuracy formula.

    Raises BehindHorizonError for a pixel on or above the horizon (or so close to it that the
    accuracy exceeds 100 km).
    """
    points = pixels_to_geo(h, np.array([[x, y]]), box_bottom_px=box_bottom_px)
    accuracy = float(points.accuracy_m[0])
    if not points.valid[0] or accuracy > MAX_ACCURACY_M:
        raise BehindHorizonError(
            f"pixel ({x:.1f}, {y:.1f}) is on or above the horizon: it does not see the ground"
        )
    return Location(lat=float(points.lat[0]), lon=float(points.lon[0]), accuracy_m=accuracy)


def geo_to_pixels(h: GroundHomography, latlon: np.ndarray) -> np.ndarray:
    """Vectorised WGS84 -> pixel for (N, 2) (lat, lon); rows behind the camera are NaN."""
    latlon = np.asarray(latlon, dtype=np.float64).reshape(-1, 2)
    east, north = h.plane.to_enu(latlon[:, 0], latlon[:, 1])
    return _project(h.inverse, np.column_stack([east, north]))[0]


def geo_to_pixel(h: GroundHomography, lat: float, lon: float) -> tuple[float, float]:
    """One (lat, lon) -> (x, y) pixel; BehindHorizonError if the point is behind the camera."""
    xy = geo_to_pixels(h, np.array([[lat, lon]]))[0]
    if not np.all(np.isfinite(xy)):
        raise BehindHorizonError(f"ground point ({lat:.7f}, {lon:.7f}) is behind the camera (w <= 0)")
    return float(xy[0]), float(xy[1])


def polygon_geo_to_px(
    h: GroundHomography, polygon: Sequence[LatLon], *, zone_id: str = "?"
) -> list[tuple[float, float]]:
    """A zone's polygon_geo as image pixels (fixed cameras). Refuses vertices behind the camera,
    naming the zone and vertex: a zone must lie on the ground the camera sees."""
    xy = geo_to_pixels(h, np.asarray(polygon, dtype=np.float64))
    for i, row in enumerate(xy):
        if not np.all(np.isfinite(row)):
            lat, lon = polygon[i]
            raise BehindHorizonError(
                f"zone {zone_id!r} polygon_geo[{i}] = ({lat}, {lon}) is behind the camera's horizon; "
                "keep zones on the ground the camera sees"
            )
    return [(float(x), float(y)) for x, y in xy]


# --------------------------------------------------------------------------------------------
# Calibration report (CLI: edge calibrate)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointError:
    """One calibration point: ground error of its pixel (metres), image error of its (lat, lon)
    (pixels), and its leave-one-out ground error (refit without it; NaN when not computable)."""

    index: int
    pixel: tuple[float, float]
    latlon: LatLon
    error_m: float
    error_px: float
    loo_error_m: float
    inlier: bool


@dataclass(frozen=True)
class CalibrationReport:
    """How well a camera's calibration points agree with one homography."""

    homography: GroundHomography
    points: tuple[PointError, ...]
    rmse_m: float
    max_error_m: float


def calibration_report(
    points: Sequence[PointPair], *, ransac_threshold_m: float | None = None
) -> CalibrationReport:
    """Fit, then measure every point: residuals (metres and pixels) and leave-one-out errors.

    With exactly 4 points the fit is exact (residuals 0): only more points can reveal a bad one,
    which is what the leave-one-out column (>= 5 points) shows best.
    """
    h = fit_homography(points, ransac_threshold_m=ransac_threshold_m)
    px = np.array([p[0] for p in points], dtype=np.float64)
    latlon = np.array([p[1] for p in points], dtype=np.float64)
    east, north = h.plane.to_enu(latlon[:, 0], latlon[:, 1])
    err_m = np.linalg.norm(_project(h.matrix, px)[0] - np.column_stack([east, north]), axis=1)
    err_px = np.linalg.norm(geo_to_pixels(h, latlon) - px, axis=1)
    rows = tuple(
        PointError(
            index=i,
            pixel=(float(px[i, 0]), float(px[i, 1])),
            latlon=(float(latlon[i, 0]), float(latlon[i, 1])),
            error_m=float(err_m[i]),
            error_px=float(err_px[i]),
            loo_error_m=_leave_one_out(points, i),
            inlier=h.inliers[i],
        )
        for i in range(len(points))
    )
    return CalibrationReport(
        homography=h, points=rows, rmse_m=h.rmse_m, max_error_m=float(np.nanmax(err_m))
    )


def _leave_one_out(points: Sequence[PointPair], index: int) -> float:
    if len(points) < 5:
        return math.nan
    rest = [p for i, p in enumerate(points) if i != index]
    try:
        h = fit_homography(rest)
    except CalibrationError:
        return math.nan
    (x, y), (lat, lon) = points[index]
    ground = _project(h.matrix, np.array([[x, y]], dtype=np.float64))[0][0]
    east, north = h.plane.to_enu(np.array([lat]), np.array([lon]))
    return float(math.hypot(ground[0] - east[0], ground[1] - north[0]))


def format_calibration_report(report: CalibrationReport, *, camera_id: str = "") -> str:
    """A plain-text table for `edge calibrate`, one row per point, then RMSE and max."""
    title = f"camera {camera_id}: " if camera_id else ""
    lines = [
        f"{title}{len(report.points)} calibration points, origin "
        f"({report.homography.plane.lat0:.7f}, {report.homography.plane.lon0:.7f})",
        f"{'#':>3}  {'x_px':>8} {'y_px':>8}  {'lat':>12} {'lon':>12}  {'err_m':>7} {'err_px':>7} "
        f"{'loo_m':>7}  used",
    ]
    for p in report.points:
        loo = "-" if math.isnan(p.loo_error_m) else f"{p.loo_error_m:.2f}"
        lines.append(
            f"{p.index:>3}  {p.pixel[0]:>8.1f} {p.pixel[1]:>8.1f}  "
            f"{p.latlon[0]:>12.7f} {p.latlon[1]:>12.7f}  "
            f"{p.error_m:>7.2f} {p.error_px:>7.1f} {loo:>7}  {'yes' if p.inlier else 'NO'}"
        )
    lines.append(
        f"RMSE {report.rmse_m:.2f} m, max {report.max_error_m:.2f} m, "
        f"calibration sigma {report.homography.sigma_m:.2f} m"
    )
    if len(report.points) == 4:
        lines.append("note: 4 points fit exactly; add more points to measure the calibration error")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# 3. Moving cameras: per-frame pose from telemetry, rays onto flat ground
# --------------------------------------------------------------------------------------------
#
# Frames. World: east/north/up metres (ENU) around the camera's ground point. Attitude: yaw
# clockwise from true north, pitch positive nose/lens up, roll positive right side down, applied
# in that order (intrinsic z-y-x, the aerospace convention NMEA/DJI/MISB angles follow). Camera:
# OpenCV pinhole (x right, y down, z along the optical axis).
#
# Vehicle: camera attitude = vehicle attitude (heading, pitch, roll) composed with the mount
# offsets (yaw/pitch/roll of the camera relative to the vehicle's nose); height = mount height
# above the road. A GPS-only source (NMEA RMC/GGA, GPX) has no pitch or roll: the vehicle is
# assumed level (pitch = roll = 0) and its heading is the course over ground the parser derived;
# the accuracy then uses `assumed_attitude_sigma_deg` instead of `attitude_sigma_deg`.
# Drone: height above ground = the pose's relative altitude (take-off point as flat-ground
# stand-in), else `alt_m - ground_alt_m`. An earth-referenced gimbal (DJI) gives the camera's
# attitude directly; a platform-referenced one (MISB tags 18/19/20) is composed with the
# airframe's heading/pitch/roll (None -> 0, assumed); without a gimbal the camera is the airframe
# composed with the mount offsets. Mount offsets are applied after an earth-referenced gimbal too
# (a residual boresight correction, 0 by default).
#
# Accuracy (1-sigma radius, metres) of a ground point at horizontal range rho from the camera at
# height h, slant distance D = sqrt(h^2 + rho^2), focal length f (pixels):
#   angle error        s_a = sqrt(s_att^2 + (box_bottom_px / f)^2)           (radians)
#   along the ray      s_r = D^2 / h * s_a        (d rho / d depression = -D^2 / h)
#   across the ray     s_c = rho * s_a            (a yaw error swings the point sideways)
#   from the height    s_h = rho / h * height_sigma_m
#   accuracy_m         = sqrt(position_sigma_m^2 + s_r^2 + s_c^2 + s_h^2)
# It grows with range (quadratically along the ray: near the horizon a small angle error moves
# the point far) and with attitude uncertainty.

_OPENCV_TO_BODY = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""Columns: OpenCV camera x (right), y (down), z (forward) in body (right, forward, up) coordinates."""

MIN_DEPRESSION_RAD = math.radians(0.5)  # rays flatter than this never meet the ground usefully


class PoseUnusable(ValueError):
    """A telemetry pose that cannot place the camera (no heading, no height); the message says why."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of the analysed frame (no distortion: dash and drone cameras
    are usually rectified by the camera; a strongly distorted lens needs undistorting first)."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_hfov(cls, hfov_deg: float, width: int, height: int) -> Intrinsics:
        """Square pixels, principal point at the image centre: fx = (W / 2) / tan(hfov / 2)."""
        if not 0.0 < hfov_deg < 180.0:
            raise ValueError(f"hfov_deg must be in (0, 180), got {hfov_deg}")
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(fx=f, fy=f, cx=width / 2.0, cy=height / 2.0)

    @classmethod
    def from_matrix(
        cls, matrix: Sequence[Sequence[float]], *, calibrated_size: tuple[int, int], image_size: tuple[int, int]
    ) -> Intrinsics:
        """A 3x3 calibration matrix measured at `calibrated_size` (w, h), scaled to `image_size`."""
        k = np.asarray(matrix, dtype=np.float64)
        sx, sy = image_size[0] / calibrated_size[0], image_size[1] / calibrated_size[1]
        return cls(fx=k[0, 0] * sx, fy=k[1, 1] * sy, cx=k[0, 2] * sx, cy=k[1, 2] * sy)


@dataclass(frozen=True)
class MountOffsets:
    """The camera's yaw/pitch/roll relative to the platform (degrees); e.g. a kerb-facing camera
    on the right side of a car: yaw 90, pitch -10."""

    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0


@dataclass(frozen=True)
class Uncertainty:
    """Inputs of the accuracy formula above (1-sigma)."""

    position_sigma_m: float = 2.0
    attitude_sigma_deg: float = 1.0
    assumed_attitude_sigma_deg: float = 3.0
    height_sigma_m: float = 0.2
    box_bottom_px: float = DEFAULT_BOX_BOTTOM_PX


@dataclass(frozen=True, eq=False)
class CameraPose:
    """Where a moving camera was and how it looked, for one frame.

    rotation: (3, 3) world-from-camera (columns: the OpenCV camera axes in ENU). height_m: above
    the ground plane. attitude_sigma_rad: per-angle 1-sigma used for accuracy. assumed: what the
    pose had to assume (e.g. 'level vehicle'), for logs.
    """

    lat: float
    lon: float
    height_m: float
    rotation: np.ndarray
    attitude_sigma_rad: float
    assumed: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class GroundPoints:
    """Parallel (N,) arrays: east/north metres in `plane`, lat/lon, accuracy_m, valid (False for
    pixels on or above the horizon; their values are NaN)."""

    plane: TangentPlane
    east: np.ndarray
    north: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    accuracy_m: np.ndarray
    valid: np.ndarray


def attitude_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """(3, 3) whose columns are the body's right, forward and up axes in the parent frame's
    (right=east, forward=north, up) coordinates, after yaw (clockwise), pitch (up), roll (right down)."""
    y, p, r = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    fwd = np.array([math.sin(y), math.cos(y), 0.0])
    right = np.array([math.cos(y), -math.sin(y), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    fwd, up = math.cos(p) * fwd + math.sin(p) * up, -math.sin(p) * fwd + math.cos(p) * up
    right, up = math.cos(r) * right - math.sin(r) * up, math.sin(r) * right + math.cos(r) * up
    return np.column_stack([right, fwd, up])


def _camera_rotation(platform: np.ndarray, offsets: MountOffsets) -> np.ndarray:
    mount = attitude_matrix(offsets.yaw_deg, offsets.pitch_deg, offsets.roll_deg)
    return platform @ mount @ _OPENCV_TO_BODY


def vehicle_camera_pose(
    pose: Pose, *, mount_height_m: float, offsets: MountOffsets, uncertainty: Uncertainty
) -> CameraPose:
    """A vehicle camera's pose; a GPS-only pose is taken as a level vehicle heading along its course."""
    if pose.heading_deg is None:
        raise PoseUnusable(f"{pose.source}: no heading or course at {pose.t.isoformat()} (vehicle standing "
                           "since the fix?); cannot orient the camera")
    assumed = ("level vehicle (no pitch/roll in telemetry)",) if pose.pitch_deg is None or pose.roll_deg is None else ()
    platform = attitude_matrix(pose.heading_deg, pose.pitch_deg or 0.0, pose.roll_deg or 0.0)
    sigma = uncertainty.assumed_attitude_sigma_deg if assumed else uncertainty.attitude_sigma_deg
    return CameraPose(lat=pose.lat, lon=pose.lon, height_m=mount_height_m,
                      rotation=_camera_rotation(platform, offsets),
                      attitude_sigma_rad=math.radians(sigma), assumed=assumed)


def drone_camera_pose(
    pose: Pose, *, offsets: MountOffsets, uncertainty: Uncertainty, ground_alt_m: float | None = None
) -> CameraPose:
    """A drone camera's pose from its height above ground and its gimbal (see the section notes)."""
    height = _drone_height(pose, ground_alt_m)
    assumed: list[str] = list(pose.assumed)  # e.g. a heading the telemetry took from the flight path
    gimbal = pose.gimbal
    if gimbal is not None and gimbal.reference == "earth":
        platform = attitude_matrix(gimbal.yaw_deg, gimbal.pitch_deg, gimbal.roll_deg)
    else:
        if pose.heading_deg is None:
            raise PoseUnusable(f"{pose.source}: no platform heading at {pose.t.isoformat()} for a "
                               f"{'platform-referenced gimbal' if gimbal else 'camera without gimbal'}")
        if pose.pitch_deg is None or pose.roll_deg is None:
            assumed.append("level airframe (no pitch/roll in telemetry)")
        platform = attitude_matrix(pose.heading_deg, pose.pitch_deg or 0.0, pose.roll_deg or 0.0)
        if gimbal is not None:
            platform = platform @ attitude_matrix(gimbal.yaw_deg, gimbal.pitch_deg, gimbal.roll_deg)
    sigma = uncertainty.assumed_attitude_sigma_deg if assumed else uncertainty.attitude_sigma_deg
    return CameraPose(lat=pose.lat, lon=pose.lon, height_m=height, rotation=_camera_rotation(platform, offsets),
                      attitude_sigma_rad=math.radians(sigma), assumed=tuple(assumed))


def _drone_height(pose: Pose, ground_alt_m: float | None) -> float:
    if pose.rel_alt_m is not None:
        height = pose.rel_alt_m
    elif pose.alt_m is not None and ground_alt_m is not None:
        height = pose.alt_m - ground_alt_m
    else:
        raise PoseUnusable(f"{pose.source}: no relative altitude at {pose.t.isoformat()} and no "
                           "camera_model.ground_alt_m to subtract from the altitude")
    if not height > 0.5:
        raise PoseUnusable(f"{pose.source}: height above ground {height:.1f} m at {pose.t.isoformat()}; "
                           "the drone must be airborne (> 0.5 m) to project onto the ground")
    return float(height)


def project_to_ground(
    cam: CameraPose, intrinsics: Intrinsics, xy: np.ndarray, *, plane: TangentPlane | None = None,
    uncertainty: Uncertainty = Uncertainty(),
) -> GroundPoints:
    """Vectorised: (N, 2) pixels -> flat-ground points (in `plane`, default: the camera's ground
    point) with accuracy_m from the formula in the section notes."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    plane = plane or TangentPlane(cam.lat, cam.lon)
    rays = np.column_stack([(xy[:, 0] - intrinsics.cx) / intrinsics.fx,
                            (xy[:, 1] - intrinsics.cy) / intrinsics.fy, np.ones(len(xy))]) @ cam.rotation.T
    horizontal = np.hypot(rays[:, 0], rays[:, 1])
    valid = -rays[:, 2] > np.tan(MIN_DEPRESSION_RAD) * horizontal
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(valid, cam.height_m / -rays[:, 2], np.nan)
    de, dn = rays[:, 0] * scale, rays[:, 1] * scale
    cam_e, cam_n = plane.to_enu(np.array([cam.lat]), np.array([cam.lon]))
    east, north = de + cam_e[0], dn + cam_n[0]
    lat, lon = plane.to_latlon(east, north)
    accuracy = ground_accuracy(np.hypot(de, dn), height_m=cam.height_m, focal_px=intrinsics.fx,
                               attitude_sigma_rad=cam.attitude_sigma_rad, uncertainty=uncertainty)
    return GroundPoints(plane=plane, east=east, north=north, lat=lat, lon=lon,
                        accuracy_m=np.where(valid, accuracy, np.nan), valid=valid)


def ground_accuracy(
    rho: np.ndarray, *, height_m: float, focal_px: float, attitude_sigma_rad: float, uncertainty: Uncertainty
) -> np.ndarray:
    """1-sigma radius (metres) at horizontal ranges `rho`; the formula is in the section notes."""
    angle = math.hypot(attitude_sigma_rad, uncertainty.box_bottom_px / focal_px)
    slant2 = height_m**2 + rho**2
    along = slant2 / height_m * angle
    across = rho * angle
    from_height = rho / height_m * uncertainty.height_sigma_m
    return np.sqrt(uncertainty.position_sigma_m**2 + along**2 + across**2 + from_height**2)


def ground_to_image(cam: CameraPose, intrinsics: Intrinsics, latlon: np.ndarray) -> np.ndarray:
    """Vectorised inverse: (N, 2) (lat, lon) ground points -> (N, 2) pixels; NaN behind the camera."""
    latlon = np.asarray(latlon, dtype=np.float64).reshape(-1, 2)
    plane = TangentPlane(cam.lat, cam.lon)
    east, north = plane.to_enu(latlon[:, 0], latlon[:, 1])
    world = np.column_stack([east, north, np.full(len(east), -cam.height_m)])
    local = world @ cam.rotation  # camera coordinates (rotation is orthonormal)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = intrinsics.fx * local[:, 0] / local[:, 2] + intrinsics.cx
        y = intrinsics.fy * local[:, 1] / local[:, 2] + intrinsics.cy
    out = np.column_stack([x, y])
    out[local[:, 2] <= 0] = np.nan
    return out
