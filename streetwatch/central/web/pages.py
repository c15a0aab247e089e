"""The review pages: the queue (`/`), a case with its audit log, its evidence viewer, and the review
actions as form posts: confirm, dismiss, merge, reassign, a bulk confirm/dismiss, undo, and the
user's interface language.

Actions answer JSON to the page script (`Accept: application/json`) and a 303 redirect back to the
queue to plain forms, with what happened or the service's refusal as the page's message, so the
queue also works without JavaScript. Every message is in the user's language (i18n.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from streetwatch.central.access import AreaScope, case_visible
from streetwatch.central.api.deps import ClockDep, CsrfChecked, ReviewDep, SessionDep, SettingsDep, WebUser, scope_of
from streetwatch.central.api.params import bounded_time
from streetwatch.central.api.queries import (
    CaseFilters,
    area_names,
    case_audit,
    evidence_alerts,
    filter_scope,
    list_cases,
    merchants_by_id,
    queue_cameras,
    recent_alerts,
)
from streetwatch.central.case_service import ActionOutcome, Reviewer
from streetwatch.central.case_status import ALL_STATUSES, CaseStatus
from streetwatch.central.citizen import CitizenService
from streetwatch.central.config import CentralSettings
from streetwatch.central.errors import DomainError, NotFound, http_status
from streetwatch.central.evidence_store import evidence_store
from streetwatch.central.media import SUFFIX
from streetwatch.central.models import Area, Case, CitizenReport, User
from streetwatch.central.review import DISMISS_REASONS
from streetwatch.central.web import i18n, labels
from streetwatch.central.web.cards import CardContext, CaseCard, CitizenNote, build_card
from streetwatch.central.web.nearby import NearbyZones
from streetwatch.central.web.render import flash_context, redirect_with_flash, render, safe_next, user_label
from streetwatch.central.workflow.ids import MAX_ID, CaseId, DecisionId
from streetwatch.edge.alerts import VIOLATIONS

router = APIRouter(include_in_schema=False)
AGE_FILTERS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "3d": timedelta(days=3),
    "7d": timedelta(days=7),
}
AGE_LABELS = {
    "1h": i18n.N_("older than an hour"),
    "1d": i18n.N_("older than a day"),
    "3d": i18n.N_("older than 3 days"),
    "7d": i18n.N_("older than a week"),
}


def build_cards(
    request: Request, session: Session, cases: list[Case], names: dict[str, str], *, scope: AreaScope | None
) -> list[CaseCard]:
    """The cards of `cases`; their maps show only the merchants `scope` (the user's area) may see."""
    settings: CentralSettings = request.app.state.settings
    zones_index: NearbyZones = request.app.state.nearby_zones
    merchants = merchants_by_id(session, [c.merchant_id for c in cases])
    ids = [c.id for c in cases]
    alerts, evidence = recent_alerts(session, ids), evidence_alerts(session, ids)
    citizen = citizen_notes(session, ids)
    now = request.app.state.clock()
    store = evidence_store(settings.evidence_dir)
    cards = []
    for case in cases:
        located = case.lat is not None and case.lon is not None
        around = zones_index.around
        zones = around(session, lat=case.lat, lon=case.lon, scope=scope, radius_m=200) if located else []  # type: ignore[arg-type]
        ctx = CardContext(
            merchant=merchants.get(case.merchant_id or ""),
            alerts=alerts.get(case.id, []),
            evidence=evidence.get(case.id, []),
            zones=zones,
            area_name=names.get(case.area_id or ""),
            weight=settings.cases.priority_weight.get(case.violation, 0),  # type: ignore[call-overload]
            now=now,
            sla=timedelta(hours=settings.review.sla_hours),
            low_confidence=settings.review.low_confidence,
            held=lambda ref: store.exists(ref.sha256, SUFFIX[ref.content_type]),
            citizen=citizen.get(case.id, ()),
        )
        cards.append(build_card(case, ctx))
    return cards


def citizen_notes(session: Session, case_ids: list[int]) -> dict[int, list[CitizenNote]]:
    """The citizen reports of these cases (and of cases merged into them), by case id, oldest first."""
    found: dict[int, list[CitizenNote]] = {}
    if not case_ids:
        return found
    rows_merged = session.execute(select(Case.id, Case.merged_into_id).where(Case.merged_into_id.in_(case_ids)))
    merged: dict[int, int] = {int(source): int(target or source) for source, target in rows_merged}
    rows = session.scalars(
        select(CitizenReport).where(CitizenReport.case_id.in_([*case_ids, *merged])).order_by(CitizenReport.id)
    )
    for r in rows:
        note = CitizenNote(r.id, r.description, r.created_at, r.verified_at, r.verified_by)
        found.setdefault(merged.get(r.case_id) or r.case_id, []).append(note)
    return found


def _area_options(session: Session, scope: AreaScope | None) -> list[dict[str, str]]:
    areas = session.query(Area).order_by(Area.level, Area.name).all()
    allowed = [a for a in areas if scope is None or a.id in scope.area_ids]
    return [{"id": a.id, "label": a.name} for a in allowed]


@dataclass(frozen=True)
class QueueQuery:
    """The queue's filters as the page's form holds them (strings), with the page number."""

    status: str = "new"
    violation: str = ""
    area: str = ""
    merchant: str = ""
    q: str = ""
    camera: str = ""
    date_from: str = ""
    date_to: str = ""
    age: str = ""
    page: int = 1

    def url(self, page: int | None = None) -> str:
        values = {**self.__dict__, "page": page if page is not None else self.page}
        return "/?" + urlencode({k: v for k, v in values.items() if v and not (k == "page" and v == 1)})


def _local_day(text: str, zone_name: str, *, end: bool) -> datetime | None:
    """A YYYY-MM-DD of the date filter as a UTC bound in the city's day (None if empty)."""
    if not text:
        return None
    field = "date_to" if end else "date_from"
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=i18n.city_zone(zone_name))
    except ValueError:
        detail = f"{field}: expected YYYY-MM-DD, got {text!r}"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None
    return bounded_time(day, field) + timedelta(days=1) if end else bounded_time(day, field)


def _filters(query: QueueQuery, *, now: datetime, zone_name: str) -> CaseFilters:
    if query.status not in ALL_STATUSES or (query.violation and query.violation not in VIOLATIONS):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "status or violation: unknown value")
    if query.age and query.age not in AGE_FILTERS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"age: expected one of {sorted(AGE_FILTERS)}")
    return CaseFilters(
        status=query.status,
        violation=query.violation or None,
        area_id=query.area or None,
        merchant_id=query.merchant.strip() or None,
        text=query.q.strip() or None,
        camera_id=query.camera or None,
        seen_from=_local_day(query.date_from, zone_name, end=False),
        seen_until=_local_day(query.date_to, zone_name, end=True),
        older_than=now - AGE_FILTERS[query.age] if query.age else None,
    )


@router.get("/", name="queue_page")
def queue_page(
    request: Request,
    session: SessionDep,
    user: WebUser,
    settings: SettingsDep,
    clock: ClockDep,
    status_: Annotated[str, Query(alias="status", max_length=16)] = "new",
    violation: Annotated[str, Query(max_length=32)] = "",
    area: Annotated[str, Query(max_length=64)] = "",
    merchant: Annotated[str, Query(max_length=64)] = "",
    q: Annotated[str, Query(max_length=100)] = "",
    camera: Annotated[str, Query(max_length=64)] = "",
    date_from: Annotated[str, Query(max_length=10)] = "",
    date_to: Annotated[str, Query(max_length=10)] = "",
    age: Annotated[str, Query(max_length=4)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """Cases by priority then age, with evidence, map, merchant and alerts; keyboard-driven; paged."""
    query = QueueQuery(status_, violation, area, merchant, q, camera, date_from, date_to, age, page)
    filters = _filters(query, now=clock(), zone_name=settings.web.time_zone)
    scope = scope_of(session, user)
    size = settings.review.page_size
    found = list_cases(
        session,
        filters,
        scopes=[scope, filter_scope(session, filters.area_id)],
        limit=size,
        offset=(page - 1) * size,
        count_cap=settings.review.count_cap,
    )
    pages = max(1, math.ceil(found.count / size))
    names = area_names(session)
    return render(
        request,
        "queue.html",
        {
            "user": user_label(user, names.get(user.area_id or "")),
            "cards": build_cards(request, session, found.cases, names, scope=scope),
            "query": query,
            "violations": VIOLATIONS,
            "statuses": ALL_STATUSES,
            "areas": _area_options(session, scope),
            "cameras": queue_cameras(session, status=filters.status),
            "ages": AGE_LABELS,
            "total": found.count,
            "total_capped": found.count_capped,
            "page": page,
            "pages": pages,
            "prev_url": query.url(page - 1) if page > 1 else None,
            "next_url": query.url(page + 1) if found.next_cursor is not None else None,
            "return_to": query.url(),
            "dismiss_reasons": DISMISS_REASONS,
            "undo_window_s": settings.workflow.undo_window_s,
            "bulk_max": settings.review.bulk_max,
            **flash_context(request),
        },
    )


def visible_case_or_404(session: Session, user: User, case_id: int) -> Case:
    """The case, or NotFound (404, "case N not found" in the page's language) when missing or outside the area."""
    case = session.get(Case, case_id)
    if case is None or not case_visible(scope_of(session, user), case):
        raise NotFound(f"case {case_id} not found", code="case_not_found", case_id=case_id)
    return case


@router.get("/cases/{case_id}", name="case_page")
def case_page(case_id: CaseId, request: Request, session: SessionDep, user: WebUser, settings: SettingsDep) -> Response:
    """One case with its full audit log (who did what, when)."""
    case = visible_case_or_404(session, user, case_id)
    names = area_names(session)
    return render(
        request,
        "case.html",
        {
            "user": user_label(user, names.get(user.area_id or "")),
            "card": build_cards(request, session, [case], names, scope=scope_of(session, user))[0],
            "audit": case_audit(session, case.id),
            "return_to": f"/cases/{case.id}",
            "dismiss_reasons": DISMISS_REASONS,
            "undo_window_s": settings.workflow.undo_window_s,
            **flash_context(request),
        },
    )


@router.get("/cases/{case_id}/evidence", name="evidence_page")
def evidence_page(case_id: CaseId, request: Request, session: SessionDep, user: WebUser) -> Response:
    """The evidence viewer: every image of the case uncropped, zoom and pan, the boxes drawn."""
    case = visible_case_or_404(session, user, case_id)
    names = area_names(session)
    card = build_cards(request, session, [case], names, scope=scope_of(session, user))[0]
    return render(request, "evidence.html", {"user": user_label(user, names.get(user.area_id or "")), "card": card})


def refusal_text(request: Request, exc: DomainError) -> str:
    """A service's refusal in the user's language (its own words when there is no message for it)."""
    with i18n.rendering(request):
        text = labels.error_text(exc.code, exc.params)
        return text or i18n.template_gettext(i18n.N_("This could not be done: %(detail)s")) % {"detail": exc.detail}


def case_summary(request: Request, session: Session, case_id: int) -> str:
    """ "#12 违停 · 老王面馆": which case a decision acted on, for its message."""
    case = session.get(Case, case_id)
    if case is None:
        return f"#{case_id}"
    merchant = merchants_by_id(session, [case.merchant_id]).get(case.merchant_id or "")
    with i18n.rendering(request):
        violation = labels.label("violation", case.violation)
    return f"#{case.id} {violation}" + (f" · {merchant.name}" if merchant else "")


def _act(
    request: Request,
    session: Session,
    next_path: str,
    call: Callable[[], ActionOutcome],
    done: str,
    *,
    case_id: int | None = None,
) -> Response:
    """Run an action; JSON for the page script (with what to undo), a redirect with the outcome (or
    the refusal) as the page's message for plain forms. The message names the case as it was when
    the reviewer decided (`case_id`: read before the action, e.g. the merchant a reassignment replaced)."""
    summary = case_summary(request, session, case_id) if case_id is not None else None
    session.rollback()  # the service writes in its own transaction
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        outcome = call()
    except DomainError as exc:
        if wants_json:
            return JSONResponse({"detail": refusal_text(request, exc)}, status_code=http_status(exc))
        return redirect_with_flash(request, safe_next(next_path), refusal_text(request, exc), failed=True)
    message = i18n.gettext(request, done, case=summary or case_summary(request, session, outcome.case_id))
    if wants_json:
        return JSONResponse(
            {
                "message": message,
                "status": outcome.status,
                "status_label": _status_label(request, outcome.status),
                "case_id": outcome.case_id,
                "audit_id": outcome.audit_id,
                "undo_until": _undo_until(request, outcome),
                "still_open": outcome.status == CaseStatus.NEW,  # a reassigned case stays in the queue
            }
        )
    return redirect_with_flash(request, safe_next(next_path), message)


def _status_label(request: Request, value: str) -> str:
    with i18n.rendering(request):
        return labels.label("status", value)


def _undo_until(request: Request, outcome: ActionOutcome) -> str | None:
    window = request.app.state.settings.workflow.undo_window_s
    if outcome.action not in ("confirm", "dismiss", "merge", "reassign") or window <= 0:
        return None
    return (outcome.at + timedelta(seconds=window)).isoformat()


def web_reviewer(session: Session, user: User) -> Reviewer:
    """The logged-in user as a reviewer, with this request's read transaction ended: the services
    open their own write transactions."""
    reviewer = Reviewer.of(session, user)
    session.rollback()  # end this read transaction; the service opens its own write transaction
    return reviewer


NextField = Annotated[str, Form(max_length=2000)]
N_ = i18n.N_


@router.post("/cases/{case_id}/confirm", name="web_confirm", dependencies=[CsrfChecked])
def web_confirm(
    case_id: CaseId, request: Request, session: SessionDep, user: WebUser, review: ReviewDep, next: NextField = "/"
) -> Response:  # noqa: A002 - form field name
    reviewer = web_reviewer(session, user)
    confirm = lambda: review.confirm(case_id, reviewer=reviewer)  # noqa: E731
    return _act(request, session, next, confirm, N_("%(case)s confirmed."), case_id=case_id)


@router.post("/cases/{case_id}/verify-report", name="web_verify_report", dependencies=[CsrfChecked])
def web_verify_report(
    case_id: CaseId, request: Request, session: SessionDep, user: WebUser, next: NextField = "/"
) -> Response:  # noqa: A002 - form field name
    """核实举报: the citizen reports of a confirmed case are true; each counts for its reporter's reward."""
    reviewer = web_reviewer(session, user)
    service: CitizenService = request.app.state.citizen
    verify = lambda: service.verify(case_id, reviewer=reviewer)  # noqa: E731
    return _act(request, session, next, verify, N_("%(case)s: citizen report verified."), case_id=case_id)


@router.post("/cases/{case_id}/dismiss", name="web_dismiss", dependencies=[CsrfChecked])
def web_dismiss(
    case_id: CaseId,
    request: Request,
    session: SessionDep,
    user: WebUser,
    review: ReviewDep,
    reason: Annotated[str, Form(max_length=200)],
    next: NextField = "/",
) -> Response:  # noqa: A002
    reviewer = web_reviewer(session, user)
    with i18n.rendering(request):
        reason_label = labels.label("reason", reason)
    done = i18n.gettext(request, N_("%(case)s dismissed (%(reason)s)."), case="%(case)s", reason=reason_label)
    dismiss = lambda: review.dismiss(case_id, reason=reason, reviewer=reviewer)  # noqa: E731
    return _act(request, session, next, dismiss, done, case_id=case_id)


@router.post("/cases/{case_id}/merge", name="web_merge", dependencies=[CsrfChecked])
def web_merge(
    case_id: CaseId,
    request: Request,
    session: SessionDep,
    user: WebUser,
    review: ReviewDep,
    into_case_id: Annotated[int, Form(gt=0, le=MAX_ID)],
    next: NextField = "/",
) -> Response:  # noqa: A002
    reviewer = web_reviewer(session, user)
    done = i18n.gettext(request, N_("%(case)s merged into case #%(into)s."), case="%(case)s", into=into_case_id)
    merge = lambda: review.merge(case_id, into_case_id=into_case_id, reviewer=reviewer)  # noqa: E731
    return _act(request, session, next, merge, done, case_id=case_id)


@router.post("/cases/{case_id}/reassign", name="web_reassign", dependencies=[CsrfChecked])
def web_reassign(
    case_id: CaseId,
    request: Request,
    session: SessionDep,
    user: WebUser,
    review: ReviewDep,
    merchant_id: Annotated[str, Form(max_length=64)],
    next: NextField = "/",
) -> Response:  # noqa: A002
    reviewer = web_reviewer(session, user)
    merchant = merchants_by_id(session, [merchant_id.strip()]).get(merchant_id.strip())
    name = merchant.name if merchant else merchant_id
    done = i18n.gettext(request, N_("%(case)s reassigned to %(merchant)s."), case="%(case)s", merchant=name)
    reassign = lambda: review.reassign(case_id, merchant_id=merchant_id, reviewer=reviewer)  # noqa: E731
    return _act(request, session, next, reassign, done, case_id=case_id)


@router.post("/decisions/{audit_id}/undo", name="web_undo", dependencies=[CsrfChecked])
def web_undo(
    audit_id: DecisionId,
    request: Request,
    session: SessionDep,
    user: WebUser,
    review: ReviewDep,
    next: NextField = "/",
) -> Response:  # noqa: A002
    reviewer = web_reviewer(session, user)
    return _act(
        request, session, next, lambda: review.undo(audit_id, reviewer=reviewer), N_("%(case)s: decision undone.")
    )


@router.post("/cases/bulk", name="web_bulk", dependencies=[CsrfChecked])
def web_bulk(
    request: Request,
    session: SessionDep,
    user: WebUser,
    review: ReviewDep,
    settings: SettingsDep,
    action: Annotated[Literal["confirm", "dismiss"], Form()],
    case_ids: Annotated[list[int], Form(max_length=1000)],
    reason: Annotated[str, Form(max_length=200)] = "",
    next: NextField = "/",
) -> Response:  # noqa: A002
    """Confirm or dismiss the selected cases (after the page showed what they are)."""
    if not case_ids or len(case_ids) > settings.review.bulk_max or any(not 0 < c <= MAX_ID for c in case_ids):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"case_ids: expected 1 to {settings.review.bulk_max} case numbers"
        )
    reviewer = web_reviewer(session, user)
    results = review.bulk(case_ids, action=action, reviewer=reviewer, reason=reason)
    done = [r for r in results if r.outcome is not None]
    msgid = (
        N_("%(done)s of %(total)s cases confirmed.")
        if action == "confirm"
        else N_("%(done)s of %(total)s cases dismissed.")
    )
    message = i18n.gettext(request, msgid, done=len(done), total=len(results))
    if "application/json" not in request.headers.get("accept", ""):
        return redirect_with_flash(request, safe_next(next), message, failed=len(done) < len(results))
    body = [
        {
            "case_id": r.case_id,
            "status": r.outcome.status if r.outcome else None,
            "audit_id": r.outcome.audit_id if r.outcome else None,
            "error": r.error,
        }
        for r in results
    ]
    until = _undo_until(request, done[0].outcome) if done and done[0].outcome else None
    return JSONResponse({"message": message, "results": body, "undo_until": until})


@router.post("/settings/locale", name="web_locale", dependencies=[CsrfChecked])
def web_locale(
    request: Request,
    session: SessionDep,
    user: WebUser,
    locale: Annotated[str, Form(max_length=16)] = "",
    next: NextField = "/",
) -> Response:  # noqa: A002
    """The user's interface language (empty: follow the browser)."""
    if locale and locale not in i18n.LOCALES:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"locale: expected one of {list(i18n.LOCALES)}")
    user.locale = locale or None
    session.commit()
    request.state.user_locale, request.state.locale = user.locale, None
    return redirect_with_flash(request, safe_next(next), i18n.gettext(request, N_("Language saved.")))
