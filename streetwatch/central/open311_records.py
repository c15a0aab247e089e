"""What Open311 publishes of a case, and to whom (pure, apart from the queries at the end).

Two views:
- the **public view** (anonymous readers where `open311.public` is on, and Open311 client keys):
  the whole city, but only cases a reviewer confirmed (`confirmed`, `notified`, `rectified`,
  `escalated`, `closed`; never `new` nor `dismissed`, never a case merged away); no merchant name,
  address or id; no reporter's contact nor a citizen's own words (the description is written by
  StreetWatch); the photo through /open311/v2/media/{id}.jpg on the configured public URL;
- the **staff view** (a user's API token): the user's area, the same statuses, with the merchant's
  address and the evidence link staff open with their login.

A citizen's report that no reviewer has decided yet is shown when asked for by its id only, as
"received, awaiting review", without place, text or photo: the reporter can follow it, and nobody
learns more about unreviewed reports by counting ids.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from streetwatch.central.access import AreaScope, case_clause, case_visible
from streetwatch.central.case_status import IN_HAND_STATUSES, VIOLATION_STATUSES, CaseStatus
from streetwatch.central.models import Case, CitizenReport, Merchant
from streetwatch.central.open311_format import Record
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.rules import lifecycle_stage

# Confirmed by a reviewer at some time: what is published (closed ones that were merged are excluded apart).
PUBLISHED: tuple[str, ...] = (*VIOLATION_STATUSES, CaseStatus.CLOSED)
OPEN: tuple[str, ...] = tuple(IN_HAND_STATUSES)  # GeoReport "open": the city still has to act
AGENCY = "城市管理 StreetWatch"
MAX_REQUESTS = 1000  # the spec's largest response
PENDING_NOTE = "已受理，待审核 (received, awaiting review)"


@dataclass(frozen=True)
class Reader:
    """Who reads: the area (None: the whole city), the public view or staff's, the client key."""

    scope: AreaScope | None
    public: bool
    client_id: int | None = None


@dataclass(frozen=True)
class Links:
    """Where links point: the configured public base URL (ends with '/')."""

    base: str

    def media(self, case: Case, reader: Reader) -> str | None:
        if case.evidence_sha256 is None:
            return None
        if reader.public:
            return f"{self.base}open311/v2/media/{case.id}.jpg"
        return f"{self.base}evidence/{case.evidence_sha256}?case_id={case.id}"


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def published(case: Case) -> bool:
    return case.status in PUBLISHED and case.merged_into_id is None


def _description(case: Case) -> str:
    what = case.violation.replace("_", " ")
    if case.source == "citizen":
        more = f", seen {case.alert_count - 1} more times" if case.alert_count > 1 else ""
        return f"{what} reported by a citizen{more}"
    return f"{what} seen {case.alert_count} times by street cameras"


def request_record(
    case: Case, *, merchant: Merchant | None, reader: Reader, links: Links, workflow: WorkflowSettings,
    citizen_text: str | None = None,
) -> Record:
    """One published case as a GeoReport service request."""
    event = workflow.event_classes.get(case.violation)
    stage, stage_zh = lifecycle_stage(case.status)
    staff = not reader.public
    return {
        "service_request_id": str(case.id),
        "status": "open" if case.status in OPEN else "closed",
        "status_notes": f"{stage_zh} ({stage})",
        "service_name": event.name if event else case.violation,
        "service_code": case.violation,
        "description": (citizen_text if staff and citizen_text else _description(case)),
        "agency_responsible": AGENCY,
        "service_notice": None,
        "requested_datetime": iso(case.first_seen),
        "updated_datetime": iso(case.updated_at),
        "expected_datetime": None,
        "address": merchant.address if staff and merchant and merchant.address else None,
        "address_id": merchant.id if staff and merchant else None,
        "zipcode": None,
        "lat": case.lat,
        "long": case.lon,
        "media_url": links.media(case, reader),
    }


def pending_record(case: Case, *, workflow: WorkflowSettings) -> Record:
    """A citizen's report no reviewer has decided yet: that it arrived, nothing more."""
    event = workflow.event_classes.get(case.violation)
    return {
        "service_request_id": str(case.id), "status": "open", "status_notes": PENDING_NOTE,
        "service_name": event.name if event else case.violation, "service_code": case.violation,
        "description": None, "agency_responsible": AGENCY, "service_notice": None,
        "requested_datetime": iso(case.first_seen), "updated_datetime": iso(case.updated_at),
        "expected_datetime": None, "address": None, "address_id": None, "zipcode": None,
        "lat": None, "long": None, "media_url": None,
    }


@dataclass(frozen=True)
class RequestQuery:
    """A GET requests query, validated: ids (which override the rest) or codes, window, statuses."""

    ids: tuple[int, ...] | None
    codes: tuple[str, ...] | None
    start: datetime
    end: datetime
    statuses: frozenset[str]  # a subset of {"open", "closed"}; empty: both


def _select(reader: Reader, q: RequestQuery) -> Select[Case]:
    query = select(Case).where(case_clause(reader.scope), Case.merged_into_id.is_(None))
    if q.ids is not None:
        return query.where(Case.id.in_(q.ids)).order_by(Case.id)
    query = query.where(Case.status.in_(PUBLISHED), Case.first_seen >= q.start, Case.first_seen <= q.end)
    if q.codes:
        query = query.where(Case.violation.in_(q.codes))
    if q.statuses == {"open"}:
        query = query.where(Case.status.in_(OPEN))
    elif q.statuses == {"closed"}:
        query = query.where(Case.status.not_in(OPEN))
    return query.order_by(Case.first_seen.desc(), Case.id.desc()).limit(MAX_REQUESTS)


def _citizen_cases(session: Session, case_ids: Collection[int]) -> dict[int, str]:
    """case id -> the first citizen report's description, for the cases among these that have one."""
    found: dict[int, str] = {}
    if case_ids:
        rows = session.execute(select(CitizenReport.case_id, CitizenReport.description)
                               .where(CitizenReport.case_id.in_(case_ids)).order_by(CitizenReport.id))
        for case_id, text in rows:
            found.setdefault(case_id, text)
    return found


def find_requests(
    session: Session, reader: Reader, q: RequestQuery, *, links: Links, workflow: WorkflowSettings
) -> list[Record]:
    """The records the reader may see for the query, in the query's order."""
    cases = [c for c in session.scalars(_select(reader, q)) if case_visible(reader.scope, c)]
    citizen = _citizen_cases(session, [c.id for c in cases])
    merchant_ids = {c.merchant_id for c in cases if c.merchant_id}
    merchants = {m.id: m for m in session.scalars(select(Merchant).where(Merchant.id.in_(merchant_ids)))}
    records: list[Record] = []
    for case in cases:
        if published(case):
            records.append(request_record(case, merchant=merchants.get(case.merchant_id or ""), reader=reader,
                                          links=links, workflow=workflow, citizen_text=citizen.get(case.id)))
        elif q.ids is not None and case.status == CaseStatus.NEW and case.id in citizen:
            records.append(pending_record(case, workflow=workflow))
    return records
