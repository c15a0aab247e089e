"""Notification and the self-rectification timer, applied to the database.

A confirmed case attributed to a merchant gets, in one transaction: its strike, a message in the
outbox, a `rectify` timer due after the configured window, and the status `notified`. It waits
first for the reviewer's undo window (`decided_at` + `undo_window_s`), and, with
`strike_waits_for_served`, for the merchant's previous step to be served: that notice delivered
(where a channel delivers) and its rectification deadline passed. So a backlog confirmed at once
becomes one step at a time, in the order the violations happened (`first_seen`). The worker
then resolves each pending timer with `rules.rectify_decision`: if every episode of the case ended
(the edge saw the spot clear) by the deadline the case is `rectified`; otherwise at the deadline an
inspection task is created and the case is `escalated`. Timers are rows, so a restart loses nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from streetwatch.central.case_service import write_audit
from streetwatch.central.case_status import CaseStatus, move
from streetwatch.central.models import Case, CaseTimer, Episode, Inspection, Merchant, Notification, Strike
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.rules import rectify_decision
from streetwatch.central.workflow.strikes import record_strike

log = logging.getLogger(__name__)

ACTOR = "workflow"
RECTIFY = "rectify"
REDISPATCH = "redispatch"  # after a failed verification: only a newer clear view counts
NOTICE_KIND = {"warning": "warning", "rectification_notice": "rectification_notice", "penalty": "penalty_notice"}


@dataclass(frozen=True)
class TimerOutcome:
    case_id: int
    outcome: str  # rectified | inspection | cancelled


def cases_to_start(
    session: Session, *, now: datetime, settings: WorkflowSettings, delivery_known: bool = True, limit: int = 200
) -> list[Case]:
    """Confirmed, attributed cases whose workflow may start now (locked for update): past their undo
    window and, as configured, per merchant only its oldest waiting violation, once the previous step
    was served (`delivery_known`: a channel delivers notices, so delivery counts)."""
    started = exists().where(CaseTimer.case_id == Case.id)
    settled = now - timedelta(seconds=settings.undo_window_s)
    waiting = (Case.status == CaseStatus.CONFIRMED, Case.merchant_id.is_not(None), ~started)
    if not settings.strike_waits_for_served:
        query = select(Case).where(*waiting, or_(Case.decided_at.is_(None), Case.decided_at <= settled))
        return list(
            session.scalars(query.order_by(Case.first_seen, Case.id).limit(limit).with_for_update(skip_locked=True))
        )
    # Each merchant's oldest waiting violation (a merchant's long backlog never hides another's case).
    rank = func.row_number().over(partition_by=Case.merchant_id, order_by=(Case.first_seen, Case.id))
    oldest = select(Case.id.label("id"), rank.label("rank")).where(*waiting).subquery()
    query = (
        select(Case)
        .where(Case.id.in_(select(oldest.c.id).where(oldest.c.rank == 1)))
        .order_by(Case.first_seen, Case.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    chosen = []
    for case in session.scalars(query):
        in_window = case.decided_at is not None and case.decided_at > settled
        if (
            not in_window
            and waiting_for(session, case.merchant_id or "", now=now, delivery_known=delivery_known) is None
        ):
            chosen.append(case)
    return chosen


@dataclass(frozen=True)
class PreviousStep:
    """The merchant's step a new strike waits for: its case, and what is still missing."""

    case_id: int
    due_at: datetime | None
    delivered: bool


def waiting_for(session: Session, merchant_id: str, *, now: datetime, delivery_known: bool) -> PreviousStep | None:
    """The merchant's latest step if it is not served yet (notice undelivered or deadline ahead), else None."""
    latest = session.scalars(
        select(Strike).where(Strike.merchant_id == merchant_id).order_by(Strike.at.desc(), Strike.case_id.desc())
    ).first()
    if latest is None:
        return None
    due = session.scalar(
        select(func.min(CaseTimer.due_at)).where(CaseTimer.case_id == latest.case_id, CaseTimer.kind == RECTIFY)
    )
    sent = session.scalar(select(exists().where(Notification.case_id == latest.case_id, Notification.status == "sent")))
    delivered = bool(sent) or not delivery_known
    if delivered and (due is None or due <= now):
        return None
    return PreviousStep(latest.case_id, due, bool(sent))


def start_workflow(session: Session, case: Case, *, now: datetime, settings: WorkflowSettings) -> CaseTimer:
    """Strike, outbox message, timer and status `notified` for one confirmed attributed case."""
    strike = record_strike(session, case, now=now, settings=settings)
    due = now + timedelta(minutes=settings.rectify_window_min)
    merchant = session.get(Merchant, case.merchant_id)
    payload = _notice_payload(case, merchant, step=strike.step, action=strike.action, due=due)
    session.add(
        Notification(
            case_id=case.id,
            merchant_id=case.merchant_id,
            kind=NOTICE_KIND[strike.action],
            payload=payload,
            next_attempt_at=now,
            created_at=now,
        )
    )
    timer = CaseTimer(case_id=case.id, kind=RECTIFY, started_at=now, due_at=due)
    session.add(timer)
    move(case, CaseStatus.NOTIFIED, action="notify")
    case.updated_at = now
    detail = {"strike": strike.step, "action": strike.action, "rectify_by": due.isoformat()}
    write_audit(session, case_id=case.id, actor=ACTOR, action="notify", detail=detail, at=now)
    log.info("case %s: merchant %s notified (%s), rectify by %s", case.id, case.merchant_id, strike.action, due)
    return timer


def _notice_payload(
    case: Case, merchant: Merchant | None, *, step: int, action: str, due: datetime
) -> dict[str, object]:
    return {
        "case_id": case.id,
        "merchant_id": case.merchant_id,
        "merchant_name": merchant.name if merchant else None,
        "contact": merchant.contact if merchant else None,
        "address": merchant.address if merchant else None,
        "violation": case.violation,
        "lat": case.lat,
        "lon": case.lon,
        "strike": step,
        "action": action,
        "rectify_by": due.isoformat(),
    }


def clear_since(session: Session, case_id: int) -> datetime | None:
    """When the spot was last seen clear: the latest episode end, if no episode of the case is open."""
    still_open = session.scalar(select(exists().where(Episode.case_id == case_id, Episode.ended_at.is_(None))))
    if still_open:
        return None
    return session.scalar(select(func.max(Episode.ended_at)).where(Episode.case_id == case_id))


def pending_timers(session: Session, *, limit: int = 500) -> list[CaseTimer]:
    query = (
        select(CaseTimer)
        .where(CaseTimer.status == "pending")
        .order_by(CaseTimer.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def resolve_timer(session: Session, timer: CaseTimer, *, now: datetime) -> TimerOutcome | None:
    """Apply the 30-minute rule to one pending timer; None while it still waits."""
    case = session.get(Case, timer.case_id, with_for_update=True)
    assert case is not None
    if case.status != CaseStatus.NOTIFIED:  # a reviewer acted first (closed, merged): nothing left to time
        return _finish(session, timer, case, outcome="cancelled", now=now)
    not_before = timer.started_at if timer.kind == REDISPATCH else None
    clear = clear_since(session, case.id)
    decision = rectify_decision(now=now, due_at=timer.due_at, clear_since=clear, not_before=not_before)
    if decision == "wait":
        return None
    if decision == "rectified":
        move(case, CaseStatus.RECTIFIED, action="rectified")
    else:
        move(case, CaseStatus.ESCALATED, action="inspection")
        inspection = Inspection(
            case_id=case.id, merchant_id=case.merchant_id, reason="case", due_at=now, created_at=now
        )
        session.add(inspection)
    case.updated_at = now
    return _finish(session, timer, case, outcome=decision, now=now)


def _finish(session: Session, timer: CaseTimer, case: Case, *, outcome: str, now: datetime) -> TimerOutcome:
    timer.status = "done"
    timer.outcome = outcome
    timer.resolved_at = now
    detail = {"timer": timer.kind, "due_at": timer.due_at.isoformat()}
    write_audit(session, case_id=case.id, actor=ACTOR, action=outcome, detail=detail, at=now)
    log.info("case %s: %s timer -> %s", case.id, timer.kind, outcome)
    return TimerOutcome(case_id=case.id, outcome=outcome)
