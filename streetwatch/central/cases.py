"""Case rules: which case an alert belongs to, which locks its decision takes, how a case scores.

Pure functions (no I/O, table-tested); the case engine (case_engine.py) applies them to the rows of
one transaction.

- An alert whose `episode_id` is already known joins that episode's case (following merges), in any
  status: reminders and the `ended` message of an episode never open a second case;
- else it joins the nearest *open* case (new, confirmed, notified) of the same violation whose
  location is within `radius_m[violation]` of the alert and whose time span, widened by
  `max_gap_s[violation]` on both sides, covers the alert's `observed_at` (`choose_case`); this is
  how cameras and edge boxes that see the same spot end up in one case;
- an alert without a location (uncalibrated camera) can only match by camera and edge zone;
- else it opens a new case.

A case's location is the running mean of its located alerts (GPS noise averages out); its
attribution is recomputed as the mean moves unless a reviewer set it by hand (`manual`).

Race freedom with several workers (the choice, and why):
- PostgreSQL: before reading candidate cases, a transaction locks `case_locks` rows, one per key, in
  sorted order (no deadlock; `case_store.take_case_locks`): the 2x2 block of grid cells (cell side
  = 2 x radius) around the alert for its violation, plus the episode (`lock_keys`). The lock is an
  upsert (INSERT .. ON CONFLICT DO UPDATE), which row-locks the key until commit, also when the row
  is new. Two alerts within `radius_m` of each other always share a cell (each block contains the
  other point's cell), so they are decided one after the other and the second one sees the first
  one's case: the result equals one worker's. A plain lock row works on every PostgreSQL and
  leaves a visible trace, unlike advisory lock ids derived from hashes.
- SQLite: the ingest transaction starts with BEGIN IMMEDIATE (db.session_scope(write_lock=True)),
  which already serialises all writers; the lock rows are skipped there.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from streetwatch.central.config import CaseSettings
from streetwatch.edge.alerts import Alert as WireAlert

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEGREE_LAT = 111_320.0
# Lock cells use one longitude width for every latitude up to this one (wider than needed nearer
# the equator, which only costs parallelism); beyond it one lock per violation serialises all.
LOCK_GRID_MAX_LAT = 80.0
# Episodes share lock rows by hash bucket: a bounded table at the cost of rare extra waiting.
EPISODE_LOCK_BUCKETS = 4096
PRIORITY_ALERTS_CAP = 50
PRIORITY_DWELL_STEP_S = 300
PRIORITY_DWELL_CAP = 36



def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlam = phi2 - phi1, math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class Sighting:
    """What the case engine needs from one alert."""

    violation: str
    observed_at: datetime
    lat: float | None
    lon: float | None
    camera_id: str
    zone_id: str


@dataclass(frozen=True)
class Candidate:
    """An existing case the sighting may join."""

    id: int
    lat: float | None
    lon: float | None
    first_seen: datetime
    last_seen: datetime
    camera_id: str
    zone_id: str


def within_time(sighting: Sighting, candidate: Candidate, *, max_gap: timedelta) -> bool:
    """The sighting falls in the case's span widened by max_gap on both sides (late arrivals too)."""
    return candidate.first_seen - max_gap <= sighting.observed_at <= candidate.last_seen + max_gap


def choose_case(
    sighting: Sighting, candidates: Iterable[Candidate], *, radius_m: float, max_gap: timedelta
) -> int | None:
    """The id of the case the sighting joins, or None for a new case.

    Located sightings: the nearest candidate within radius_m (ties: the older case, lower id).
    Unlocated sightings: the most recent candidate of the same camera and edge zone.
    """
    timely = [c for c in candidates if within_time(sighting, c, max_gap=max_gap)]
    if sighting.lat is None or sighting.lon is None:
        view = (sighting.camera_id, sighting.zone_id)
        same_view = [c for c in timely if c.lat is None and (c.camera_id, c.zone_id) == view]
        return max(same_view, key=lambda c: (c.last_seen, -c.id)).id if same_view else None
    scored = [
        (distance_m(sighting.lat, sighting.lon, c.lat, c.lon), c.id)
        for c in timely
        if c.lat is not None and c.lon is not None
    ]
    in_reach = [pair for pair in scored if pair[0] <= radius_m]
    return min(in_reach)[1] if in_reach else None


def episode_lock_key(episode_id: str) -> str:
    """The episode's lock: one of EPISODE_LOCK_BUCKETS (a stable hash), so case_locks stays bounded."""
    return f"ep|{zlib.crc32(episode_id.encode()) % EPISODE_LOCK_BUCKETS:04d}"


def lock_keys(sighting: Sighting, *, episode_id: str, radius_m: float) -> list[str]:
    """The lock keys a decision about this sighting takes, sorted (the fixed locking order)."""
    keys = {episode_lock_key(episode_id)}
    if sighting.lat is None or sighting.lon is None:
        keys.add(f"{sighting.violation}|view|{sighting.camera_id}|{sighting.zone_id}")
    elif abs(sighting.lat) > LOCK_GRID_MAX_LAT:
        keys.add(f"{sighting.violation}|polar")
    else:
        keys.update(
            f"{sighting.violation}|{row}|{col}"
            for row, col in lock_cells(sighting.lat, sighting.lon, radius_m=radius_m)
        )
    return sorted(keys)


def lock_cells(lat: float, lon: float, *, radius_m: float) -> list[tuple[int, int]]:
    """The 2x2 block of grid cells (side >= 2 x radius_m) that contains the disc around the point."""
    cell_lat = 2 * radius_m / METRES_PER_DEGREE_LAT
    cell_lon = 2 * radius_m / (METRES_PER_DEGREE_LAT * math.cos(math.radians(LOCK_GRID_MAX_LAT)))
    fy, fx = lat / cell_lat, lon / cell_lon
    row, col = math.floor(fy), math.floor(fx)
    row2 = row - 1 if fy - row < 0.5 else row + 1
    col2 = col - 1 if fx - col < 0.5 else col + 1
    return sorted({(r, c) for r in (row, row2) for c in (col, col2)})


def priority_of(*, weight: int, alert_count: int, first_seen: datetime, last_seen: datetime) -> int:
    """Queue priority (higher first): violation weight + alerts (capped at 50) + dwell.

    Dwell counts one point per 5 minutes between first and last sighting, capped at 36 (3 hours):
    a long-standing, often-seen violation climbs the queue, but a weight gap between violations
    (30 parking / 20 vending / 10 goods by default) still dominates the first hours.
    """
    dwell_s = max(0.0, (last_seen - first_seen).total_seconds())
    dwell_points = min(int(dwell_s // PRIORITY_DWELL_STEP_S), PRIORITY_DWELL_CAP)
    return weight + min(alert_count, PRIORITY_ALERTS_CAP) + dwell_points


def running_mean(
    lat: float | None, lon: float | None, count: int, *, new_lat: float, new_lon: float
) -> tuple[float, float, int]:
    """The location after averaging one more point into `count` earlier ones."""
    if lat is None or lon is None or count <= 0:
        return new_lat, new_lon, 1
    n = count + 1
    return lat + (new_lat - lat) / n, lon + (new_lon - lon) / n, n


def sighting_of(alert: WireAlert) -> Sighting:
    loc = alert.location
    return Sighting(
        violation=alert.violation,
        observed_at=alert.observed_at,
        lat=loc.lat if loc else None,
        lon=loc.lon if loc else None,
        camera_id=alert.camera_id,
        zone_id=alert.zone_id,
    )


def alert_lock_keys(alert: WireAlert, *, settings: CaseSettings) -> list[str]:
    """The lock keys a decision about this alert takes (its spot's cells or camera view, its episode)."""
    return lock_keys(sighting_of(alert), episode_id=alert.episode_id, radius_m=settings.radius_m[alert.violation])


__all__ = [
    "Candidate",
    "Sighting",
    "alert_lock_keys",
    "choose_case",
    "distance_m",
    "episode_lock_key",
    "lock_cells",
    "lock_keys",
    "priority_of",
    "running_mean",
    "sighting_of",
    "within_time",
]
