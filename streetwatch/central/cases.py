"""The case engine: which case an alert belongs to, and how the case changes when it arrives.

Rules (pure functions below, a thin database layer after them):
- an alert whose `episode_id` is already known joins that episode's case (following merges), in any
  status: reminders and the `ended` message of an episode never open a second case;
- else it joins the nearest *open* case (new, confirmed, notified) of the same violation whose
  location is within `radius_m[violation]` of the alert and whose time span, widened by
  `max_gap_s[violation]` on both sides, covers the alert's `observed_at`; this is how cameras and
  edge boxes that see the same spot end up in one case;
- an alert without a location (uncalibrated camera) can only match by camera and edge zone;
- else it opens a new case.

A case's location is the running mean of its located alerts (GPS noise averages out); its
attribution is recomputed as the mean moves unless a reviewer set it by hand (`manual`).

Race freedom with several workers (the choice, and why):
- PostgreSQL: before reading candidate cases, a decision locks `case_locks` rows, one per key, in
  sorted order (no deadlock): the 2x2 block of grid cells (cell side = 2 x radius) around the alert
  for its violation, plus the episode. The lock is an upsert (INSERT .. ON CONFLICT DO UPDATE), which
  row-locks the key until commit, also when the row is new. Two alerts within `radius_m` of each
  other always share a cell (each block contains the other point's cell), so they are decided one
  after the other and the second one sees the first one's case: the result equals one worker's. A
  plain lock row works on every PostgreSQL and leaves a visible trace, unlike advisory lock ids
  derived from hashes.
- SQLite: the ingest transaction starts with BEGIN IMMEDIATE (db.session_scope(write_lock=True)),
  which already serialises all writers; the lock rows are skipped there.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import bindparam, exists, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from streetwatch.central.attribution import MerchantIndex
from streetwatch.central.config import CaseSettings
from streetwatch.central.models import OPEN_CASE_STATUSES, Alert, Case, CaseLock, Episode, utcnow
from streetwatch.edge.alerts import Alert as WireAlert

log = logging.getLogger(__name__)

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
_Row = TypeVar("_Row")


# ---------------------------------------------------------------- pure decision functions


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


# ---------------------------------------------------------------- database layer


@dataclass(frozen=True)
class CaseDecision:
    case: Case
    created: bool
    new_episode: bool


_HELD_LOCKS = "streetwatch_case_locks"


def take_case_locks(session: Session, keys: Sequence[str]) -> None:
    """Row-lock every key until the transaction ends (PostgreSQL only), in sorted order.

    One statement: PostgreSQL inserts (and on conflict locks) the rows of the sorted SELECT one
    after the other in that order, so every transaction locks in the same order. The keys travel
    as one array (a VALUES list of a batch's hundreds of keys cost more to build than to run).
    Keys this session already holds are skipped (a batch locks all its keys up front, then ingests
    alert by alert).
    """
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite: BEGIN IMMEDIATE already holds the database write lock
    held: set[str] = session.info.setdefault(_HELD_LOCKS, set())
    wanted = sorted(set(keys) - held)
    if not wanted:
        return
    session.execute(_LOCK_KEYS, {"keys": wanted, "now": utcnow()})
    held.update(wanted)


_LOCK_KEYS = text(
    f"INSERT INTO {CaseLock.__tablename__} (key, touched_at) "
    "SELECT k.key, :now FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS k(key, n) ORDER BY k.n "
    "ON CONFLICT (key) DO UPDATE SET touched_at = EXCLUDED.touched_at"
)


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


def _candidates(session: Session, sighting: Sighting, settings: CaseSettings) -> dict[int, Case]:
    """Open cases of the sighting's violation near it in place and time, as this transaction sees them.

    The query runs without autoflush (a flush per alert was most of a batch's cost): cases changed
    earlier in the transaction but not flushed yet are added from the session, with their current
    values. The query's box is only a pre-filter; `choose_case` decides on time and distance.
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
        radius = settings.radius_m[sighting.violation]  # type: ignore[index]
        dlat = radius / METRES_PER_DEGREE_LAT * 1.5
        dlon = dlat / max(0.01, math.cos(math.radians(sighting.lat)))
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


def _unflushed(session: Session, kind: type[_Row]) -> list[_Row]:
    """Objects of `kind` this session added or changed and has not flushed yet."""
    return [obj for obj in (*session.new, *session.dirty) if isinstance(obj, kind)]


def find_case(session: Session, alert: WireAlert, *, settings: CaseSettings) -> Case | None:
    """The existing case this alert joins (by episode, else by place and time), or None."""
    episode = session.get(Episode, alert.episode_id)
    if episode is not None:
        return resolve_merged(session, episode.case_id)
    return find_nearby_case(session, alert, settings=settings)


def find_nearby_case(session: Session, alert: WireAlert, *, settings: CaseSettings) -> Case | None:
    """The open case of the alert's violation near it in place and time, or None."""
    sighting = sighting_of(alert)
    cases = _candidates(session, sighting, settings)
    chosen = choose_case(
        sighting,
        [Candidate(c.id, c.lat, c.lon, c.first_seen, c.last_seen, c.camera_id, c.zone_id) for c in cases.values()],
        radius_m=settings.radius_m[alert.violation],
        max_gap=timedelta(seconds=settings.max_gap_s[alert.violation]),
    )
    # The object itself: session.get would flush to find a case added in this transaction.
    return cases[chosen] if chosen is not None else None


def open_case(session: Session, alert: WireAlert, *, case_id: int | None = None) -> Case:
    """A new, empty case at the alert's place and time (counters are filled by `apply_alert`).

    With a `case_id` from `allocate_case_ids` the row is only added to the session (written by the
    next flush, with the rest of the batch); without one it is inserted at once, as one row, for
    its id (a flush would also write every other change of the transaction so far).
    """
    values = {
        "violation": alert.violation,
        "status": "new",
        "lat": None,
        "lon": None,
        "location_count": 0,
        "camera_id": alert.camera_id,
        "zone_id": alert.zone_id,
        "first_seen": alert.observed_at,
        "last_seen": alert.observed_at,
        "alert_count": 0,
        "episode_count": 0,
        "attribution_method": "none",
        "priority": 0,
        "active": True,
    }
    if case_id is not None:
        case = Case(id=case_id, **values)
        session.add(case)
        return case
    with session.no_autoflush:
        return session.scalars(insert(Case).returning(Case), [values]).one()


_NEXT_CASE_IDS = text("SELECT nextval(pg_get_serial_sequence('cases', 'id')) FROM generate_series(1, :count)")
_LAST_CASE_ID = "streetwatch_last_case_id"


def allocate_case_ids(session: Session, count: int) -> list[int]:
    """`count` ids for cases this transaction may open, with one statement (instead of an INSERT
    per case for its id). PostgreSQL: from the cases' id sequence (ids left unused are gaps, as after
    any rollback). SQLite: past the largest id stored or handed out in this transaction; the ingest
    transaction's write lock (BEGIN IMMEDIATE) keeps every other writer out until it ends."""
    if session.get_bind().dialect.name == "postgresql":
        return [int(i) for i in session.scalars(_NEXT_CASE_IDS, {"count": count})]
    with session.no_autoflush:
        stored = session.scalar(select(func.max(Case.id))) or 0
    first = max(int(stored), session.info.get(_LAST_CASE_ID, 0)) + 1
    session.info[_LAST_CASE_ID] = first + count - 1
    return list(range(first, first + count))


def _track_episode(session: Session, case: Case, alert: WireAlert, episode: Episode | None) -> Episode:
    """Record the alert in its episode (`episode` = the stored one, None to create it)."""
    if episode is None:
        episode = Episode(
            id=alert.episode_id,
            case_id=case.id,
            edge_id=alert.edge_id,
            camera_id=alert.camera_id,
            first_seen=alert.observed_at,
            last_seen=alert.observed_at,
        )
        session.add(episode)
    episode.first_seen = min(episode.first_seen, alert.observed_at)
    episode.last_seen = max(episode.last_seen, alert.observed_at)
    if alert.state == "ended":
        episode.ended_at = max(episode.ended_at or alert.observed_at, alert.observed_at)
    return episode


def apply_alert(
    session: Session,
    case: Case,
    alert: WireAlert,
    *,
    settings: CaseSettings,
    index: MerchantIndex | None,
    evidence_sha256: str | None,
    episode: Episode | None = None,
    episode_loaded: bool = False,
    known: KnownRows | None = None,
) -> Episode:
    """Fold one alert into `case`: counts, span, location, activity, evidence, priority, attribution.

    `episode_loaded=True` says `episode` is the alert's stored episode (None: not stored yet), as
    the caller already looked it up; otherwise it is looked up here. `known` may answer whether
    the case has another open episode without a query.
    Returns the alert's episode (created here if it was new to the case).
    """
    if not episode_loaded:
        episode = session.get(Episode, alert.episode_id)
    new_episode = episode is None
    episode = _track_episode(session, case, alert, episode)
    case.alert_count += 1
    case.episode_count += int(new_episode)
    # The case shows the latest evidence (or the first it ever got).
    if evidence_sha256 is not None and (alert.observed_at >= case.last_seen or case.evidence_sha256 is None):
        case.evidence_sha256 = evidence_sha256
    case.first_seen = min(case.first_seen, alert.observed_at)
    case.last_seen = max(case.last_seen, alert.observed_at)
    if alert.location is not None:
        case.lat, case.lon, case.location_count = running_mean(
            case.lat, case.lon, case.location_count, new_lat=alert.location.lat, new_lon=alert.location.lon
        )
    # Active while any episode is open; this alert's own open episode answers without a query.
    if episode.ended_at is None:
        case.active = True
    else:
        case.active = known.has_open_episode(session, case.id) if known else has_open_episode(session, case.id)
    case.priority = priority_of(
        weight=settings.priority_weight[alert.violation],
        alert_count=case.alert_count,
        first_seen=case.first_seen,
        last_seen=case.last_seen,
    )
    if index is not None and known is not None and known.unattributed is not None:
        known.unattributed[case.id] = case
    elif index is not None:
        attribute_case(case, index)
    return episode


def has_open_episode(session: Session, case_id: int) -> bool:
    """Whether an episode of the case is still open, as this transaction sees it.

    No autoflush (it would cost a flush per `ended` alert): episodes added or changed in the session
    but not flushed yet count with their current values, the stored ones with the database's.
    """
    pending = {episode.id: episode for episode in _unflushed(session, Episode)}
    if any(episode.case_id == case_id and episode.ended_at is None for episode in pending.values()):
        return True
    with session.no_autoflush:
        stored = session.scalars(_OPEN_EPISODES_OF_CASE, {"case_id": case_id})
        return any(episode_id not in pending for episode_id in stored)


def attribute_case(case: Case, index: MerchantIndex) -> None:
    """(Re)attribute a located case, unless a reviewer attributed it by hand."""
    if case.attribution_method == "manual" or case.lat is None or case.lon is None:
        return
    result = index.attribute(case.lat, case.lon)
    case.merchant_id = result.merchant_id
    case.attribution_method = result.method
    case.attribution_distance_m = result.distance_m
    case.area_id = index.area_of(case.lat, case.lon, merchant_id=result.merchant_id)


def alert_lock_keys(alert: WireAlert, *, settings: CaseSettings) -> list[str]:
    """The lock keys a decision about this alert takes (its spot's cells or camera view, its episode)."""
    return lock_keys(sighting_of(alert), episode_id=alert.episode_id, radius_m=settings.radius_m[alert.violation])


def lock_for_alert(session: Session, alert: WireAlert, *, settings: CaseSettings) -> None:
    """Take the locks that serialise decisions about this alert's spot and episode (see module doc)."""
    take_case_locks(session, alert_lock_keys(alert, settings=settings))


@dataclass
class KnownRows:
    """Episodes and cases a transaction already holds, so a batch of alerts does not look them up
    alert by alert. Rows are held strongly: the session's identity map only keeps weak references,
    and a row it dropped would be read again."""

    episodes: dict[str, Episode] = field(default_factory=dict)
    cases: dict[int, Case] = field(default_factory=dict)
    # True: `episodes` holds every stored episode the caller's alerts can name (read up front), so
    # one missing from it is new; False: look it up.
    episodes_exact: bool = False
    # Ids for new cases, taken `case_id_batch` at a time (a batch sizes it to the alerts it may open).
    spare_case_ids: list[int] = field(default_factory=list)
    case_id_batch: int = 1
    # The stored open episodes of `cases` (read with them), and [] for a case opened here: with
    # `episodes` that is every episode the case can have open, so an `ended` alert needs no query.
    # None: not read; ask the database.
    open_episodes: dict[int, list[Episode]] | None = None
    # Cases to attribute once the batch is folded in (`attribute_pending`), by id; None: attribute
    # at each alert. A case's merchant depends only on its final place, so once per batch is enough.
    unattributed: dict[int, Case] | None = None

    def attribute_pending(self, index: MerchantIndex) -> None:
        """Attribute the cases whose attribution was put off (see `unattributed`)."""
        if self.unattributed:
            for case in self.unattributed.values():
                attribute_case(case, index)
            self.unattributed.clear()

    def has_open_episode(self, session: Session, case_id: int) -> bool:
        """`has_open_episode` from the rows held, when they are known to be all that matter."""
        held = self.open_episodes.get(case_id) if self.open_episodes is not None else None
        if held is None or not self.episodes_exact:  # a sighting's rules may have added episodes
            return has_open_episode(session, case_id)
        # Current values (the objects carry any change of this transaction, flushed or not).
        return any(e.case_id == case_id and e.ended_at is None for e in (*held, *self.episodes.values()))

    def episode(self, session: Session, episode_id: str) -> Episode | None:
        """The alert's episode, stored or created earlier in this transaction; None if it is new."""
        found = self.episodes.get(episode_id)
        if found is None and not self.episodes_exact:
            found = session.get(Episode, episode_id)
        return found

    def case(self, session: Session, case_id: int) -> Case:
        """The case `case_id` stands for now (following merges); one this transaction holds (maybe
        not flushed yet) without a lookup."""
        held = self.cases.get(case_id)
        if held is not None and held.merged_into_id is None:
            return held
        return resolve_merged(session, case_id)

    def new_case_id(self, session: Session) -> int:
        if not self.spare_case_ids:
            self.spare_case_ids = allocate_case_ids(session, max(1, self.case_id_batch))
        return self.spare_case_ids.pop(0)


def decide_case(
    session: Session,
    alert: WireAlert,
    *,
    settings: CaseSettings,
    index: MerchantIndex | None,
    evidence_sha256: str | None,
    known: KnownRows | None = None,
) -> CaseDecision:
    """Find or open the alert's case and fold the alert in.

    The episode's case (following merges), else the nearest open case of the violation in place and
    time, else a new case. `known` is what the transaction already holds (a batch's prefetched rows);
    the alert's case and episode are added to it. Call inside the ingest transaction, after
    `lock_for_alert`.
    """
    known = known if known is not None else KnownRows()
    episode = known.episode(session, alert.episode_id)
    if episode is not None:
        case: Case | None = known.case(session, episode.case_id)
    else:
        case = find_nearby_case(session, alert, settings=settings)
    created = case is None
    if case is None:
        case = open_case(session, alert, case_id=known.new_case_id(session))
        if known.open_episodes is not None:
            known.open_episodes[case.id] = []  # a new case: its episodes are all in `known.episodes`
    known.episodes[alert.episode_id] = apply_alert(
        session,
        case,
        alert,
        settings=settings,
        index=index,
        evidence_sha256=evidence_sha256,
        episode=episode,
        episode_loaded=True,
        known=known,
    )
    known.cases[case.id] = case
    log.debug("alert %s -> case %d (%s)", alert.alert_id, case.id, "new" if created else "joined")
    return CaseDecision(case=case, created=created, new_episode=episode is None)


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
    "CaseDecision",
    "KnownRows",
    "alert_lock_keys",
    "allocate_case_ids",
    "take_case_locks",
    "Candidate",
    "Sighting",
    "apply_alert",
    "attribute_case",
    "choose_case",
    "decide_case",
    "distance_m",
    "find_case",
    "find_nearby_case",
    "has_open_episode",
    "lock_cells",
    "lock_for_alert",
    "lock_keys",
    "merge_cases",
    "priority_of",
    "recount_case",
    "running_mean",
]
