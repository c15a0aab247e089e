"""Reviewer actions of the workflow: decide a penalty, close a case, record a complaint, finish an
inspection. Each call is one transaction with an audit row, like review.ReviewService, and uses the
same errors (NotFound for cases outside the reviewer's area, Conflict for a wrong status).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.access import case_visible, merchant_visible
from streetwatch.central.db import session_scope
from streetwatch.central.models import AuditLog, Case, CaseTimer, Complaint, Inspection, Merchant, Strike
from streetwatch.central.review import Conflict, InvalidInput, NotFound, Reviewer
from streetwatch.central.workflow.clock import Clock, system_clock
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.grades import recompute_grades
from streetwatch.central.workflow.rules import VERIFIABLE, close_blocker
from streetwatch.central.workflow.timers import REDISPATCH

log = logging.getLogger(__name__)

CLOSABLE = ("confirmed", "notified", "rectified", "escalated")
MAX_TEXT = 500


@dataclass(frozen=True)
class CaseStep:
    """Where a case stands in the three-strikes sequence (None: no strike, e.g. unattributed)."""

    case_id: int
    status: str
    strike_step: int | None
    strike_action: str | None
    penalty_decision: str | None
    close_blocker: str | None


def _text(value: str, field: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise InvalidInput(f"{field}: expected some text, got an empty value")
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"{field}: at most {MAX_TEXT} characters, got {len(value)}")
    return value


def _locked_case(session: Session, case_id: int, reviewer: Reviewer) -> Case:
    case = session.scalars(select(Case).where(Case.id == case_id).with_for_update()).one_or_none()
    if case is None or not case_visible(reviewer.scope, case):
        raise NotFound(f"case {case_id} not found")
    return case


def case_step(session: Session, case: Case) -> CaseStep:
    strike = session.get(Strike, case.id)
    step = strike.step if strike else None
    decision = strike.penalty_decision if strike else None
    return CaseStep(
        case.id,
        case.status,
        step,
        strike.action if strike else None,
        decision,
        close_blocker(strike_step=step, penalty_decision=decision),
    )


class WorkflowService:
    """The workflow's reviewer actions over a session factory, on an injected clock."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: WorkflowSettings | None = None,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self._factory = session_factory
        self._settings = settings or WorkflowSettings()
        self._clock = clock

    def decide_penalty(self, case_id: int, *, decision: str, reviewer: Reviewer) -> CaseStep:
        decision = _text(decision, "decision")
        with session_scope(self._factory, write_lock=True) as session:
            case = _locked_case(session, case_id, reviewer)
            strike = session.get(Strike, case.id)
            if strike is None or strike.step != 3:
                raise Conflict(f"case {case_id} is not a third strike; no penalty to decide")
            now = self._clock()
            strike.penalty_decision, strike.penalty_by, strike.penalty_at = decision, reviewer.username, now
            self._audit(session, case, reviewer, "penalty", {"decision": decision})
            return case_step(session, case)

    def verify(self, case_id: int, *, passed: bool, reviewer: Reviewer, note: str = "") -> CaseStep:
        """核查: an inspector checks a rectified or handled case (before/after photos). Passed: ready to
        close. Failed: back to dispatch (notified, a new rectification timer)."""
        with session_scope(self._factory, write_lock=True) as session:
            case = _locked_case(session, case_id, reviewer)
            if case.status not in VERIFIABLE:
                raise Conflict(f"case {case_id} is {case.status}; verify needs a rectified or escalated case")
            detail: dict[str, object] = {"from": case.status, "note": note.strip()[:MAX_TEXT]}
            if not passed:
                now = self._clock()
                due = now + timedelta(minutes=self._settings.rectify_window_min)
                case.status = "notified"
                session.add(CaseTimer(case_id=case.id, kind=REDISPATCH, started_at=now, due_at=due))
                detail["rectify_by"] = due.isoformat()
            self._audit(session, case, reviewer, "verified" if passed else "verify_failed", detail)
            return case_step(session, case)

    def close(self, case_id: int, *, reviewer: Reviewer, note: str = "") -> CaseStep:
        with session_scope(self._factory, write_lock=True) as session:
            case = _locked_case(session, case_id, reviewer)
            if case.status not in CLOSABLE:
                raise Conflict(f"case {case_id} is {case.status}; close needs one of {', '.join(CLOSABLE)}")
            blocker = case_step(session, case).close_blocker
            if blocker is not None:
                raise Conflict(f"case {case_id}: {blocker}")
            previous = case.status
            case.status = "closed"
            for timer in session.scalars(
                select(CaseTimer).where(CaseTimer.case_id == case.id, CaseTimer.status == "pending")
            ):
                timer.status, timer.outcome, timer.resolved_at = "done", "cancelled", self._clock()
            self._audit(session, case, reviewer, "close", {"from": previous, "note": note.strip()[:MAX_TEXT]})
            recompute_grades(session, now=self._clock(), settings=self._settings)
            return case_step(session, case)

    def add_complaint(self, merchant_id: str, *, source: str, note: str, reviewer: Reviewer) -> int:
        with session_scope(self._factory, write_lock=True) as session:
            merchant = session.get(Merchant, merchant_id)
            if merchant is None or not merchant_visible(reviewer.scope, merchant):
                raise NotFound(f"merchant {merchant_id!r} not found")
            now = self._clock()
            complaint = Complaint(
                merchant_id=merchant.id, received_at=now, source=source.strip()[:64], note=note.strip()[:MAX_TEXT]
            )
            session.add(complaint)
            session.flush()
            session.add(
                AuditLog(
                    case_id=None,
                    actor=reviewer.username,
                    action="complaint",
                    detail={"merchant_id": merchant.id, "complaint_id": complaint.id},
                    at=now,
                )
            )
            recompute_grades(session, now=now, settings=self._settings)  # a grade follows every change
            return complaint.id

    def complete_inspection(self, inspection_id: int, *, reviewer: Reviewer) -> None:
        with session_scope(self._factory, write_lock=True) as session:
            inspection = session.get(Inspection, inspection_id, with_for_update=True)
            merchant = session.get(Merchant, inspection.merchant_id) if inspection and inspection.merchant_id else None
            if inspection is None or (merchant is not None and not merchant_visible(reviewer.scope, merchant)):
                raise NotFound(f"inspection {inspection_id} not found")
            if inspection.status == "done":
                raise Conflict(f"inspection {inspection_id} is already done")
            now = self._clock()
            inspection.status, inspection.done_at, inspection.done_by = "done", now, reviewer.username
            session.add(
                AuditLog(
                    case_id=inspection.case_id,
                    actor=reviewer.username,
                    action="inspected",
                    detail={"inspection_id": inspection.id, "merchant_id": inspection.merchant_id},
                    at=now,
                )
            )

    def _audit(self, session: Session, case: Case, reviewer: Reviewer, action: str, detail: dict[str, object]) -> None:
        now = self._clock()
        case.updated_at = now
        session.add(AuditLog(case_id=case.id, actor=reviewer.username, action=action, detail=detail, at=now))
        session.flush()
        log.info("case %s: %s by %s (%s)", case.id, action, reviewer.username, detail)
