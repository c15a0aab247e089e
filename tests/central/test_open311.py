"""Open311 GeoReport v2 and the national lifecycle export, read by a real Open311 client.

The `georeport` client (PyPI) reads services.json, requests.json and requests/{id}.json from a real
uvicorn server; every record is checked against the GeoReport v2 field list (names and types). Area
isolation is checked with API tokens (Bearer and the spec's api_key parameter).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from georeport import GeoReport
from review_seed import seed_cases, seed_city, street_jpeg
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from workflow_support import serve_app

from streetwatch.central.api.tokens import issue_token
from streetwatch.central.app import build_app
from streetwatch.central.case_service import Reviewer
from streetwatch.central.config import CentralSettings, Open311Settings, WebSettings
from streetwatch.central.models import User
from streetwatch.central.review import ReviewService

PUBLIC_URL = "https://streetwatch.example.gov/desk/"
DEV = WebSettings(
    mode="development", secret_key="o" * 40, cookie_secure=False, public_url=PUBLIC_URL  # type: ignore[arg-type]
)

# GeoReport v2 (wiki.open311.org/GeoReport_v2): field -> allowed JSON types (None = may be null).
SERVICE_FIELDS: dict[str, tuple[type, ...]] = {
    "service_code": (str,),
    "service_name": (str,),
    "description": (str,),
    "metadata": (bool,),
    "type": (str,),
    "keywords": (str,),
    "group": (str,),
}
REQUEST_FIELDS: dict[str, tuple[type | None, ...]] = {
    "service_request_id": (str,),
    "status": (str,),
    "status_notes": (str, None),
    "service_name": (str,),
    "service_code": (str,),
    "description": (str, None),
    "agency_responsible": (str, None),
    "service_notice": (str, None),
    "requested_datetime": (str,),
    "updated_datetime": (str, None),
    "expected_datetime": (str, None),
    "address": (str, None),
    "address_id": (str, None),
    "zipcode": (str, None),
    "lat": (float, None),
    "long": (float, None),
    "media_url": (str, None),
}


def check_georeport(record: dict[str, object], fields: dict[str, tuple[type | None, ...]]) -> None:
    assert set(record) == set(fields), set(record) ^ set(fields)
    for name, allowed in fields.items():
        value = record[name]
        ok = (value is None and None in allowed) or any(t is not None and isinstance(value, t) for t in allowed)
        assert ok, f"{name}={value!r} is not one of {allowed}"


def check_request(record: dict[str, object]) -> None:
    check_georeport(record, REQUEST_FIELDS)
    assert record["status"] in ("open", "closed")
    for name in ("requested_datetime", "updated_datetime"):
        stamp = datetime.fromisoformat(str(record[name]))
        assert stamp.utcoffset() is not None  # ISO 8601 with an offset, as the spec requires


@dataclass
class City:
    client: TestClient
    cases: dict[str, int]
    tokens: dict[str, str]
    app: object


@pytest.fixture()
def city(session_factory: sessionmaker[Session], central_settings: CentralSettings, street_dir: Path) -> Iterator[City]:
    seed_city(session_factory)
    jpegs = [street_jpeg(street_dir, "kerb_parked_cars_street.jpg")]
    cases = seed_cases(session_factory, central_settings, jpegs)
    with session_factory() as session:
        admin = session.scalars(select(User).where(User.username == "admin")).one()
        rev = Reviewer(user_id=admin.id, username="admin")
    review = ReviewService(session_factory)
    review.confirm(cases["tea"], reviewer=rev)
    review.confirm(cases["fruit"], reviewer=rev)
    review.dismiss(cases["noodle"], reason="not_a_violation", reviewer=rev)
    tokens = {u: issue_token(session_factory, username=u, name="t").secret for u in ("north", "south", "admin")}
    app = build_app(central_settings.model_copy(update={"web": DEV}), session_factory)
    with TestClient(app) as client:
        yield City(client, cases, tokens, app)


def test_a_real_open311_client_reads_services_and_requests(
    city: City, central_settings: CentralSettings, session_factory: sessionmaker[Session]
) -> None:
    publishes = central_settings.model_copy(update={"web": DEV, "open311": Open311Settings(public=True)})
    with serve_app(build_app(publishes, session_factory)) as base:  # a city that publishes its cases
        client = GeoReport(f"{base}/open311/v2")
        services = client.get_service_list()
        requests = client.get_service_requests(start_date="2026-01-01T00:00:00Z", end_date="2026-12-31T00:00:00Z")
        one = client.get_service_request(str(city.cases["tea"]))
    assert {s["service_code"] for s in services} == {"illegal_parking", "street_vending", "stacked_goods"}
    for service in services:
        check_georeport(service, SERVICE_FIELDS)  # type: ignore[arg-type]
    ids = {r["service_request_id"] for r in requests}
    # reviewed cases are published (confirmed open, dismissed closed); unreviewed ones are not
    assert ids == {str(city.cases[n]) for n in ("tea", "fruit", "noodle")}
    for record in requests:
        check_request(record)
    by_id = {r["service_request_id"]: r for r in requests}
    assert by_id[str(city.cases["noodle"])]["status"] == "closed"
    check_request(one)
    assert one["status"] == "open" and one["service_code"] == "illegal_parking"
    assert one["address"] == "12 Tea Street" and abs(one["lat"] - 31.2351) < 1e-4
    assert str(one["media_url"]).startswith(f"{PUBLIC_URL}evidence/")  # the configured address, not the server's


def test_open311_links_come_from_the_configured_address_never_the_host_header(city: City) -> None:
    """A forged Host (cache poisoning, a link in a mail) must not point media_url elsewhere."""
    headers = {"Authorization": f"Bearer {city.tokens['admin']}", "Host": "evil.example"}
    query = {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-12-31T00:00:00Z"}
    records = city.client.get("/open311/v2/requests.json", params=query, headers=headers).json()
    media = [r["media_url"] for r in records if r["media_url"]]
    assert media and all(url.startswith(f"{PUBLIC_URL}evidence/") for url in media), media


def test_open311_is_limited_to_the_callers_area(city: City) -> None:
    c = city.client
    assert c.get("/open311/v2/requests.json").status_code == 401  # not public by default
    window = {"start_date": "2026-01-01T00:00:00Z"}
    north = c.get(
        "/open311/v2/requests.json", params=window, headers={"Authorization": f"Bearer {city.tokens['north']}"}
    )
    south = c.get("/open311/v2/requests.json", params={**window, "api_key": city.tokens["south"]})
    assert north.status_code == south.status_code == 200
    assert {r["service_request_id"] for r in north.json()} == {str(city.cases["tea"]), str(city.cases["noodle"])}
    assert {r["service_request_id"] for r in south.json()} == {str(city.cases["fruit"])}
    hidden = c.get(f"/open311/v2/requests/{city.cases['tea']}.json", params={"api_key": city.tokens["south"]})
    assert hidden.status_code == 404
    open_only = c.get("/open311/v2/requests.json", params={**window, "status": "open", "api_key": city.tokens["north"]})
    assert [r["service_request_id"] for r in open_only.json()] == [str(city.cases["tea"])]
    bad = c.get("/open311/v2/requests.json", params={"start_date": "yesterday", "api_key": city.tokens["north"]})
    assert bad.status_code == 400 and "start_date" in bad.json()["detail"]


def test_lifecycle_export_maps_statuses_and_event_codes(city: City) -> None:
    headers = {"Authorization": f"Bearer {city.tokens['admin']}"}
    rows = {r["case_id"]: r for r in city.client.get("/api/export/lifecycle.json", headers=headers).json()}
    tea, noodle = rows[city.cases["tea"]], rows[city.cases["noodle"]]
    assert (tea["stage"], tea["stage_zh"], tea["event_code"]) == ("file", "立案", "SO-03")
    assert tea["history"][0]["stage"] == "file" and tea["before_photo"].startswith("/evidence/")
    assert (noodle["stage"], noodle["event_code"], noodle["event_name"]) == ("void", "SO-01", "占道经营")
    text = city.client.get("/api/export/lifecycle.csv", headers=headers).text
    parsed = {int(r["case_id"]): r for r in csv.DictReader(io.StringIO(text))}
    assert parsed[city.cases["tea"]]["stage_zh"] == "立案"
    assert parsed[city.cases["tea"]]["history"].startswith("file@")
    south = city.client.get("/api/export/lifecycle.json", headers={"Authorization": f"Bearer {city.tokens['south']}"})
    assert {r["case_id"] for r in south.json()} == {city.cases["fruit"]}
