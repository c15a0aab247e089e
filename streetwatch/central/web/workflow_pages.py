"""The city pages: statistics (`/stats`, CSV at `/stats.csv`), inspections due
(`/inspections`) and a case's workflow step and history (`/cases/{id}/workflow`), with the forms for
the workflow's reviewer steps there: the penalty a third strike needs, verification (核查) and closing.

Each shows only the logged-in user's area (access.py), like the queue. The forms post to the same
`WorkflowService` as `/api/workflow`, CSRF-checked, and come back to the page with what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse
from sqlalchemy import select
from starlette.responses import Response

from streetwatch.central.api.deps import ClockDep, CsrfChecked, SessionDep, SettingsDep, WebUser, WorkflowDep, scope_of
from streetwatch.central.api.queries import area_names
from streetwatch.central.case_service import Reviewer
from streetwatch.central.case_status import CLOSABLE_STATUSES, VERIFIABLE_STATUSES
from streetwatch.central.csv_export import to_csv
from streetwatch.central.errors import DomainError
from streetwatch.central.evidence_store import evidence_store
from streetwatch.central.models import (
    SUPERVISOR_ROLES,
    AuditLog,
    CaseTimer,
    Inspection,
    Merchant,
    Notification,
    Strike,
    User,
)
from streetwatch.central.web import i18n, labels
from streetwatch.central.web.citymap import VIOLATION_FILL
from streetwatch.central.web.pages import build_cards, refusal_text, visible_case_or_404, web_reviewer
from streetwatch.central.web.photos import PhotoRejected, read_photo
from streetwatch.central.web.render import flash_context, redirect_with_flash, render, user_label
from streetwatch.central.workflow.clock import Clock
from streetwatch.central.workflow.grades import group_visits, inspections_due
from streetwatch.central.workflow.ids import CaseId
from streetwatch.central.workflow.rules import lifecycle_stage
from streetwatch.central.workflow.service import DISPATCHED, MAX_TEXT, CaseStep, case_step, verified_since_dispatch
from streetwatch.central.workflow.stats import CaseFact, case_facts, summarise
from streetwatch.central.workflow.stats_series import PERIODS, Period, Series, series
from streetwatch.central.workflow.timers import waiting_for

router = APIRouter(include_in_schema=False)
MerchantIdPath = Annotated[str, PathParam(min_length=1, max_length=64, description="a merchant id")]
DaysParam = Annotated[int, Query(ge=1, le=366)]


def _label(request: Request, user: User, session: SessionDep) -> object:
    return user_label(user, area_names(session).get(user.area_id or ""))


def _facts(session: SessionDep, user: User, clock: Clock, days: int) -> list[CaseFact]:
    now = clock()
    return case_facts(session, scope=scope_of(session, user), since=now - timedelta(days=days), until=now)


PeriodParam = Annotated[Period, Query(description="day, week (ISO) or month")]
StatsTable = Literal["cases", "periods", "merchants", "roads", "areas"]


def _days(clock: Clock, days: int) -> list[str]:
    today = clock().date()
    return [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


@router.get("/stats", name="stats_page")
def stats_page(
    request: Request, session: SessionDep, user: WebUser, clock: ClockDep, days: DaysParam = 30,
    period: PeriodParam = "day",
) -> Response:
    """KPIs; per period confirmed cases by violation (unreviewed apart), the self-rectification rate
    and the time to close; per merchant, road and area. Each chart has its table and CSV."""
    facts = _facts(session, user, clock, days)
    summary = summarise(facts)
    data = series(facts, period, days=_days(clock, days))
    with i18n.rendering(request):
        names = {v: labels.label("violation", v) for v in (*VIOLATION_FILL, *data.violations)}
    context = {
        "user": _label(request, user, session),
        "summary": summary,
        "series": data,
        "days": days,
        "period": period,
        "periods": PERIODS,
        "chart_data": chart_data(data, names),
        "violation_names": names,
    }
    return render(request, "stats.html", context)


def chart_data(data: Series, names: dict[str, str]) -> dict[str, object]:
    """What static/stats.js draws (the page's tables show the same numbers)."""
    return {
        "periods": [r.period for r in data.rows],
        "violations": [{"key": v, "name": names.get(v, v), "colour": VIOLATION_FILL.get(v, "#57606a"),
                        "counts": [r.confirmed.get(v, 0) for r in data.rows]} for v in data.violations],
        "unreviewed": [r.unreviewed for r in data.rows],
        "rectified_pct": [None if r.self_rectified_share is None else round(100 * r.self_rectified_share, 1)
                          for r in data.rows],
        "hours_to_close": [r.median_hours_to_close for r in data.rows],
        "merchants": [[b.name, b.confirmed, b.unreviewed] for b in data.merchants],
        "roads": [[b.name, b.confirmed, b.unreviewed] for b in data.roads],
        "areas": [[b.name, b.confirmed, b.unreviewed] for b in data.areas],
    }


def _csv(rows: list[dict[str, object]], fieldnames: list[str], name: str) -> Response:
    text = to_csv(fieldnames, rows)
    return PlainTextResponse(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def period_rows(data: Series) -> list[dict[str, object]]:
    return [
        {"period": r.period, "confirmed": r.total, **{v: r.confirmed.get(v, 0) for v in data.violations},
         "unreviewed": r.unreviewed, "ended": r.ended, "self_rectified": r.self_rectified,
         "self_rectified_share": "" if r.self_rectified_share is None else round(r.self_rectified_share, 4),
         "median_hours_to_close": "" if r.median_hours_to_close is None else r.median_hours_to_close}
        for r in data.rows
    ]


@router.get("/stats.csv", name="stats_csv")
def stats_csv(
    session: SessionDep, user: WebUser, clock: ClockDep, days: DaysParam = 30, period: PeriodParam = "day",
    table: Annotated[StatsTable, Query(description="cases (one row each) or a chart's table")] = "cases",
) -> Response:
    facts = _facts(session, user, clock, days)
    if table == "cases":
        return _csv([asdict(f) for f in facts], list(CaseFact.__dataclass_fields__), "cases")
    data = series(facts, period, days=_days(clock, days))
    if table == "periods":
        fields = ["period", "confirmed", *data.violations, "unreviewed", "ended", "self_rectified",
                  "self_rectified_share", "median_hours_to_close"]
        return _csv(period_rows(data), fields, f"cases-per-{period}")
    breakdown = {"merchants": data.merchants, "roads": data.roads, "areas": data.areas}[table]
    rows: list[dict[str, object]] = [asdict(b) for b in breakdown]
    return _csv(rows, ["name", "confirmed", "unreviewed"], f"cases-per-{table[:-1]}")


@router.get("/inspections", name="inspections_page")
def inspections_page(
    request: Request, session: SessionDep, user: WebUser, clock: ClockDep, settings: SettingsDep
) -> Response:
    """The inspector's list: one visit per merchant and day with its reasons, an assignee, and the
    result, note and photo the inspector sends from the phone."""
    due = inspections_due(session, now=clock(), scope=scope_of(session, user))
    ids = {d.merchant_id for d in due if d.merchant_id}
    addresses = dict(session.execute(select(Merchant.id, Merchant.address).where(Merchant.id.in_(ids))).all())
    zone = settings.web.time_zone
    visits = group_visits(
        due, day_of=lambda at: at.astimezone(i18n.city_zone(zone)).date().isoformat(), addresses=addresses
    )
    context = {"user": _label(request, user, session), "visits": visits, **flash_context(request)}
    return render(request, "inspections.html", context)


@router.post("/inspections/visits/{merchant_id}/assign", name="web_visit_assign", dependencies=[CsrfChecked])
def web_visit_assign(
    merchant_id: MerchantIdPath,
    request: Request,
    session: SessionDep,
    user: WebUser,
    service: WorkflowDep,
    assignee: Annotated[str, Form(max_length=64)],
) -> Response:
    reviewer = web_reviewer(session, user)
    target = request.app.url_path_for("inspections_page")
    try:
        service.assign_visit(merchant_id, assignee=assignee, reviewer=reviewer)
    except DomainError as exc:
        return redirect_with_flash(request, target, refusal_text(request, exc), failed=True)
    message = i18n.gettext(request, i18n.N_("Visit given to %(who)s."), who=assignee.strip())
    return redirect_with_flash(request, target, message)


@router.post("/inspections/visits/{merchant_id}/done", name="web_visit_done", dependencies=[CsrfChecked])
def web_visit_done(
    merchant_id: MerchantIdPath,
    request: Request,
    session: SessionDep,
    user: WebUser,
    service: WorkflowDep,
    settings: SettingsDep,
    result: Annotated[Literal["passed", "failed"], Form()],
    note: NoteField = "",
    photo: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """The visit's result from the inspector's phone; the photo is checked and stored like evidence."""
    target = request.app.url_path_for("inspections_page")
    try:
        data = read_photo(photo, max_bytes=settings.review.max_photo_bytes)
    except PhotoRejected as exc:
        return redirect_with_flash(request, target, i18n.gettext(request, exc.msgid, **exc.values), failed=True)
    sha = evidence_store(settings.evidence_dir).put(data) if data else None
    reviewer = web_reviewer(session, user)
    try:
        checked = service.complete_visit(
            merchant_id, passed=result == "passed", reviewer=reviewer, note=note, photo=sha
        )
    except DomainError as exc:
        return redirect_with_flash(request, target, refusal_text(request, exc), failed=True)
    message = i18n.gettext(request, i18n.N_("Visit recorded; %(n)s cases checked."), n=len(checked))
    return redirect_with_flash(request, target, message)


@router.get("/cases/{case_id}/workflow", name="case_workflow_page")
def case_workflow_page(
    case_id: CaseId, request: Request, session: SessionDep, user: WebUser, settings: SettingsDep, clock: ClockDep
) -> Response:
    """The case's three-strikes step, its deadline and notices, its lifecycle stage, the evidence,
    the merchant and the map, and the merchant's strike history."""
    case = visible_case_or_404(session, user, case_id)
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
    step = case_step(session, case)
    waiting = None
    if case.status == "confirmed" and case.merchant_id and step.strike_step is None:
        has_channel = settings.workflow.webhook_url is not None or settings.workflow.notice_sink is not None
        waiting = waiting_for(session, case.merchant_id, now=clock(), delivery_known=has_channel)
    names = area_names(session)
    context = {
        "user": _label(request, user, session),
        "case": case,
        "card": build_cards(request, session, [case], names, scope=scope_of(session, user))[0],
        "step": step,
        "stage": lifecycle_stage(case.status, verified=verified_since_dispatch(session, case.id)),
        "timer": timer,
        "waiting": waiting,
        "strikes": strikes,
        "notices": list(
            session.scalars(select(Notification).where(Notification.case_id == case.id).order_by(Notification.id))
        ),
        "photos": list(
            session.scalars(
                select(Inspection).where(Inspection.case_id == case.id, Inspection.photo_sha256.is_not(None))
            )
        ),
        "audit": list(session.scalars(select(AuditLog).where(AuditLog.case_id == case.id).order_by(AuditLog.id))),
        "event": settings.workflow.event_classes.get(case.violation),
        "can_verify": case.status in VERIFIABLE_STATUSES,
        "can_close": case.status in CLOSABLE_STATUSES,
        "needs_verification": case.status in DISPATCHED and not verified_since_dispatch(session, case.id),
        "is_supervisor": user.role in SUPERVISOR_ROLES,
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
        return redirect_with_flash(request, target, refusal_text(request, exc), failed=True)
    return redirect_with_flash(request, target, i18n.gettext(request, done, case=case_id))


@router.post("/cases/{case_id}/workflow/penalty", name="web_penalty", dependencies=[CsrfChecked])
def web_penalty(
    case_id: CaseId,
    request: Request,
    session: SessionDep,
    user: WebUser,
    service: WorkflowDep,
    decision: NoteField,
    confirmed: Annotated[str, Form(max_length=4)] = "",
) -> Response:
    """A penalty is recorded only with the reviewer's explicit confirmation (the form's checkbox)."""
    if confirmed != "1":
        target = request.app.url_path_for("case_workflow_page", case_id=str(case_id))
        message = i18n.gettext(request, i18n.N_("Tick the confirmation to record a penalty."))
        return redirect_with_flash(request, target, message, failed=True)
    return _workflow_step(
        request,
        session,
        user,
        case_id,
        lambda reviewer: service.decide_penalty(case_id, decision=decision, reviewer=reviewer),
        i18n.N_("Case #%(case)s: penalty recorded."),
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
        request,
        session,
        user,
        case_id,
        lambda reviewer: service.verify(case_id, passed=passed, reviewer=reviewer, note=note),
        i18n.N_("Case #%(case)s verified.") if passed else i18n.N_("Case #%(case)s not rectified: back to dispatch."),
    )


@router.post("/cases/{case_id}/workflow/close", name="web_close", dependencies=[CsrfChecked])
def web_close(
    case_id: CaseId,
    request: Request,
    session: SessionDep,
    user: WebUser,
    service: WorkflowDep,
    note: NoteField = "",
    override: Annotated[str, Form(max_length=4)] = "",
) -> Response:
    return _workflow_step(
        request,
        session,
        user,
        case_id,
        lambda reviewer: service.close(case_id, reviewer=reviewer, note=note, override=override == "1"),
        i18n.N_("Case #%(case)s closed."),
    )
