"""The city pages: the map (`/map`), statistics (`/stats`, CSV at `/stats.csv`), inspections due
(`/inspections`) and a case's workflow step and history (`/cases/{id}/workflow`), with the forms for
the workflow's reviewer steps there: the penalty a third strike needs, verification (核查) and closing.

Each shows only the logged-in user's area (access.py), like the queue. The forms post to the same
`WorkflowService` as `/api/workflow`, CSRF-checked, and come back to the page with what happened.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Annotated, Literal

import shapely
from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import PlainTextResponse
from sqlalchemy import select
from starlette.responses import Response

from streetwatch.central.access import AreaScope, case_clause, case_visible, merchant_clause, merchant_visible
from streetwatch.central.api.deps import ClockDep, CsrfChecked, SessionDep, SettingsDep, WebUser, WorkflowDep, scope_of
from streetwatch.central.api.queries import area_names
from streetwatch.central.case_service import Reviewer
from streetwatch.central.case_status import CLOSABLE_STATUSES, UNRESOLVED_STATUSES, VERIFIABLE_STATUSES
from streetwatch.central.errors import DomainError
from streetwatch.central.models import AuditLog, Case, CaseTimer, Hotspot, Merchant, Strike, User
from streetwatch.central.web.charts import horizontal, stacked_days
from streetwatch.central.web.citymap import VIOLATION_FILL, PointIn, ZoneIn, build_city_map
from streetwatch.central.web.pages import web_reviewer
from streetwatch.central.web.render import flash_context, redirect_with_flash, render, user_label
from streetwatch.central.workflow.clock import Clock
from streetwatch.central.workflow.grades import inspections_due
from streetwatch.central.workflow.hotspots import road_grades
from streetwatch.central.workflow.ids import CaseId
from streetwatch.central.workflow.rules import lifecycle_stage
from streetwatch.central.workflow.service import MAX_TEXT, CaseStep, case_step
from streetwatch.central.workflow.stats import CaseFact, case_facts, summarise

router = APIRouter(include_in_schema=False)
MAP_CASE_LIMIT = 2000
MAP_STATUSES = UNRESOLVED_STATUSES  # the open cases the map shows
DaysParam = Annotated[int, Query(ge=1, le=366)]


def _label(request: Request, user: User, session: SessionDep) -> object:
    return user_label(user, area_names(session).get(user.area_id or ""))


def _ring(scope: AreaScope | None) -> list[tuple[float, float]]:
    if scope is None or scope.polygon is None or not isinstance(scope.polygon, shapely.Polygon):
        return []
    return [(float(x), float(y)) for x, y in scope.polygon.exterior.coords]


def _visible_merchants(session: SessionDep, scope: AreaScope | None) -> list[Merchant]:
    return [m for m in session.scalars(select(Merchant).where(merchant_clause(scope))) if merchant_visible(scope, m)]


@router.get("/map", name="city_map_page")
def city_map_page(request: Request, session: SessionDep, user: WebUser) -> Response:
    """Roads, merchant zones by grade, open cases and hotspots of the user's area, drawn from the database."""
    scope = scope_of(session, user)
    merchants = _visible_merchants(session, scope)
    zones = []
    for m in merchants:
        geom = shapely.from_wkt(m.zone_wkt)
        if isinstance(geom, shapely.Polygon):
            zones.append(ZoneIn(m.id, m.name, m.road, m.grade, [(float(x), float(y)) for x, y in geom.exterior.coords]))
    query = (
        select(Case)
        .where(case_clause(scope), Case.status.in_(MAP_STATUSES), Case.lat.is_not(None))
        .order_by(Case.first_seen.desc())
        .limit(MAP_CASE_LIMIT)
    )
    cases = [c for c in session.scalars(query) if case_visible(scope, c)]
    points = [
        PointIn(str(c.id), f"case {c.id} {c.violation} ({c.status})", c.violation, c.lat, c.lon)  # type: ignore[arg-type]
        for c in cases
    ]
    hot = [
        PointIn(h.key, f"hotspot {h.label}: {h.case_count} cases", "hotspot", h.lat, h.lon, h.case_count)
        for h in session.scalars(select(Hotspot).where(Hotspot.active.is_(True)))
        if h.lat is not None and h.lon is not None and (scope is None or scope.contains_point(h.lat, h.lon))
    ]
    city = build_city_map(zones, points, hot, area_ring=_ring(scope))
    roads = [r for r in road_grades(session, merchant_ids={m.id for m in merchants})]
    context = {
        "user": _label(request, user, session),
        "map": city,
        "roads": roads,
        "case_count": len(cases),
        "hotspot_count": len(hot),
        "violation_fill": VIOLATION_FILL,
    }
    return render(request, "city_map.html", context)


def _facts(session: SessionDep, user: User, clock: Clock, days: int) -> list[CaseFact]:
    now = clock()
    return case_facts(session, scope=scope_of(session, user), since=now - timedelta(days=days), until=now)


@router.get("/stats", name="stats_page")
def stats_page(
    request: Request, session: SessionDep, user: WebUser, clock: ClockDep, days: DaysParam = 30
) -> Response:
    summary = summarise(_facts(session, user, clock, days))
    context = {
        "user": _label(request, user, session),
        "summary": summary,
        "days": days,
        "per_day": stacked_days(summary.per_day, summary.violations),
        "merchants": horizontal(summary.top_merchants),
        "roads": horizontal(summary.top_roads, fill="#8250df"),
        "violation_fill": VIOLATION_FILL,
    }
    return render(request, "stats.html", context)


@router.get("/stats.csv", name="stats_csv")
def stats_csv(session: SessionDep, user: WebUser, clock: ClockDep, days: DaysParam = 30) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(CaseFact.__dataclass_fields__), lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(f) for f in _facts(session, user, clock, days))
    return PlainTextResponse(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="cases.csv"'},
    )


@router.get("/inspections", name="inspections_page")
def inspections_page(request: Request, session: SessionDep, user: WebUser, clock: ClockDep) -> Response:
    due = inspections_due(session, now=clock(), scope=scope_of(session, user))
    return render(request, "inspections.html", {"user": _label(request, user, session), "due": due})


@router.get("/cases/{case_id}/workflow", name="case_workflow_page")
def case_workflow_page(
    case_id: CaseId, request: Request, session: SessionDep, user: WebUser, settings: SettingsDep
) -> Response:
    """The case's three-strikes step, its deadline, its lifecycle stage and the merchant's strike history."""
    case = session.get(Case, case_id)
    if case is None or not case_visible(scope_of(session, user), case):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"case {case_id} not found")
    strikes = []
    if case.merchant_id:
        strikes = list(
            session.scalars(
                select(Strike).where(Strike.merchant_id == case.merchant_id).order_by(Strike.at.desc()).limit(50)
            )
        )
    timer = session.scalars(
        select(CaseTimer).where(CaseTimer.case_id == case.id, CaseTimer.status == "pending")
    ).first()
    audit = list(session.scalars(select(AuditLog).where(AuditLog.case_id == case.id).order_by(AuditLog.id)))
    context = {
        "user": _label(request, user, session),
        "case": case,
        "step": case_step(session, case),
        "stage": lifecycle_stage(case.status),
        "timer": timer,
        "strikes": strikes,
        "audit": audit,
        "event": settings.workflow.event_classes.get(case.violation),
        "can_verify": case.status in VERIFIABLE_STATUSES,
        "can_close": case.status in CLOSABLE_STATUSES,
        **flash_context(request),
    }
    return render(request, "case_workflow.html", context)


NoteField = Annotated[str, Form(max_length=MAX_TEXT)]


def _workflow_step(
    request: Request, session: SessionDep, user: User, case_id: int, call: Callable[[Reviewer], CaseStep], done: str
) -> Response:
    """Run a workflow step for the logged-in reviewer; back to the case's workflow page with what
    happened (the service's own words when it refuses, e.g. a third strike without a penalty)."""
    reviewer = web_reviewer(session, user)
    target = request.app.url_path_for("case_workflow_page", case_id=str(case_id))
    try:
        call(reviewer)
    except DomainError as exc:
        return redirect_with_flash(target, exc.detail, failed=True)
    return redirect_with_flash(target, f"Case {case_id} {done}.")


@router.post("/cases/{case_id}/workflow/penalty", name="web_penalty", dependencies=[CsrfChecked])
def web_penalty(
    case_id: CaseId, request: Request, session: SessionDep, user: WebUser, service: WorkflowDep, decision: NoteField
) -> Response:
    return _workflow_step(
        request, session, user, case_id,
        lambda reviewer: service.decide_penalty(case_id, decision=decision, reviewer=reviewer),
        "penalty recorded",
    )


@router.post("/cases/{case_id}/workflow/verify", name="web_verify", dependencies=[CsrfChecked])
def web_verify(
    case_id: CaseId,
    request: Request,
    session: SessionDep,
    user: WebUser,
    service: WorkflowDep,
    result: Annotated[Literal["passed", "failed"], Form()],
    note: NoteField = "",
) -> Response:
    passed = result == "passed"
    return _workflow_step(
        request, session, user, case_id,
        lambda reviewer: service.verify(case_id, passed=passed, reviewer=reviewer, note=note),
        "verified" if passed else "failed verification: back to dispatch",
    )


@router.post("/cases/{case_id}/workflow/close", name="web_close", dependencies=[CsrfChecked])
def web_close(
    case_id: CaseId, request: Request, session: SessionDep, user: WebUser, service: WorkflowDep, note: NoteField = ""
) -> Response:
    return _workflow_step(
        request, session, user, case_id, lambda reviewer: service.close(case_id, reviewer=reviewer, note=note), "closed"
    )
