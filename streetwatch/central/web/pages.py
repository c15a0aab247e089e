"""The review pages: the queue (`/`), a case with its audit log, and the four actions as form posts.

Actions answer JSON to the page script (`Accept: application/json`) and a 303 redirect back to the
queue to plain forms, with what happened or the service's refusal as the page's message, so the
queue also works without JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.responses import Response

from streetwatch.central.access import AreaScope, case_visible
from streetwatch.central.api.deps import CsrfChecked, ReviewDep, SessionDep, WebUser, scope_of
from streetwatch.central.api.queries import (
    BadCursor,
    CaseFilters,
    QueueCursor,
    area_names,
    case_audit,
    filter_scope,
    list_cases,
    merchants_by_id,
    recent_alerts,
)
from streetwatch.central.case_service import ActionOutcome, Reviewer
from streetwatch.central.case_status import ALL_STATUSES, CaseStatus
from streetwatch.central.errors import DomainError, http_status
from streetwatch.central.models import Area, Case, User
from streetwatch.central.review import DISMISS_REASONS
from streetwatch.central.web.cards import CaseCard, build_card
from streetwatch.central.web.nearby import NearbyZones
from streetwatch.central.web.render import flash_context, redirect_with_flash, render, safe_next, user_label
from streetwatch.central.workflow.ids import MAX_ID, CaseId
from streetwatch.edge.alerts import VIOLATIONS

router = APIRouter(include_in_schema=False)
QUEUE_PAGE_SIZE = 20


def _cards(request: Request, session: Session, cases: list[Case], names: dict[str, str]) -> list[CaseCard]:
    zones_index: NearbyZones = request.app.state.nearby_zones
    merchants = merchants_by_id(session, [c.merchant_id for c in cases])
    alerts = recent_alerts(session, [c.id for c in cases])
    cards = []
    for case in cases:
        located = case.lat is not None and case.lon is not None
        zones = zones_index.around(session, lat=case.lat, lon=case.lon) if located else []  # type: ignore[arg-type]
        cards.append(
            build_card(
                case,
                merchant=merchants.get(case.merchant_id or ""),
                alerts=alerts.get(case.id, []),
                zones=zones,
                area_name=names.get(case.area_id or ""),
            )
        )
    return cards


def _area_options(session: Session, scope: AreaScope | None) -> list[dict[str, str]]:
    areas = session.query(Area).order_by(Area.level, Area.name).all()
    allowed = [a for a in areas if scope is None or a.id in scope.area_ids]
    return [{"id": a.id, "label": f"{a.name} ({a.level})"} for a in allowed]


def _queue_url(filters: CaseFilters, after: str | None = None) -> str:
    params = {
        "status": filters.status,
        "violation": filters.violation or "",
        "area": filters.area_id or "",
        "merchant": filters.merchant_id or "",
    }
    if after:
        params["after"] = after
    return "/?" + urlencode({k: v for k, v in params.items() if v})


@router.get("/", name="queue_page")
def queue_page(
    request: Request,
    session: SessionDep,
    user: WebUser,
    status_: Annotated[str, Query(alias="status", max_length=16)] = "new",
    violation: Annotated[str, Query(max_length=32)] = "",
    area: Annotated[str, Query(max_length=64)] = "",
    merchant: Annotated[str, Query(max_length=64)] = "",
    after: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """New cases by priority then age, with evidence, map, merchant and alerts; keyboard-driven."""
    if status_ not in ALL_STATUSES or (violation and violation not in VIOLATIONS):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "status or violation: unknown value")
    filters = CaseFilters(
        status=status_,
        violation=violation or None,
        area_id=area or None,
        merchant_id=merchant.strip() or None,
    )
    scope = scope_of(session, user)
    try:
        cursor = QueueCursor.decode(after) if after else None
    except BadCursor as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    page = list_cases(
        session,
        filters,
        scopes=[scope, filter_scope(session, filters.area_id)],
        limit=QUEUE_PAGE_SIZE,
        after=cursor,
    )
    names = area_names(session)
    plural = "s" if page.count != 1 else ""
    count_text = f"{page.count:,}{'+' if page.count_capped else ''} case{plural} {status_}"
    return render(
        request,
        "queue.html",
        {
            "user": user_label(user, names.get(user.area_id or "")),
            "cards": _cards(request, session, page.cases, names),
            "filters": filters,
            "violations": VIOLATIONS,
            "statuses": ALL_STATUSES,
            "areas": _area_options(session, scope),
            "count_text": count_text,
            "next_url": _queue_url(filters, page.next_cursor.encode()) if page.next_cursor else None,
            "first_url": _queue_url(filters) if cursor else None,
            "return_to": str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
            "dismiss_reasons": DISMISS_REASONS,
            **flash_context(request),
        },
    )


@router.get("/cases/{case_id}", name="case_page")
def case_page(case_id: CaseId, request: Request, session: SessionDep, user: WebUser) -> Response:
    """One case with its full audit log (who did what, when)."""
    case = session.get(Case, case_id)
    if case is None or not case_visible(scope_of(session, user), case):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"case {case_id} not found")
    names = area_names(session)
    audit = [
        {
            "at": e.at.strftime("%Y-%m-%d %H:%M:%S"),
            "actor": e.actor,
            "action": e.action,
            "details": ", ".join(f"{k}: {v}" for k, v in (e.detail or {}).items()),
        }
        for e in case_audit(session, case.id)
    ]
    return render(
        request,
        "case.html",
        {
            "user": user_label(user, names.get(user.area_id or "")),
            "card": _cards(request, session, [case], names)[0],
            "audit": audit,
            "return_to": f"/cases/{case.id}",
            "dismiss_reasons": DISMISS_REASONS,
            **flash_context(request),
        },
    )


def _act(request: Request, next_path: str, call: Callable[[], ActionOutcome], done: str) -> Response:
    """Run an action; JSON for the page script, a redirect with the outcome (or the refusal) as the
    page's message for plain forms."""
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        outcome = call()
    except DomainError as exc:
        if wants_json:
            return JSONResponse({"detail": exc.detail}, status_code=http_status(exc))
        return redirect_with_flash(safe_next(next_path), exc.detail, failed=True)
    message = f"Case {outcome.case_id} {done}."
    if wants_json:
        return JSONResponse(
            {
                "message": message,
                "status": outcome.status,
                "case_id": outcome.case_id,
                "audit_id": outcome.audit_id,
                "still_open": outcome.status == CaseStatus.NEW,  # a reassigned case stays in the queue
            }
        )
    return redirect_with_flash(safe_next(next_path), message)


def web_reviewer(session: Session, user: User) -> Reviewer:
    """The logged-in user as a reviewer, with this request's read transaction ended: the services
    open their own write transactions."""
    reviewer = Reviewer.of(session, user)
    session.rollback()  # end this read transaction; the service opens its own write transaction
    return reviewer


NextField = Annotated[str, Form(max_length=2000)]


@router.post("/cases/{case_id}/confirm", name="web_confirm", dependencies=[CsrfChecked])
def web_confirm(
    case_id: CaseId,
    request: Request,
    session: SessionDep,
    user: WebUser,
    review: ReviewDep,
    next: NextField = "/",
) -> Response:  # noqa: A002 - form field name
    reviewer = web_reviewer(session, user)
    return _act(request, next, lambda: review.confirm(case_id, reviewer=reviewer), "confirmed")


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
    return _act(
        request,
        next,
        lambda: review.dismiss(case_id, reason=reason, reviewer=reviewer),
        f"dismissed ({reason})",
    )


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
    return _act(
        request,
        next,
        lambda: review.merge(case_id, into_case_id=into_case_id, reviewer=reviewer),
        f"merged into case {into_case_id}",
    )


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
    return _act(
        request,
        next,
        lambda: review.reassign(case_id, merchant_id=merchant_id, reviewer=reviewer),
        f"reassigned to merchant {merchant_id}",
    )
