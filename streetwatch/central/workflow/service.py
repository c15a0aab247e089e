"""Reviewer actions of the workflow: decide a penalty, verify, close a case, record a complaint,
finish an inspection. Each is a `CaseService` action (case_service.py), like review.ReviewService:
one transaction, the case locked and checked against the reviewer's area (NotFound outside it),
status moves through the state machine (Conflict from a wrong status), one audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.access import merchant_visible
from streetwatch.central.case_service import CaseService, Reviewer, require_status, write_audit
from streetwatch.central.case_status import CLOSABLE_STATUSES, VERIFIABLE_STATUSES, CaseStatus
from streetwatch.central.errors import Conflict, InvalidInput, NotFound
from streetwatch.central.models import Case, CaseTimer, Complaint, Inspection, Merchant, Strike
from streetwatch.central.workflow.clock import Clock, system_clock
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.grades import recompute_grades
from streetwatch.central.workflow.rules import close_blocker
from streetwatch.central.workflow.timers import REDISPATCH

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


class WorkflowService(CaseService):
    """The workflow's reviewer actions, with the city's rules (`settings`), on an injected clock."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: WorkflowSettings | None = None,
        *,
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(session_factory, clock=clock)
        self._settings = settings or WorkflowSettings()

    def decide_penalty(self, case_id: int, *, decision: str, reviewer: Reviewer) -> CaseStep:
        decision = _text(decision, "decision")
        with self._case_action(case_id, reviewer) as (session, case):
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
        with self._case_action(case_id, reviewer) as (session, case):
            require_status(case, "verify", allowed=VERIFIABLE_STATUSES)
            detail: dict[str, object] = {"from": case.status, "note": note.strip()[:MAX_TEXT]}
            if passed:
                self._audit(session, case, reviewer, "verified", detail)
                return case_step(session, case)
            now = self._clock()
            due = now + timedelta(minutes=self._settings.rectify_window_min)
            session.add(CaseTimer(case_id=case.id, kind=REDISPATCH, started_at=now, due_at=due))
            detail["rectify_by"] = due.isoformat()
            self._move(session, case, CaseStatus.NOTIFIED, action="verify_failed", reviewer=reviewer, detail=detail)
            return case_step(session, case)

    def close(self, case_id: int, *, reviewer: Reviewer, note: str = "") -> CaseStep:
        with self._case_action(case_id, reviewer) as (session, case):
            require_status(case, "close", allowed=CLOSABLE_STATUSES)
            blocker = case_step(session, case).close_blocker
            if blocker is not None:
                raise Conflict(f"case {case_id}: {blocker}")
            detail = {"from": case.status, "note": note.strip()[:MAX_TEXT]}
            self._move(session, case, CaseStatus.CLOSED, action="close", reviewer=reviewer, detail=detail)
            for timer in session.scalars(
                select(CaseTimer).where(CaseTimer.case_id == case.id, CaseTimer.status == "pending")
            ):
                timer.status, timer.outcome, timer.resolved_at = "done", "cancelled", self._clock()
            recompute_grades(session, now=self._clock(), settings=self._settings)
            return case_step(session, case)

    def add_complaint(self, merchant_id: str, *, source: str, note: str, reviewer: Reviewer) -> int:
        with self._transaction() as session:
            merchant = session.get(Merchant, merchant_id)
            if merchant is None or not merchant_visible(reviewer.scope, merchant):
                raise NotFound(f"merchant {merchant_id!r} not found")
            now = self._clock()
            complaint = Complaint(
                merchant_id=merchant.id, received_at=now, source=source.strip()[:64], note=note.strip()[:MAX_TEXT]
            )
            session.add(complaint)
            session.flush()
            detail = {"merchant_id": merchant.id, "complaint_id": complaint.id}
            write_audit(session, case_id=None, actor=reviewer.username, action="complaint", detail=detail, at=now)
            recompute_grades(session, now=now, settings=self._settings)  # a grade follows every change
            return complaint.id

    def complete_inspection(self, inspection_id: int, *, reviewer: Reviewer) -> None:
        with self._transaction() as session:
            inspection = session.get(Inspection, inspection_id, with_for_update=True)
            merchant = session.get(Merchant, inspection.merchant_id) if inspection and inspection.merchant_id else None
            if inspection is None or (merchant is not None and not merchant_visible(reviewer.scope, merchant)):
                raise NotFound(f"inspection {inspection_id} not found")
            if inspection.status == "done":
                raise Conflict(f"inspection {inspection_id} is already done")
            now = self._clock()
            inspection.status, inspection.done_at, inspection.done_by = "done", now, reviewer.username
            detail = {"inspection_id": inspection.id, "merchant_id": inspection.merchant_id}
            actor = reviewer.username
            write_audit(session, case_id=inspection.case_id, actor=actor, action="inspected", detail=detail, at=now)
