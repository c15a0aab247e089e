"""Merchant grades (red/yellow/green) from confirmed cases and complaints, and the inspections due.

`recompute_grades` runs on every workflow tick and after every complaint or closure, so a grade
follows the records both ways (a case or complaint leaving the window lowers it again). Each change
is written to the audit log (`grade`, case_id NULL, from/to in the detail).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from streetwatch.central.access import AreaScope, merchant_clause, merchant_visible
from streetwatch.central.case_status import CaseStatus
from streetwatch.central.models import AuditLog, Case, Complaint, Inspection, Merchant
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.rules import inspection_due_at, inspection_frequency, merchant_grade

log = logging.getLogger(__name__)

# Confirmed violations, closed ones included; self-rectified ones only as configured.
COUNTED = (CaseStatus.CONFIRMED, CaseStatus.NOTIFIED, CaseStatus.ESCALATED, CaseStatus.CLOSED)


@dataclass(frozen=True)
class GradeChange:
    merchant_id: str
    old: str
    new: str
    records: int


def counted_statuses(settings: WorkflowSettings) -> tuple[str, ...]:
    return (*COUNTED, CaseStatus.RECTIFIED) if settings.grades_count_self_rectified else COUNTED


def merchant_records(session: Session, *, now: datetime, settings: WorkflowSettings) -> dict[str, int]:
    """Confirmed cases (not merged away) plus complaints per merchant within the grade window."""
    since = now - timedelta(days=settings.grade_window_days)
    cases = session.execute(
        select(Case.merchant_id, func.count())
        .where(
            Case.merchant_id.is_not(None),
            Case.status.in_(counted_statuses(settings)),
            Case.merged_into_id.is_(None),
            Case.first_seen >= since,
            Case.first_seen <= now,
        )
        .group_by(Case.merchant_id)
    ).all()
    complaints = session.execute(
        select(Complaint.merchant_id, func.count())
        .where(Complaint.received_at >= since, Complaint.received_at <= now)
        .group_by(Complaint.merchant_id)
    ).all()
    records: dict[str, int] = {}
    for merchant_id, count in [*cases, *complaints]:
        if merchant_id is None:
            continue
        records[merchant_id] = records.get(merchant_id, 0) + int(count)
    return records


def recompute_grades(session: Session, *, now: datetime, settings: WorkflowSettings) -> list[GradeChange]:
    """Set every merchant's grade from its records; returns (and audits) the changes."""
    records = merchant_records(session, now=now, settings=settings)
    changes: list[GradeChange] = []
    for merchant in session.scalars(select(Merchant)):
        count = records.get(merchant.id, 0)
        grade = merchant_grade(count, red_at=settings.red_at, yellow_at=settings.yellow_at)
        if grade == merchant.grade:
            continue
        changes.append(GradeChange(merchant.id, merchant.grade, grade, count))
        merchant.grade = grade
        detail = {"merchant_id": merchant.id, "from": changes[-1].old, "to": grade, "records": count}
        session.add(AuditLog(case_id=None, actor="workflow", action="grade", detail=detail, at=now))
        log.info("merchant %s: grade %s -> %s (%d records)", merchant.id, changes[-1].old, grade, count)
    session.flush()
    return changes


@dataclass(frozen=True)
class DueInspection:
    """A visit due today: a routine one by grade, or one sent for a case nobody rectified."""

    merchant_id: str | None
    merchant_name: str
    grade: str
    frequency: str
    reason: str  # routine | case
    due_at: datetime
    case_id: int | None = None
    inspection_id: int | None = None
    assignee: str | None = None


@dataclass(frozen=True)
class DueVisit:
    """One inspector's visit: a merchant on a day, with every reason to go there."""

    merchant_id: str | None
    merchant_name: str
    address: str
    grade: str
    frequency: str
    day: str  # YYYY-MM-DD, the city's day the visit is due
    due_at: datetime  # the earliest due time of its reasons
    reasons: tuple[str, ...]  # case | routine, once each
    case_ids: tuple[int, ...]
    assignee: str | None


def group_visits(
    due: list[DueInspection], *, day_of: Callable[[datetime], str], addresses: dict[str, str]
) -> list[DueVisit]:
    """One row per merchant and day (pure): seven escalated cases of one shop are one visit."""
    groups: dict[tuple[str, str], list[DueInspection]] = {}
    for item in due:
        groups.setdefault((item.merchant_id or f"case-{item.case_id}", day_of(item.due_at)), []).append(item)
    visits = []
    for (_, day), items in groups.items():
        first = items[0]
        visits.append(
            DueVisit(
                merchant_id=first.merchant_id,
                merchant_name=first.merchant_name,
                address=addresses.get(first.merchant_id or "", ""),
                grade=first.grade,
                frequency=first.frequency,
                day=day,
                due_at=min(i.due_at for i in items),
                reasons=tuple(dict.fromkeys(i.reason for i in items)),
                case_ids=tuple(sorted({i.case_id for i in items if i.case_id is not None})),
                assignee=next((i.assignee for i in items if i.assignee), None),
            )
        )
    return visits


def inspections_due(session: Session, *, now: datetime, scope: AreaScope | None = None) -> list[DueInspection]:
    """Everything due by the end of `now`'s day (UTC): open case inspections and routine visits."""
    end_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    last_done = dict(
        session.execute(
            select(Inspection.merchant_id, func.max(Inspection.done_at))
            .where(Inspection.status == "done")
            .group_by(Inspection.merchant_id)
        ).all()
    )
    merchants = [
        m for m in session.scalars(select(Merchant).where(merchant_clause(scope))) if merchant_visible(scope, m)
    ]
    by_id = {m.id: m for m in merchants}
    due: list[DueInspection] = []
    routine_open: set[str] = set()
    for inspection in session.scalars(
        select(Inspection).where(Inspection.status == "open", Inspection.due_at < end_of_day)
    ):
        merchant = by_id.get(inspection.merchant_id or "")
        if merchant is None and scope is not None:
            continue
        grade = merchant.grade if merchant else "green"
        reason = "routine" if inspection.reason == "routine" else "case"
        if reason == "routine":
            routine_open.add(inspection.merchant_id or "")
        due.append(
            DueInspection(
                inspection.merchant_id,
                merchant.name if merchant else "",
                grade,
                inspection_frequency(grade),
                reason,
                inspection.due_at,
                inspection.case_id,
                inspection.id,
                inspection.assignee,
            )
        )
    for merchant in merchants:
        at = inspection_due_at(grade=merchant.grade, last_done=last_done.get(merchant.id), since=now)
        if at < end_of_day and merchant.id not in routine_open:
            due.append(
                DueInspection(
                    merchant.id, merchant.name, merchant.grade, inspection_frequency(merchant.grade), "routine", at
                )
            )
    return sorted(
        due,
        key=lambda d: (
            {"red": 0, "yellow": 1, "green": 2}.get(d.grade, 3),
            d.reason != "case",
            d.due_at,
            d.merchant_name,
        ),
    )
