"""The case map's geometry (pure): local metres, north-up projection, fitted labels, scale bar."""

from __future__ import annotations

import math

import pytest

from streetwatch.central.web.mapsvg import (
    DEFAULT_HALF_SPAN_M,
    MAX_HALF_SPAN_M,
    VIEW_PX,
    ZoneShape,
    build_map,
    fit_label,
    to_local_m,
)

LAT0, LON0 = 31.2351, 121.4721
M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(LAT0))


@pytest.mark.parametrize(
    ("lon", "lat", "east", "north"),
    [
        (LON0, LAT0, 0.0, 0.0),
        (LON0, LAT0 + 0.001, 0.0, 111.32),
        (LON0 + 0.001, LAT0, 0.001 * M_PER_DEG_LON, 0.0),
        (LON0 - 0.0005, LAT0 - 0.0005, -0.0005 * M_PER_DEG_LON, -55.66),
    ],
)
def test_local_metres(lon: float, lat: float, east: float, north: float) -> None:
    got = to_local_m(lon, lat, lon0=LON0, lat0=LAT0)
    assert got == pytest.approx((east, north), abs=0.01)


def _square(east_m: float, north_m: float, size_m: float, merchant_id: str = "m-1", label: str = "Shop") -> ZoneShape:
    dlon, dlat = 1 / M_PER_DEG_LON, 1 / 111_320.0
    x0, y0 = LON0 + east_m * dlon, LAT0 + north_m * dlat
    x1, y1 = x0 + size_m * dlon, y0 + size_m * dlat
    return ZoneShape(merchant_id, label, [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)])


def test_case_is_centred_and_north_is_up() -> None:
    m = build_map(LAT0, LON0, zones=[_square(5, 5, 4)], attributed_merchant_id="m-1")
    width, height = VIEW_PX
    assert (m.case_x, m.case_y) == (width / 2, height / 2)
    px_per_m = (min(width, height) / 2) / DEFAULT_HALF_SPAN_M
    first = m.zones[0].points.split()[0]
    x, y = (float(v) for v in first.split(","))
    # the zone's south-west corner is 5 m east and 5 m north: right of and above the case point
    assert x == pytest.approx(width / 2 + 5 * px_per_m, abs=0.1)
    assert y == pytest.approx(height / 2 - 5 * px_per_m, abs=0.1)
    assert m.zones[0].attributed


def test_view_grows_to_show_the_attributed_zone_only() -> None:
    far = _square(40, 0, 10, merchant_id="far")
    near = build_map(LAT0, LON0, zones=[far], attributed_merchant_id=None)
    assert near.scale_bar_m <= 20  # the default view: the unattributed far zone is cut off
    fitted = build_map(LAT0, LON0, zones=[far], attributed_merchant_id="far")
    half = 50 * 1.15  # the far corner is 50 m east
    assert fitted.scale_bar_px / fitted.scale_bar_m == pytest.approx((min(VIEW_PX) / 2) / half, rel=1e-3)


def test_view_is_bounded() -> None:
    m = build_map(LAT0, LON0, zones=[_square(5000, 0, 10)], attributed_merchant_id="m-1")
    assert m.scale_bar_px / m.scale_bar_m == pytest.approx((min(VIEW_PX) / 2) / MAX_HALF_SPAN_M, rel=1e-3)


def test_accuracy_circle_in_pixels() -> None:
    m = build_map(LAT0, LON0, accuracy_m=10)
    assert m.accuracy_px == pytest.approx(10 * (min(VIEW_PX) / 2) / DEFAULT_HALF_SPAN_M, abs=0.1)


@pytest.mark.parametrize(
    ("label", "width_px", "expected"),
    [
        ("Lotus Tea House", 200, "Lotus Tea House"),
        ("Lotus Tea House", 52, "Lotus Tea…"),
        ("Lotus Tea House", 16, "Lo…"),
        ("Lotus Tea House", 10, ""),
    ],
)
def test_fit_label(label: str, width_px: float, expected: str) -> None:
    assert fit_label(label, width_px) == expected
