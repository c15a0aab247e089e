"""Read side of the queue: filtered, paged case lists that stay fast with millions of cases.

The list query walks the index `ix_cases_queue (status, priority DESC, first_seen)` with LIMIT and
keyset paging (a cursor of the last row's priority, first_seen and id), so a page costs the same
on page 1 and page 1000 and never loads more rows than it shows. Counting is capped: counting a
million rows to print "1,000,000" would cost more than the page itself.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from streetwatch.central.access import (
    AreaScope,
    build_scope,
    case_clause,
    covered_mask,
    needs_refine,
    nested,
    refine,
)
from streetwatch.central.api.params import EARLIEST, LATEST
from streetwatch.central.models import Alert, Area, AuditLog, Case, Merchant
from streetwatch.central.workflow.ids import MAX_ID

COUNT_CAP = 1_000  # "1,000+" is all a reviewer needs; a bigger count costs more than the page
MAX_PAGE = 200


class BadCursor(ValueError):
    """A paging cursor that was not made by this service."""


@dataclass(frozen=True)
class CaseFilters:
    status: str = "new"
    violation: str | None = None
    area_id: str | None = None
    merchant_id: str | None = None
    text: str | None = None  # part of a merchant's name, address or road, or a case number ("#12")
    camera_id: str | None = None
    seen_from: datetime | None = None  # first seen at or after
    seen_until: datetime | None = None  # first seen before
    older_than: datetime | None = None  # first seen before this (the age filter)


@dataclass(frozen=True)
class QueueCursor:
    priority: int
    first_seen: datetime
    case_id: int

    def encode(self) -> str:
        raw = f"{self.priority}|{self.first_seen.isoformat()}|{self.case_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> QueueCursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            priority, first_seen, case_id = raw.split("|")
            cursor = cls(int(priority), datetime.fromisoformat(first_seen), int(case_id))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise BadCursor(f"after: not a cursor from this service: {text[:40]!r}") from None
        if not cursor.plausible():  # forged: numbers past the columns, a naive or far-off date
            raise BadCursor(f"after: not a cursor from this service: {text[:40]!r}")
        return cursor

    def plausible(self) -> bool:
        """What `encode` can have made: 32-bit numbers and an aware time within 1970..2200."""
        if not (abs(self.priority) <= MAX_ID and 0 < self.case_id <= MAX_ID) or self.first_seen.tzinfo is None:
            return False
        try:
            return EARLIEST <= self.first_seen.astimezone(UTC) <= LATEST
        except OverflowError:
            return False

    @classmethod
    def of(cls, case: Case) -> QueueCursor:
        return cls(case.priority, case.first_seen, case.id)


@dataclass(frozen=True)
class CasePage:
    cases: list[Case]
    next_cursor: QueueCursor | None
    count: int
    count_capped: bool


def filter_scope(session: Session, area_id: str | None) -> AreaScope | None:
    """The area filter of the queue, built like a user's scope (subtree ids + polygon)."""
    if not area_id:
        return None
    return build_scope(session.scalars(select(Area)), area_id)


def _where(session: Session, filters: CaseFilters, scopes: Sequence[AreaScope | None]) -> list[ColumnElement[bool]]:
    """The filter conditions. On SQLite, unless a merchant is named (its index is then the best
    start), every condition but the status is kept off its index so the planner walks
    `ix_cases_queue` in order and stops after one page; SQLite would otherwise gather a whole
    violation or area through its index and sort it. PostgreSQL's cost-based planner picks the
    queue index by itself, and wrapped columns would only spoil its row estimates."""
    pin = session.get_bind().dialect.name == "sqlite" and not (filters.merchant_id or filters.text)
    conditions: list[ColumnElement[bool]] = [Case.status == filters.status]
    if filters.violation:
        violation = Case.violation.concat("") if pin else Case.violation
        conditions.append(violation == filters.violation)
    if filters.merchant_id:
        conditions.append(Case.merchant_id == filters.merchant_id)
    if filters.text:
        conditions.append(text_clause(filters.text))
    if filters.camera_id:
        conditions.append(Case.camera_id == filters.camera_id)
    for bound, newer in ((filters.seen_from, True), (filters.seen_until, False), (filters.older_than, False)):
        if bound is not None:
            conditions.append(Case.first_seen >= bound if newer else Case.first_seen < bound)
    conditions.extend(case_clause(s, avoid_indexes=pin) for s in scopes if s is not None)
    return conditions


def _like(text: str) -> str:
    """A LIKE pattern that finds `text` anywhere; the user's % and _ are taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def text_clause(text: str) -> ColumnElement[bool]:
    """Cases whose merchant's name, address or road contains `text`, or whose number it is."""
    text = " ".join(text.split())[:100]
    pattern = _like(text)
    merchants = select(Merchant.id).where(
        or_(
            Merchant.name.ilike(pattern, escape="\\"),
            Merchant.address.ilike(pattern, escape="\\"),
            Merchant.road.ilike(pattern, escape="\\"),
            Merchant.id == text,
        )
    )
    matches: ColumnElement[bool] = Case.merchant_id.in_(merchants)
    number = text.removeprefix("#").strip()
    if number.isdigit() and len(number) <= 10:
        matches = or_(matches, Case.id == int(number))
    return matches


def _after(cursor: QueueCursor) -> ColumnElement[bool]:
    """Rows after `cursor` in (priority DESC, first_seen ASC, id ASC) order."""
    return or_(
        Case.priority < cursor.priority,
        and_(Case.priority == cursor.priority, Case.first_seen > cursor.first_seen),
        and_(
            Case.priority == cursor.priority,
            Case.first_seen == cursor.first_seen,
            Case.id > cursor.case_id,
        ),
    )


def _ordered(stmt: Select[Case]) -> Select[Case]:
    return stmt.order_by(Case.priority.desc(), Case.first_seen.asc(), Case.id.asc())


def list_cases(
    session: Session,
    filters: CaseFilters,
    *,
    scopes: Sequence[AreaScope | None],
    limit: int,
    after: QueueCursor | None = None,
    offset: int = 0,
    count_cap: int = COUNT_CAP,
) -> CasePage:
    """One page of cases visible under every scope, best first; fetches in batches only when the
    polygon refinement drops rows (restricted users whose area is not a rectangle)."""
    limit = max(1, min(limit, MAX_PAGE))
    if not nested(*_pair(scopes)):
        return CasePage(cases=[], next_cursor=None, count=0, count_capped=False)
    wanted = offset + limit + 1
    found: list[Case] = []
    cursor = after
    batch = wanted
    exact = not needs_refine(scopes)
    while len(found) < wanted:
        stmt = select(Case).where(*_where(session, filters, scopes))
        if cursor is not None:
            stmt = stmt.where(_after(cursor))
        rows = list(session.scalars(_ordered(stmt).limit(batch)))
        found.extend(rows if exact else refine(scopes, rows))
        if len(rows) < batch:
            break
        cursor = QueueCursor.of(rows[-1])
        batch = min(batch * 2, 2_000)
    page = found[offset : offset + limit]
    next_cursor = QueueCursor.of(page[-1]) if len(found) > offset + limit and page else None
    if next_cursor is None and after is None:  # everything fitted on this page: the count is known
        count, capped = min(len(found), count_cap), len(found) > count_cap
    else:
        count, capped = count_cases(session, filters, scopes=scopes, cap=count_cap)
    return CasePage(cases=page, next_cursor=next_cursor, count=count, count_capped=capped)


def _pair(scopes: Sequence[AreaScope | None]) -> tuple[AreaScope | None, AreaScope | None]:
    """(the user's scope, the filter's scope) from the list handlers pass."""
    user = scopes[0] if scopes else None
    area = scopes[1] if len(scopes) > 1 else None
    return user, area


def count_cases(
    session: Session, filters: CaseFilters, *, scopes: Sequence[AreaScope | None], cap: int = COUNT_CAP
) -> tuple[int, bool]:
    """(matching cases, True if there are more than `cap`), reading at most cap + 1 index entries."""
    if not nested(*_pair(scopes)):
        return 0, False
    where = _where(session, filters, scopes)
    if not needs_refine(scopes):
        # At most cap + 1 ids: cheap, and the same plan as the page query.
        ids = select(Case.id).where(*where).limit(cap + 1)
        total = len(session.scalars(ids).all())
    else:
        rows = session.execute(select(Case.area_id, Case.lat, Case.lon).where(*where).limit(cap + 1)).all()
        keep = np.ones(len(rows), dtype=bool)
        for scope in scopes:
            if scope is not None and rows:
                keep &= covered_mask(
                    scope, area_ids=[r[0] for r in rows], lats=[r[1] for r in rows], lons=[r[2] for r in rows]
                )
        total = int(keep.sum())
    return min(total, cap), total > cap


def _ranked_alerts(
    session: Session, case_ids: Sequence[int], *, per_case: int, newest_first: bool, with_evidence: bool
) -> dict[int, list[Alert]]:
    """The first `per_case` alerts of each case in observation order (newest or oldest first), one
    query (a window function on both backends)."""
    if not case_ids:
        return {}
    observed = Alert.observed_at.desc() if newest_first else Alert.observed_at.asc()
    conditions = [Alert.case_id.in_(case_ids)]
    if with_evidence:
        conditions.append(Alert.evidence_sha256.is_not(None))
    ranked = (
        select(
            Alert.alert_id.label("alert_id"),
            func.row_number().over(partition_by=Alert.case_id, order_by=(observed, Alert.alert_id)).label("rank"),
        )
        .where(*conditions)
        .subquery()
    )
    stmt = (
        select(Alert)
        .join(ranked, ranked.c.alert_id == Alert.alert_id)
        .where(ranked.c.rank <= per_case)
        .order_by(Alert.case_id, observed)
    )
    grouped: dict[int, list[Alert]] = {cid: [] for cid in case_ids}
    for alert in session.scalars(stmt):
        if alert.case_id is not None:  # always, filtered by case above; pending sightings have none
            grouped.setdefault(alert.case_id, []).append(alert)
    return grouped


def recent_alerts(session: Session, case_ids: Sequence[int], *, per_case: int = 5) -> dict[int, list[Alert]]:
    """The newest `per_case` alerts of each case."""
    return _ranked_alerts(session, case_ids, per_case=per_case, newest_first=True, with_evidence=False)


def evidence_alerts(session: Session, case_ids: Sequence[int], *, per_case: int = 24) -> dict[int, list[Alert]]:
    """The oldest `per_case` alerts with an evidence image of each case (the viewer's strip)."""
    return _ranked_alerts(session, case_ids, per_case=per_case, newest_first=False, with_evidence=True)


def case_alerts(session: Session, case_id: int, *, limit: int, offset: int = 0) -> list[Alert]:
    stmt = (
        select(Alert)
        .where(Alert.case_id == case_id)
        .order_by(Alert.observed_at.desc(), Alert.alert_id)
        .offset(offset)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def case_audit(session: Session, case_id: int) -> list[AuditLog]:
    stmt = select(AuditLog).where(AuditLog.case_id == case_id).order_by(AuditLog.at, AuditLog.id)
    return list(session.scalars(stmt))


def merchants_by_id(session: Session, ids: Sequence[str | None]) -> dict[str, Merchant]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    return {m.id: m for m in session.scalars(select(Merchant).where(Merchant.id.in_(wanted)))}


def area_names(session: Session) -> dict[str, str]:
    return {a.id: a.name for a in session.scalars(select(Area))}


def queue_cameras(session: Session, *, status: str, limit: int = 200) -> list[str]:
    """The cameras that have cases of `status` (the queue's camera filter)."""
    stmt = select(Case.camera_id).where(Case.status == status).distinct().order_by(Case.camera_id).limit(limit)
    return list(session.scalars(stmt))
