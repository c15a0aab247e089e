"""Moving-camera sightings: confirm a violation from two patrol passes, never from one.

A patrol vehicle or drone cannot watch a parked car for minutes, so its edge sends one `sighting`
alert per object and pass (edge/moving_rules.py). Central decides (pure rule in
`sighting_partners`, database layer below):

- a sighting that joins an existing case (its episode's, or an open case of the violation near it
  in place and time: cases.find_case, the same rule as every alert) is folded into that case;
- else it is paired with the *pending* sightings (stored alerts without a case) of the same
  violation from other passes (other episode ids), within max_gap_s, at the same spot: within
  max(sighting_min_radius_m, either accuracy) metres, capped at radius_m[violation]. If one of
  them lies at least `sighting_interval_s` (default 5 minutes) before or after it, the spot was
  occupied on two separate passes: a case opens with all of them as its alerts. Otherwise the
  sighting stays pending: a single pass confirms nothing.

Race freedom: the ingest transaction has already taken `cases.lock_for_alert`'s locks (grid cells of
side 2 x radius_m[violation] around the alert; BEGIN IMMEDIATE on SQLite). Because the pairing
radius is capped at radius_m, any two sightings that may pair share a lock cell, so two workers
never both decide the same spot: the second sees the first one's row (pending or in a case).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from streetwatch.central.attribution import MerchantIndex
from streetwatch.central.cases import (
    METRES_PER_DEGREE_LAT,
    apply_alert,
    attribute_case,
    distance_m,
    find_case,
    open_case,
    priority_of,
    recount_case,
)
from streetwatch.central.config import CaseSettings
from streetwatch.central.models import Alert, Case, Episode
from streetwatch.edge.alerts import Alert as WireAlert

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingSighting:
    """A sighting as the pairing rule sees it."""

    alert_id: str
    episode_id: str
    observed_at: datetime
    lat: float
    lon: float
    accuracy_m: float


def sighting_partners(
    new: PendingSighting,
    pending: Iterable[PendingSighting],
    *,
    interval: timedelta,
    max_gap: timedelta,
    min_radius_m: float,
    max_radius_m: float,
) -> list[str]:
    """Alert ids of the pending sightings that confirm `new` with it, oldest first; [] if none does.

    Candidates: other passes (episode ids), within max_gap, at the same spot (within
    min(max(min_radius_m, both accuracies), max_radius_m)). They confirm only if one of them is at
    least `interval` away in time from `new`: the spot was occupied on two separate passes.
    """
    near = [
        p
        for p in pending
        if p.episode_id != new.episode_id
        and abs(p.observed_at - new.observed_at) <= max_gap
        and distance_m(new.lat, new.lon, p.lat, p.lon)
        <= min(max(min_radius_m, new.accuracy_m, p.accuracy_m), max_radius_m)
    ]
    if not any(abs(p.observed_at - new.observed_at) >= interval for p in near):
        return []
    return [p.alert_id for p in sorted(near, key=lambda p: (p.observed_at, p.alert_id))]


def pending_sighting_of(alert: WireAlert) -> PendingSighting | None:
    loc = alert.location
    if loc is None:
        return None
    return PendingSighting(alert.alert_id, alert.episode_id, alert.observed_at, loc.lat, loc.lon, loc.accuracy_m)


def pending_near(
    session: Session, new: PendingSighting, *, violation: str, settings: CaseSettings
) -> list[PendingSighting]:
    """Stored sightings without a case of this violation in the box around `new` (the rule refines)."""
    gap = timedelta(seconds=settings.max_gap_s[violation])  # type: ignore[index]
    dlat = settings.radius_m[violation] / METRES_PER_DEGREE_LAT * 1.5  # type: ignore[index]
    dlon = dlat / max(0.01, math.cos(math.radians(new.lat)))
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


@dataclass(frozen=True)
class SightingDecision:
    """A sighting's fate: its case (None: pending), whether the case is new, the sightings it confirmed."""

    case: Case | None
    created: bool
    confirmed: tuple[str, ...] = ()


def _fold_in(
    session: Session, case: Case, alert: WireAlert, *, settings: CaseSettings, index: MerchantIndex | None,
    evidence_sha256: str | None,
) -> None:
    """apply_alert, with the sighting's pass recorded as an episode that is already over (a pass
    is seen once; nothing will send its `ended`), so the case does not look active for ever."""
    if session.get(Episode, alert.episode_id) is None:
        session.add(Episode(id=alert.episode_id, case_id=case.id, edge_id=alert.edge_id, camera_id=alert.camera_id,
                            first_seen=alert.observed_at, last_seen=alert.observed_at, ended_at=alert.observed_at))
        session.flush()
        case.episode_count += 1
    apply_alert(session, case, alert, settings=settings, index=index, evidence_sha256=evidence_sha256)


def decide_sighting(
    session: Session,
    alert: WireAlert,
    *,
    settings: CaseSettings,
    index: MerchantIndex | None,
    evidence_sha256: str | None,
) -> SightingDecision:
    """Join a case, open one confirmed by pending sightings, or stay pending (module docstring).

    Call inside the ingest transaction after `cases.lock_for_alert`; when `confirmed` is not empty,
    store the alert's row and then call `adopt_sightings`.
    """
    case = find_case(session, alert, settings=settings)
    if case is not None:
        _fold_in(session, case, alert, settings=settings, index=index, evidence_sha256=evidence_sha256)
        return SightingDecision(case=case, created=False)
    new = pending_sighting_of(alert)
    if new is None:
        log.warning("alert %s (camera %s): a sighting without location cannot be confirmed; kept pending",
                    alert.alert_id, alert.camera_id)
        return SightingDecision(case=None, created=False)
    partners = sighting_partners(
        new,
        pending_near(session, new, violation=alert.violation, settings=settings),
        interval=timedelta(seconds=settings.sighting_interval_s),
        max_gap=timedelta(seconds=settings.max_gap_s[alert.violation]),
        min_radius_m=settings.sighting_min_radius_m,
        max_radius_m=settings.radius_m[alert.violation],
    )
    if not partners:
        log.info("alert %s (camera %s): %s sighting pending until another pass confirms it",
                 alert.alert_id, alert.camera_id, alert.violation)
        return SightingDecision(case=None, created=False)
    case = open_case(session, alert)
    _fold_in(session, case, alert, settings=settings, index=index, evidence_sha256=evidence_sha256)
    return SightingDecision(case=case, created=True, confirmed=tuple(partners))


def adopt_sightings(
    session: Session, case: Case, alert_ids: Sequence[str], *, settings: CaseSettings, index: MerchantIndex | None
) -> None:
    """Give pending sightings to the case a later pass confirmed, then recount it from its alerts."""
    for row in session.scalars(select(Alert).where(Alert.alert_id.in_(alert_ids), Alert.case_id.is_(None))):
        row.case_id = case.id
        if session.get(Episode, row.episode_id) is None:
            session.add(Episode(id=row.episode_id, case_id=case.id, edge_id=row.edge_id, camera_id=row.camera_id,
                                first_seen=row.observed_at, last_seen=row.observed_at, ended_at=row.observed_at))
    recount_case(session, case)
    case.priority = priority_of(
        weight=settings.priority_weight[case.violation],  # type: ignore[index]
        alert_count=case.alert_count,
        first_seen=case.first_seen,
        last_seen=case.last_seen,
    )
    if index is not None:
        attribute_case(case, index)
    log.info("case %d: %s confirmed by %d sightings on separate passes", case.id, case.violation, case.alert_count)


__all__ = [
    "PendingSighting",
    "SightingDecision",
    "adopt_sightings",
    "decide_sighting",
    "pending_near",
    "sighting_partners",
]
