"""The city map's layers (一张图) as GeoJSON for the Leaflet page (static/citymap.js): merchant zones
by grade, open cases, confirmed cases for the heat layer, hotspots, roads graded, area boundaries
and cameras, each in the datum of the base map's tiles (GCJ-02 tiles get GCJ-02 overlays).

Roads are drawn along the real street where the vector base map has one of that name; otherwise a
line through the road's merchant zones in order along its main direction (a principal-axis sort).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import shapely
import shapely.geometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from streetwatch.central.access import AreaScope
from streetwatch.central.case_status import UNRESOLVED_STATUSES, VIOLATION_STATUSES, CaseStatus
from streetwatch.central.gis.geojson_out import (
    Converter,
    Feature,
    case_feature,
    collection,
    convert_geojson,
    converter,
    geometry_of,
    hotspot_feature,
    merchant_feature,
)
from streetwatch.central.gis.queries import GeoCaseFilters, active_hotspots, located_cases
from streetwatch.central.models import Alert, Area, EdgeBox, Merchant
from streetwatch.central.workflow.hotspots import RoadGrade

GRADE_FILL = {"red": "#d1242f", "yellow": "#d4a72c", "green": "#2da44e"}
VIOLATION_FILL = {"illegal_parking": "#0969da", "street_vending": "#8250df", "stacked_goods": "#bc4c00"}
HEAT_STATUSES = (*VIOLATION_STATUSES, CaseStatus.CLOSED)  # a reviewer said "violation"
HEAT_DAYS = 366
TRACK_HOURS = 6  # a moving camera's last pass: its located alerts of the last hours
TRACK_POINTS = 2000


@dataclass(frozen=True)
class MapInput:
    """What the layers are drawn from (read by `read_map_input`)."""

    merchants: Sequence[Merchant]
    roads: Sequence[RoadGrade]
    base_roads: Mapping[str, list[Any]]  # street name -> its GeoJSON line geometries (WGS84)
    areas: Sequence[Area]


def road_line(centres: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Order points along their principal axis (a road's merchants lie roughly on a line)."""
    if len(centres) < 2:
        return list(centres)
    arr = np.asarray(centres, dtype=float)
    centred = arr - arr.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    order = np.argsort(centred @ vt[0])
    return [(float(arr[i, 0]), float(arr[i, 1])) for i in order]


def base_road_lines(basemap: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """The vector base map's named roads: name -> line geometries."""
    lines: dict[str, list[Any]] = {}
    for f in (basemap or {}).get("features", []):
        props = f.get("properties") or {}
        if props.get("kind") == "road" and props.get("name"):
            lines.setdefault(props["name"], []).append(f["geometry"])
    return lines


def road_features(data: MapInput, to: Converter) -> list[Feature]:
    """Each graded road: its real street from the base map, else the line through its merchants."""
    centres: dict[str, list[tuple[float, float]]] = {}
    for m in data.merchants:
        zone = shapely.from_wkt(m.zone_wkt, on_invalid="ignore")
        if m.road and zone is not None and not zone.is_empty:
            c = zone.centroid
            centres.setdefault(m.road, []).append((float(c.x), float(c.y)))
    features: list[Feature] = []
    for road in data.roads:
        props = {"road": road.road, "grade": road.grade, "red": road.record.red, "yellow": road.record.yellow,
                 "green": road.record.green, "hotspots": road.record.hotspots}
        real = data.base_roads.get(road.road)
        if real:
            geometry: dict[str, Any] = {"type": "MultiLineString",
                                        "coordinates": [g["coordinates"] for g in real if g["type"] == "LineString"]}
            props["source"] = "basemap"
        elif len(centres.get(road.road, [])) >= 2:
            geometry = {"type": "LineString", "coordinates": [list(p) for p in road_line(centres[road.road])]}
            props["source"] = "merchants"
        else:
            continue
        features.append({"type": "Feature", "geometry": convert_geojson(geometry, to), "properties": props})
    return features


def area_features(areas: Iterable[Area], to: Converter) -> list[Feature]:
    features = []
    for area in areas:
        geometry = geometry_of(area.polygon_wkt, to) if area.polygon_wkt else None
        if geometry is not None:
            features.append({"type": "Feature", "geometry": geometry,
                             "properties": {"id": area.id, "name": area.name, "level": area.level}})
    return features


def camera_features(session: Session, scope: AreaScope | None, *, now: datetime, to: Converter) -> list[Feature]:
    """Fixed cameras: the ground their calibration spans (from the boxes' status); moving cameras:
    their last pass, the located alerts of the last TRACK_HOURS in time order."""
    features: list[Feature] = []
    for box in session.scalars(select(EdgeBox).order_by(EdgeBox.edge_id)):
        for camera in (box.status or {}).get("cameras") or []:
            view = camera.get("view") if isinstance(camera, dict) else None
            if not view or len(view) < 4:
                continue
            ring = shapely.Polygon(view)
            if scope is not None and not scope.contains_point(ring.centroid.y, ring.centroid.x):
                continue
            geometry = convert_geojson(dict(shapely.geometry.mapping(shapely.orient_polygons(ring))), to)
            features.append({"type": "Feature", "geometry": geometry,
                             "properties": {"camera_id": camera.get("id"), "kind": camera.get("kind"),
                                            "edge_id": box.edge_id, "state": box.state}})
    rows = session.execute(
        select(Alert.camera_id, Alert.source_kind, Alert.lon, Alert.lat)
        .where(Alert.source_kind != "fixed", Alert.lat.is_not(None), Alert.lon.is_not(None),
               Alert.observed_at >= now - timedelta(hours=TRACK_HOURS))
        .order_by(Alert.camera_id, Alert.observed_at)
        .limit(TRACK_POINTS)
    )
    tracks: dict[tuple[str, str], list[list[float]]] = {}
    for camera_id, kind, lon, lat in rows:  # located rows only (the query's filter)
        if lat is not None and lon is not None and (scope is None or scope.contains_point(lat, lon)):
            tracks.setdefault((camera_id, kind), []).append(list(to(lon, lat)))
    for (camera_id, kind), points in tracks.items():
        if len(points) >= 2:
            features.append({"type": "Feature", "geometry": {"type": "LineString", "coordinates": points},
                             "properties": {"camera_id": camera_id, "kind": kind}})
    return features


def map_layers(
    session: Session, scope: AreaScope | None, data: MapInput, *, datum: str, now: datetime
) -> dict[str, Any]:
    """Every overlay of the city map for the user's area, in the tiles' datum."""
    to = converter(datum)
    scopes = [scope]
    merchants = {m.id: m for m in data.merchants}
    open_cases = located_cases(session, GeoCaseFilters(statuses=[s.value for s in UNRESOLVED_STATUSES]), scopes=scopes)
    confirmed = located_cases(
        session,
        GeoCaseFilters(statuses=[s.value for s in HEAT_STATUSES], seen_from=now - timedelta(days=HEAT_DAYS)),
        scopes=scopes,
    )
    return {
        "datum": datum,
        "now": now.isoformat(),
        "zones": collection(merchant_feature(m, to) for m in data.merchants),
        "cases": collection(case_feature(c, merchants.get(c.merchant_id or ""), to) for c in open_cases),
        "confirmed": collection(case_feature(c, merchants.get(c.merchant_id or ""), to) for c in confirmed),
        "hotspots": collection(hotspot_feature(h, to) for h in active_hotspots(session, scope)),
        "roads": collection(road_features(data, to)),
        "areas": collection(area_features(data.areas, to)),
        "cameras": collection(camera_features(session, scope, now=now, to=to)),
    }


def scoped_areas(session: Session, scope: AreaScope | None) -> list[Area]:
    """The area boundaries a user sees: every area for the city, else the user's subtree."""
    areas = list(session.scalars(select(Area).order_by(Area.id)))
    if scope is None:
        return areas
    return [a for a in areas if a.id in scope.area_ids]
