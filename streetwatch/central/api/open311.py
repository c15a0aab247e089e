"""Open311 GeoReport v2 (read side): /open311/v2/services.json, requests.json, requests/{id}.json.

So existing city systems and 311 apps can read StreetWatch cases. Field names and formats follow the
GeoReport v2 specification (wiki.open311.org/GeoReport_v2): ISO 8601 times with offset, `status`
open|closed, `long` for longitude, errors as a list of {code, description}.

Who sees what: a caller with an API token (Bearer header, or the spec's `api_key` parameter) sees its
own area, like the rest of the API. Anonymous reads are off unless the deployment publishes its
cases (`open311.public` in the settings, or STREETWATCH_OPEN311_PUBLIC=1), then they see the whole city.
Unreviewed detections (`new`) are never published: only what a reviewer has confirmed or dismissed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from streetwatch.central.access import AreaScope, case_clause, case_visible, load_scope
from streetwatch.central.api.deps import SessionDep, SettingsDep, _bearer
from streetwatch.central.api.params import parse_time
from streetwatch.central.api.tokens import user_for_token
from streetwatch.central.case_status import IN_HAND_STATUSES, REVIEWED_STATUSES
from streetwatch.central.config import CentralSettings
from streetwatch.central.models import Case, Merchant
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.ids import MAX_ID, CaseId
from streetwatch.central.workflow.rules import lifecycle_stage

router = APIRouter(prefix="/open311/v2", tags=["open311"])

OPEN = IN_HAND_STATUSES  # GeoReport "open": confirmed and not yet resolved
PUBLISHED = REVIEWED_STATUSES  # never `new`: only what a reviewer has decided
DEFAULT_DAYS = 90  # the spec's default window
MAX_REQUESTS = 1000  # the spec's maximum per response
AGENCY = "City street-order office (StreetWatch)"


class Service(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: Literal["realtime", "batch", "blackbox"]
    keywords: str
    group: str


class ServiceRequest(BaseModel):
    service_request_id: str
    status: Literal["open", "closed"]
    status_notes: str | None
    service_name: str
    service_code: str
    description: str | None
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str
    updated_datetime: str | None
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


ApiKey = Annotated[str | None, Query(max_length=200, description="an API token, as the spec allows")]


def _scope(request: Request, session: Session, settings: CentralSettings, api_key: str | None) -> AreaScope | None:
    token = _bearer(request) or api_key
    if token:
        user = user_for_token(session, token)
        if user is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid or revoked token")
        return load_scope(session, user)
    if settings.open311.public:
        return None
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value is not None else None


def to_request(case: Case, merchant: Merchant | None, settings: WorkflowSettings, base_url: str) -> ServiceRequest:
    event = settings.event_classes.get(case.violation)
    stage, stage_zh = lifecycle_stage(case.status)
    return ServiceRequest(
        service_request_id=str(case.id),
        status="open" if case.status in OPEN else "closed",
        status_notes=f"{stage} ({stage_zh}); StreetWatch status {case.status}",
        service_name=event.name if event else case.violation,
        service_code=case.violation,
        description=f"{case.violation.replace('_', ' ')} seen {case.alert_count} times by camera {case.camera_id}",
        agency_responsible=AGENCY,
        service_notice=None,
        requested_datetime=_iso(case.first_seen) or "",
        updated_datetime=_iso(case.updated_at),
        expected_datetime=None,
        address=merchant.address if merchant else None,
        address_id=merchant.id if merchant else None,
        zipcode=None,
        lat=case.lat,
        long=case.lon,
        media_url=f"{base_url}evidence/{case.evidence_sha256}" if case.evidence_sha256 else None,
    )


@router.get("/services.json", response_model=list[Service])
def services(
    request: Request, session: SessionDep, settings: SettingsDep, api_key: ApiKey = None
) -> list[Service]:
    """The service types: one per violation, named by the configured event class."""
    _scope(request, session, settings, api_key)
    result = []
    for code, event in sorted(settings.workflow.event_classes.items()):
        result.append(
            Service(
                service_code=code,
                service_name=event.name,
                description=f"{event.category} / {event.name} (event class {event.code})",
                metadata=False,
                type="realtime",
                keywords=code.replace("_", ","),
                group=event.category,
            )
        )
    return result


@dataclass(frozen=True)
class RequestFilter:
    ids: list[int] | None
    service_code: str | None
    start: datetime
    end: datetime
    state: str | None


def _query(scope: AreaScope | None, f: RequestFilter) -> Select[Case]:
    query = select(Case).where(case_clause(scope), Case.status.in_(PUBLISHED), Case.merged_into_id.is_(None))
    if f.ids is not None:
        return query.where(Case.id.in_(f.ids)).order_by(Case.id)
    query = query.where(Case.first_seen >= f.start, Case.first_seen <= f.end)
    if f.service_code:
        query = query.where(Case.violation.in_(f.service_code.split(",")))
    if f.state == "open":
        query = query.where(Case.status.in_(OPEN))
    elif f.state == "closed":
        query = query.where(Case.status.not_in(OPEN))
    return query.order_by(Case.first_seen.desc()).limit(MAX_REQUESTS)


def _parse_time(value: str | None, field: str, default: datetime) -> datetime:
    return parse_time(value, field) if value else default


def _requests(
    request: Request, session: Session, settings: WorkflowSettings, scope: AreaScope | None, f: RequestFilter
) -> list[ServiceRequest]:
    cases = [c for c in session.scalars(_query(scope, f)) if case_visible(scope, c)]
    merchants = {
        m.id: m
        for m in session.scalars(
            select(Merchant).where(Merchant.id.in_({c.merchant_id for c in cases if c.merchant_id}))
        )
    }
    base = request.app.state.settings.web.base_url  # configured: a Host header must not pick the links
    return [to_request(c, merchants.get(c.merchant_id or ""), settings, base) for c in cases]


@router.get("/requests.json", response_model=list[ServiceRequest])
def requests_(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    service_request_id: Annotated[str | None, Query(max_length=2000)] = None,
    service_code: Annotated[str | None, Query(max_length=200)] = None,
    start_date: Annotated[str | None, Query(max_length=64)] = None,
    end_date: Annotated[str | None, Query(max_length=64)] = None,
    status_: Annotated[Literal["open", "closed"] | None, Query(alias="status")] = None,
    api_key: ApiKey = None,
) -> list[ServiceRequest]:
    """Service requests (cases), newest first: by ids (overrides the rest) or by code, dates, status."""
    scope = _scope(request, session, settings, api_key)
    ids = None
    if service_request_id:
        try:
            ids = [int(v) for v in service_request_id.split(",") if v.strip()]
            ids = [i for i in ids if 1 <= i <= MAX_ID]  # others cannot exist (and overflow the column)
        except ValueError:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, "service_request_id: expected ids separated by commas"
            ) from None
    end = _parse_time(end_date, "end_date", datetime.now(UTC))
    start = _parse_time(start_date, "start_date", end - timedelta(days=DEFAULT_DAYS))
    return _requests(request, session, settings.workflow, scope, RequestFilter(ids, service_code, start, end, status_))


@router.get("/requests/{request_id}.json", response_model=list[ServiceRequest])
def one_request(
    request_id: CaseId, request: Request, session: SessionDep, settings: SettingsDep, api_key: ApiKey = None
) -> list[ServiceRequest]:
    """One service request, as a one-element list (as the spec says)."""
    scope = _scope(request, session, settings, api_key)
    forever = RequestFilter(
        [request_id], None, datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC), None
    )
    found = _requests(request, session, settings.workflow, scope, forever)
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"service_request_id {request_id} not found")
    return found
