"""Reviewer actions of the workflow: decide a penalty, verify, close a case, record a complaint,
assign and finish an inspection visit (the inspector's result, note and photo).

Each is a `CaseService` action (case_service.py), like review.ReviewService: one transaction, the
case locked and checked against the reviewer's area (NotFound outside it), status moves through
the state machine (Conflict from a wrong status), one audit row.

Closing a case the workflow dispatched (notified, rectified, escalated) needs its verification (核查)
since the last dispatch, or a supervisor's override with a note.
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
from streetwatch.central.models import AuditLog, Case, CaseTimer, Complaint, Inspection, Merchant, Strike
from streetwatch.central.workflow.clock import Clock, system_clock
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.grades import recompute_grades
from streetwatch.central.workflow.rules import close_blocker
from streetwatch.central.workflow.timers import REDISPATCH

MAX_TEXT = 500
# Statuses the workflow dispatched: closing one needs a verification since the last dispatch.
DISPATCHED = (CaseStatus.NOTIFIED, CaseStatus.RECTIFIED, CaseStatus.ESCALATED)
NEEDS_VERIFICATION = "closing needs the verification step (核查) first, or a supervisor's override with a note"


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


def verified_since_dispatch(session: Session, case_id: int) -> bool:
    """Whether the case's last dispatch (notice or failed verification) was followed by a passed one."""
    last = session.scalars(
        select(AuditLog.action)
        .where(AuditLog.case_id == case_id, AuditLog.action.in_(("notify", "verify_failed", "verified")))
        .order_by(AuditLog.id.desc())
        .limit(1)
    ).first()
    return last == "verified"


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

    def verify(
        self, case_id: int, *, passed: bool, reviewer: Reviewer, note: str = "", photo: str | None = None
    ) -> CaseStep:
        """核查: an inspector checks a rectified or handled case (before/after photos). Passed: ready to
        close. Failed: back to dispatch (notified, a new rectification timer)."""
        with self._case_action(case_id, reviewer) as (session, case):
            require_status(case, "verify", allowed=VERIFIABLE_STATUSES)
            detail: dict[str, object] = {"from": case.status, "note": note.strip()[:MAX_TEXT]}
            if photo:
                detail["photo"] = photo
            if passed:
                self._audit(session, case, reviewer, "verified", detail)
                return case_step(session, case)
            now = self._clock()
            due = now + timedelta(minutes=self._settings.rectify_window_min)
            session.add(CaseTimer(case_id=case.id, kind=REDISPATCH, started_at=now, due_at=due))
            detail["rectify_by"] = due.isoformat()
            self._move(session, case, CaseStatus.NOTIFIED, action="verify_failed", reviewer=reviewer, detail=detail)
            return case_step(session, case)

    def close(self, case_id: int, *, reviewer: Reviewer, note: str = "", override: bool = False) -> CaseStep:
        """Close a confirmed case; a dispatched one needs its verification, or `override` by a
        supervisor with a note."""
        with self._case_action(case_id, reviewer) as (session, case):
            require_status(case, "close", allowed=CLOSABLE_STATUSES)
            blocker = case_step(session, case).close_blocker
            if blocker is not None:
                raise Conflict(f"case {case_id}: {blocker}", code="needs_penalty", case_id=case_id)
            detail: dict[str, object] = {"from": case.status, "note": note.strip()[:MAX_TEXT]}
            if case.status in DISPATCHED and not verified_since_dispatch(session, case.id):
                if not (override and reviewer.is_supervisor and detail["note"]):
                    raise Conflict(f"case {case_id}: {NEEDS_VERIFICATION}", code="needs_verification", case_id=case_id)
                detail["override"] = True
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

    def assign_visit(self, merchant_id: str, *, assignee: str, reviewer: Reviewer) -> int:
        """Give the merchant's open visit (its case inspections, or a routine visit made now) to an
        inspector; the number of inspection rows assigned."""
        assignee = _text(assignee, "assignee")[:64]
        with self._transaction() as session:
            merchant = self._visible_merchant(session, merchant_id, reviewer)
            rows = self._open_visit_rows(session, merchant.id, create_routine=True)
            for row in rows:
                row.assignee = assignee
            write_audit(
                session,
                case_id=None,
                actor=reviewer.username,
                action="assign",
                detail={"merchant_id": merchant.id, "assignee": assignee},
                at=self._clock(),
            )
            return len(rows)

    def complete_visit(
        self, merchant_id: str, *, passed: bool, reviewer: Reviewer, note: str = "", photo: str | None = None
    ) -> list[int]:
        """An inspector's visit done: every open inspection of the merchant is closed with the result,
        note and photo, and each of its cases waiting for verification is verified (passed) or sent
        back to dispatch (failed). Returns the cases verified."""
        note = note.strip()[:MAX_TEXT]
        with self._transaction() as session:
            merchant = self._visible_merchant(session, merchant_id, reviewer)
            rows = self._open_visit_rows(session, merchant.id, create_routine=True)
            now = self._clock()
            case_ids = sorted({r.case_id for r in rows if r.case_id is not None})
            for row in rows:
                row.status, row.done_at, row.done_by = "done", now, reviewer.username
                row.result = ("passed" if passed else "failed") if row.case_id is not None else "done"
                row.note, row.photo_sha256 = note or None, photo
            detail = {"merchant_id": merchant.id, "result": "passed" if passed else "failed", "note": note}
            write_audit(session, case_id=None, actor=reviewer.username, action="inspected", detail=detail, at=now)
        checked = []
        for case_id in case_ids:
            try:
                self.verify(case_id, passed=passed, reviewer=reviewer, note=note, photo=photo)
                checked.append(case_id)
            except Conflict:  # closed or verified meanwhile: nothing left to check on it
                continue
        return checked

    def _visible_merchant(self, session: Session, merchant_id: str, reviewer: Reviewer) -> Merchant:
        merchant = session.get(Merchant, merchant_id)
        if merchant is None or not merchant_visible(reviewer.scope, merchant):
            raise NotFound(f"merchant {merchant_id!r} not found")
        return merchant

    def _open_visit_rows(self, session: Session, merchant_id: str, *, create_routine: bool) -> list[Inspection]:
        query = select(Inspection).where(Inspection.merchant_id == merchant_id, Inspection.status == "open")
        rows = list(session.scalars(query.with_for_update()))
        if not rows and create_routine:
            now = self._clock()
            routine = Inspection(merchant_id=merchant_id, reason="routine", due_at=now, created_at=now)
            session.add(routine)
            session.flush()
            rows = [routine]
        return rows

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
