"""Central storage: SQLAlchemy 2 typed models, portable between SQLite and PostgreSQL.

Every schema change goes through Alembic (`streetwatch/central/migrations`). Timestamps are stored
as UTC and always come back timezone-aware (SQLite has no time zones: see `UtcDateTime`).
Geometries are WKT text in lon/lat order (WGS84), the order GeoJSON and shapely use.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from streetwatch.central.case_status import ALL_STATUSES, OPEN_STATUSES

# The case statuses and their groups live in case_status.py; these plain-string copies stay for the
# case engine (cases.py), which compares them per candidate row.
CASE_STATUSES: tuple[str, ...] = tuple(s.value for s in ALL_STATUSES)
OPEN_CASE_STATUSES: tuple[str, ...] = tuple(s.value for s in OPEN_STATUSES)
ATTRIBUTION_METHODS: tuple[str, ...] = ("inside_zone", "nearest", "manual", "none")
MERCHANT_GRADES: tuple[str, ...] = ("red", "yellow", "green")
# A supervisor may close a case in the workflow without its verification (with a note); admins too.
USER_ROLES: tuple[str, ...] = ("reviewer", "supervisor", "admin")
SUPERVISOR_ROLES: tuple[str, ...] = ("supervisor", "admin")
AREA_LEVELS: tuple[str, ...] = ("city", "district", "street")
# Who opened a case: an edge camera's alert, or a citizen's report through Open311 POST.
CASE_SOURCES: tuple[str, ...] = ("camera", "citizen")

AttributionMethod = Literal["inside_zone", "nearest", "manual", "none"]

DEAD_LETTER_PAYLOAD_MAX_CHARS = 64 * 1024

# Stable constraint names so Alembic migrations (and SQLite batch mode) can address them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC timestamp: refuses naive values, stores UTC, returns aware UTC on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware UTC values")
        value = value.astimezone(UTC)
        # SQLite keeps text; drop the offset so string ordering equals time ordering.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonDocument = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Area(Base):
    """An administrative area (city > district > street); reviewers may be limited to one."""

    __tablename__ = "areas"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16), doc="city | district | street")
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("areas.id"), index=True)
    polygon_wkt: Mapped[str | None] = mapped_column(Text, doc="lon/lat WKT polygon")


class Merchant(Base):
    """A shop with its storefront responsibility zone (the pavement it answers for)."""

    __tablename__ = "merchants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300), default="")
    licence: Mapped[str] = mapped_column(String(100), default="")
    contact: Mapped[str] = mapped_column(String(200), default="")
    road: Mapped[str] = mapped_column(String(200), default="", index=True)
    zone_wkt: Mapped[str] = mapped_column(Text, doc="lon/lat WKT polygon")
    grade: Mapped[str] = mapped_column(String(8), default="green", doc="red | yellow | green")
    area_id: Mapped[str | None] = mapped_column(ForeignKey("areas.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class User(Base):
    """A reviewer or admin; `area_id` None means city-wide access."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="reviewer", doc="reviewer | admin")
    area_id: Mapped[str | None] = mapped_column(ForeignKey("areas.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    locale: Mapped[str | None] = mapped_column(
        String(16), doc="interface language chosen by the user (None: the browser's)"
    )


class ApiToken(Base):
    """A bearer token for the JSON API; only its hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class WebSession(Base):
    """One login of the review pages. The cookie holds a random secret; only its hash is stored, so
    logging out (or "log out everywhere") ends a session even if its cookie was copied."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class LoginFailure(Base):
    """One failed login, for the rate limit every web process shares (rows older than the window
    are deleted as new failures come in). `key` is a digest of (user name, client address)."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_failed_at", "key", "failed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class Case(Base):
    """One violation at one spot, fed by the alerts of one or more episodes, cameras and edges."""

    __tablename__ = "cases"
    __table_args__ = (
        # The case engine's candidate search: same violation, nearby latitude.
        Index("ix_cases_violation_lat", "violation", "lat"),
        # Cases without a location are matched by the camera zone that saw them.
        Index("ix_cases_camera_zone", "camera_id", "zone_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    violation: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), default="new", doc=" | ".join(CASE_STATUSES))
    lat: Mapped[float | None] = mapped_column(Float, doc="mean of the located alerts; None if none")
    lon: Mapped[float | None] = mapped_column(Float)
    location_count: Mapped[int] = mapped_column(Integer, default=0, doc="alerts averaged into lat/lon")
    camera_id: Mapped[str] = mapped_column(String(64), doc="the camera of the first alert")
    zone_id: Mapped[str] = mapped_column(String(64), doc="the edge zone of the first alert")
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    alert_count: Mapped[int] = mapped_column(Integer, default=0)
    episode_count: Mapped[int] = mapped_column(Integer, default=0)
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    attribution_method: Mapped[str] = mapped_column(String(16), default="none")
    attribution_distance_m: Mapped[float | None] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    evidence_sha256: Mapped[str | None] = mapped_column(String(64))
    area_id: Mapped[str | None] = mapped_column(ForeignKey("areas.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, doc="an episode is still open")
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    decided_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, doc="the last review decision (its undo window runs from here; the notice waits for it)"
    )
    # A Python default only (the migration gives old rows "camera"): a server default would make
    # every case INSERT fetch it back, one statement per case instead of one per batch.
    source: Mapped[str] = mapped_column(String(16), default="camera", doc=" | ".join(CASE_SOURCES))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


# The review queue: cases of a status by priority (high first), then oldest first.
Index("ix_cases_queue", Case.status, Case.priority.desc(), Case.first_seen)


class Episode(Base):
    """One violation episode as the edge saw it (first alert, reminders, end) and its case."""

    __tablename__ = "episodes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, doc="the alerts' episode_id")
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    edge_id: Mapped[str] = mapped_column(String(64))
    camera_id: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, doc="set by the `ended` alert")


class Alert(Base):
    """One received alert, stored once (its alert_id is the idempotency key).

    case_id is None only for a moving camera's `sighting` that no case has confirmed yet (a single
    pass); it gets its case when a later pass confirms the spot (see case_engine.SightingPolicy).
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_pending", "violation", "state", "observed_at"),
        Index("ix_alerts_delivery", "edge_id", "outbox_id", "seq"),
    )

    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    episode_id: Mapped[str] = mapped_column(String(64), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    edge_id: Mapped[str] = mapped_column(String(64))
    camera_id: Mapped[str] = mapped_column(String(64), index=True)
    source_kind: Mapped[str] = mapped_column(String(16))
    violation: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)
    zone_id: Mapped[str] = mapped_column(String(64))
    track_id: Mapped[str] = mapped_column(String(64))
    evidence_sha256: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDocument, doc="the alert minus evidence bytes")
    model_name: Mapped[str] = mapped_column(String(128))
    model_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # The box's delivery numbering (wire revision 1.1; None from older boxes): see delivery.py.
    outbox_id: Mapped[str | None] = mapped_column(String(64))
    seq: Mapped[int | None] = mapped_column(BigInteger)


class AuditLog(Base):
    """Every decision on a case: who, what, when, with details."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


class DeadLetter(Base):
    """A message ingest could not accept, with the reason; the payload is kept truncated."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    topic: Mapped[str] = mapped_column(String(512))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text, doc=f"first {DEAD_LETTER_PAYLOAD_MAX_CHARS} characters")
    # Read from the payload where it still says them: a refused alert is delivered, not lost.
    edge_id: Mapped[str | None] = mapped_column(String(64))
    outbox_id: Mapped[str | None] = mapped_column(String(64))
    seq: Mapped[int | None] = mapped_column(BigInteger)


Index("ix_dead_letters_delivery", DeadLetter.edge_id, DeadLetter.outbox_id, DeadLetter.seq)


class EdgeBox(Base):
    """An edge box as its retained status (`streetwatch/v1/status/{edge_id}`) last described it."""

    __tablename__ = "edge_boxes"

    edge_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), doc="online | offline")
    state_since: Mapped[datetime] = mapped_column(UtcDateTime)
    last_status_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(String(64))
    outbox_id: Mapped[str | None] = mapped_column(String(64))
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict, doc="the last status, bounded")


class DeliveryStream(Base):
    """One box's numbering (edge_id, outbox_id): how far every number is accounted for.

    `contiguous_seq`: 1..n are all stored (as alerts or dead letters) or recorded as lost;
    `highest_seq`: the highest number seen (stored, or in the box's status); a gap is open while
    highest > contiguous, since `gap_since`; `requested_at`: the last resend command for it.
    """

    __tablename__ = "delivery_streams"

    edge_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    outbox_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    contiguous_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    highest_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    gap_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    last_alert_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class DeliveryLoss(Base):
    """Numbers a box could no longer resend (past its retention): alerts lost for good, reported."""

    __tablename__ = "delivery_losses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    edge_id: Mapped[str] = mapped_column(String(64), index=True)
    outbox_id: Mapped[str] = mapped_column(String(64))
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    found_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class CaseLock(Base):
    """A lock row per (violation, grid cell) that case decisions take before reading cases.

    Upserting the row (INSERT .. ON CONFLICT DO UPDATE) row-locks it until commit on PostgreSQL;
    two workers deciding about the same spot thereby run one after the other. See cases.py.
    """

    __tablename__ = "case_locks"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    touched_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


# ---------------------------------------------------------------- the city's workflow (issue 5)
# Rules live in streetwatch/central/workflow/rules.py; these rows are what the rules act on.
TIMER_STATUSES: tuple[str, ...] = ("pending", "done")
NOTIFICATION_STATUSES: tuple[str, ...] = ("pending", "sent", "failed")


class CaseTimer(Base):
    """A deadline stored in the database (so it survives a restart), scanned by the workflow worker."""

    __tablename__ = "case_timers"
    __table_args__ = (Index("ix_case_timers_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32), doc="rectify")
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending", doc="pending | done")
    outcome: Mapped[str | None] = mapped_column(String(16), doc="rectified | inspection | cancelled")
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Notification(Base):
    """The durable outbox: a message to a merchant, written in the case's transaction, sent later."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32), doc="warning | rectification_notice | penalty_notice")
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending", doc="pending | sent | failed")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Strike(Base):
    """One confirmed case of a merchant in the three-strikes sequence (step 1, 2 or 3)."""

    __tablename__ = "strikes"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32), doc="warning | rectification_notice | penalty")
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    penalty_decision: Mapped[str | None] = mapped_column(Text, doc="required before a step-3 case closes")
    penalty_by: Mapped[str | None] = mapped_column(String(64))
    penalty_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Inspection(Base):
    """An inspector's visit: sent for a case nobody rectified, or a routine visit done by grade."""

    __tablename__ = "inspections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    reason: Mapped[str] = mapped_column(String(16), doc="case | routine")
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="open", doc="open | done")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    done_by: Mapped[str | None] = mapped_column(String(64))
    assignee: Mapped[str | None] = mapped_column(String(64), doc="the inspector the visit is given to")
    result: Mapped[str | None] = mapped_column(String(16), doc="passed | failed | done (a routine visit)")
    note: Mapped[str | None] = mapped_column(Text, doc="the inspector's note")
    photo_sha256: Mapped[str | None] = mapped_column(
        String(64), index=True, doc="the inspector's photo, stored like evidence"
    )


class Complaint(Base):
    """A citizen complaint about a merchant (counts towards its grade)."""

    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    source: Mapped[str] = mapped_column(String(64), default="")
    note: Mapped[str] = mapped_column(Text, default="")


class Hotspot(Base):
    """An address or zone with many cases; shown from the threshold until its count is back to zero."""

    __tablename__ = "hotspots"

    key: Mapped[str] = mapped_column(String(300), primary_key=True, doc="merchant:<id> | zone:<camera>/<zone>")
    label: Mapped[str] = mapped_column(String(300), default="")
    road: Mapped[str] = mapped_column(String(200), default="", index=True)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    case_count: Mapped[int] = mapped_column(Integer, default=0, doc="confirmed cases in the window")
    unreviewed_count: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0", doc="new cases there, shown apart, not counted"
    )
    since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


# ---------------------------------------------------------------- Open311 and citizen reports (issue 21)


class Open311Client(Base):
    """An app or partner system that may POST citizen reports (GeoReport `api_key`); only its hash is stored."""

    __tablename__ = "open311_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class CitizenReport(Base):
    """One citizen report (Open311 POST requests) and the case it became or joined.

    The reporter's contact (email, phone, names, device and account ids) is private: it is never
    published through Open311 nor shown in the queue; `reporter_key` (a digest of the normalised
    contact) groups a reporter's reports for the city's reward scheme. `token` is the spec's
    token: whoever holds it can look up the request id.
    """

    __tablename__ = "citizen_reports"
    __table_args__ = (Index("ix_citizen_reports_client_created", "client_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("open311_clients.id"))
    service_code: Mapped[str] = mapped_column(String(32))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    address_string: Mapped[str] = mapped_column(String(300), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    media_sha256: Mapped[str | None] = mapped_column(String(64), doc="the uploaded photo, stored like evidence")
    media_url: Mapped[str | None] = mapped_column(String(2000), doc="a photo URL the client gave (never fetched)")
    email: Mapped[str] = mapped_column(String(254), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    device_id: Mapped[str] = mapped_column(String(100), default="")
    account_id: Mapped[str] = mapped_column(String(100), default="")
    reporter_key: Mapped[str | None] = mapped_column(String(64), index=True)
    joined_existing: Mapped[bool] = mapped_column(Boolean, default=False, doc="de-duplicated into an open case")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    verified_by: Mapped[str | None] = mapped_column(String(64))
