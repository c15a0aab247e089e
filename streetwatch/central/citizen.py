"""Citizen reports (Open311 POST requests) become cases, and reviewers verify them.

A report goes through the case engine like a camera's alert (case_engine.py): it is one alert of a
one-alert episode from the pseudo camera `citizen` at the reported spot, so it is de-duplicated by
the engine's own nearby search (an open case of the same violation within `cases.radius_m` and
`max_gap_s` takes it in, whether a camera or another citizen opened it), attributed to a merchant
at `finish()` like any case, locked like any ingest transaction, and then follows the same review
and workflow. A case it opens has `source = "citizen"`. Its episode stays open: nobody watches the
spot, so at the rectification deadline the workflow sends an inspector rather than assuming the
merchant fixed it.

The reporter's contact is kept in `citizen_reports` only (never in the alert payload, the queue or
Open311's answers). `reporter_key` groups a reporter's reports for the city's reward scheme; the
verified-report count per reporter is exported as CSV (csv_export.py).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import shapely
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.case_engine import Arrival, CaseEngine
from streetwatch.central.case_service import ActionOutcome, CaseService, Reviewer
from streetwatch.central.case_status import VIOLATION_STATUSES, CaseStatus
from streetwatch.central.config import CentralSettings
from streetwatch.central.csv_export import to_csv
from streetwatch.central.db import session_scope
from streetwatch.central.errors import Conflict
from streetwatch.central.evidence_store import evidence_store
from streetwatch.central.models import AuditLog, Case, CitizenReport, Merchant
from streetwatch.edge.alerts import VIOLATIONS, Location, ModelRef
from streetwatch.edge.alerts import Alert as WireAlert

log = logging.getLogger(__name__)

CITIZEN_EDGE = "open311"
CITIZEN_CAMERA = "citizen"
CITIZEN_MODEL = ModelRef(name="citizen-report", sha256="0" * 64)  # no detector: a person saw it
REPORT_ACCURACY_M = 10.0  # a phone's GPS fix, about
MAX_DESCRIPTION_CHARS = 4000  # the spec's limit
MAX_ATTRIBUTES = 10
# What a reviewer may verify: a case somebody confirmed as a violation (closed ones included).
VERIFIABLE = (*VIOLATION_STATUSES, CaseStatus.CLOSED)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,60}$")
_PHONE = re.compile(r"^\+?[0-9 ()\-]{3,40}$")
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")


class ReportRejected(ValueError):
    """A report that is refused (Open311 400): the message names the field."""


class TooManyReports(ReportRejected):
    """The client's hourly POST allowance is used up (Open311 429: the spec lists no code for it)."""


@dataclass(frozen=True)
class Attribute:
    """A question a service asks (GeoReport service definitions)."""

    code: str
    datatype: str  # string | singlevaluelist
    description: str
    order: int
    required: bool = False
    values: tuple[tuple[str, str], ...] = ()
    max_chars: int = 200


SERVICE_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("shop_name", "string", "店铺名称（如知道） the shop in front of which it is, if known", 1),
    Attribute(
        "duration", "singlevaluelist", "持续多久 how long it has been there", 2,
        values=(("now", "刚刚发现 just now"), ("30min", "超过30分钟 over 30 minutes"), ("daily", "每天都有 every day")),
    ),
)


@dataclass(frozen=True)
class Contact:
    """The reporter, as the client sent it: private, never published."""

    email: str = ""
    phone: str = ""
    first_name: str = ""
    last_name: str = ""
    device_id: str = ""
    account_id: str = ""

    def reporter_key(self) -> str | None:
        """A stable digest of who reported (email, else phone, else account, else device); None: anonymous."""
        for kind, value in (("email", self.email.casefold()), ("phone", re.sub(r"\D", "", self.phone)),
                            ("account", self.account_id), ("device", self.device_id)):
            if value:
                return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()
        return None


@dataclass(frozen=True)
class ReportIn:
    """A validated report (`parse_report`), before it has a place."""

    service_code: str
    lat: float | None
    lon: float | None
    address_string: str = ""
    address_id: str = ""
    description: str = ""
    media_url: str | None = None
    contact: Contact = field(default_factory=Contact)
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Submitted:
    token: str
    case_id: int
    joined_existing: bool


# ---------------------------------------------------------------- validation (pure)


def clean_text(value: str, *, name: str, max_chars: int, multiline: bool = False) -> str:
    """The text without control characters (newlines kept where `multiline`); refused when too long."""
    if len(value) > max_chars:
        raise ReportRejected(f"{name}: {len(value)} characters, expected at most {max_chars}")
    text = _CONTROL.sub("", value)
    if not multiline:
        text = " ".join(text.split())
    return text.strip()


def _coordinate(raw: str | None, *, name: str, bound: float) -> float | None:
    if raw is None or not raw.strip():
        return None
    if len(raw) > 40:
        raise ReportRejected(f"{name}: expected a number of degrees, got {len(raw)} characters")
    try:
        value = float(raw)
    except ValueError:
        raise ReportRejected(f"{name}: expected a number of degrees, got {raw[:40]!r}") from None
    if not math.isfinite(value) or abs(value) > bound:
        raise ReportRejected(f"{name}: expected a number between -{bound:g} and {bound:g}, got {raw[:40]!r}")
    return value


def _attributes(fields: Mapping[str, str]) -> dict[str, str]:
    """`attribute[code]=value` fields, checked against the service definition."""
    known = {a.code: a for a in SERVICE_ATTRIBUTES}
    given = {k[len("attribute["):-1]: v for k, v in fields.items() if k.startswith("attribute[") and k.endswith("]")}
    if len(given) > MAX_ATTRIBUTES:
        raise ReportRejected(f"attribute: at most {MAX_ATTRIBUTES} attributes, got {len(given)}")
    result = {}
    for code, value in given.items():
        attribute = known.get(code)
        if attribute is None:
            raise ReportRejected(f"attribute[{code[:40]}]: unknown attribute (expected one of {', '.join(known)})")
        value = clean_text(value, name=f"attribute[{code}]", max_chars=attribute.max_chars)
        if attribute.values and value not in {key for key, _ in attribute.values}:
            keys = ", ".join(key for key, _ in attribute.values)
            raise ReportRejected(f"attribute[{code}]: expected one of {keys}, got {value[:40]!r}")
        result[code] = value
    for attribute in SERVICE_ATTRIBUTES:
        if attribute.required and attribute.code not in result:
            raise ReportRejected(f"attribute[{attribute.code}]: required")
    return result


def _contact(fields: Mapping[str, str]) -> Contact:
    email = clean_text(fields.get("email", ""), name="email", max_chars=254)
    if email and not _EMAIL.match(email):
        raise ReportRejected(f"email: expected an address like name@example.org, got {email[:60]!r}")
    phone = clean_text(fields.get("phone", ""), name="phone", max_chars=40)
    if phone and not _PHONE.match(phone):
        raise ReportRejected(f"phone: expected digits (with + ( ) - or spaces), got {phone[:40]!r}")
    return Contact(
        email=email, phone=phone,
        first_name=clean_text(fields.get("first_name", ""), name="first_name", max_chars=100),
        last_name=clean_text(fields.get("last_name", ""), name="last_name", max_chars=100),
        device_id=clean_text(fields.get("device_id", ""), name="device_id", max_chars=100),
        account_id=clean_text(fields.get("account_id", ""), name="account_id", max_chars=100),
    )


def parse_report(fields: Mapping[str, str]) -> ReportIn:
    """The POST's text fields as a report; ReportRejected naming the first bad field."""
    code = fields.get("service_code", "").strip()
    if not code:
        raise ReportRejected("service_code: required (GET services lists them)")
    if code not in VIOLATIONS:
        raise ReportRejected(f"service_code: expected one of {', '.join(VIOLATIONS)}, got {code[:40]!r}")
    lat = _coordinate(fields.get("lat"), name="lat", bound=90)
    lon = _coordinate(fields.get("long"), name="long", bound=180)
    if (lat is None) != (lon is None):
        raise ReportRejected("lat, long: send both or neither")
    address = clean_text(fields.get("address_string", ""), name="address_string", max_chars=300)
    address_id = clean_text(fields.get("address_id", ""), name="address_id", max_chars=64)
    if lat is None and not address and not address_id:
        raise ReportRejected("lat, long: required unless address_string or address_id names a known address")
    media_url = clean_text(fields.get("media_url", ""), name="media_url", max_chars=2000) or None
    if media_url and not _URL.match(media_url):
        raise ReportRejected(f"media_url: expected an http(s) URL, got {media_url[:60]!r}")
    return ReportIn(
        service_code=code, lat=lat, lon=lon, address_string=address, address_id=address_id,
        description=clean_text(fields.get("description", ""), name="description",
                               max_chars=MAX_DESCRIPTION_CHARS, multiline=True),
        media_url=media_url, contact=_contact(fields), attributes=_attributes(fields),
    )


# ---------------------------------------------------------------- a report becomes (part of) a case


def locate(session: Session, report: ReportIn) -> tuple[float, float]:
    """The report's (lat, lon): its own, else the zone of the merchant its address names."""
    if report.lat is not None and report.lon is not None:
        return report.lat, report.lon
    merchant = None
    if report.address_id:
        merchant = session.get(Merchant, report.address_id)
    if merchant is None and report.address_string:
        wanted = report.address_string.casefold()
        merchant = session.scalars(
            select(Merchant).where(func.lower(Merchant.address) == wanted).order_by(Merchant.id).limit(1)
        ).first()
    if merchant is None:
        raise ReportRejected("address_string: not a known address; send lat and long")
    point = shapely.from_wkt(merchant.zone_wkt).representative_point()
    return float(point.y), float(point.x)


def citizen_alert(report: ReportIn, *, token: str, lat: float, lon: float, now: datetime) -> WireAlert:
    """The report as the one alert of its own episode (what the case engine decides on)."""
    return WireAlert(
        alert_id=f"citizen-{token}", episode_id=f"citizen-{token}", state="active",
        edge_id=CITIZEN_EDGE, camera_id=CITIZEN_CAMERA, source_kind="fixed", violation=report.service_code,  # type: ignore[arg-type]
        started_at=now, observed_at=now, dwell_s=0.0, confidence=1.0,
        location=Location(lat=lat, lon=lon, accuracy_m=REPORT_ACCURACY_M),
        zone_id=CITIZEN_CAMERA, track_id=token[:16], model=CITIZEN_MODEL,
    )


def _check_allowance(session: Session, client_id: int, *, per_hour: int, now: datetime) -> None:
    recent = session.scalar(
        select(func.count(CitizenReport.id)).where(
            CitizenReport.client_id == client_id, CitizenReport.created_at >= now - timedelta(hours=1)
        )
    )
    if (recent or 0) >= per_hour:
        raise TooManyReports(f"api_key: this client sent {per_hour} reports in the last hour; try again later")


def submit_report(
    factory: sessionmaker[Session], settings: CentralSettings, report: ReportIn, *,
    client_id: int | None, photo_jpeg: bytes | None, now: datetime,
) -> Submitted:
    """Store the report and fold it into a case (a new one, or the open case at that spot)."""
    sha = evidence_store(settings.evidence_dir).put(photo_jpeg) if photo_jpeg else None
    token = secrets.token_hex(16)
    with session_scope(factory, write_lock=True) as session:
        if client_id is not None:
            _check_allowance(session, client_id, per_hour=settings.open311.max_posts_per_hour, now=now)
        lat, lon = locate(session, report)
        alert = citizen_alert(report, token=token, lat=lat, lon=lon, now=now)
        engine = CaseEngine.begin(session, [alert], settings=settings)
        decision = engine.decide(Arrival(alert, evidence_sha256=sha, may_hold_nul=False))
        if decision.case_id is None:  # pragma: no cover - an `active` alert always gets a case
            raise RuntimeError("citizen report: the case engine gave no case")
        case = engine.case(decision.case_id)
        if decision.created:
            case.source = "citizen"
        engine.finish()
        session.add(_report_row(report, token=token, case_id=case.id, client_id=client_id, lat=lat, lon=lon,
                                sha=sha, joined=not decision.created, now=now))
        session.add(AuditLog(case_id=case.id, actor=f"open311:{client_id}", action="citizen_report",
                             detail={"joined_existing": not decision.created, "photo": sha is not None}, at=now))
    log.info("case %d: citizen report (%s, client %s, %s)", case.id, report.service_code, client_id,
             "joined the open case there" if not decision.created else "new case")
    return Submitted(token=token, case_id=case.id, joined_existing=not decision.created)


def _report_row(
    report: ReportIn, *, token: str, case_id: int, client_id: int | None, lat: float, lon: float,
    sha: str | None, joined: bool, now: datetime,
) -> CitizenReport:
    c = report.contact
    return CitizenReport(
        token=token, case_id=case_id, client_id=client_id, service_code=report.service_code, lat=lat, lon=lon,
        address_string=report.address_string, description=report.description, attributes=dict(report.attributes),
        media_sha256=sha, media_url=report.media_url, email=c.email, phone=c.phone, first_name=c.first_name,
        last_name=c.last_name, device_id=c.device_id, account_id=c.account_id, reporter_key=c.reporter_key(),
        joined_existing=joined, created_at=now,
    )


def reports_of(session: Session, case: Case) -> list[CitizenReport]:
    """The citizen reports a case stands for: its own and those of cases merged into it."""
    merged = select(Case.id).where(Case.merged_into_id == case.id)
    return list(session.scalars(
        select(CitizenReport).where(or_(CitizenReport.case_id == case.id, CitizenReport.case_id.in_(merged)))
        .order_by(CitizenReport.id)
    ))


# ---------------------------------------------------------------- verification and the reward count


class CitizenService(CaseService):
    """A reviewer verifies the citizen reports of a confirmed case (核实): each counts for its reporter."""

    def verify(self, case_id: int, *, reviewer: Reviewer) -> ActionOutcome:
        with self._case_action(case_id, reviewer) as (session, case):
            reports = reports_of(session, case)
            if not reports:
                raise Conflict(f"case {case.id} has no citizen report to verify", code="no_citizen_report",
                               case_id=case.id)
            if case.status not in VERIFIABLE or case.merged_into_id is not None:
                raise Conflict(f"case {case.id} is {case.status}; confirm it before verifying its reports",
                               code="wrong_status", case_id=case.id, status=case.status)
            waiting = [r for r in reports if r.verified_at is None]
            if not waiting:
                raise Conflict(f"case {case.id}: its citizen reports are already verified",
                               code="already_verified", case_id=case.id)
            at = self._clock()
            for report in waiting:
                report.verified_at, report.verified_by = at, reviewer.username
            return self._audit(session, case, reviewer, "verify_report", {"reports": [r.id for r in waiting]})


REPORTER_COLUMNS = ("reporter", "email", "phone", "first_name", "last_name", "account_id", "device_id",
                    "reports", "verified_reports", "last_verified_at")


def reporter_rows(session: Session) -> list[dict[str, object]]:
    """One row per reporter (anonymous reports are not counted): reports, verified ones, the contact
    of their latest report; most verified first."""
    latest = (select(CitizenReport.reporter_key, func.max(CitizenReport.id).label("last_id"))
              .where(CitizenReport.reporter_key.is_not(None)).group_by(CitizenReport.reporter_key).subquery())
    counts = (select(CitizenReport.reporter_key, func.count(CitizenReport.id).label("reports"),
                     func.count(CitizenReport.verified_at).label("verified"),
                     func.max(CitizenReport.verified_at).label("last_verified"))
              .where(CitizenReport.reporter_key.is_not(None)).group_by(CitizenReport.reporter_key).subquery())
    rows = session.execute(
        select(CitizenReport, counts.c.reports, counts.c.verified, counts.c.last_verified)
        .join(latest, latest.c.last_id == CitizenReport.id)
        .join(counts, counts.c.reporter_key == CitizenReport.reporter_key)
        .order_by(counts.c.verified.desc(), CitizenReport.reporter_key)
    )
    return [
        {"reporter": r.reporter_key[:16] if r.reporter_key else "", "email": r.email, "phone": r.phone,
         "first_name": r.first_name, "last_name": r.last_name, "account_id": r.account_id,
         "device_id": r.device_id, "reports": int(reports), "verified_reports": int(verified),
         "last_verified_at": _iso(last)}
        for r, reports, verified, last in rows
    ]


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value) if value else ""  # SQLite's max() of a timestamp comes back as text


def reporters_csv(session: Session) -> str:
    return to_csv(REPORTER_COLUMNS, reporter_rows(session))
