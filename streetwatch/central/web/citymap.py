"""The city map as plain SVG geometry (no tiles, no internet): the user's area, roads, merchant zones
coloured by grade, open cases and hotspots, projected onto a local east/north plane with north up.

Roads are drawn from the data we have: the merchants registered on a road, their zone centres joined
in order along the road's main direction (a principal-axis sort). Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METRES_PER_DEG_LAT = 111_320.0
VIEW_PX = (900, 600)
PAD_PX = 24.0
GRADE_FILL = {"red": "#d1242f", "yellow": "#d4a72c", "green": "#2da44e"}
VIOLATION_FILL = {"illegal_parking": "#0969da", "street_vending": "#8250df", "stacked_goods": "#bc4c00"}


@dataclass(frozen=True)
class ZoneIn:
    merchant_id: str
    name: str
    road: str
    grade: str
    ring: Sequence[tuple[float, float]]  # (lon, lat)


@dataclass(frozen=True)
class PointIn:
    ident: str
    label: str
    kind: str  # violation for cases, "hotspot"
    lat: float
    lon: float
    count: int = 1


@dataclass(frozen=True)
class Projection:
    lon0: float
    lat0: float
    scale: float  # px per metre
    cx: float
    cy: float

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        east = (lon - self.lon0) * METRES_PER_DEG_LAT * math.cos(math.radians(self.lat0))
        north = (lat - self.lat0) * METRES_PER_DEG_LAT
        return round(self.cx + east * self.scale, 1), round(self.cy - north * self.scale, 1)


def fit(points: Sequence[tuple[float, float]], size: tuple[int, int] = VIEW_PX) -> Projection:
    """A projection that fits every (lon, lat) into the view with padding (a 50 m view at least)."""
    if not points:
        return Projection(0.0, 0.0, 1.0, size[0] / 2, size[1] / 2)
    arr = np.asarray(points, dtype=float)
    # centre on the bounding box (not the mean): outliers then use the whole view, not half of it
    lon0 = float(arr[:, 0].min() + arr[:, 0].max()) / 2
    lat0 = float(arr[:, 1].min() + arr[:, 1].max()) / 2
    east = (arr[:, 0] - lon0) * METRES_PER_DEG_LAT * math.cos(math.radians(lat0))
    north = (arr[:, 1] - lat0) * METRES_PER_DEG_LAT
    span_x = max(float(np.abs(east).max()) * 2, 50.0)
    span_y = max(float(np.abs(north).max()) * 2, 50.0)
    scale = min((size[0] - 2 * PAD_PX) / span_x, (size[1] - 2 * PAD_PX) / span_y)
    return Projection(lon0, lat0, scale, size[0] / 2, size[1] / 2)


def road_line(centres: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Order points along their principal axis (a road's merchants lie roughly on a line)."""
    if len(centres) < 2:
        return list(centres)
    arr = np.asarray(centres, dtype=float)
    centred = arr - arr.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    order = np.argsort(centred @ vt[0])
    return [(float(arr[i, 0]), float(arr[i, 1])) for i in order]


@dataclass(frozen=True)
class SvgShape:
    ident: str
    label: str
    kind: str
    fill: str
    points: str = ""  # polygon/polyline points "x,y x,y"
    x: float = 0.0
    y: float = 0.0
    r: float = 0.0


@dataclass(frozen=True)
class CityMap:
    width: int
    height: int
    area: str  # polygon points of the user's area ("" for the whole city)
    roads: list[SvgShape]
    zones: list[SvgShape]
    cases: list[SvgShape]
    hotspots: list[SvgShape]


def _pts(proj: Projection, ring: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{x},{y}" for x, y in (proj.xy(lon, lat) for lon, lat in ring))


def build_city_map(
    zones: Sequence[ZoneIn],
    cases: Sequence[PointIn],
    hotspots: Sequence[PointIn],
    *,
    area_ring: Sequence[tuple[float, float]] = (),
    size: tuple[int, int] = VIEW_PX,
) -> CityMap:
    # Fit the content (a district is kilometres wide, a storefront zone metres): the area outline is
    # drawn where it falls and only sets the view when there is nothing else to show.
    every = [p for z in zones for p in z.ring] + [(c.lon, c.lat) for c in (*cases, *hotspots)]
    proj = fit(every or list(area_ring), size)
    by_road: dict[str, list[tuple[float, float]]] = {}
    for z in zones:
        if z.road:
            ring = np.asarray(z.ring, dtype=float)
            by_road.setdefault(z.road, []).append((float(ring[:, 0].mean()), float(ring[:, 1].mean())))
    roads = [
        SvgShape(road, road, "road", "#8c959f", points=_pts(proj, road_line(c))) for road, c in sorted(by_road.items())
    ]
    zone_shapes = []
    for z in zones:
        ring = np.asarray(z.ring, dtype=float)
        x, y = proj.xy(float(ring[:, 0].mean()), float(ring[:, 1].mean()))
        # r: a marker at the zone's centre so the grade stays visible when the zone is under a pixel
        zone_shapes.append(
            SvgShape(
                z.merchant_id,
                z.name,
                z.grade,
                GRADE_FILL.get(z.grade, "#8c959f"),
                points=_pts(proj, z.ring),
                x=x,
                y=y,
                r=7,
            )
        )
    case_shapes = []
    for c in cases:
        x, y = proj.xy(c.lon, c.lat)
        case_shapes.append(SvgShape(c.ident, c.label, c.kind, VIOLATION_FILL.get(c.kind, "#57606a"), x=x, y=y, r=5))
    hot_shapes = []
    for h in hotspots:
        x, y = proj.xy(h.lon, h.lat)
        hot_shapes.append(SvgShape(h.ident, h.label, "hotspot", "#d1242f", x=x, y=y, r=12 + min(h.count, 20)))
    return CityMap(
        size[0], size[1], _pts(proj, area_ring) if area_ring else "", roads, zone_shapes, case_shapes, hot_shapes
    )
