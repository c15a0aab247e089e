"""The city map (`/map`): a Leaflet page (static/citymap.js) over the configured tiles or the
imported vector base map, its overlays from `/map/layers.json`, the base map from
`/map/basemap.geojson`. Both are the logged-in user's area only, like the queue."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from starlette.responses import Response

from streetwatch.central.api.deps import ClockDep, SessionDep, SettingsDep, WebUser, scope_of
from streetwatch.central.api.queries import area_names
from streetwatch.central.config import MapSettings
from streetwatch.central.gis.basemap import load_basemap
from streetwatch.central.gis.geojson_out import convert_geojson, converter
from streetwatch.central.gis.queries import visible_merchants
from streetwatch.central.web.citymap import (
    GRADE_FILL,
    VIOLATION_FILL,
    MapInput,
    base_road_lines,
    map_layers,
    scoped_areas,
)
from streetwatch.central.web.render import render, user_label
from streetwatch.central.workflow.hotspots import road_grades

router = APIRouter(include_in_schema=False)


def map_config(request: Request, settings: MapSettings, *, has_basemap: bool) -> dict[str, Any]:
    """What the page script needs to build the base layers (it reads it from a JSON data block)."""
    tiles = None
    if settings.tile_url:
        tiles = {"url": settings.tile_url, "subdomains": settings.tile_subdomains,
                 "attribution": settings.tile_attribution, "max_zoom": settings.tile_max_zoom}
    return {
        "layers_url": str(request.app.url_path_for("map_layers")),
        "basemap_url": str(request.app.url_path_for("map_basemap")) if has_basemap else None,
        "basemap_attribution": settings.basemap_attribution,
        "tiles": tiles,
        "datum": settings.tile_datum,
        "grade_fill": GRADE_FILL,
        "violation_fill": VIOLATION_FILL,
    }


@router.get("/map", name="city_map_page")
def city_map_page(request: Request, session: SessionDep, user: WebUser, settings: SettingsDep) -> Response:
    """Pan, zoom, search, layers, a time filter and a legend over the user's area."""
    scope = scope_of(session, user)
    merchants = visible_merchants(session, scope)
    basemap = settings.map.basemap_path.is_file()
    context = {
        "user": user_label(user, area_names(session).get(user.area_id or "")),
        "config": map_config(request, settings.map, has_basemap=basemap),
        "roads": road_grades(session, merchant_ids={m.id for m in merchants}),
        "violation_fill": VIOLATION_FILL,
        "grade_fill": GRADE_FILL,
    }
    return render(request, "city_map.html", context)


@router.get("/map/layers.json", name="map_layers")
def map_layers_json(
    session: SessionDep, user: WebUser, settings: SettingsDep, clock: ClockDep
) -> Response:
    scope = scope_of(session, user)
    merchants = visible_merchants(session, scope)
    basemap = load_basemap(settings.map.basemap_path)
    data = MapInput(
        merchants=merchants,
        roads=road_grades(session, merchant_ids={m.id for m in merchants}),
        base_roads=base_road_lines(basemap),
        areas=scoped_areas(session, scope),
    )
    layers = map_layers(session, scope, data, datum=settings.map.tile_datum, now=clock())
    return Response(json.dumps(layers, ensure_ascii=False, separators=(",", ":")), media_type="application/json")


@router.get("/map/basemap.geojson", name="map_basemap")
def map_basemap(user: WebUser, settings: SettingsDep) -> Response:
    """The imported vector base map in the tiles' datum (cached by the browser for an hour)."""
    basemap = load_basemap(settings.map.basemap_path)
    if basemap is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no base map imported (central import-basemap FILE)")
    to = converter(settings.map.tile_datum)
    features: list[dict[str, Any]] = basemap.get("features", [])  # type: ignore[assignment]
    for f in features:
        f["geometry"] = convert_geojson(f["geometry"], to)
    body = json.dumps(basemap, ensure_ascii=False, separators=(",", ":"))
    return Response(body, media_type="application/geo+json", headers={"Cache-Control": "private, max-age=3600"})
