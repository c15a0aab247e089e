"""Ground positions for detections: pixel <-> WGS84.

Two parts, kept apart:

1. Local tangent plane (shared by every camera kind). Positions are handled as east/north metres
   around an origin (the calibration centroid). The conversion is a local equirectangular
   projection using the WGS84 meridian (M) and prime-vertical (N) radii of curvature at the
   origin latitude:  north = dlat * M,  east = dlon * N * cos(lat0).  Its error grows with the
   square of the distance: under 3 cm at 500 m and under 1 cm at 200 m from the origin at mid
   latitudes, far below what a box bottom is good for, so pyproj is not worth the dependency.

2. Fixed cameras: a ground-plane homography fitted from >= 4 pixel <-> (lat, lon) pairs maps
   image pixels to tangent-plane metres. (Moving cameras, posed from GPS/attitude, will add their
   own section below and reuse part 1.)

Everything here is a pure function of its arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from streetwatch.edge.alerts import Location

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
