"""/api/cases.geojson, /api/merchants.geojson, /api/hotspots.geojson: the caller's area for GIS
(QGIS, ArcGIS, a city's one-map platform) as RFC 7946 FeatureCollections in WGS84, filterable like
the lists. A token or a login (the map page fetches them too)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from starlette.responses import Response

from streetwatch.central.api.deps import AnyUser, SessionDep, scope_of
from streetwatch.central.api.params import bounded_time
from streetwatch.central.api.queries import filter_scope, merchants_by_id
from streetwatch.central.case_status import UNRESOLVED_STATUSES, CaseStatus
from streetwatch.central.gis.geojson_out import cases_collection, collection, hotspot_feature, merchant_feature
from streetwatch.central.gis.queries import MAX_FEATURES, GeoCaseFilters, active_hotspots, located_cases
from streetwatch.central.gis.queries import visible_merchants as merchants_for

router = APIRouter(tags=["gis"])
GEOJSON = "application/geo+json"
STATUS_WORDS = {"open": [s.value for s in UNRESOLVED_STATUSES], "all": []}
ViolationParam = Literal["illegal_parking", "street_vending", "stacked_goods"]


def geojson_response(doc: dict[str, Any], filename: str) -> Response:
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return Response(body, media_type=GEOJSON, headers={"Content-Disposition": f'inline; filename="{filename}"'})


def parse_statuses(text: str) -> list[str]:
    """'open', 'all', or statuses separated by commas ('confirmed,notified')."""
    if text in STATUS_WORDS:
        return STATUS_WORDS[text]
    names = [part.strip() for part in text.split(",") if part.strip()]
    known = {s.value for s in CaseStatus}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"status: expected open, all or some of {', '.join(sorted(known))} separated by commas, got {text!r}",
        )
    return names


@router.get("/cases.geojson", response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
def cases_geojson(
    session: SessionDep,
    user: AnyUser,
    status_: Annotated[str, Query(alias="status", max_length=200, description="open, all, or a,b,c")] = "all",
    violation: ViolationParam | None = None,
    area: Annotated[str | None, Query(max_length=64)] = None,
    merchant: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=100, description="merchant name, address, road or case number")] = None,
    since: Annotated[datetime | None, Query(description="first seen at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="first seen before (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_FEATURES)] = MAX_FEATURES,
) -> Response:
    """Located cases as Points (newest first); properties: violation, status, merchant, times."""
    since, until = (bounded_time(t, name) if t else None for t, name in ((since, "since"), (until, "until")))
    filters = GeoCaseFilters(parse_statuses(status_), violation, merchant, q, since, until)
    cases = located_cases(session, filters, scopes=[scope_of(session, user), filter_scope(session, area)], limit=limit)
    merchants = merchants_by_id(session, [c.merchant_id for c in cases])
    return geojson_response(cases_collection(cases, merchants), "cases.geojson")


@router.get("/merchants.geojson", response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
def merchants_geojson(
    session: SessionDep,
    user: AnyUser,
    road: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=100, description="part of the name, id or address")] = None,
) -> Response:
    """Merchant responsibility zones (Polygon or MultiPolygon) with name, address, road and grade."""
    merchants = merchants_for(session, scope_of(session, user), road=road, text=q)
    return geojson_response(collection(merchant_feature(m) for m in merchants), "merchants.geojson")


@router.get("/hotspots.geojson", response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
def hotspots_geojson(
    session: SessionDep, user: AnyUser, road: Annotated[str | None, Query(max_length=200)] = None
) -> Response:
    """Active hotspots as Points with their confirmed-case count (unreviewed ones apart)."""
    hotspots = active_hotspots(session, scope_of(session, user), road=road)
    return geojson_response(collection(hotspot_feature(h) for h in hotspots), "hotspots.geojson")
