"""WGS84 <-> GCJ-02, the offset coordinate system of most Chinese commercial base maps (高德, 腾讯).

GCJ-02 is WGS84 plus a deterministic, non-linear offset of a few hundred metres inside mainland
China (none outside). The forward formula is public (the same in every implementation: Krasovsky
ellipsoid constants, polynomial-plus-sine offsets); the inverse has no closed form, so it is found by
fixed-point iteration to well under a millimetre. CGCS2000 differs from WGS84 by centimetres and
is treated as WGS84 here (天地图 tiles in CGCS2000 take WGS84 overlays). Pure functions.
"""

from __future__ import annotations

import math

A = 6378245.0  # Krasovsky 1940 semi-major axis, as the formula uses it
EE = 0.00669342162296594323  # its first eccentricity squared
INVERSE_TOLERANCE_DEG = 1e-10  # ~0.01 mm
INVERSE_MAX_STEPS = 30


def out_of_china(lon: float, lat: float) -> bool:
    """The formula's own box: outside it GCJ-02 equals WGS84."""
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _offset_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _offset_lon(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def _delta(lon: float, lat: float) -> tuple[float, float]:
    """(dlon, dlat) in degrees that GCJ-02 adds at this WGS84 point."""
    d_lat = _offset_lat(lon - 105.0, lat - 35.0)
    d_lon = _offset_lon(lon - 105.0, lat - 35.0)
    rad = lat / 180.0 * math.pi
    magic = 1 - EE * math.sin(rad) ** 2
    sqrt_magic = math.sqrt(magic)
    d_lat = (d_lat * 180.0) / ((A * (1 - EE)) / (magic * sqrt_magic) * math.pi)
    d_lon = (d_lon * 180.0) / (A / sqrt_magic * math.cos(rad) * math.pi)
    return d_lon, d_lat


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """(lon, lat) WGS84 -> (lon, lat) GCJ-02 (GeoJSON order in and out)."""
    if out_of_china(lon, lat):
        return lon, lat
    d_lon, d_lat = _delta(lon, lat)
    return lon + d_lon, lat + d_lat


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """(lon, lat) GCJ-02 -> WGS84 by fixed-point iteration on the forward formula."""
    if out_of_china(lon, lat):
        return lon, lat
    w_lon, w_lat = lon, lat
    for _ in range(INVERSE_MAX_STEPS):
        g_lon, g_lat = wgs84_to_gcj02(w_lon, w_lat)
        e_lon, e_lat = g_lon - lon, g_lat - lat
        w_lon, w_lat = w_lon - e_lon, w_lat - e_lat
        if abs(e_lon) < INVERSE_TOLERANCE_DEG and abs(e_lat) < INVERSE_TOLERANCE_DEG:
            break
    return w_lon, w_lat
