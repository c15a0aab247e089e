"""/api/cases/{id}/merge-candidates and /merchant-candidates: what a reviewer can merge a case into
or reassign it to, so nobody types ids: open cases of the same violation nearby or of the same
merchant, with image and distance; merchants near the case, or found by name, address or road.

Both answer a token (API clients) or the page's login (the queue's dialogs), limited to the caller's area.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import and_, or_, select

from streetwatch.central.access import AreaScope, case_clause, case_visible, merchant_clause, merchant_visible
from streetwatch.central.api.deps import AnyUser, SessionDep, SettingsDep, scope_of
from streetwatch.central.api.queries import merchants_by_id
from streetwatch.central.api.schemas import MerchantCandidatePublic, MergeCandidatePublic
from streetwatch.central.case_status import OPEN_STATUSES
from streetwatch.central.cases import distance_m
from streetwatch.central.errors import NotFound
from streetwatch.central.models import Case, Merchant
from streetwatch.central.web.cards import distance_to_ring_m, merchant_zone
from streetwatch.central.web.mapsvg import METRES_PER_DEG_LAT
from streetwatch.central.web.nearby import NearbyZones
from streetwatch.central.workflow.ids import CaseId

router = APIRouter(prefix="/cases", tags=["cases"])
MAX_CANDIDATES = 12
NEARBY_MERCHANTS_M = 300.0


def _case(session: SessionDep, user: AnyUser, case_id: int) -> Case:
    case = session.get(Case, case_id)
    if case is None or not case_visible(scope_of(session, user), case):
        raise NotFound(f"case {case_id} not found", code="case_not_found", case_id=case_id)
    return case


def _near(case: Case, radius_m: float) -> object:
    if case.lat is None or case.lon is None:
        return Case.merchant_id == case.merchant_id if case.merchant_id else Case.id == -1
    dlat = radius_m / METRES_PER_DEG_LAT
    dlon = radius_m / (METRES_PER_DEG_LAT * max(math.cos(math.radians(case.lat)), 0.01))
    box = and_(Case.lat.between(case.lat - dlat, case.lat + dlat), Case.lon.between(case.lon - dlon, case.lon + dlon))
    return or_(box, Case.merchant_id == case.merchant_id) if case.merchant_id else box


@router.get("/{case_id}/merge-candidates", response_model=list[MergeCandidatePublic])
def merge_candidates(
    case_id: CaseId, session: SessionDep, user: AnyUser, settings: SettingsDep
) -> list[MergeCandidatePublic]:
    """Open cases of the same violation within `review.candidate_radius_m` or of the same merchant,
    nearest first (those without a position last)."""
    case = _case(session, user, case_id)
    scope = scope_of(session, user)
    radius = settings.review.candidate_radius_m
    stmt = (
        select(Case)
        .where(
            Case.id != case.id,
            Case.violation == case.violation,
            Case.status.in_(OPEN_STATUSES),
            Case.merged_into_id.is_(None),
            case_clause(scope),
            _near(case, radius),  # type: ignore[arg-type]
        )
        .order_by(Case.first_seen.desc())
        .limit(200)
    )
    rows = [c for c in session.scalars(stmt) if case_visible(scope, c)]
    merchants = merchants_by_id(session, [c.merchant_id for c in rows])
    found = []
    for other in rows:
        gap = _gap(case, other)
        same = case.merchant_id is not None and other.merchant_id == case.merchant_id
        if gap is not None and gap > radius and not same:
            continue
        found.append(MergeCandidatePublic.of(other, merchants.get(other.merchant_id or ""), gap, same_merchant=same))
    found.sort(key=lambda c: (c.distance_m is None, c.distance_m or 0.0, -c.id))
    return found[:MAX_CANDIDATES]


def _gap(case: Case, other: Case) -> float | None:
    if None in (case.lat, case.lon, other.lat, other.lon):
        return None
    return round(distance_m(case.lat, case.lon, other.lat, other.lon), 1)  # type: ignore[arg-type]


@router.get("/{case_id}/merchant-candidates", response_model=list[MerchantCandidatePublic])
def merchant_candidates(
    case_id: CaseId,
    request: Request,
    session: SessionDep,
    user: AnyUser,
    q: Annotated[str, Query(max_length=100, description="part of a name, address or road")] = "",
) -> list[MerchantCandidatePublic]:
    """Merchants to reassign the case to: found by `q`, else those near the case; nearest first."""
    case = _case(session, user, case_id)
    scope = scope_of(session, user)
    if q.strip():
        pattern = q.strip()
        merchants = list(
            session.scalars(
                select(Merchant)
                .where(
                    merchant_clause(scope),
                    or_(
                        Merchant.name.contains(pattern, autoescape=True),
                        Merchant.address.contains(pattern, autoescape=True),
                        Merchant.road.contains(pattern, autoescape=True),
                    ),
                )
                .order_by(Merchant.name)
                .limit(50)
            )
        )
    else:
        merchants = _nearby_merchants(request, session, case, scope)
    found = [MerchantCandidatePublic.of(m, _zone_gap(case, m)) for m in merchants if merchant_visible(scope, m)]
    found.sort(key=lambda c: (c.distance_m is None, c.distance_m or 0.0, c.name))
    return found[:MAX_CANDIDATES]


def _nearby_merchants(request: Request, session: SessionDep, case: Case, scope: AreaScope | None) -> list[Merchant]:
    if case.lat is None or case.lon is None:
        return []
    index: NearbyZones = request.app.state.nearby_zones
    zones = index.around(
        session, lat=case.lat, lon=case.lon, scope=scope, radius_m=NEARBY_MERCHANTS_M, limit=MAX_CANDIDATES
    )
    return list(merchants_by_id(session, [z.merchant_id for z in zones]).values())


def _zone_gap(case: Case, merchant: Merchant) -> float | None:
    zone = merchant_zone(merchant)
    if zone is None or case.lat is None or case.lon is None:
        return None
    return round(distance_to_ring_m(case.lat, case.lon, zone.ring), 1)
