"""Case rows in the database: the reads and writes the case engine and the review service share.

Stateless functions on the caller's session and transaction (the case engine, case_engine.py,
holds what one transaction knows). Reads that run per alert do not autoflush: a flush per alert was
most of a batch's cost, so rows changed in the session but not flushed yet are added from the
session with their current values.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import bindparam, exists, func, or_, select, text, update
from sqlalchemy.orm import Session

from streetwatch.central.cases import METRES_PER_DEGREE_LAT, Sighting
from streetwatch.central.config import CaseSettings
from streetwatch.central.models import OPEN_CASE_STATUSES, Alert, Case, CaseLock, Episode, utcnow
from streetwatch.central.sightings import PendingSighting

log = logging.getLogger(__name__)

_Row = TypeVar("_Row")
_ALERTS = Alert.metadata.tables[Alert.__tablename__]


# ---------------------------------------------------------------- locks and ids


_LOCK_KEYS = text(
    f"INSERT INTO {CaseLock.__tablename__} (key, touched_at) "
    "SELECT k.key, :now FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS k(key, n) ORDER BY k.n "
    "ON CONFLICT (key) DO UPDATE SET touched_at = EXCLUDED.touched_at"
)


def take_case_locks(session: Session, keys: Collection[str]) -> None:
    """Row-lock every key until the transaction ends (PostgreSQL only), in sorted order.

    One statement: PostgreSQL inserts (and on conflict locks) the rows of the sorted SELECT one
    after the other in that order, so every transaction locks in the same order. The keys travel
    as one array (a VALUES list of a batch's hundreds of keys cost more to build than to run).
    Locking a key the transaction already holds again is harmless.
    """
    if not keys or session.get_bind().dialect.name != "postgresql":
        return  # SQLite: BEGIN IMMEDIATE already holds the database write lock
    session.execute(_LOCK_KEYS, {"keys": sorted(set(keys)), "now": utcnow()})


_NEXT_CASE_IDS = text("SELECT nextval(pg_get_serial_sequence('cases', 'id')) FROM generate_series(1, :count)")


def allocate_case_ids(session: Session, count: int, *, after: int = 0) -> list[int]:
    """`count` ids for cases this transaction may open, with one statement (instead of an INSERT
    per case for its id). PostgreSQL: from the cases' id sequence (ids left unused are gaps, as
    after any rollback). SQLite: past the largest id stored and past `after` (the last id this
    transaction handed out); the ingest transaction's write lock (BEGIN IMMEDIATE) keeps every
    other writer out until it ends."""
    if session.get_bind().dialect.name == "postgresql":
        return [int(i) for i in session.scalars(_NEXT_CASE_IDS, {"count": count})]
    with session.no_autoflush:
        stored = session.scalar(select(func.max(Case.id))) or 0
    first = max(int(stored), after) + 1
    return list(range(first, first + count))


# ---------------------------------------------------------------- a batch's rows, one query each


def alerts_by_id(session: Session, alert_ids: Collection[str]) -> dict[str, Alert]:
    """The stored alerts among `alert_ids` (the duplicates of a batch)."""
    if not alert_ids:
        return {}
    return {row.alert_id: row for row in session.scalars(select(Alert).where(Alert.alert_id.in_(alert_ids)))}


def episodes_by_id(session: Session, episode_ids: Collection[str]) -> dict[str, Episode]:
    if not episode_ids:
        return {}
    return {e.id: e for e in session.scalars(select(Episode).where(Episode.id.in_(episode_ids)))}


def cases_by_id(session: Session, case_ids: Collection[int]) -> dict[int, Case]:
    if not case_ids:
        return {}
    return {case.id: case for case in session.scalars(select(Case).where(Case.id.in_(case_ids)))}


def open_episodes_of(session: Session, case_ids: Collection[int]) -> dict[int, list[Episode]]:
    """The stored open episodes of each case (an entry, maybe empty, for every id)."""
    found: dict[int, list[Episode]] = {case_id: [] for case_id in case_ids}
    if case_ids:
        query = select(Episode).where(Episode.case_id.in_(list(case_ids)), Episode.ended_at.is_(None))
        for episode in session.scalars(query):
            found[episode.case_id].append(episode)
    return found


def insert_alert_rows(session: Session, rows: Sequence[dict[str, object]]) -> None:
    """Insert alert rows with one statement (Core: the ORM's per-object bookkeeping was a large
    share of ingest, and its bulk path adds nothing here). Their cases must be flushed first."""
    if rows:
        session.execute(_ALERTS.insert(), rows)


# ---------------------------------------------------------------- searches


# The candidate searches, built once (building SQL expressions per alert cost more than running them).
_OPEN_CASES = select(Case).where(
    Case.violation == bindparam("violation"),
    # Plain comparisons, not IN (...): SQLAlchemy expands an IN list anew at every execution, which
    # cost more than the rest of the statement's preparation (this search runs per new episode).
    or_(*(Case.status == status for status in OPEN_CASE_STATUSES)),
    Case.merged_into_id.is_(None),
    Case.last_seen >= bindparam("since"),
    Case.first_seen <= bindparam("until"),
)
_OPEN_CASES_NEAR = _OPEN_CASES.where(
    Case.lat.between(bindparam("lat_min"), bindparam("lat_max")),
    Case.lon.between(bindparam("lon_min"), bindparam("lon_max")),
)
_OPEN_CASES_OF_VIEW = _OPEN_CASES.where(
    Case.lat.is_(None), Case.camera_id == bindparam("camera_id"), Case.zone_id == bindparam("zone_id")
)
_OPEN_EPISODES_OF_CASE = select(Episode.id).where(Episode.case_id == bindparam("case_id"), Episode.ended_at.is_(None))


def open_cases_near(session: Session, sighting: Sighting, settings: CaseSettings) -> dict[int, Case]:
    """Open cases of the sighting's violation near it in place and time, as this transaction sees them.

    Cases changed earlier in the transaction but not flushed yet are added from the session, with
    their current values. The query's box is only a pre-filter; `cases.choose_case` decides on
    time and distance.
    """
    gap = timedelta(seconds=settings.max_gap_s[sighting.violation])  # type: ignore[index]
    params: dict[str, object] = {
        "violation": sighting.violation,
        "since": sighting.observed_at - gap,
        "until": sighting.observed_at + gap,
    }
    if sighting.lat is None or sighting.lon is None:
        query = _OPEN_CASES_OF_VIEW
        params.update(camera_id=sighting.camera_id, zone_id=sighting.zone_id)
    else:
        query = _OPEN_CASES_NEAR
        dlat, dlon = _box(sighting.lat, radius_m=settings.radius_m[sighting.violation])  # type: ignore[index]
        params.update(
            lat_min=sighting.lat - dlat,
            lat_max=sighting.lat + dlat,
            lon_min=sighting.lon - dlon,
            lon_max=sighting.lon + dlon,
        )
    with session.no_autoflush:
        found = {c.id: c for c in session.scalars(query, params)}
    for case in _unflushed(session, Case):
        if (
            case.id is not None
            and case.violation == sighting.violation
            and case.status in OPEN_CASE_STATUSES
            and case.merged_into_id is None
        ):
            found[case.id] = case
    return found


def _box(lat: float, *, radius_m: float) -> tuple[float, float]:
    """Half the sides (degrees of latitude, longitude) of a search box 1.5 x radius_m around a point."""
    dlat = radius_m / METRES_PER_DEGREE_LAT * 1.5
    return dlat, dlat / max(0.01, math.cos(math.radians(lat)))


def pending_sightings_near(
    session: Session, new: PendingSighting, *, violation: str, settings: CaseSettings
) -> list[PendingSighting]:
    """Stored sightings without a case of this violation in the box around `new` (the rule refines)."""
    gap = timedelta(seconds=settings.max_gap_s[violation])  # type: ignore[index]
    dlat, dlon = _box(new.lat, radius_m=settings.radius_m[violation])  # type: ignore[index]
    rows = session.scalars(
        select(Alert).where(
            Alert.violation == violation,
            Alert.state == "sighting",
            Alert.case_id.is_(None),
            Alert.observed_at.between(new.observed_at - gap, new.observed_at + gap),
            Alert.lat.between(new.lat - dlat, new.lat + dlat),
            Alert.lon.between(new.lon - dlon, new.lon + dlon),
        )
    )
    return [
        PendingSighting(r.alert_id, r.episode_id, r.observed_at, r.lat, r.lon, r.accuracy_m or 0.0)
        for r in rows
        if r.lat is not None and r.lon is not None
    ]


def pending_alerts(session: Session, alert_ids: Collection[str]) -> list[Alert]:
    """The stored alerts among `alert_ids` that have no case yet."""
    return list(session.scalars(select(Alert).where(Alert.alert_id.in_(alert_ids), Alert.case_id.is_(None))))


def has_open_episode(session: Session, case_id: int) -> bool:
    """Whether an episode of the case is still open, as this transaction sees it.

    Episodes added or changed in the session but not flushed yet count with their current values,
    the stored ones with the database's.
    """
    pending = {episode.id: episode for episode in _unflushed(session, Episode)}
    if any(episode.case_id == case_id and episode.ended_at is None for episode in pending.values()):
        return True
    with session.no_autoflush:
        stored = session.scalars(_OPEN_EPISODES_OF_CASE, {"case_id": case_id})
        return any(episode_id not in pending for episode_id in stored)


def _unflushed(session: Session, kind: type[_Row]) -> list[_Row]:
    """Objects of `kind` this session added or changed and has not flushed yet."""
    return [obj for obj in (*session.new, *session.dirty) if isinstance(obj, kind)]


# ---------------------------------------------------------------- merges and recounts


def resolve_merged(session: Session, case_id: int) -> Case:
    """The case that `case_id` was merged into (transitively), or the case itself."""
    case = session.get(Case, case_id)
    seen = set()
    while case is not None and case.merged_into_id is not None and case.id not in seen:
        seen.add(case.id)
        case = session.get(Case, case.merged_into_id)
    if case is None:
        raise LookupError(f"case {case_id} does not exist")
    return case


def merge_cases(session: Session, *, source_id: int, target_id: int) -> Case:
    """Move every alert and episode of `source` into `target` and recount both (for the review service).

    The source keeps its row with `merged_into_id` set (the service sets its status and audit entry)
    and its place and span, but counts no alert any more, so totals over cases (exports, statistics)
    count each alert once; later alerts of its episodes land in the target.
    """
    if source_id == target_id:
        raise ValueError(f"cannot merge case {source_id} into itself")
    source, target = resolve_merged(session, source_id), resolve_merged(session, target_id)
    if source.id == target.id:
        raise ValueError(f"case {source_id} is already merged into {target_id}")
    session.execute(update(Alert).where(Alert.case_id == source.id).values(case_id=target.id))
    session.execute(update(Episode).where(Episode.case_id == source.id).values(case_id=target.id))
    source.merged_into_id = target.id
    recount_case(session, target)
    recount_case(session, source)
    log.info("case %d merged into case %d", source.id, target.id)
    return target


def recount_case(session: Session, case: Case) -> None:
    """Recompute a case's counters, span, location and activity from its alerts and episodes."""
    session.flush()
    count, first, last, lat, lon, located = session.execute(
        select(
            func.count(Alert.alert_id),
            func.min(Alert.observed_at),
            func.max(Alert.observed_at),
            func.avg(Alert.lat),
            func.avg(Alert.lon),
            func.count(Alert.lat),
        ).where(Alert.case_id == case.id)
    ).one()
    case.alert_count = int(count)
    episodes = session.scalar(select(func.count(Episode.id)).where(Episode.case_id == case.id))
    case.episode_count = int(episodes or 0)
    if first is not None:
        case.first_seen, case.last_seen = _aware(first), _aware(last)
    if located:
        case.lat, case.lon, case.location_count = float(lat), float(lon), int(located)
    case.active = bool(session.scalar(select(exists().where(Episode.case_id == case.id, Episode.ended_at.is_(None)))))


def _aware(value: datetime) -> datetime:
    """Aggregates may bypass the column type on SQLite (naive text): make them UTC-aware again."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


__all__ = [
    "alerts_by_id",
    "allocate_case_ids",
    "cases_by_id",
    "episodes_by_id",
    "has_open_episode",
    "insert_alert_rows",
    "merge_cases",
    "open_cases_near",
    "open_episodes_of",
    "pending_alerts",
    "pending_sightings_near",
    "recount_case",
    "resolve_merged",
    "take_case_locks",
]
