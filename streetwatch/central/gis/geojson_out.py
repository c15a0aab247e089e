"""Cases, merchants and hotspots as RFC 7946 GeoJSON: WGS84 positions in (lon, lat) order,
polygons with counter-clockwise exterior rings (the right-hand rule), 7 decimals (~1 cm).

`to_datum` converts every position for a base map in GCJ-02 (the city map does; the exports stay
WGS84, as RFC 7946 requires). Pure functions over the ORM rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import shapely
import shapely.geometry
from shapely.geometry import mapping

from streetwatch.central.gis.gcj02 import wgs84_to_gcj02
from streetwatch.central.models import Case, Hotspot, Merchant

PRECISION = 7
Position = tuple[float, float]
Converter = Callable[[float, float], Position]
Feature = dict[str, Any]


def identity(lon: float, lat: float) -> Position:
    return lon, lat


def converter(datum: str) -> Converter:
    """(lon, lat) WGS84 -> the datum of the tiles (CGCS2000 is WGS84 to centimetres)."""
    return wgs84_to_gcj02 if datum == "gcj02" else identity


def transformed(geometry: shapely.Geometry, to: Converter) -> shapely.Geometry:
    """The geometry with every position passed through `to` (a datum change)."""
    if to is identity:
        return geometry
    return shapely.transform(geometry, lambda xy: [list(to(float(x), float(y))) for x, y in xy])


def convert_geojson(geometry: dict[str, Any], to: Converter) -> dict[str, Any]:
    """A GeoJSON geometry with its positions passed through `to`."""
    if to is identity:
        return geometry
    return dict(mapping(transformed(shapely.geometry.shape(geometry), to)))


def _point(lon: float, lat: float, to: Converter) -> dict[str, Any]:
    x, y = to(lon, lat)
    return {"type": "Point", "coordinates": [round(x, PRECISION), round(y, PRECISION)]}


def geometry_of(wkt: str, to: Converter = identity) -> dict[str, Any] | None:
    """A lon/lat WKT zone as a GeoJSON geometry, right-hand wound, converted to the datum."""
    geom = shapely.from_wkt(wkt, on_invalid="ignore")
    if geom is None or geom.is_empty:
        return None
    geom = shapely.set_precision(transformed(geom, to), 10**-PRECISION)
    if isinstance(geom, shapely.Polygon | shapely.MultiPolygon):
        geom = shapely.orient_polygons(geom)
    return dict(mapping(geom))


def case_feature(case: Case, merchant: Merchant | None, to: Converter = identity) -> Feature | None:
    if case.lat is None or case.lon is None:
        return None
    return {
        "type": "Feature",
        "id": case.id,
        "geometry": _point(case.lon, case.lat, to),
        "properties": {
            "id": case.id,
            "violation": case.violation,
            "status": case.status,
            "priority": case.priority,
            "first_seen": case.first_seen.isoformat(),
            "last_seen": case.last_seen.isoformat(),
            "alert_count": case.alert_count,
            "camera_id": case.camera_id,
            "area_id": case.area_id,
            "merchant_id": case.merchant_id,
            "merchant_name": merchant.name if merchant else None,
            "address": merchant.address if merchant else None,
            "road": merchant.road if merchant else None,
        },
    }


def merchant_feature(merchant: Merchant, to: Converter = identity) -> Feature | None:
    geometry = geometry_of(merchant.zone_wkt, to)
    if geometry is None:
        return None
    return {
        "type": "Feature",
        "id": merchant.id,
        "geometry": geometry,
        "properties": {
            "id": merchant.id,
            "name": merchant.name,
            "address": merchant.address,
            "road": merchant.road,
            "grade": merchant.grade,
            "area_id": merchant.area_id,
        },
    }


def hotspot_feature(hotspot: Hotspot, to: Converter = identity) -> Feature | None:
    if hotspot.lat is None or hotspot.lon is None:
        return None
    return {
        "type": "Feature",
        "id": hotspot.key,
        "geometry": _point(hotspot.lon, hotspot.lat, to),
        "properties": {
            "key": hotspot.key,
            "label": hotspot.label,
            "road": hotspot.road,
            "case_count": hotspot.case_count,
            "unreviewed_count": hotspot.unreviewed_count,
            "since": hotspot.since.isoformat() if hotspot.since else None,
        },
    }


def collection(features: Iterable[Feature | None], **members: object) -> dict[str, Any]:
    """A FeatureCollection of the features that have a position (foreign members after)."""
    return {"type": "FeatureCollection", "features": [f for f in features if f is not None], **members}


def cases_collection(
    cases: Iterable[Case], merchants: Mapping[str, Merchant], to: Converter = identity
) -> dict[str, Any]:
    return collection(case_feature(c, merchants.get(c.merchant_id or ""), to) for c in cases)
