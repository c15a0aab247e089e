"""/api/workflow: the city's workflow as JSON (case step and history, penalty, verify, close,
complaints, inspections due, hotspots, road grades) and /api/export/lifecycle.{json,csv}.

Every route is token-authenticated and limited to the caller's area, like /api/cases. The actions
go through the app's one WorkflowService (its rules are `settings.workflow`, the same object the
workflow worker runs on); its errors are mapped by the app (errors.py).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from streetwatch.central.access import case_visible, merchant_clause, merchant_visible
from streetwatch.central.api.deps import ClockDep, CurrentUser, SessionDep, SettingsDep, WorkflowDep, scope_of
from streetwatch.central.api.params import bounded_time
from streetwatch.central.api.schemas import (
    CloseRequest,
    ComplaintCreatedPublic,
    ComplaintRequest,
    HistoryEntryPublic,
    HotspotPublic,
    InspectionDuePublic,
    PenaltyRequest,
    RoadGradePublic,
    StepPublic,
    VerifyRequest,
)
from streetwatch.central.case_service import Reviewer
from streetwatch.central.models import AuditLog, Case, CaseTimer, Hotspot, Merchant
from streetwatch.central.workflow.grades import inspections_due
from streetwatch.central.workflow.hotspots import road_grades
from streetwatch.central.workflow.ids import CaseId
from streetwatch.central.workflow.lifecycle import LifecycleRow, lifecycle_rows, rows_to_csv
from streetwatch.central.workflow.service import CaseStep, case_step

router = APIRouter(prefix="/workflow", tags=["workflow"])
exports = APIRouter(prefix="/export", tags=["export"])


def _step_public(
    step: CaseStep, *, rectify_by: datetime | None = None, history: list[HistoryEntryPublic] | None = None
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
    history = [HistoryEntryPublic(action=a.action, by=a.actor, at=a.at.isoformat(), detail=a.detail) for a in audit]
    return _step_public(case_step(session, case), rectify_by=timer.due_at if timer else None, history=history)


@router.post("/cases/{case_id}/penalty", response_model=StepPublic)
def post_penalty(
    case_id: CaseId, body: PenaltyRequest, session: SessionDep, user: CurrentUser, workflow: WorkflowDep
) -> StepPublic:
    reviewer = Reviewer.of(session, user)
    return _step_public(workflow.decide_penalty(case_id, decision=body.decision, reviewer=reviewer))


@router.post("/cases/{case_id}/verify", response_model=StepPublic)
def post_verify(
    case_id: CaseId, body: VerifyRequest, session: SessionDep, user: CurrentUser, workflow: WorkflowDep
) -> StepPublic:
    reviewer = Reviewer.of(session, user)
    return _step_public(workflow.verify(case_id, passed=body.passed, reviewer=reviewer, note=body.note))


@router.post("/cases/{case_id}/close", response_model=StepPublic)
def post_close(
    case_id: CaseId, body: CloseRequest, session: SessionDep, user: CurrentUser, workflow: WorkflowDep
) -> StepPublic:
    reviewer = Reviewer.of(session, user)
    return _step_public(workflow.close(case_id, reviewer=reviewer, note=body.note, override=body.override))


@router.post("/merchants/{merchant_id}/complaints", status_code=201, response_model=ComplaintCreatedPublic)
def post_complaint(
    merchant_id: str, body: ComplaintRequest, session: SessionDep, user: CurrentUser, workflow: WorkflowDep
) -> ComplaintCreatedPublic:
    reviewer = Reviewer.of(session, user)
    complaint_id = workflow.add_complaint(merchant_id, source=body.source, note=body.note, reviewer=reviewer)
    return ComplaintCreatedPublic(complaint_id=complaint_id)


@router.get("/inspections/due", response_model=list[InspectionDuePublic])
def read_inspections_due(session: SessionDep, user: CurrentUser, clock: ClockDep) -> list[InspectionDuePublic]:
    """Inspections due today in the caller's area: red merchants daily, yellow weekly, green monthly."""
    due = inspections_due(session, now=clock(), scope=scope_of(session, user))
    return [InspectionDuePublic(**{**d.__dict__, "due_at": d.due_at.isoformat()}) for d in due]


@router.get("/hotspots", response_model=list[HotspotPublic])
def read_hotspots(session: SessionDep, user: CurrentUser) -> list[HotspotPublic]:
    scope = scope_of(session, user)
    rows = session.scalars(select(Hotspot).where(Hotspot.active.is_(True)).order_by(Hotspot.case_count.desc()))
    return [
        HotspotPublic(
            key=h.key,
            label=h.label,
            road=h.road,
            lat=h.lat,
            lon=h.lon,
            case_count=h.case_count,
            unreviewed_count=h.unreviewed_count,
            since=h.since.isoformat() if h.since else None,
        )
        for h in rows
        if scope is None or scope.contains_point(h.lat, h.lon)
    ]


@router.get("/roads", response_model=list[RoadGradePublic])
def read_roads(session: SessionDep, user: CurrentUser) -> list[RoadGradePublic]:
    scope = scope_of(session, user)
    ids = {m.id for m in session.scalars(select(Merchant).where(merchant_clause(scope))) if merchant_visible(scope, m)}
    return [
        RoadGradePublic(road=r.road, grade=r.grade, **r.record.__dict__)
        for r in road_grades(session, merchant_ids=ids)
        if r.record.red + r.record.yellow + r.record.green > 0
    ]


@exports.get("/lifecycle.json", response_model=list[LifecycleRow])
def export_lifecycle_json(
    session: SessionDep, user: CurrentUser, settings: SettingsDep, since: datetime | None = None
) -> list[LifecycleRow]:
    """Cases on the national lifecycle (立案 派遣 处置 反馈 核查 结案) with their event class codes."""
    rows = lifecycle_rows(
        session,
        settings=settings.workflow,
        scope=scope_of(session, user),
        since=bounded_time(since, "since") if since else None,
    )
    return rows


@exports.get("/lifecycle.csv", response_class=PlainTextResponse)
def export_lifecycle_csv(session: SessionDep, user: CurrentUser, settings: SettingsDep) -> PlainTextResponse:
    rows = lifecycle_rows(session, settings=settings.workflow, scope=scope_of(session, user))
    return PlainTextResponse(
        rows_to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="lifecycle.csv"'},
    )
