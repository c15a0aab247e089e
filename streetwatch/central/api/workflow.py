"""/api/workflow: the city's workflow as JSON (case step and history, penalty, verify, close,
complaints, inspections due, hotspots, road grades) and /api/export/lifecycle.{json,csv}.

Every route is token-authenticated and limited to the caller's area, like /api/cases.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from streetwatch.central.access import case_visible, merchant_clause, merchant_visible
from streetwatch.central.api.deps import CurrentUser, SessionDep, scope_of
from streetwatch.central.models import AuditLog, Case, CaseTimer, Hotspot, Merchant
from streetwatch.central.review import Conflict, InvalidInput, NotFound, Reviewer, ReviewError
from streetwatch.central.workflow.clock import Clock, system_clock
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.grades import inspections_due
from streetwatch.central.workflow.hotspots import road_grades
from streetwatch.central.workflow.ids import CaseId
from streetwatch.central.workflow.lifecycle import lifecycle_rows, rows_to_csv, rows_to_json
from streetwatch.central.workflow.service import CaseStep, WorkflowService, case_step

router = APIRouter(prefix="/workflow", tags=["workflow"])
exports = APIRouter(prefix="/export", tags=["export"])

T = TypeVar("T")


def workflow_settings(request: Request) -> WorkflowSettings:
    settings = getattr(request.app.state, "workflow_settings", None)
    return settings if isinstance(settings, WorkflowSettings) else WorkflowSettings()


def workflow_clock(request: Request) -> Clock:
    clock = getattr(request.app.state, "workflow_clock", None)
    return clock if clock is not None else system_clock


def workflow_service(request: Request) -> WorkflowService:
    return WorkflowService(request.app.state.session_factory, workflow_settings(request), clock=workflow_clock(request))


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.detail) from None
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.detail) from None
    except InvalidInput as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.detail) from None
    except ReviewError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, exc.detail) from None


class StepPublic(BaseModel):
    case_id: int
    status: str
    strike_step: int | None
    strike_action: str | None
    penalty_decision: str | None
    close_blocker: str | None
    rectify_by: datetime | None = None
    history: list[dict[str, object]] = Field(default_factory=list)


def _step_public(
    step: CaseStep, *, rectify_by: datetime | None = None, history: list[dict[str, object]] | None = None
) -> StepPublic:
    return StepPublic(**step.__dict__, rectify_by=rectify_by, history=history or [])


@router.get("/cases/{case_id}", response_model=StepPublic)
def read_step(case_id: CaseId, session: SessionDep, user: CurrentUser) -> StepPublic:
    """Where the case stands in the workflow (strike step, penalty, deadline) and its history."""
    case = session.get(Case, case_id)
    if case is None or not case_visible(scope_of(session, user), case):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"case {case_id} not found")
    timer = session.scalars(
        select(CaseTimer).where(CaseTimer.case_id == case_id, CaseTimer.status == "pending")
    ).first()
    audit = session.scalars(select(AuditLog).where(AuditLog.case_id == case_id).order_by(AuditLog.id))
    history: list[dict[str, object]] = [
        {"action": a.action, "by": a.actor, "at": a.at.isoformat(), "detail": a.detail} for a in audit
    ]
    return _step_public(case_step(session, case), rectify_by=timer.due_at if timer else None, history=history)


class PenaltyRequest(BaseModel):
    decision: str = Field(min_length=1, max_length=500, description="the penalty decided for a third strike")


class VerifyRequest(BaseModel):
    passed: bool
    note: str = Field(default="", max_length=500)


class CloseRequest(BaseModel):
    note: str = Field(default="", max_length=500)


class ComplaintRequest(BaseModel):
    source: str = Field(default="hotline", max_length=64)
    note: str = Field(default="", max_length=500)


@router.post("/cases/{case_id}/penalty", response_model=StepPublic)
def post_penalty(
    case_id: CaseId, body: PenaltyRequest, request: Request, session: SessionDep, user: CurrentUser
) -> StepPublic:
    reviewer = Reviewer.of(session, user)
    return _step_public(
        _call(lambda: workflow_service(request).decide_penalty(case_id, decision=body.decision, reviewer=reviewer))
    )


@router.post("/cases/{case_id}/verify", response_model=StepPublic)
def post_verify(
    case_id: CaseId, body: VerifyRequest, request: Request, session: SessionDep, user: CurrentUser
) -> StepPublic:
    reviewer = Reviewer.of(session, user)
    return _step_public(
        _call(lambda: workflow_service(request).verify(case_id, passed=body.passed, reviewer=reviewer, note=body.note))
    )


@router.post("/cases/{case_id}/close", response_model=StepPublic)
def post_close(
    case_id: CaseId, body: CloseRequest, request: Request, session: SessionDep, user: CurrentUser
) -> StepPublic:
    reviewer = Reviewer.of(session, user)
    return _step_public(_call(lambda: workflow_service(request).close(case_id, reviewer=reviewer, note=body.note)))


@router.post("/merchants/{merchant_id}/complaints", status_code=201)
def post_complaint(
    merchant_id: str, body: ComplaintRequest, request: Request, session: SessionDep, user: CurrentUser
) -> dict[str, int]:
    reviewer = Reviewer.of(session, user)
    service = workflow_service(request)
    complaint_id = _call(
        lambda: service.add_complaint(merchant_id, source=body.source, note=body.note, reviewer=reviewer)
    )
    return {"complaint_id": complaint_id}


@router.get("/inspections/due")
def read_inspections_due(request: Request, session: SessionDep, user: CurrentUser) -> list[dict[str, object]]:
    """Inspections due today in the caller's area: red merchants daily, yellow weekly, green monthly."""
    due = inspections_due(session, now=workflow_clock(request)(), scope=scope_of(session, user))
    return [{**d.__dict__, "due_at": d.due_at.isoformat()} for d in due]


@router.get("/hotspots")
def read_hotspots(session: SessionDep, user: CurrentUser) -> list[dict[str, object]]:
    scope = scope_of(session, user)
    rows = session.scalars(select(Hotspot).where(Hotspot.active.is_(True)).order_by(Hotspot.case_count.desc()))
    return [
        {
            "key": h.key,
            "label": h.label,
            "road": h.road,
            "lat": h.lat,
            "lon": h.lon,
            "case_count": h.case_count,
            "since": h.since.isoformat() if h.since else None,
        }
        for h in rows
        if scope is None or scope.contains_point(h.lat, h.lon)
    ]


@router.get("/roads")
def read_roads(session: SessionDep, user: CurrentUser) -> list[dict[str, object]]:
    scope = scope_of(session, user)
    ids = {m.id for m in session.scalars(select(Merchant).where(merchant_clause(scope))) if merchant_visible(scope, m)}
    return [
        {"road": r.road, "grade": r.grade, **r.record.__dict__}
        for r in road_grades(session, merchant_ids=ids)
        if r.record.red + r.record.yellow + r.record.green > 0
    ]


@exports.get("/lifecycle.json")
def export_lifecycle_json(
    request: Request, session: SessionDep, user: CurrentUser, since: datetime | None = None
) -> list[dict[str, object]]:
    """Cases on the national lifecycle (立案 派遣 处置 反馈 核查 结案) with their event class codes."""
    rows = lifecycle_rows(
        session,
        settings=workflow_settings(request),
        scope=scope_of(session, user),
        since=since.astimezone(UTC) if since else None,
    )
    return rows_to_json(rows)


@exports.get("/lifecycle.csv", response_class=PlainTextResponse)
def export_lifecycle_csv(request: Request, session: SessionDep, user: CurrentUser) -> PlainTextResponse:
    rows = lifecycle_rows(session, settings=workflow_settings(request), scope=scope_of(session, user))
    return PlainTextResponse(
        rows_to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="lifecycle.csv"'},
    )
