"""Per-area visibility: who may see (and act on) which cases and merchants.

Three levels (docs/design.md, "Where the rules come from"): city, district, street. A user without
an area, a user of a city-level area, and every admin see everything. Any other user of area A sees
a case when
- the case's `area_id` is A or one of A's descendants, or
- the case's point lies inside A's polygon (covers the case where `area_id` was not filled in).

The database has no spatial index, so queries use a cheap SQL pre-filter (area ids, or the
polygon's bounding box) and `refine` drops rows the exact polygon test rejects. Everything here
except `load_scope` is pure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.orm import Session

from streetwatch.central.models import Area, Case, Merchant, User

log = logging.getLogger(__name__)

UNRESTRICTED_LEVELS = frozenset({"city"})


@dataclass(frozen=True)
class AreaScope:
    """The part of the city one area covers: its id with all descendants, and its polygon."""

    root_id: str
    area_ids: frozenset[str]
    polygon: BaseGeometry | None
    bbox: tuple[float, float, float, float] | None  # (min_lon, min_lat, max_lon, max_lat)
    bbox_exact: bool = False  # the polygon is its bounding box: the SQL pre-filter is then exact

    def contains_point(self, lat: float | None, lon: float | None) -> bool:
        if self.polygon is None or lat is None or lon is None:
            return False
        return bool(shapely.intersects_xy(self.polygon, lon, lat))  # the edge counts, as in SQL BETWEEN

    def covers(self, *, area_id: str | None, lat: float | None, lon: float | None) -> bool:
        """The exact test: the area id is inside the subtree or the point is inside the polygon."""
        if area_id is not None and area_id in self.area_ids:
            return True
        return self.contains_point(lat, lon)


def descendants(parents: Mapping[str, str | None], root_id: str) -> frozenset[str]:
    """`root_id` and every area below it, from an {area_id: parent_id} map (cycles are cut)."""
    children: dict[str, list[str]] = {}
    for area_id, parent_id in parents.items():
        if parent_id is not None:
            children.setdefault(parent_id, []).append(area_id)
    found: set[str] = set()
    stack = [root_id]
    while stack:
        current = stack.pop()
        if current in found:
            continue
        found.add(current)
        stack.extend(children.get(current, ()))
    return frozenset(found)


def build_scope(areas: Iterable[Area], root_id: str) -> AreaScope:
    """The scope of `root_id` from all area rows (areas are few: one query, no recursion in SQL)."""
    rows = list(areas)
    by_id = {a.id: a for a in rows}
    root = by_id.get(root_id)
    polygon = None
    if root is not None and root.polygon_wkt:
        polygon = shapely.from_wkt(root.polygon_wkt)
        shapely.prepare(polygon)
    bbox = tuple(float(v) for v in polygon.bounds) if polygon is not None else None
    exact = polygon is None or bool(shapely.equals(polygon, shapely.box(*polygon.bounds)))
    return AreaScope(
        root_id=root_id,
        area_ids=descendants({a.id: a.parent_id for a in rows}, root_id),
        polygon=polygon,
        bbox=bbox,  # type: ignore[arg-type]
        bbox_exact=exact,
    )


def is_unrestricted(user: User, user_area_level: str | None) -> bool:
    """Admins, users without an area and city-level users see the whole city."""
    return user.role == "admin" or user.area_id is None or user_area_level in UNRESTRICTED_LEVELS


def load_scope(session: Session, user: User) -> AreaScope | None:
    """The user's scope, or None when the user may see everything."""
    areas = list(session.scalars(select(Area)))
    level = next((a.level for a in areas if a.id == user.area_id), None)
    if is_unrestricted(user, level):
        return None
    assert user.area_id is not None  # is_unrestricted covers None
    if level is None:
        log.warning("user %s names unknown area %s: sees no case", user.username, user.area_id)
    return build_scope(areas, user.area_id)


def case_clause(scope: AreaScope | None, *, avoid_indexes: bool = False) -> ColumnElement[bool]:
    """SQL pre-filter for cases: a superset of `scope.covers` (refine the rows afterwards).

    `avoid_indexes` wraps the columns in no-op expressions (`x || ''`, `x + 0`) so a planner cannot
    pick their indexes: the queue query wants its ordered index, and SQLite would otherwise gather
    every row of a big area through `ix_cases_area_id` and sort them all for one page.
    """
    if scope is None:
        return true()
    area_id = Case.area_id.concat("") if avoid_indexes else Case.area_id
    lat = Case.lat + 0 if avoid_indexes else Case.lat
    lon = Case.lon + 0 if avoid_indexes else Case.lon
    parts: list[ColumnElement[bool]] = [area_id.in_(sorted(scope.area_ids))]
    if scope.bbox is not None:
        min_lon, min_lat, max_lon, max_lat = scope.bbox
        parts.append(and_(lat.between(min_lat, max_lat), lon.between(min_lon, max_lon)))
    return or_(*parts) if parts else false()


def case_visible(scope: AreaScope | None, case: Case) -> bool:
    return scope is None or scope.covers(area_id=case.area_id, lat=case.lat, lon=case.lon)


def needs_refine(scopes: Iterable[AreaScope | None]) -> bool:
    """True if some scope's SQL pre-filter is only a superset (a polygon that is not a rectangle)."""
    return any(s is not None and not s.bbox_exact for s in scopes)


def refine(scopes: Iterable[AreaScope | None], cases: Iterable[Case]) -> list[Case]:
    """Keep the cases every scope covers exactly (the SQL pre-filter lets bounding-box hits in)."""
    active = [s for s in scopes if s is not None]
    return [c for c in cases if all(s.covers(area_id=c.area_id, lat=c.lat, lon=c.lon) for s in active)]


def covered_mask(
    scope: AreaScope,
    *,
    area_ids: Sequence[str | None],
    lats: Sequence[float | None],
    lons: Sequence[float | None],
) -> np.ndarray:
    """`scope.covers` for many rows at once (vectorised point-in-polygon), as a boolean array."""
    by_id = np.fromiter((a is not None and a in scope.area_ids for a in area_ids), dtype=bool, count=len(area_ids))
    if scope.polygon is None:
        return by_id
    lat = np.array([np.nan if v is None else v for v in lats], dtype=float)
    lon = np.array([np.nan if v is None else v for v in lons], dtype=float)
    inside = shapely.intersects_xy(scope.polygon, lon, lat)
    return by_id | inside


def nested(user_scope: AreaScope | None, area_scope: AreaScope | None) -> bool:
    """False when a filter area lies outside the user's area: such a query can only be empty."""
    if user_scope is None or area_scope is None:
        return True
    return area_scope.root_id in user_scope.area_ids


def merchant_clause(scope: AreaScope | None) -> ColumnElement[bool]:
    """SQL pre-filter for merchants: registered in the subtree, or without an area (then the zone
    must meet the polygon: refine with `merchant_visible`)."""
    if scope is None:
        return true()
    in_subtree = Merchant.area_id.in_(sorted(scope.area_ids))
    return or_(in_subtree, Merchant.area_id.is_(None)) if scope.polygon is not None else in_subtree


def merchant_visible(scope: AreaScope | None, merchant: Merchant) -> bool:
    if scope is None:
        return True
    if merchant.area_id is not None and merchant.area_id in scope.area_ids:
        return True
    if scope.polygon is None:
        return False
    return zone_visible(scope, merchant.area_id, shapely.from_wkt(merchant.zone_wkt))


def zone_visible(scope: AreaScope | None, area_id: str | None, zone: BaseGeometry | None) -> bool:
    """`merchant_visible` for a zone already parsed (the map index keeps them parsed)."""
    if scope is None or (area_id is not None and area_id in scope.area_ids):
        return True
    return scope.polygon is not None and zone is not None and bool(scope.polygon.intersects(zone))
