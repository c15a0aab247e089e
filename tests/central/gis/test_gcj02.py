"""GCJ-02 against published reference values.

The reference points are the test vectors of eviltransform (github.com/googollee/eviltransform,
go/transform_test.go and python/test.py: `{wgsLat, wgsLng, gcjLat, gcjLng}` for Shanghai,
Shenzhen and Beijing), the implementation most others are checked against; the same numbers appear
in its C#, Ruby, Haskell and MATLAB ports. They are written here in (lat, lon) as published.
"""

from __future__ import annotations

import math

import pytest

from streetwatch.central.gis.gcj02 import gcj02_to_wgs84, out_of_china, wgs84_to_gcj02

PUBLISHED = [
    # wgs lat, wgs lon, gcj lat, gcj lon
    pytest.param(31.1774276, 121.5272106, 31.17530398364597, 121.531541859215, id="shanghai"),
    pytest.param(22.543847, 113.912316, 22.540796131694766, 113.9171764808363, id="shenzhen"),
    pytest.param(39.911954, 116.377817, 39.91334545536069, 116.38404722455657, id="beijing"),
]


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    north = (a[1] - b[1]) * 111_320.0
    east = (a[0] - b[0]) * 111_320.0 * math.cos(math.radians(a[1]))
    return math.hypot(east, north)


@pytest.mark.parametrize(("wlat", "wlon", "glat", "glon"), PUBLISHED)
def test_wgs84_to_gcj02_gives_the_published_values(wlat: float, wlon: float, glat: float, glon: float) -> None:
    lon, lat = wgs84_to_gcj02(wlon, wlat)
    assert lon == pytest.approx(glon, abs=1e-9) and lat == pytest.approx(glat, abs=1e-9)


@pytest.mark.parametrize(("wlat", "wlon", "glat", "glon"), PUBLISHED)
def test_gcj02_to_wgs84_returns_the_published_wgs84_point_within_a_millimetre(
    wlat: float, wlon: float, glat: float, glon: float
) -> None:
    back = gcj02_to_wgs84(glon, glat)
    assert _metres(back, (wlon, wlat)) < 0.001
    # the offset being undone is hundreds of metres: the test would see a missing conversion
    assert _metres((glon, glat), (wlon, wlat)) > 200


@pytest.mark.parametrize(
    ("lon", "lat", "outside"),
    [(121.47, 31.23, False), (24.94, 60.17, True), (-104.9903, 39.7392, True), (153.0251, -27.4698, True)],
)
def test_outside_china_gcj02_is_wgs84(lon: float, lat: float, outside: bool) -> None:
    assert out_of_china(lon, lat) is outside
    if outside:
        assert wgs84_to_gcj02(lon, lat) == (lon, lat) == gcj02_to_wgs84(lon, lat)
