"""Merchant zones near a point, for the case maps: an in-memory STRtree rebuilt when merchants change.

A queue page draws the zones around each of its cases. Asking the database for them per case
would mean parsing WKT for thousands of merchants per request (there is no spatial index in the
portable schema), so the zones are parsed once into a shapely STRtree and rebuilt only when the
merchants table changes (attribution's fingerprint: row count and newest `updated_at`, checked at
most every `check_interval_s`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session

from streetwatch.central.access import AreaScope, zone_visible
from streetwatch.central.attribution import merchant_fingerprint
from streetwatch.central.models import Merchant
from streetwatch.central.web.mapsvg import METRES_PER_DEG_LAT, ZoneShape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Snapshot:
    version: tuple[int, str]
    ids: list[str]
    labels: list[str]
    area_ids: list[str | None]
    geoms: np.ndarray
    tree: shapely.STRtree | None


class NearbyZones:
    """Thread-safe cache of merchant zones; `around` returns the zones within a radius of a point."""

    def __init__(self, *, check_interval_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._check_interval_s = check_interval_s
        self._clock = clock
        self._checked_at = -math.inf

    def _current(self, session: Session) -> _Snapshot:
        """The zones, re-read when the merchants changed (checked at most every few seconds: the
        check is a full-table aggregate)."""
        now = self._clock()
        if self._snapshot is not None and now - self._checked_at < self._check_interval_s:
            return self._snapshot
        version = merchant_fingerprint(session)
        with self._lock:
            self._checked_at = now
            if self._snapshot is not None and self._snapshot.version == version:
                return self._snapshot
            rows = session.execute(select(Merchant.id, Merchant.name, Merchant.zone_wkt, Merchant.area_id)).all()
            geoms = shapely.from_wkt([r[2] for r in rows], on_invalid="ignore") if rows else np.array([])
            tree = shapely.STRtree(geoms) if len(rows) else None
            ids, labels, areas = [r[0] for r in rows], [r[1] for r in rows], [r[3] for r in rows]
            self._snapshot = _Snapshot(version, ids, labels, areas, geoms, tree)
            log.info("map zones: indexed %d merchant zones", len(rows))
            return self._snapshot

    def warm(self, session: Session) -> int:
        """Build the index now; the number of zones in it."""
        return len(self._current(session).ids)

    def around(
        self,
        session: Session,
        *,
        lat: float,
        lon: float,
        scope: AreaScope | None,
        radius_m: float = 60.0,
        limit: int = 8,
    ) -> list[ZoneShape]:
        """Up to `limit` zones within `radius_m` of (lat, lon) that `scope` may see (access.py:
        a neighbouring district's merchants stay off the map), nearest first."""
        snap = self._current(session)
        if snap.tree is None:
            return []
        dlat = radius_m / METRES_PER_DEG_LAT
        dlon = radius_m / (METRES_PER_DEG_LAT * max(math.cos(math.radians(lat)), 0.01))
        box = shapely.box(lon - dlon, lat - dlat, lon + dlon, lat + dlat)
        hits = snap.tree.query(box, predicate="intersects")
        if scope is not None:
            seen = [i for i in hits.tolist() if zone_visible(scope, snap.area_ids[i], snap.geoms[i])]
            hits = np.array(seen, dtype=int)
        if len(hits) == 0:
            return []
        distances = shapely.distance(snap.geoms[hits], shapely.Point(lon, lat))
        ordered = hits[np.argsort(distances, kind="stable")][:limit]
        return [_shape(snap.ids[i], snap.labels[i], snap.geoms[i]) for i in ordered.tolist()]


def _shape(merchant_id: str, label: str, geom: shapely.Geometry) -> ZoneShape:
    polygon = geom.geoms[0] if hasattr(geom, "geoms") else geom
    ring = [(x, y) for x, y in shapely.get_coordinates(polygon.exterior).tolist()]
    return ZoneShape(merchant_id=merchant_id, label=label, ring=ring)
