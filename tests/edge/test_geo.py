"""Geo: tangent plane against published WGS84 values, ground homography on a synthetic camera.

The synthetic camera is a pinhole (f = 1000 px, 1920x1080) 8 m above a street near Suzhou
(31.30 N, 120.58 E), looking north and pitched 20 degrees down. Its true ground homography is
built from that pose, so every expected value below comes from the camera model, not from the
code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from streetwatch.edge.alerts import Location
from streetwatch.edge.geo import (
    BehindHorizonError,
    CalibrationError,
    TangentPlane,
    calibration_report,
    fit_homography,
    format_calibration_report,
    geo_to_pixel,
    pixel_to_geo,
    pixels_to_geo,
    polygon_geo_to_px,
)

ORIGIN = TangentPlane(31.30, 120.58)
F_PX, CX, CY = 1000.0, 960.0, 540.0
HEIGHT_M, PITCH_DEG = 8.0, 20.0


def _ground_to_pixel_matrix() -> np.ndarray:
    """H_true: (east, north, 1) metres -> pixels, from K [r1 r2 t] of the camera pose."""
    k = np.array([[F_PX, 0, CX], [0, F_PX, CY], [0, 0, 1]])
    p = math.radians(PITCH_DEG)
    # camera axes in world (east, north, up): x = east, y = down-ish, z = forward (north, pitched)
    x_axis = np.array([1.0, 0.0, 0.0])
    z_axis = np.array([0.0, math.cos(p), -math.sin(p)])
    y_axis = np.cross(z_axis, x_axis)
    rot = np.stack([x_axis, y_axis, z_axis])  # world -> camera
    centre = np.array([0.0, 0.0, HEIGHT_M])
    t = -rot @ centre
    return k @ np.column_stack([rot[:, 0], rot[:, 1], t])


H_TRUE = _ground_to_pixel_matrix()
H_TRUE_INV = np.linalg.inv(H_TRUE)


def true_ground(x: float, y: float) -> tuple[float, float]:
    e, n, w = H_TRUE_INV @ np.array([x, y, 1.0])
    return e / w, n / w


def true_latlon(x: float, y: float) -> tuple[float, float]:
    e, n = true_ground(x, y)
    lat, lon = ORIGIN.to_latlon(np.array([e]), np.array([n]))
    return float(lat[0]), float(lon[0])


def calibration(pixels: list[tuple[float, float]], noise_m: float = 0.0, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    pairs = []
    for x, y in pixels:
        e, n = true_ground(x, y)
        e, n = e + rng.normal(0, noise_m), n + rng.normal(0, noise_m)
        lat, lon = ORIGIN.to_latlon(np.array([e]), np.array([n]))
        pairs.append(((x, y), (float(lat[0]), float(lon[0]))))
    return pairs


GRID = [(x, y) for x in (200.0, 700.0, 1200.0, 1700.0) for y in (650.0, 800.0, 950.0, 1060.0)]
FOUR = [(300.0, 700.0), (1600.0, 700.0), (1800.0, 1050.0), (100.0, 1050.0)]


@pytest.mark.parametrize(
    ("lat", "m_per_deg_lat", "m_per_deg_lon"),
    [  # WGS84 lengths of one degree (Wikipedia, "Latitude", table of degree lengths)
        (0.0, 110_574.0, 111_320.0),
        (30.0, 110_852.0, 96_486.0),
        (45.0, 111_132.0, 78_847.0),
        (60.0, 111_412.0, 55_800.0),
    ],
)
def test_tangent_plane_matches_published_degree_lengths(
    lat: float, m_per_deg_lat: float, m_per_deg_lon: float
):
    plane = TangentPlane(lat, 10.0)
    east, north = plane.to_enu(np.array([lat + 0.001, lat]), np.array([10.0, 10.001]))
    assert north[0] == pytest.approx(m_per_deg_lat / 1000, abs=0.01)
    assert east[1] == pytest.approx(m_per_deg_lon / 1000, abs=0.01)


def test_tangent_plane_round_trips_across_the_antimeridian():
    plane = TangentPlane(-17.0, 179.9995)
    east, north = plane.to_enu(np.array([-17.001]), np.array([-179.9995]))
    assert east[0] == pytest.approx(106.4, abs=0.5)  # 0.001 deg east of the origin, not 360 deg west
    lat, lon = plane.to_latlon(east, north)
    assert (lat[0], lon[0]) == pytest.approx((-17.001, -179.9995), abs=1e-9)


@pytest.mark.parametrize("pixels", [FOUR, GRID], ids=["4-points", "16-points"])
@pytest.mark.parametrize("probe", [(960.0, 1000.0), (150.0, 620.0), (1750.0, 900.0), (640.0, 700.0)])
def test_pixel_geo_pixel_round_trip(pixels: list, probe: tuple[float, float]):
    h = fit_homography(calibration(pixels))
    loc = pixel_to_geo(h, *probe)
    assert isinstance(loc, Location)
    exp_lat, exp_lon = true_latlon(*probe)
    e, n = ORIGIN.to_enu(np.array([loc.lat, exp_lat]), np.array([loc.lon, exp_lon]))
    assert math.hypot(e[0] - e[1], n[0] - n[1]) < 0.05
    assert geo_to_pixel(h, loc.lat, loc.lon) == pytest.approx(probe, abs=0.1)


def test_four_points_fit_exactly():
    pairs = calibration(FOUR)
    h = fit_homography(pairs)
    assert h.rmse_m < 1e-6
    for (x, y), (lat, lon) in pairs:
        assert geo_to_pixel(h, lat, lon) == pytest.approx((x, y), abs=1e-4)
    report = calibration_report(pairs)
    assert report.max_error_m < 1e-6
    assert all(math.isnan(p.loo_error_m) for p in report.points)  # nothing to leave out with 4


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (calibration(FOUR[:3]), "at least 4 point pairs, got 3"),
        (calibration([(100.0, 700.0), (500.0, 800.0), (900.0, 900.0), (1300.0, 1000.0)]), "collinear"),
        (calibration([(100.0, 700.0), (500.0, 800.0), (900.0, 900.0), (1300.0, 700.0)]), "points 0, 1 and 2"),
        (
            calibration([(100.0, 700.0), (500.0, 800.0), (900.0, 900.0), (1300.0, 1000.0), (1500.0, 700.0)]),
            "points 0, 1, 2 and 3 are collinear and only one",
        ),
        (calibration(FOUR[:3] + [FOUR[0]]), "points 0, 1 and 3 are collinear"),  # a point given twice
        (calibration(FOUR[:3]) + [((300.0, 700.0), (float("nan"), 120.58))], r"points\[3\]: non-finite"),
        (calibration(FOUR[:3]) + [((300.0, 700.0), (120.58, 31.30))], r"points\[3\].*out of range"),
        (
            [((x, y), (31.30, 120.58 + i * 1e-4)) for i, (x, y) in enumerate(FOUR)],
            "ground points are collinear",
        ),
        ([((1.0, 2.0),)] * 4, "expected pairs"),
    ],
    ids=[
        "3-points", "collinear-image", "3-of-4-collinear", "4-of-5-collinear", "duplicate", "nan",
        "lon-lat-swapped", "collinear-ground", "shape",
    ],
)
def test_degenerate_calibration_is_refused_with_the_reason(pairs: list, message: str):
    with pytest.raises(CalibrationError, match=message):
        fit_homography(pairs)


def test_accuracy_grows_towards_the_horizon():
    h = fit_homography(calibration(GRID, noise_m=0.2))
    rows = np.array([[960.0, y] for y in (1070.0, 800.0, 560.0, 400.0, 300.0, 220.0)])  # 7 m .. ~170 m
    points = pixels_to_geo(h, rows)
    assert points.valid.all()
    distances = [math.hypot(*true_ground(x, y)) for x, y in rows]
    assert distances == sorted(distances)  # rows go away from the camera
    assert np.all(np.diff(points.accuracy_m) > 0)
    assert points.accuracy_m[0] < 0.5 and points.accuracy_m[-1] > 10.0


def test_accuracy_formula_combines_calibration_sigma_and_pixel_footprint():
    h = fit_homography(calibration(GRID, noise_m=0.3, seed=3))
    x, y = 960.0, 800.0
    # metres covered by 3 px straight down the image at (x, y), from the true camera model
    stretch = math.dist(true_ground(x, y - 1.5), true_ground(x, y + 1.5))
    expected = math.hypot(h.sigma_m, stretch)
    assert pixel_to_geo(h, x, y, box_bottom_px=3.0).accuracy_m == pytest.approx(expected, rel=0.1)


def test_pixels_above_the_horizon_are_refused():
    h = fit_homography(calibration(GRID))
    horizon_y = CY - F_PX * math.tan(math.radians(PITCH_DEG))  # ~176 px
    with pytest.raises(BehindHorizonError, match="above the horizon"):
        pixel_to_geo(h, 960.0, horizon_y - 50)
    points = pixels_to_geo(h, np.array([[960.0, horizon_y - 50], [960.0, 900.0]]))
    assert points.valid.tolist() == [False, True]
    assert math.isnan(points.lat[0]) and math.isnan(points.accuracy_m[0])


def test_ground_behind_the_camera_has_no_pixel():
    h = fit_homography(calibration(GRID))
    lat, lon = ORIGIN.to_latlon(np.array([0.0]), np.array([-20.0]))  # 20 m south, camera looks north
    with pytest.raises(BehindHorizonError, match="behind the camera"):
        geo_to_pixel(h, float(lat[0]), float(lon[0]))


def test_zone_polygon_geo_converts_to_pixels_and_names_a_bad_vertex():
    h = fit_homography(calibration(GRID))
    corners = [(400.0, 1000.0), (1500.0, 1000.0), (1500.0, 700.0), (400.0, 700.0)]
    polygon = [true_latlon(x, y) for x, y in corners]
    pixels = polygon_geo_to_px(h, polygon, zone_id="kerb-1")
    assert np.allclose(pixels, corners, atol=0.1)
    lat, lon = ORIGIN.to_latlon(np.array([0.0]), np.array([-20.0]))
    with pytest.raises(BehindHorizonError, match=r"zone 'kerb-1' polygon_geo\[2\]"):
        polygon_geo_to_px(h, [polygon[0], polygon[1], (float(lat[0]), float(lon[0]))], zone_id="kerb-1")


@pytest.mark.parametrize("noise_m", [0.1, 0.5, 1.0])
def test_noisy_calibration_rmse_is_close_to_the_noise(noise_m: float):
    pixels = [(x, y) for x in np.linspace(100, 1800, 8) for y in (620.0, 720.0, 850.0, 1000.0, 1070.0)]
    h = fit_homography(calibration(pixels, noise_m=noise_m, seed=7))
    n = len(pixels)
    # 2-D residual RMS for per-axis noise s with 8 fitted parameters: s * sqrt(2 (n - 4) / n)
    assert h.rmse_m == pytest.approx(noise_m * math.sqrt(2 * (n - 4) / n), rel=0.25)
    assert h.sigma_m == pytest.approx(noise_m, rel=0.25)


def test_ransac_drops_a_wrong_point_and_the_report_shows_it():
    pairs = calibration(GRID, noise_m=0.05, seed=1)
    (x, y), (lat, lon) = pairs[5]
    pairs[5] = ((x, y), (lat + 0.0001, lon))  # ~11 m off: a mistyped coordinate
    plain = calibration_report(pairs)
    worst = max(plain.points, key=lambda p: p.loo_error_m)
    assert worst.index == 5 and worst.loo_error_m > 8
    robust = calibration_report(pairs, ransac_threshold_m=1.0)
    assert [p.index for p in robust.points if not p.inlier] == [5]
    assert robust.rmse_m < 0.15
    text = format_calibration_report(robust, camera_id="cam-1")
    assert text.splitlines()[0].startswith("camera cam-1: 16 calibration points")
    assert "NO" in text.splitlines()[2 + 5]
    assert "RMSE" in text.splitlines()[-1]
