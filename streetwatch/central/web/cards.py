"""View models of the queue: one `CaseCard` per case with everything its card shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import shapely

from streetwatch.central.models import Alert, Case, Merchant
from streetwatch.central.web.mapsvg import SvgMap, ZoneShape, build_map

ALERTS_PER_CARD = 5


@dataclass(frozen=True)
class AlertRow:
    alert_id: str
    edge_id: str
    camera_id: str
    observed_at: str
    confidence: float
    dwell_s: float


@dataclass(frozen=True)
class CaseCard:
    id: int
    violation: str
    violation_label: str
    status: str
    priority: int
    first_seen: str
    last_seen: str
    alert_count: int
    lat: float
    lon: float
    area_name: str | None
    evidence_sha256: str | None
    merchant_id: str | None
    merchant_name: str | None
    merchant_address: str | None
    attribution_method: str
    attribution_distance_m: float | None
    alerts: tuple[AlertRow, ...]
    more_alerts: int
    map: SvgMap
    merged_into_id: int | None


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _alert_row(alert: Alert) -> AlertRow:
    payload = alert.payload or {}
    dwell = payload.get("dwell_s", 0.0)
    return AlertRow(
        alert_id=alert.alert_id,
        edge_id=alert.edge_id,
        camera_id=alert.camera_id,
        observed_at=_when(alert.observed_at),
        confidence=alert.confidence,
        dwell_s=float(dwell) if isinstance(dwell, int | float) else 0.0,
    )


def merchant_zone(merchant: Merchant) -> ZoneShape | None:
    geom = shapely.from_wkt(merchant.zone_wkt, on_invalid="ignore")
    if geom is None or geom.is_empty:
        return None
    polygon = geom.geoms[0] if hasattr(geom, "geoms") else geom
    return ZoneShape(merchant.id, merchant.name, [(float(x), float(y)) for x, y in polygon.exterior.coords])


def build_card(
    case: Case,
    *,
    merchant: Merchant | None,
    alerts: Sequence[Alert],
    zones: Sequence[ZoneShape],
    area_name: str | None,
) -> CaseCard:
    """The card of one case; the attributed merchant's zone is drawn even if it is not nearby."""
    zone_list = list(zones)
    if merchant is not None and all(z.merchant_id != merchant.id for z in zone_list):
        own = merchant_zone(merchant)
        if own is not None:
            zone_list.append(own)
    accuracy = next((a.accuracy_m for a in alerts if a.accuracy_m is not None), 0.0) or 0.0
    lat, lon = case.lat or 0.0, case.lon or 0.0
    svg = build_map(
        lat,
        lon,
        accuracy_m=accuracy,
        zones=zone_list if case.lat is not None else (),
        attributed_merchant_id=case.merchant_id,
    )
    return CaseCard(
        id=case.id,
        violation=case.violation,
        violation_label=case.violation.replace("_", " "),
        status=case.status,
        priority=case.priority,
        first_seen=_when(case.first_seen),
        last_seen=_when(case.last_seen),
        alert_count=case.alert_count,
        lat=lat,
        lon=lon,
        area_name=area_name,
        evidence_sha256=case.evidence_sha256,
        merchant_id=case.merchant_id,
        merchant_name=merchant.name if merchant else None,
        merchant_address=merchant.address if merchant else None,
        attribution_method=case.attribution_method,
        attribution_distance_m=case.attribution_distance_m,
        alerts=tuple(_alert_row(a) for a in alerts[:ALERTS_PER_CARD]),
        more_alerts=max(0, case.alert_count - min(len(alerts), ALERTS_PER_CARD)),
        map=svg,
        merged_into_id=case.merged_into_id,
    )
