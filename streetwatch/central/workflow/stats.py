"""Statistics for the city: cases per day by violation, share self-rectified, median time to close,
top merchants and roads. `summarise` is pure (rows in, numbers out); `case_facts` reads the rows."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from streetwatch.central.access import AreaScope, case_clause, case_visible
from streetwatch.central.case_status import CaseStatus
from streetwatch.central.models import Area, AuditLog, Case, Merchant

CLOSING_ACTIONS = ("close", "rectified", "dismiss")
TOP_N = 10


@dataclass(frozen=True)
class CaseFact:
    """What statistics need of one case."""

    case_id: int
    day: str  # YYYY-MM-DD (UTC) of first_seen
    violation: str
    status: str
    merchant: str | None  # merchant name
    road: str | None
    hours_to_close: float | None  # first_seen -> the first closing action
    area: str | None = None  # the case's area name


@dataclass(frozen=True)
class Summary:
    total: int
    per_day: dict[str, dict[str, int]]  # day -> violation -> count
    violations: list[str]
    self_rectified_share: float | None  # of the cases that ended (rectified or closed), None if none
    median_hours_to_close: float | None
    top_merchants: list[tuple[str, int]] = field(default_factory=list)
    top_roads: list[tuple[str, int]] = field(default_factory=list)
    unreviewed: int = 0  # new cases in the period: shown apart, counted nowhere above


def summarise(facts: Sequence[CaseFact]) -> Summary:
    """Only confirmed cases count: dismissed ones were not violations, new ones nobody reviewed yet
    (their number is `unreviewed`)."""
    real = [f for f in facts if f.status not in (CaseStatus.DISMISSED, CaseStatus.NEW)]
    per_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for f in real:
        per_day[f.day][f.violation] += 1
    ended = [f for f in real if f.status in (CaseStatus.RECTIFIED, CaseStatus.CLOSED)]
    rectified = sum(f.status == CaseStatus.RECTIFIED for f in ended)
    hours = [f.hours_to_close for f in real if f.hours_to_close is not None]
    return Summary(
        total=len(real),
        per_day={d: dict(v) for d, v in sorted(per_day.items())},
        violations=sorted({f.violation for f in real}),
        self_rectified_share=rectified / len(ended) if ended else None,
        median_hours_to_close=statistics.median(hours) if hours else None,
        top_merchants=Counter(f.merchant for f in real if f.merchant).most_common(TOP_N),
        top_roads=Counter(f.road for f in real if f.road).most_common(TOP_N),
        unreviewed=sum(f.status == CaseStatus.NEW for f in facts),
    )


def case_facts(
    session: Session, *, scope: AreaScope | None, since: datetime, until: datetime, limit: int = 200_000
) -> list[CaseFact]:
    query = (
        select(Case)
        .where(case_clause(scope), Case.merged_into_id.is_(None), Case.first_seen >= since, Case.first_seen <= until)
        .order_by(Case.id)
        .limit(limit)
    )
    cases = [c for c in session.scalars(query) if case_visible(scope, c)]
    ids = [c.id for c in cases]
    area_name = dict(session.execute(select(Area.id, Area.name)).all())
    closed_at: dict[int, datetime] = {}
    closing = (
        select(AuditLog.case_id, AuditLog.at)
        .where(AuditLog.case_id.in_(ids), AuditLog.action.in_(CLOSING_ACTIONS))
        .order_by(AuditLog.at.desc())
    )
    for case_id, at in session.execute(closing):
        if case_id is not None:
            closed_at[case_id] = at  # the earliest wins (descending order)
    merchants = {
        m.id: m
        for m in session.scalars(
            select(Merchant).where(Merchant.id.in_({c.merchant_id for c in cases if c.merchant_id}))
        )
    }
    facts = []
    for c in cases:
        m = merchants.get(c.merchant_id or "")
        ended = c.status in (CaseStatus.CLOSED, CaseStatus.RECTIFIED, CaseStatus.DISMISSED)
        done = closed_at.get(c.id) if ended else None
        hours = (done - c.first_seen).total_seconds() / 3600 if done else None
        facts.append(
            CaseFact(
                c.id,
                c.first_seen.date().isoformat(),
                c.violation,
                c.status,
                m.name if m else None,
                (m.road or None) if m else None,
                hours,
                area_name.get(c.area_id) if c.area_id else None,
            )
        )
    return facts
