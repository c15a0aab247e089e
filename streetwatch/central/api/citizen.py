"""Citizen reports for staff: verify a case's reports (核实), and the reporters' verified-report
counts for the city's reward scheme as CSV (admins only: the file holds the reporters' contacts)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import PlainTextResponse

from streetwatch.central.api.deps import CurrentUser, SessionDep
from streetwatch.central.api.schemas import ActionPublic
from streetwatch.central.case_service import Reviewer
from streetwatch.central.citizen import CitizenService, reporters_csv
from streetwatch.central.workflow.ids import CaseId

router = APIRouter(tags=["citizen reports"])


@router.post("/cases/{case_id}/verify-report", response_model=ActionPublic)
def verify_report(case_id: CaseId, request: Request, session: SessionDep, user: CurrentUser) -> ActionPublic:
    """Mark the citizen reports of a confirmed case verified: each counts for its reporter
    (409 when the case has none, is not confirmed, or they are verified already)."""
    reviewer = Reviewer.of(session, user)
    session.rollback()  # the service writes in its own transaction
    service: CitizenService = request.app.state.citizen
    outcome = service.verify(case_id, reviewer=reviewer)
    return ActionPublic(case_id=outcome.case_id, action=outcome.action, status=outcome.status,
                        audit_id=outcome.audit_id, at=outcome.at,
                        message=f"case {outcome.case_id}: citizen reports verified")


@router.get("/citizen-reporters.csv", response_class=PlainTextResponse)
def reporters(session: SessionDep, user: CurrentUser) -> PlainTextResponse:
    """One row per reporter: reports, verified reports, their contact (admins only)."""
    if user.role != "admin" or user.area_id is not None:
        detail = "the reporters' export holds their contacts: city-wide admins only"
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail)
    return PlainTextResponse(
        reporters_csv(session), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="citizen-reporters.csv"', "Cache-Control": "no-store"},
    )
