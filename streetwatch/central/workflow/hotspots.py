"""Hotspots (an address or zone with >= 5 confirmed cases in the window, shown until back to zero)
and road grades. Only cases a reviewer confirmed count (a detection nobody reviewed is no violation
yet); the new ones at each spot are kept apart in `unreviewed_count`, shown beside, never counted.

A case's address is its merchant (`merchant:<id>`, labelled with the merchant's address) or, when
unattributed, the camera zone that saw it (`zone:<camera>/<zone>`). `recompute_hotspots` runs on every
workflow tick; rows stay after they go inactive (history), with `active` false.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from streetwatch.central.case_status import VIOLATION_STATUSES, CaseStatus
from streetwatch.central.models import Case, Hotspot, Merchant
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.rules import Grade, RoadRecord, hotspot_active, road_grade

log = logging.getLogger(__name__)

# Confirmed violations, closed ones too (merged-away cases are left out by merged_into_id).
COUNTED = (*VIOLATION_STATUSES, CaseStatus.CLOSED)


@dataclass(frozen=True)
class SpotCount:
    key: str
    label: str
    road: str
    count: int
    lat: float | None
    lon: float | None
    unreviewed: int = 0


def spot_counts(
    session: Session, *, now: datetime, settings: WorkflowSettings, statuses: tuple[str, ...] = COUNTED
) -> dict[str, SpotCount]:
    """Cases of `statuses` per spot within the hotspot window."""
    since = now - timedelta(days=settings.hotspot_window_days)
    rows = session.execute(
        select(Case.merchant_id, Case.camera_id, Case.zone_id, func.count(), func.avg(Case.lat), func.avg(Case.lon))
        .where(
            Case.status.in_(statuses),
            Case.merged_into_id.is_(None),
            Case.first_seen >= since,
            Case.first_seen <= now,
        )
        .group_by(Case.merchant_id, Case.camera_id, Case.zone_id)
    ).all()
    merchants = {
        m.id: m for m in session.scalars(select(Merchant).where(Merchant.id.in_({r[0] for r in rows if r[0]})))
    }
    merged: dict[str, list[tuple[int, float | None, float | None]]] = defaultdict(list)
    labels: dict[str, tuple[str, str]] = {}
    for merchant_id, camera_id, zone_id, count, lat, lon in rows:
        if merchant_id is not None and merchant_id in merchants:
            m = merchants[merchant_id]
            key, labels[f"merchant:{merchant_id}"] = f"merchant:{merchant_id}", (m.address or m.name, m.road)
        else:
            key = f"zone:{camera_id}/{zone_id}"
            labels[key] = (f"camera {camera_id} zone {zone_id}", "")
        merged[key].append((int(count), lat, lon))
    return {key: _spot(key, labels[key], parts) for key, parts in merged.items()}


def _spot(key: str, label: tuple[str, str], parts: list[tuple[int, float | None, float | None]]) -> SpotCount:
    total = sum(c for c, _, _ in parts)
    located = [(c, la, lo) for c, la, lo in parts if la is not None and lo is not None]
    weight = sum(c for c, _, _ in located)
    lat = sum(c * la for c, la, _ in located) / weight if weight else None  # type: ignore[operator]
    lon = sum(c * lo for c, _, lo in located) / weight if weight else None  # type: ignore[operator]
    return SpotCount(key, label[0], label[1], total, lat, lon)


def recompute_hotspots(session: Session, *, now: datetime, settings: WorkflowSettings) -> list[Hotspot]:
    """Update every hotspot row from the counts; returns the active ones."""
    counts = spot_counts(session, now=now, settings=settings)
    unreviewed = spot_counts(session, now=now, settings=settings, statuses=(CaseStatus.NEW,))
    existing = {h.key: h for h in session.scalars(select(Hotspot))}
    for key in set(counts) | set(existing):
        spot = counts.get(key)
        count = spot.count if spot else 0
        row = existing.get(key)
        was = row.active if row else False
        active = hotspot_active(was_active=was, case_count=count, threshold=settings.hotspot_threshold)
        if row is None and not active:
            continue
        if row is None:
            row = Hotspot(key=key, active=False, case_count=0, updated_at=now)
            session.add(row)
        if spot is not None:
            row.label, row.road, row.lat, row.lon = spot.label, spot.road, spot.lat, spot.lon
        if active != was:
            log.info("hotspot %s (%s): %s with %d cases", key, row.label, "on" if active else "off", count)
            row.since = now if active else row.since
        row.active, row.case_count, row.updated_at = active, count, now
        row.unreviewed_count = unreviewed[key].count if key in unreviewed else 0
    session.flush()
    return [h for h in session.scalars(select(Hotspot).where(Hotspot.active.is_(True)).order_by(Hotspot.key))]


@dataclass(frozen=True)
class RoadGrade:
    road: str
    grade: Grade
    record: RoadRecord


def road_grades(session: Session, *, merchant_ids: set[str] | None = None) -> list[RoadGrade]:
    """Each named road's grade from its merchants' grades and its active hotspots."""
    grades: dict[str, list[str]] = defaultdict(list)
    for merchant_id, road, grade in session.execute(select(Merchant.id, Merchant.road, Merchant.grade)):
        if road and (merchant_ids is None or merchant_id in merchant_ids):
            grades[road].append(grade)
    hot: dict[str, int] = defaultdict(int)
    for key, road in session.execute(select(Hotspot.key, Hotspot.road).where(Hotspot.active.is_(True))):
        owner = key.removeprefix("merchant:") if key.startswith("merchant:") else None
        if road in grades and (merchant_ids is None or owner in merchant_ids):
            hot[road] += 1
    result = []
    for road in sorted(grades):
        record = RoadRecord.of(grades[road], hotspots=hot[road])
        result.append(RoadGrade(road, road_grade(record), record))
    return result
