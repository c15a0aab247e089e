"""Pydantic models of the JSON API: `XPublic` for responses, `XRequest` for bodies, lists as {data, count}."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streetwatch.central.models import Alert, AuditLog, Case, Merchant
from streetwatch.central.review import DISMISS_REASONS

log = logging.getLogger(__name__)

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    count: int = Field(description="matching items (capped: see count_capped)")
    count_capped: bool = Field(default=False, description="true when there are more than `count`")
    next_cursor: str | None = Field(default=None, description="pass as `after` for the next page")


class AttributionPublic(BaseModel):
    method: str = Field(description="inside_zone | nearest | manual | none")
    distance_m: float | None


class MerchantBrief(BaseModel):
    id: str
    name: str
    address: str


class CasePublic(BaseModel):
    id: int
    violation: str
    status: str
    priority: int
    lat: float | None
    lon: float | None
    area_id: str | None
    first_seen: datetime
    last_seen: datetime
    alert_count: int
    merchant: MerchantBrief | None
    attribution: AttributionPublic
    evidence_url: str | None
    merged_into_id: int | None
    camera_id: str = Field(description="the camera of the case's first alert")

    @classmethod
    def of(cls, case: Case, merchant: Merchant | None) -> CasePublic:
        return cls(
            id=case.id,
            violation=case.violation,
            status=case.status,
            priority=case.priority,
            lat=case.lat,
            lon=case.lon,
            area_id=case.area_id,
            first_seen=case.first_seen,
            last_seen=case.last_seen,
            alert_count=case.alert_count,
            merchant=MerchantBrief(id=merchant.id, name=merchant.name, address=merchant.address)
            if merchant is not None
            else None,
            attribution=AttributionPublic(method=case.attribution_method, distance_m=case.attribution_distance_m),
            evidence_url=f"/evidence/{case.evidence_sha256}" if case.evidence_sha256 else None,
            merged_into_id=case.merged_into_id,
            camera_id=case.camera_id,
        )


class DetectedObjectPublic(BaseModel):
    cls: str = Field(description="detector class name, e.g. car, person")
    score: float
    bbox: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in evidence-image pixels")


class EvidenceSizePublic(BaseModel):
    width: int = Field(description="evidence image width in pixels (the grid of `objects[].bbox`)")
    height: int


def _objects_of(alert: Alert) -> list[DetectedObjectPublic]:
    """The stored alert's detections; rows from before the wire schema had them give []."""
    raw = (alert.payload or {}).get("objects")
    if not isinstance(raw, list):
        return []
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(DetectedObjectPublic.model_validate(item))
        except ValidationError:
            # Ingest validated it against the wire schema; a bad entry means an old or hand-made row,
            # and one bad box should not turn the whole case into a 500.
            log.warning("alert %s: stored objects[%d] is not {cls, score, bbox}; left out", alert.alert_id, i)
    return out


def _announces_clean(alert: Alert) -> bool:
    media = (alert.payload or {}).get("media")
    return isinstance(media, list) and any(isinstance(m, dict) and m.get("kind") == "clean" for m in media)


def _evidence_size_of(alert: Alert) -> EvidenceSizePublic | None:
    """The evidence image's size from the stored payload; None without evidence or for older rows."""
    raw = (alert.payload or {}).get("evidence")
    if not alert.evidence_sha256 or not isinstance(raw, dict):
        return None
    try:
        return EvidenceSizePublic.model_validate(raw)
    except ValidationError:
        return None


class AlertPublic(BaseModel):
    alert_id: str
    episode_id: str
    case_id: int | None
    edge_id: str
    camera_id: str
    violation: str
    state: str
    observed_at: datetime
    confidence: float
    lat: float | None
    lon: float | None
    accuracy_m: float | None
    evidence_url: str | None
    objects: list[DetectedObjectPublic] = Field(
        default_factory=list, description="the detections behind the alert, boxes on the evidence image"
    )
    evidence: EvidenceSizePublic | None = Field(
        default=None, description="size of the evidence image (null: no evidence, or an alert stored without it)"
    )
    clean_frame_url: str | None = Field(
        default=None, description="the unannotated frame behind the evidence (null: the edge sent none)"
    )

    @classmethod
    def of(cls, alert: Alert) -> AlertPublic:
        return cls(
            alert_id=alert.alert_id,
            episode_id=alert.episode_id,
            case_id=alert.case_id,
            edge_id=alert.edge_id,
            camera_id=alert.camera_id,
            violation=alert.violation,
            state=alert.state,
            observed_at=alert.observed_at,
            confidence=alert.confidence,
            lat=alert.lat,
            lon=alert.lon,
            accuracy_m=alert.accuracy_m,
            evidence_url=f"/evidence/{alert.evidence_sha256}" if alert.evidence_sha256 else None,
            objects=_objects_of(alert),
            evidence=_evidence_size_of(alert),
            clean_frame_url=f"/media/{alert.alert_id}/clean" if _announces_clean(alert) else None,
        )


class AuditPublic(BaseModel):
    id: int
    actor: str
    action: str
    detail: dict[str, object]
    at: datetime

    @classmethod
    def of(cls, entry: AuditLog) -> AuditPublic:
        return cls(id=entry.id, actor=entry.actor, action=entry.action, detail=dict(entry.detail or {}), at=entry.at)


class CaseDetailPublic(CasePublic):
    alerts: list[AlertPublic]
    audit: list[AuditPublic]


class MerchantPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    address: str
    licence: str
    contact: str
    road: str
    grade: str
    area_id: str | None
    zone_wkt: str = Field(description="storefront responsibility zone, lon/lat WKT")


class MergeCandidatePublic(BaseModel):
    """An open case the case could be merged into."""

    id: int
    violation: str
    status: str
    first_seen: datetime
    alert_count: int
    distance_m: float | None = Field(description="metres between the two cases (null: one has no position)")
    same_merchant: bool
    merchant: MerchantBrief | None
    evidence_url: str | None

    @classmethod
    def of(
        cls, case: Case, merchant: Merchant | None, distance_m: float | None, *, same_merchant: bool
    ) -> MergeCandidatePublic:
        return cls(
            id=case.id,
            violation=case.violation,
            status=case.status,
            first_seen=case.first_seen,
            alert_count=case.alert_count,
            distance_m=distance_m,
            same_merchant=same_merchant,
            merchant=MerchantBrief(id=merchant.id, name=merchant.name, address=merchant.address) if merchant else None,
            evidence_url=f"/evidence/{case.evidence_sha256}?case_id={case.id}" if case.evidence_sha256 else None,
        )


class MerchantCandidatePublic(BaseModel):
    """A merchant the case could be reassigned to."""

    id: str
    name: str
    address: str
    road: str
    distance_m: float | None = Field(description="metres from the case to the merchant's zone (0 inside)")

    @classmethod
    def of(cls, merchant: Merchant, distance_m: float | None) -> MerchantCandidatePublic:
        return cls(
            id=merchant.id, name=merchant.name, address=merchant.address, road=merchant.road, distance_m=distance_m
        )


class DismissRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(
        min_length=1,
        max_length=200,
        description="why the case is not a violation, one of: " + ", ".join(DISMISS_REASONS),
        json_schema_extra={"enum": list(DISMISS_REASONS)},
    )


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    into_case_id: int = Field(gt=0, le=2**31 - 1, description="the case that absorbs this one")


class ReassignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    merchant_id: str = Field(min_length=1, max_length=64)


class ActionPublic(BaseModel):
    case_id: int
    action: str
    status: str
    audit_id: int
    at: datetime
    message: str


NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*$"


class TokenCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # No control characters: PostgreSQL refuses NUL in text (a 500 before this), and none belong in a name.
    username: str = Field(
        min_length=1, max_length=64, pattern=NO_CONTROL_CHARS, description="the user the token acts as"
    )
    name: str = Field(default="", max_length=100, pattern=NO_CONTROL_CHARS, description="what the token is for")


class TokenCreatedPublic(BaseModel):
    id: int
    username: str
    name: str
    token: str = Field(description="the secret: shown once, store it now")


class UserPublic(BaseModel):
    id: int
    username: str
    role: str
    area_id: str | None


# ------------------------------------------------------------------------------------ workflow


class HistoryEntryPublic(BaseModel):
    action: str
    by: str = Field(description="the reviewer's user name, or `workflow` for the worker")
    at: str = Field(description="ISO 8601 time with offset")
    detail: dict[str, object]


class StepPublic(BaseModel):
    case_id: int
    status: str
    strike_step: int | None = Field(description="1 warning, 2 rectification notice, 3 penalty; null: no strike")
    strike_action: str | None
    penalty_decision: str | None
    close_blocker: str | None = Field(description="why the case may not close yet (null: it may)")
    rectify_by: datetime | None = Field(default=None, description="the pending rectification deadline")
    history: list[HistoryEntryPublic] = Field(default_factory=list, description="the case's audit log, oldest first")


class PenaltyRequest(BaseModel):
    decision: str = Field(min_length=1, max_length=500, description="the penalty decided for a third strike")


class VerifyRequest(BaseModel):
    passed: bool
    note: str = Field(default="", max_length=500)


class CloseRequest(BaseModel):
    note: str = Field(default="", max_length=500)
    override: bool = Field(
        default=False, description="a supervisor closes a dispatched case without its verification (needs a note)"
    )


class ComplaintRequest(BaseModel):
    source: str = Field(default="hotline", max_length=64)
    note: str = Field(default="", max_length=500)


class ComplaintCreatedPublic(BaseModel):
    complaint_id: int


class InspectionDuePublic(BaseModel):
    merchant_id: str | None
    merchant_name: str
    grade: str = Field(description="red | yellow | green")
    frequency: str = Field(description="daily | weekly | monthly (from the grade)")
    reason: str = Field(description="routine | case (a case nobody rectified)")
    due_at: str = Field(description="ISO 8601 time with offset")
    case_id: int | None = None
    inspection_id: int | None = None
    assignee: str | None = Field(default=None, description="the inspector the visit is given to")


class HotspotPublic(BaseModel):
    key: str = Field(description="merchant:<id> | zone:<camera>/<zone>")
    label: str
    road: str
    lat: float | None
    lon: float | None
    case_count: int = Field(description="confirmed cases in the window (what makes a hotspot)")
    unreviewed_count: int = Field(default=0, description="new cases there nobody reviewed yet: not counted")
    since: str | None = Field(description="ISO 8601 time it became a hotspot")


class RoadGradePublic(BaseModel):
    road: str
    grade: str = Field(description="red | yellow | green")
    red: int = Field(description="merchants on the road by grade ...")
    yellow: int
    green: int
    hotspots: int = Field(description="... and its active hotspots")
