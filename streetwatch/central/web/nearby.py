"""Merchant zones near a point, for the case maps: an in-memory STRtree rebuilt when merchants change.

A queue page draws the zones around each of its cases. Asking the database for them per case
would mean parsing WKT for thousands of merchants per request (there is no spatial index in the
portable schema), so the zones are parsed once into a shapely STRtree and rebuilt only when the
merchants table changes (its row count or newest `updated_at`, one cheap aggregate per request).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import shapely
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from streetwatch.central.models import Merchant
from streetwatch.central.web.mapsvg import METRES_PER_DEG_LAT, ZoneShape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Snapshot:
    version: tuple[int, datetime | None]
    ids: list[str]
    labels: list[str]
    geoms: np.ndarray
    tree: shapely.STRtree | None


class NearbyZones:
    """Thread-safe cache of merchant zones; `around` returns the zones within a radius of a point."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None

    def _current(self, session: Session) -> _Snapshot:
        count, newest = session.execute(select(func.count(Merchant.id), func.max(Merchant.updated_at))).one()
        version = (int(count or 0), newest)
        with self._lock:
            if self._snapshot is not None and self._snapshot.version == version:
                return self._snapshot
            rows = session.execute(select(Merchant.id, Merchant.name, Merchant.zone_wkt)).all()
            geoms = shapely.from_wkt([r[2] for r in rows], on_invalid="ignore") if rows else np.array([])
            tree = shapely.STRtree(geoms) if len(rows) else None
            self._snapshot = _Snapshot(version, [r[0] for r in rows], [r[1] for r in rows], geoms, tree)
            log.info("map zones: indexed %d merchant zones", len(rows))
            return self._snapshot

    def around(
        self, session: Session, *, lat: float, lon: float, radius_m: float = 60.0, limit: int = 12
    ) -> list[ZoneShape]:
        """Up to `limit` zones within `radius_m` of (lat, lon), nearest first."""
        snap = self._current(session)
        if snap.tree is None:
            return []
        dlat = radius_m / METRES_PER_DEG_LAT
        dlon = radius_m / (METRES_PER_DEG_LAT * max(math.cos(math.radians(lat)), 0.01))
        box = shapely.box(lon - dlon, lat - dlat, lon + dlon, lat + dlat)
        hits = snap.tree.query(box, predicate="intersects")
        point = shapely.Point(lon, lat)
        ordered = sorted(hits.tolist(), key=lambda i: shapely.distance(snap.geoms[i], point))[:limit]
        return [_shape(snap.ids[i], snap.labels[i], snap.geoms[i]) for i in ordered]


def _shape(merchant_id: str, label: str, geom: shapely.Geometry) -> ZoneShape:
    polygon = geom.geoms[0] if hasattr(geom, "geoms") else geom
    ring = [(float(x), float(y)) for x, y in polygon.exterior.coords]
    return ZoneShape(merchant_id=merchant_id, label=label, ring=ring)
