"""The rows behind the GeoJSON exports and the city map, area-scoped like the lists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from streetwatch.central.access import AreaScope, case_clause, merchant_clause, merchant_visible, refine
from streetwatch.central.api.queries import text_clause
from streetwatch.central.models import Case, Hotspot, Merchant

MAX_FEATURES = 10_000


@dataclass(frozen=True)
class GeoCaseFilters:
    statuses: Sequence[str] = ()  # none: every status
    violation: str | None = None
    merchant_id: str | None = None
    text: str | None = None  # merchant name, address, road, or a case number
    seen_from: datetime | None = None
    seen_until: datetime | None = None


def located_cases(
    session: Session, filters: GeoCaseFilters, *, scopes: Sequence[AreaScope | None], limit: int = MAX_FEATURES
) -> list[Case]:
    """Located, unmerged cases under every scope, newest first, at most `limit`."""
    conditions: list[ColumnElement[bool]] = [Case.lat.is_not(None), Case.lon.is_not(None)]
    conditions.append(Case.merged_into_id.is_(None))
    conditions += [case_clause(s) for s in scopes if s is not None]
    if filters.statuses:
        conditions.append(Case.status.in_(list(filters.statuses)))
    if filters.violation:
        conditions.append(Case.violation == filters.violation)
    if filters.merchant_id:
        conditions.append(Case.merchant_id == filters.merchant_id)
    if filters.text:
        conditions.append(text_clause(filters.text))
    if filters.seen_from is not None:
        conditions.append(Case.first_seen >= filters.seen_from)
    if filters.seen_until is not None:
        conditions.append(Case.first_seen < filters.seen_until)
    rows = session.scalars(select(Case).where(*conditions).order_by(Case.first_seen.desc()).limit(limit))
    return refine(scopes, rows)


def visible_merchants(
    session: Session, scope: AreaScope | None, *, road: str | None = None, text: str | None = None
) -> list[Merchant]:
    conditions: list[ColumnElement[bool]] = [merchant_clause(scope)]
    if road:
        conditions.append(Merchant.road == road)
    if text:
        pattern = f"%{text.replace('%', '').replace('_', '')}%"
        conditions.append(Merchant.name.ilike(pattern) | Merchant.id.ilike(pattern) | Merchant.address.ilike(pattern))
    rows = session.scalars(select(Merchant).where(*conditions).order_by(Merchant.id).limit(MAX_FEATURES))
    return [m for m in rows if merchant_visible(scope, m)]


def active_hotspots(session: Session, scope: AreaScope | None, *, road: str | None = None) -> list[Hotspot]:
    query = select(Hotspot).where(Hotspot.active.is_(True))
    if road:
        query = query.where(Hotspot.road == road)
    return [
        h
        for h in session.scalars(query.order_by(Hotspot.key))
        if h.lat is not None and h.lon is not None and (scope is None or scope.contains_point(h.lat, h.lon))
    ]
