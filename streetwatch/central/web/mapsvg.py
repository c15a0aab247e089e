"""The case map as plain SVG geometry: merchant zones around a case and the case point.

No tiles and no internet: positions are projected onto a local east/north plane in metres
(equirectangular around the case; error well under a centimetre across a 100 m view) and then onto
the SVG's pixel box with north up. Pure functions, so the page and the tests see the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METRES_PER_DEG_LAT = 111_320.0
VIEW_PX = (240, 180)
DEFAULT_HALF_SPAN_M = 20.0
MAX_HALF_SPAN_M = 150.0


@dataclass(frozen=True)
class ZoneShape:
    """A merchant's responsibility zone: an exterior ring of (lon, lat) pairs, GeoJSON order."""

    merchant_id: str
    label: str
    ring: Sequence[tuple[float, float]]


@dataclass(frozen=True)
class SvgZone:
    merchant_id: str
    label: str
    short_label: str  # fitted to the zone's width; the full label is the tooltip
    points: str  # "x,y x,y ..." for <polygon points=...>
    label_x: float
    label_y: float
    attributed: bool


@dataclass(frozen=True)
class SvgMap:
    width: int
    height: int
    case_x: float
    case_y: float
    accuracy_px: float
    zones: tuple[SvgZone, ...]
    scale_bar_px: float
    scale_bar_m: int


def to_local_m(lon: float, lat: float, *, lon0: float, lat0: float) -> tuple[float, float]:
    """(east, north) in metres of (lon, lat) relative to (lon0, lat0)."""
    east = (lon - lon0) * METRES_PER_DEG_LAT * math.cos(math.radians(lat0))
    north = (lat - lat0) * METRES_PER_DEG_LAT
    return east, north


def _half_span(
    zones: Sequence[ZoneShape], *, lon0: float, lat0: float, accuracy_m: float, attributed: str | None
) -> float:
    """Fit the view to the accuracy circle and the attributed zone (others may be cut at the edge)."""
    reach = max(DEFAULT_HALF_SPAN_M, accuracy_m * 1.3)
    for zone in zones:
        if zone.merchant_id != attributed:
            continue
        for lon, lat in zone.ring:
            east, north = to_local_m(lon, lat, lon0=lon0, lat0=lat0)
            reach = max(reach, abs(east) * 1.15, abs(north) * 1.15)
    return min(reach, MAX_HALF_SPAN_M)


def fit_label(label: str, width_px: float, *, px_per_char: float = 5.2) -> str:
    """The label shortened to fit a polygon `width_px` wide (empty when not even 3 characters fit)."""
    room = int(width_px / px_per_char)
    if room < 3:
        return ""
    return label if len(label) <= room else label[: room - 1] + "…"


def _nice_scale(metres_per_px: float, target_px: float = 60.0) -> int:
    raw = metres_per_px * target_px
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200):
        if step >= raw:
            return step
    return 500


def build_map(
    lat: float,
    lon: float,
    *,
    accuracy_m: float = 0.0,
    zones: Sequence[ZoneShape] = (),
    attributed_merchant_id: str | None = None,
) -> SvgMap:
    """Project the case point and nearby zones into a north-up SVG box centred on the case."""
    width, height = VIEW_PX
    half = _half_span(zones, lon0=lon, lat0=lat, accuracy_m=accuracy_m, attributed=attributed_merchant_id)
    px_per_m = (min(width, height) / 2) / half
    cx, cy = width / 2, height / 2

    scale = np.array([METRES_PER_DEG_LAT * math.cos(math.radians(lat)), -METRES_PER_DEG_LAT]) * px_per_m
    svg_zones = []
    for zone in zones:
        if not zone.ring:
            continue
        # (lon, lat) -> pixels in one vectorised step: east to the right, north up.
        pts = np.round((np.asarray(zone.ring, dtype=float) - (lon, lat)) * scale + (cx, cy), 1)
        xs, ys = pts[:, 0], pts[:, 1]
        svg_zones.append(
            SvgZone(
                merchant_id=zone.merchant_id,
                label=zone.label,
                short_label=fit_label(zone.label, float(xs.max() - xs.min()) + 16),
                points=" ".join(f"{x:g},{y:g}" for x, y in pts.tolist()),
                label_x=round(float(xs.min() + xs.max()) / 2, 1),
                label_y=round(float(ys.max()) + 10, 1),  # under the zone: the case point stays clear
                attributed=zone.merchant_id == attributed_merchant_id,
            )
        )
    bar_m = _nice_scale(1 / px_per_m)
    return SvgMap(
        width=width,
        height=height,
        case_x=cx,
        case_y=cy,
        accuracy_px=round(accuracy_m * px_per_m, 1),
        zones=tuple(svg_zones),
        scale_bar_px=round(bar_m * px_per_m, 1),
        scale_bar_m=bar_m,
    )
