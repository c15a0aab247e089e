"""GeoJSON out for GIS: /api/cases.geojson, /api/merchants.geojson, /api/hotspots.geojson and
`central export-cases --format geojson` are RFC 7946 (validated by the `geojson` package, winding
checked with shapely), positions in (lon, lat) order where the cases are, scoped to the caller's
area and filterable like the lists; a GIS library reads them back with the right geometry."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import geojson
import pytest
import shapely
from fastapi.testclient import TestClient
from review_seed import T0, add_case, seed_city
from shapely.geometry import shape
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.api.tokens import issue_token
from streetwatch.central.app import build_app
from streetwatch.central.cli import main as central_main
from streetwatch.central.config import CentralSettings, WebSettings
from streetwatch.central.db import session_scope
from streetwatch.central.models import Hotspot, Merchant

# A corner shop with two frontages, its first ring written clockwise (as some tools write it).
CORNER = ("MULTIPOLYGON (((121.4724 31.2353, 121.4724 31.2354, 121.4725 31.2354, 121.4725 31.2353, "
          "121.4724 31.2353)), ((121.4726 31.2353, 121.4727 31.2353, 121.4727 31.2354, 121.4726 31.2354, "
          "121.4726 31.2353)))")


@pytest.fixture()
def city(session_factory: sessionmaker[Session]) -> dict[str, int]:
    seed_city(session_factory)
    with session_scope(session_factory) as session:
        session.add(Merchant(id="m-corner", name="街角茶铺", address="茶街 1 号", road="Tea Street",
                             zone_wkt=CORNER, area_id="north"))
        cases = {
            "tea": add_case(session, lat=31.23510, lon=121.47215, merchant_id="m-tea", area_id="north",
                            status="confirmed").id,
            "corner": add_case(session, lat=31.23535, lon=121.47265, merchant_id="m-corner", area_id="north",
                               violation="stacked_goods", first_seen=T0 + timedelta(hours=5)).id,
            "dismissed": add_case(session, lat=31.23512, lon=121.47218, area_id="north", status="dismissed").id,
            "fruit": add_case(session, lat=31.22510, lon=121.47515, merchant_id="m-fruit", area_id="south").id,
        }
        session.add(Hotspot(key="merchant:m-tea", label="Lotus Tea House", road="Tea Street", lat=31.2351,
                            lon=121.47215, active=True, case_count=4, unreviewed_count=1, updated_at=T0))
        session.add(Hotspot(key="merchant:m-fruit", label="Fresh Fruit Corner", road="South Road", lat=31.2251,
                            lon=121.47515, active=True, case_count=3, updated_at=T0))
    return cases


def _client(session_factory: sessionmaker[Session], settings: CentralSettings, user: str) -> TestClient:
    token = issue_token(session_factory, username=user, name="gis").secret
    web = WebSettings(mode="development", secret_key="g" * 40, cookie_secure=False)  # type: ignore[arg-type]
    client = TestClient(build_app(settings.model_copy(update={"web": web}), session_factory))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def _valid(response) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/geo+json")
    parsed = geojson.loads(response.text)
    assert parsed.is_valid, parsed.errors()
    doc = json.loads(response.text)
    assert doc["type"] == "FeatureCollection"
    return doc


def test_cases_are_points_in_lon_lat_order_and_scoped_to_the_district(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, city: dict[str, int]
) -> None:
    north = _client(session_factory, central_settings, "north")
    doc = _valid(north.get("/api/cases.geojson"))
    by_id = {f["id"]: f for f in doc["features"]}
    assert set(by_id) == {city["tea"], city["corner"], city["dismissed"]}  # not south's fruit case
    assert by_id[city["tea"]]["geometry"] == {"type": "Point", "coordinates": [121.47215, 31.2351]}
    point = shape(by_id[city["corner"]]["geometry"])
    assert (point.x, point.y) == (121.47265, 31.23535)  # x is the longitude
    assert by_id[city["corner"]]["properties"]["merchant_name"] == "街角茶铺"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=open", {"tea", "corner"}),
        ("status=confirmed,dismissed", {"tea", "dismissed"}),
        ("violation=stacked_goods", {"corner"}),
        ("q=街角", {"corner"}),
        ("merchant=m-tea", {"tea"}),
        (f"since={(T0 + timedelta(hours=1)).isoformat().replace('+', '%2B')}", {"corner"}),
    ],
)
def test_cases_filter_like_the_lists(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, city: dict[str, int],
    query: str, expected: set[str],
) -> None:
    doc = _valid(_client(session_factory, central_settings, "north").get(f"/api/cases.geojson?{query}"))
    assert {f["id"] for f in doc["features"]} == {city[name] for name in expected}


def test_a_bad_status_names_the_parameter(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, city: dict[str, int]
) -> None:
    response = _client(session_factory, central_settings, "north").get("/api/cases.geojson?status=opne")
    assert response.status_code == 422 and response.json()["detail"].startswith("status: expected open, all")


def test_merchant_zones_keep_their_multipolygon_and_follow_the_right_hand_rule(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, city: dict[str, int]
) -> None:
    doc = _valid(_client(session_factory, central_settings, "north").get("/api/merchants.geojson"))
    zones = {f["id"]: f for f in doc["features"]}
    assert set(zones) == {"m-tea", "m-noodle", "m-corner"}
    corner = zones["m-corner"]
    assert corner["geometry"]["type"] == "MultiPolygon" and corner["properties"]["road"] == "Tea Street"
    read_back = shape(corner["geometry"])
    assert read_back.equals(shapely.from_wkt(CORNER))  # the same shape, whatever the ring order
    for polygon in read_back.geoms:  # RFC 7946 3.1.6: exterior rings counter-clockwise
        assert polygon.exterior.is_ccw
    tea = shape(zones["m-tea"]["geometry"])
    assert tea.contains(shapely.Point(121.47215, 31.2351))  # the tea case lies in its merchant's zone


def test_hotspots_are_scoped_and_carry_their_counts(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, city: dict[str, int]
) -> None:
    doc = _valid(_client(session_factory, central_settings, "north").get("/api/hotspots.geojson"))
    (hot,) = doc["features"]
    assert hot["geometry"]["coordinates"] == [121.47215, 31.2351]
    assert (hot["properties"]["case_count"], hot["properties"]["unreviewed_count"]) == (4, 1)
    city_wide = _valid(_client(session_factory, central_settings, "city").get("/api/hotspots.geojson?road=South Road"))
    assert [f["id"] for f in city_wide["features"]] == ["merchant:m-fruit"]


def test_export_cases_as_geojson_from_the_command_line(
    session_factory: sessionmaker[Session], city: dict[str, int], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = str(session_factory.kw["bind"].url.render_as_string(hide_password=False))
    out = tmp_path / "cases.geojson"
    assert central_main(["--database-url", url, "export-cases", "--format", "geojson", "--output", str(out)]) == 0
    parsed = geojson.loads(out.read_text(encoding="utf-8"))
    assert parsed.is_valid
    assert {f["id"] for f in parsed["features"]} == set(city.values())
    assert "4 located cases written" in capsys.readouterr().err
