"""/api/cases: the review queue as JSON, and the four review actions.

The actions let the review service's errors through: the app maps them (404 not found or outside
the area, 409 wrong state, 422 bad input; errors.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status

from streetwatch.central.access import case_visible
from streetwatch.central.api.deps import CurrentUser, ReviewDep, SessionDep, scope_of
from streetwatch.central.api.params import Offset
from streetwatch.central.api.queries import (
    MAX_PAGE,
    BadCursor,
    CaseFilters,
    QueueCursor,
    case_alerts,
    case_audit,
    filter_scope,
    list_cases,
    merchants_by_id,
)
from streetwatch.central.api.schemas import (
    ActionPublic,
    AlertPublic,
    AuditPublic,
    CaseDetailPublic,
    CasePublic,
    DismissRequest,
    MergeRequest,
    Page,
    ReassignRequest,
)
from streetwatch.central.case_service import ActionOutcome, Reviewer
from streetwatch.central.case_status import CaseStatusName
from streetwatch.central.models import Case
from streetwatch.central.workflow.ids import CaseId, DecisionId

router = APIRouter(prefix="/cases", tags=["cases"])

ViolationParam = Literal["illegal_parking", "street_vending", "stacked_goods"]
CASE_DETAIL_ALERTS = 100


@router.get("", response_model=Page[CasePublic])
def read_cases(
    session: SessionDep,
    user: CurrentUser,
    status_: Annotated[CaseStatusName, Query(alias="status")] = "new",
    violation: ViolationParam | None = None,
    area: Annotated[str | None, Query(max_length=64)] = None,
    merchant: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
    after: Annotated[str | None, Query(max_length=200, description="cursor from next_cursor")] = None,
) -> Page[CasePublic]:
    """Cases the caller may see, by priority (high first) then age (oldest first)."""
    try:
        cursor = QueueCursor.decode(after) if after else None
    except BadCursor as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    filters = CaseFilters(status=status_, violation=violation, area_id=area, merchant_id=merchant)
    scopes = [scope_of(session, user), filter_scope(session, area)]
    page = list_cases(session, filters, scopes=scopes, limit=limit, offset=offset, after=cursor)
    merchants = merchants_by_id(session, [c.merchant_id for c in page.cases])
    return Page[CasePublic](
        data=[CasePublic.of(c, merchants.get(c.merchant_id or "")) for c in page.cases],
        count=page.count,
        count_capped=page.count_capped,
        next_cursor=page.next_cursor.encode() if page.next_cursor else None,
    )


def visible_case(session: SessionDep, user: CurrentUser, case_id: CaseId) -> Case:
    """The case, or 404 when it does not exist or lies outside the caller's area."""
    case = session.get(Case, case_id)
    if case is None or not case_visible(scope_of(session, user), case):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"case {case_id} not found")
    return case


@router.get("/{case_id}", response_model=CaseDetailPublic)
def read_case(case_id: CaseId, session: SessionDep, user: CurrentUser) -> CaseDetailPublic:
    """One case with its newest alerts (up to 100; page with /api/cases/{id}/alerts) and audit log."""
    case = visible_case(session, user, case_id)
    merchant = merchants_by_id(session, [case.merchant_id]).get(case.merchant_id or "")
    return CaseDetailPublic(
        **CasePublic.of(case, merchant).model_dump(),
        alerts=[AlertPublic.of(a) for a in case_alerts(session, case.id, limit=CASE_DETAIL_ALERTS)],
        audit=[AuditPublic.of(e) for e in case_audit(session, case.id)],
    )


def _action(outcome: ActionOutcome, done: str) -> ActionPublic:
    return ActionPublic(
        case_id=outcome.case_id,
        action=outcome.action,
        status=outcome.status,
        audit_id=outcome.audit_id,
        at=outcome.at,
        message=f"case {outcome.case_id}: {done}",
    )


@router.post("/{case_id}/confirm", response_model=ActionPublic)
def confirm_case(case_id: CaseId, session: SessionDep, user: CurrentUser, review: ReviewDep) -> ActionPublic:
    reviewer = Reviewer.of(session, user)
    return _action(review.confirm(case_id, reviewer=reviewer), "confirmed")


@router.post("/{case_id}/dismiss", response_model=ActionPublic)
def dismiss_case(
    case_id: CaseId, body: DismissRequest, session: SessionDep, user: CurrentUser, review: ReviewDep
) -> ActionPublic:
    reviewer = Reviewer.of(session, user)
    return _action(review.dismiss(case_id, reason=body.reason, reviewer=reviewer), "dismissed")


@router.post("/{case_id}/merge", response_model=ActionPublic)
def merge_case(
    case_id: CaseId, body: MergeRequest, session: SessionDep, user: CurrentUser, review: ReviewDep
) -> ActionPublic:
    reviewer = Reviewer.of(session, user)
    outcome = review.merge(case_id, into_case_id=body.into_case_id, reviewer=reviewer)
    return _action(outcome, f"merged into case {body.into_case_id}")


@router.post("/{case_id}/reassign", response_model=ActionPublic)
def reassign_case(
    case_id: CaseId, body: ReassignRequest, session: SessionDep, user: CurrentUser, review: ReviewDep
) -> ActionPublic:
    reviewer = Reviewer.of(session, user)
    outcome = review.reassign(case_id, merchant_id=body.merchant_id, reviewer=reviewer)
    return _action(outcome, f"reassigned to merchant {body.merchant_id}")


@router.post("/decisions/{audit_id}/undo", response_model=ActionPublic)
def undo_decision(audit_id: DecisionId, session: SessionDep, user: CurrentUser, review: ReviewDep) -> ActionPublic:
    """Take back your own confirm, dismiss, merge or reassign (the `audit_id` an action answered) within
    the undo window (`workflow.undo_window_s`); a confirmed case's notice waits for that window."""
    reviewer = Reviewer.of(session, user)
    return _action(review.undo(audit_id, reviewer=reviewer), "decision undone")


@router.get("/{case_id}/alerts", response_model=Page[AlertPublic])
def read_case_alerts(
    case_id: CaseId,
    session: SessionDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Offset = 0,
) -> Page[AlertPublic]:
    """All alerts behind a case, newest first."""
    case = visible_case(session, user, case_id)
    alerts = case_alerts(session, case.id, limit=limit, offset=offset)
    return Page[AlertPublic](data=[AlertPublic.of(a) for a in alerts], count=case.alert_count)
