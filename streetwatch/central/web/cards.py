"""View models of the queue: one `CaseCard` per case with everything its card shows, and the pure
rules behind what it says: why a case looks weak, what its priority is made of, how long it waited,
which evidence frames it has (with the boxes to draw on them)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import shapely

from streetwatch.central.cases import PRIORITY_ALERTS_CAP, PRIORITY_DWELL_CAP, PRIORITY_DWELL_STEP_S
from streetwatch.central.media import announced
from streetwatch.central.models import Alert, Case, Merchant
from streetwatch.central.web.mapsvg import METRES_PER_DEG_LAT, SvgMap, ZoneShape, build_map
from streetwatch.edge.alerts import MediaRef

ALERTS_PER_CARD = 5
SUGGEST_WITHIN_M = 200.0  # an unattributed case suggests the nearest merchant this close


@dataclass(frozen=True)
class AlertRow:
    alert_id: str
    edge_id: str
    camera_id: str
    observed_at: datetime
    confidence: float
    dwell_s: float


@dataclass(frozen=True)
class Box:
    """A detection drawn on a frame, in the frame's pixels."""

    label: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float
    emphasis: str = "subject"  # `context`: in view, not what the violation is about (drawn thin)


@dataclass(frozen=True)
class EvidenceFrame:
    """One image of a case as the viewer shows it: the whole frame, its size, what to draw on it.
    Today one per alert (its evidence JPEG and the boxes of its objects); an edge evidence set (several
    frames, zone geometry, a clip) adds frames and `zone` without changing the viewer."""

    sha256: str
    width: int
    height: int
    observed_at: datetime
    camera_id: str
    alert_id: str
    boxes: tuple[Box, ...] = ()
    zone: tuple[tuple[float, float], ...] = ()  # the rule zone's polygon in frame pixels, where known
    moment: str = ""  # an evidence set's frame: `first seen`, `confirmed`, `latest` (labels.MOMENTS)
    media_kind: str | None = None  # served from /media/{alert_id}/{kind}; None: /evidence/{sha256}


@dataclass(frozen=True)
class AlertSet:
    """An alert's evidence set beyond its frames (wire 1.2): the subject's crop and the clip."""

    alert_id: str
    observed_at: datetime
    camera_id: str
    crop: bool
    clip: bool
    clip_frames: int | None = None
    clip_duration_s: float | None = None


@dataclass(frozen=True)
class PriorityParts:
    """A case's queue priority and what it is made of (cases.priority_of)."""

    total: int
    weight: int
    alerts: int
    dwell: int
    other: int  # e.g. kept from a merged case's higher priority


@dataclass(frozen=True)
class Suggestion:
    merchant_id: str
    name: str
    distance_m: float


@dataclass(frozen=True)
class CaseCard:
    id: int
    violation: str
    status: str
    priority: PriorityParts
    first_seen: datetime
    last_seen: datetime
    age: timedelta
    overdue: bool
    alert_count: int
    lat: float | None
    lon: float | None
    area_name: str | None
    camera_id: str
    evidence_sha256: str | None
    merchant_id: str | None
    merchant_name: str | None
    merchant_address: str | None
    attribution_method: str
    attribution_distance_m: float | None
    alerts: tuple[AlertRow, ...]
    more_alerts: int
    map: SvgMap | None
    merged_into_id: int | None
    frames: tuple[EvidenceFrame, ...] = ()
    sets: tuple[AlertSet, ...] = ()
    weak: tuple[str, ...] = ()  # labels.WEAK keys
    suggestion: Suggestion | None = None
    best_confidence: float | None = None
    zones: tuple[ZoneShape, ...] = field(default=(), repr=False)
    source: str = "camera"  # models.CASE_SOURCES
    citizen: tuple[CitizenNote, ...] = ()  # the citizen reports behind the case (no contact: it is private)

    @property
    def verifiable(self) -> bool:
        """A reviewer may verify its citizen reports now (citizen.CitizenService.verify)."""
        confirmed = self.status in ("confirmed", "notified", "rectified", "escalated", "closed")
        return confirmed and self.merged_into_id is None and any(n.verified_at is None for n in self.citizen)


@dataclass(frozen=True)
class CitizenNote:
    """One citizen report as the desk shows it: what they wrote and when, and whether it is verified."""

    id: int
    description: str
    created_at: datetime
    verified_at: datetime | None
    verified_by: str | None


def _alert_row(alert: Alert) -> AlertRow:
    payload = alert.payload or {}
    dwell = payload.get("dwell_s", 0.0)
    return AlertRow(
        alert_id=alert.alert_id,
        edge_id=alert.edge_id,
        camera_id=alert.camera_id,
        observed_at=alert.observed_at,
        confidence=alert.confidence,
        dwell_s=float(dwell) if isinstance(dwell, int | float) else 0.0,
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _boxes(payload: dict[str, object]) -> tuple[Box, ...]:
    boxes = []
    raw = payload.get("objects")
    marked = payload.get("subjects")  # wire 1.2; older alerts: every box is the subject
    subjects = {i for i in marked if isinstance(i, int)} if isinstance(marked, list) else None
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(item, dict) or not isinstance(item.get("bbox"), list | tuple) or len(item["bbox"]) != 4:
            continue
        coords = [_number(v) for v in item["bbox"]]
        if any(c is None for c in coords):
            continue
        x1, y1, x2, y2 = coords  # type: ignore[misc]
        emphasis = "subject" if subjects is None or index in subjects else "context"
        boxes.append(Box(str(item.get("cls", ""))[:32], _number(item.get("score")) or 0.0, x1, y1, x2, y2,  # type: ignore[arg-type]
                         emphasis))
    return tuple(boxes)


def _zone(payload: dict[str, object]) -> tuple[tuple[float, float], ...]:
    """The rule zone in frame pixels, if the alert carries one (`zone_polygon_px`, the evidence set's)."""
    raw = payload.get("zone_polygon_px")
    points = []
    for point in raw if isinstance(raw, list) else []:
        if isinstance(point, list | tuple) and len(point) == 2:
            x, y = _number(point[0]), _number(point[1])
            if x is not None and y is not None:
                points.append((x, y))
    return tuple(points) if len(points) >= 3 else ()


Held = Callable[[MediaRef], bool]  # whether central holds an announced item's bytes


def frames_of(alerts: Sequence[Alert], held: Held | None = None) -> tuple[EvidenceFrame, ...]:
    """Every distinct evidence image of the alerts, oldest first, with its boxes (pure but for `held`).

    An alert with an evidence set (wire 1.2) gives its `first seen` and `confirmed` frames (drawn on
    by the edge: nothing is overlaid) before its own photo; that photo is shown as its clean frame
    with the boxes and the zone overlaid (so `Show boxes` really shows the frame bare), or as the
    edge drew it while the clean frame has not arrived. Items not (yet) held are left out."""
    frames: dict[str, EvidenceFrame] = {}
    for alert in sorted(alerts, key=lambda a: (a.observed_at, a.alert_id)):
        sha = alert.evidence_sha256
        if not sha or sha in frames:
            continue
        payload = alert.payload or {}
        size = payload.get("evidence") if isinstance(payload.get("evidence"), dict) else {}
        width = int(_number(size.get("width")) or 0) if isinstance(size, dict) else 0
        height = int(_number(size.get("height")) or 0) if isinstance(size, dict) else 0
        refs = {ref.kind: ref for ref in announced(alert) if held is None or held(ref)}
        for kind, moment in (("first", "first seen"), ("confirmed", "confirmed")):
            ref = refs.get(kind)  # type: ignore[call-overload]
            if ref is not None and ref.sha256 not in frames and ref.sha256 != sha:
                frames[ref.sha256] = EvidenceFrame(
                    ref.sha256, ref.width, ref.height, ref.captured_at or alert.observed_at, alert.camera_id,
                    alert.alert_id, moment=moment, media_kind=kind,
                )
        moment = ("confirmed" if "confirmed" in refs and refs["confirmed"].sha256 == sha else "latest") if refs else ""
        frames[sha] = EvidenceFrame(
            sha, width, height, alert.observed_at, alert.camera_id, alert.alert_id, _boxes(payload), _zone(payload),
            moment=moment, media_kind="clean" if "clean" in refs else None,
        )
    return tuple(frames.values())


def sets_of(alerts: Sequence[Alert], held: Held | None = None) -> tuple[AlertSet, ...]:
    """Each alert's crop and clip, where it has them (wire 1.2), oldest first. An episode's reminders
    announce its start's clip again: it is shown once, with the start."""
    sets = []
    clips: set[str] = set()
    for alert in sorted(alerts, key=lambda a: (a.observed_at, a.alert_id)):
        refs = {ref.kind: ref for ref in announced(alert) if held is None or held(ref)}
        clip = refs.get("clip")
        if clip is not None and clip.sha256 in clips:
            clip = None
        elif clip is not None:
            clips.add(clip.sha256)
        if "crop" in refs or clip is not None:
            sets.append(AlertSet(alert.alert_id, alert.observed_at, alert.camera_id, "crop" in refs, clip is not None,
                                 clip.frames if clip else None, clip.duration_s if clip else None))
    return tuple(sets)


def priority_parts(case: Case, *, weight: int) -> PriorityParts:
    """What `cases.priority_of` added up for this case; `other` is what it does not explain."""
    alerts = min(case.alert_count, PRIORITY_ALERTS_CAP)
    dwell_s = max(0.0, (case.last_seen - case.first_seen).total_seconds())
    dwell = min(int(dwell_s // PRIORITY_DWELL_STEP_S), PRIORITY_DWELL_CAP)
    return PriorityParts(case.priority, weight, alerts, dwell, case.priority - weight - alerts - dwell)


def weak_reasons(case: Case, *, best_confidence: float | None, low_confidence: float) -> tuple[str, ...]:
    """Why a case may not be what it looks like (labels.WEAK keys), in the order a reviewer checks."""
    reasons = []
    if case.lat is None or case.lon is None:
        reasons.append("no_location")
    if case.merchant_id is None:
        reasons.append("unattributed")
    if case.alert_count <= 1:
        reasons.append("single_alert")
    if best_confidence is not None and best_confidence < low_confidence:
        reasons.append("low_confidence")
    return tuple(reasons)


def distance_to_ring_m(lat: float, lon: float, ring: Sequence[tuple[float, float]]) -> float:
    """Metres from a point to a lon/lat polygon (0 inside), on a local flat projection."""
    scale_x = METRES_PER_DEG_LAT * math.cos(math.radians(lat))
    local = [((x - lon) * scale_x, (y - lat) * METRES_PER_DEG_LAT) for x, y in ring]
    return float(shapely.distance(shapely.Polygon(local), shapely.Point(0.0, 0.0)))


def nearest_suggestion(case: Case, zones: Sequence[ZoneShape]) -> Suggestion | None:
    """For an unattributed, located case: the nearest merchant zone within SUGGEST_WITHIN_M."""
    if case.merchant_id is not None or case.lat is None or case.lon is None:
        return None
    best = min(
        ((distance_to_ring_m(case.lat, case.lon, z.ring), z) for z in zones if len(z.ring) >= 3),
        default=None,
        key=lambda pair: pair[0],
    )
    if best is None or best[0] > SUGGEST_WITHIN_M:
        return None
    return Suggestion(best[1].merchant_id, best[1].label, round(best[0], 1))


def merchant_zone(merchant: Merchant) -> ZoneShape | None:
    geom = shapely.from_wkt(merchant.zone_wkt, on_invalid="ignore")
    if geom is None or geom.is_empty:
        return None
    polygon = geom.geoms[0] if hasattr(geom, "geoms") else geom
    return ZoneShape(merchant.id, merchant.name, [(float(x), float(y)) for x, y in polygon.exterior.coords])


@dataclass(frozen=True)
class CardContext:
    """What a card needs besides the case: its rows, and the rules' numbers (settings)."""

    merchant: Merchant | None
    alerts: Sequence[Alert]
    evidence: Sequence[Alert]
    zones: Sequence[ZoneShape]
    area_name: str | None
    weight: int
    now: datetime
    sla: timedelta
    low_confidence: float
    held: Held | None = None
    citizen: Sequence[CitizenNote] = ()


def build_card(case: Case, ctx: CardContext) -> CaseCard:
    """The card of one case; the attributed merchant's zone is drawn even if it is not nearby."""
    zone_list = list(ctx.zones)
    merchant = ctx.merchant
    if merchant is not None and all(z.merchant_id != merchant.id for z in zone_list):
        own = merchant_zone(merchant)
        if own is not None:
            zone_list.append(own)
    located = case.lat is not None and case.lon is not None
    accuracy = next((a.accuracy_m for a in ctx.alerts if a.accuracy_m is not None), 0.0) or 0.0
    svg = (
        build_map(case.lat, case.lon, accuracy_m=accuracy, zones=zone_list, attributed_merchant_id=case.merchant_id)  # type: ignore[arg-type]
        if located
        else None
    )
    best = max((a.confidence for a in [*ctx.alerts, *ctx.evidence]), default=None)
    age = ctx.now - case.first_seen
    return CaseCard(
        id=case.id,
        violation=case.violation,
        status=case.status,
        priority=priority_parts(case, weight=ctx.weight),
        first_seen=case.first_seen,
        last_seen=case.last_seen,
        age=age,
        overdue=case.status == "new" and age > ctx.sla,
        alert_count=case.alert_count,
        lat=case.lat,
        lon=case.lon,
        area_name=ctx.area_name,
        camera_id=case.camera_id,
        evidence_sha256=case.evidence_sha256,
        merchant_id=case.merchant_id,
        merchant_name=merchant.name if merchant else None,
        merchant_address=merchant.address if merchant else None,
        attribution_method=case.attribution_method,
        attribution_distance_m=case.attribution_distance_m,
        alerts=tuple(_alert_row(a) for a in ctx.alerts[:ALERTS_PER_CARD]),
        more_alerts=max(0, case.alert_count - min(len(ctx.alerts), ALERTS_PER_CARD)),
        map=svg,
        merged_into_id=case.merged_into_id,
        frames=frames_of(ctx.evidence, ctx.held) or _case_frame(case),
        sets=sets_of(ctx.evidence, ctx.held),
        weak=weak_reasons(case, best_confidence=best, low_confidence=ctx.low_confidence),
        suggestion=nearest_suggestion(case, zone_list),
        best_confidence=best,
        zones=tuple(zone_list),
        source=case.source or "camera",
        citizen=tuple(ctx.citizen),
    )


def _case_frame(case: Case) -> tuple[EvidenceFrame, ...]:
    """A case whose alerts carry no image still has its own evidence (older rows)."""
    if not case.evidence_sha256:
        return ()
    return (EvidenceFrame(case.evidence_sha256, 0, 0, case.first_seen, case.camera_id, ""),)
