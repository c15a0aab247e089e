"""Open311 GeoReport v2 through the app: what it publishes and to whom, its errors, and citizen
reports POSTed as cases (de-duplicated against camera cases, verified, counted for the reporter).

The real `georeport` client against a real `central serve` is in test_open311_serve.py; the JSON
answers here are validated against the spec's schemas (open311_schemas.py). Each table row names
the behaviour a city system or a citizen's app relies on.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
import xmltodict
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from open311_schemas import ERRORS, POST_RESPONSE, REQUEST_FIELDS, REQUESTS, TOKEN_RESPONSE, check
from PIL import Image
from review_seed import ingest_sighting, seed_cases, seed_city, street_jpeg
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.api.tokens import issue_token
from streetwatch.central.app import build_app
from streetwatch.central.case_service import Reviewer
from streetwatch.central.config import CentralSettings, Open311Settings, WebSettings
from streetwatch.central.models import Alert, AuditLog, Case, CitizenReport, User
from streetwatch.central.open311_keys import issue_key, revoke_key
from streetwatch.central.review import ReviewService

DEV = WebSettings(mode="development", secret_key="o" * 40, cookie_secure=False)  # type: ignore[arg-type]
BASE = "https://311.city.example/"
WINDOW = {"start_date": "2026-02-15T00:00:00Z", "end_date": "2026-05-01T00:00:00Z"}  # the seeded cases
TEA_SPOT = {"lat": "31.23510", "long": "121.47215"}  # inside Lotus Tea House's zone
PHOTO = "kerb_parked_cars_street.jpg"


@dataclass
class City:
    client: TestClient
    cases: dict[str, int]
    tokens: dict[str, str]  # users' API tokens
    key: str  # an Open311 client key
    key_id: int
    factory: sessionmaker[Session]
    settings: CentralSettings
    street_dir: Path

    def post(self, fmt: str = "json", *, photo: bytes | None = None, **fields: str):  # type: ignore[no-untyped-def]
        data = {"api_key": self.key, "service_code": "illegal_parking", **TEA_SPOT, **fields}
        files = {"media": ("photo.jpg", photo, "image/jpeg")} if photo is not None else None
        return self.client.post(f"/open311/v2/requests.{fmt}", data=data, files=files)


def admin_reviewer(factory: sessionmaker[Session]) -> Reviewer:
    with factory() as session:
        admin = session.scalars(select(User).where(User.username == "admin")).one()
        return Reviewer(user_id=admin.id, username="admin")


def make_city(
    factory: sessionmaker[Session], settings: CentralSettings, street_dir: Path, open311: Open311Settings
) -> tuple[CentralSettings, dict[str, int]]:
    seed_city(factory)
    cases = seed_cases(factory, settings, [street_jpeg(street_dir, PHOTO)])
    review, rev = ReviewService(factory), admin_reviewer(factory)
    review.confirm(cases["tea"], reviewer=rev)
    review.confirm(cases["fruit"], reviewer=rev)
    review.dismiss(cases["noodle"], reason="false_detection", reviewer=rev)
    return settings.model_copy(update={"web": DEV, "open311": open311}), cases


def _city(factory: sessionmaker[Session], settings: CentralSettings, street_dir: Path, open311: Open311Settings
          ) -> Iterator[City]:
    settings, cases = make_city(factory, settings, street_dir, open311)
    tokens = {u: issue_token(factory, username=u, name="t").secret for u in ("north", "south", "admin")}
    issued = issue_key(factory, name="city app")
    with TestClient(build_app(settings, factory)) as client:
        yield City(client, cases, tokens, issued.secret, issued.id, factory, settings, street_dir)


@pytest.fixture()
def city(session_factory: sessionmaker[Session], central_settings: CentralSettings, street_dir: Path) -> Iterator[City]:
    """A city that publishes its cases (anonymous reads) at BASE."""
    yield from _city(session_factory, central_settings, street_dir,
                     Open311Settings(public=True, base_url=BASE, jurisdiction_id="city.example"))


@pytest.fixture()
def keyed(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, street_dir: Path
) -> Iterator[City]:
    """A city whose reads need a key (the default)."""
    yield from _city(session_factory, central_settings, street_dir, Open311Settings(base_url=BASE))


def ids_of(records: list[dict[str, object]]) -> set[str]:
    return {str(r["service_request_id"]) for r in records}


# ---------------------------------------------------------------- what is published, to whom


def test_public_reads_show_confirmed_cases_only_without_merchant_details(city: City) -> None:
    answer = city.client.get("/open311/v2/requests.json", params=WINDOW)
    assert answer.status_code == 200
    records = answer.json()
    check(REQUESTS, records)
    # confirmed cases only: the dismissed false detection and the unreviewed case never appear
    assert ids_of(records) == {str(city.cases["tea"]), str(city.cases["fruit"])}
    for record in records:
        assert record["address"] is None and record["address_id"] is None  # no merchant address in public
        assert str(record["media_url"]).startswith(f"{BASE}open311/v2/media/")  # the configured URL, not Host
    dismissed = city.client.get(f"/open311/v2/requests/{city.cases['noodle']}.json")
    assert dismissed.status_code == 404
    check(ERRORS, dismissed.json())
    by_ids = city.client.get(
        "/open311/v2/requests.json", params={"service_request_id": f"{city.cases['noodle']},{city.cases['tea']}"}
    )
    assert ids_of(by_ids.json()) == {str(city.cases["tea"])}


def test_the_public_media_url_serves_the_photo_without_a_login(city: City) -> None:
    record = city.client.get(f"/open311/v2/requests/{city.cases['tea']}.json").json()[0]
    path = str(record["media_url"]).removeprefix(BASE.rstrip("/"))
    photo = city.client.get(path)
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert photo.content.startswith(b"\xff\xd8")
    dismissed = city.client.get(f"/open311/v2/media/{city.cases['noodle']}.jpg")
    assert dismissed.status_code == 404  # a dismissed case's photo is not published either


def test_staff_tokens_read_their_area_with_addresses(keyed: City) -> None:
    north = keyed.client.get("/open311/v2/requests.json", params={**WINDOW, "api_key": keyed.tokens["north"]})
    south = keyed.client.get(
        "/open311/v2/requests.json", params=WINDOW, headers={"Authorization": f"Bearer {keyed.tokens['south']}"}
    )
    assert ids_of(north.json()) == {str(keyed.cases["tea"])}  # north's dismissed case stays hidden
    assert ids_of(south.json()) == {str(keyed.cases["fruit"])}
    tea = north.json()[0]
    assert tea["address"] == "12 Tea Street" and tea["address_id"] == "m-tea"
    assert str(tea["media_url"]).startswith(f"{BASE}evidence/")  # staff open it with their login
    tea_path = f"/open311/v2/requests/{keyed.cases['tea']}.json"
    hidden = keyed.client.get(tea_path, params={"api_key": keyed.tokens["south"]})
    assert hidden.status_code == 404


def test_keyed_reads_refuse_anonymous_callers_with_the_spec_error(keyed: City) -> None:
    media = f"/open311/v2/media/{keyed.cases['tea']}.jpg"
    for path in ("/open311/v2/requests.json", "/open311/v2/services.json", media):
        answer = keyed.client.get(path)
        assert answer.status_code == 403, path
    answer = keyed.client.get("/open311/v2/requests.json")
    check(ERRORS, answer.json())
    xml = keyed.client.get("/open311/v2/requests.xml")
    assert xml.status_code == 403
    assert xmltodict.parse(xml.content)["errors"]["error"]["code"] == "403"
    client_key = keyed.client.get("/open311/v2/requests.json", params={**WINDOW, "api_key": keyed.key})
    assert client_key.status_code == 200  # a client key reads what the public view shows
    assert ids_of(client_key.json()) == {str(keyed.cases["tea"]), str(keyed.cases["fruit"])}
    assert all(r["address"] is None for r in client_key.json())


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "open"}, {"tea", "fruit"}),
        ({"status": "closed"}, set()),
        ({"status": "open,closed"}, {"tea", "fruit"}),
        ({"status": "closed,open"}, {"tea", "fruit"}),
        ({"service_code": "stacked_goods"}, {"fruit"}),
        ({"service_code": "illegal_parking,stacked_goods"}, {"tea", "fruit"}),
        ({"service_code": "street_vending"}, set()),  # the only vending case was dismissed
    ],
)
def test_requests_filter_by_status_lists_and_service_codes(
    city: City, params: dict[str, str], expected: set[str]
) -> None:
    answer = city.client.get("/open311/v2/requests.json", params={**WINDOW, **params})
    assert answer.status_code == 200
    assert ids_of(answer.json()) == {str(city.cases[name]) for name in expected}


def test_xml_is_the_default_and_carries_the_same_fields(city: City) -> None:
    json_records = city.client.get("/open311/v2/requests.json", params=WINDOW).json()
    xml = city.client.get("/open311/v2/requests.xml", params=WINDOW)
    assert xml.headers["content-type"].startswith("text/xml")
    parsed = xmltodict.parse(xml.content)["service_requests"]["request"]
    assert {r["service_request_id"] for r in parsed} == ids_of(json_records)
    assert all(set(r) == REQUEST_FIELDS for r in parsed)
    unknown = city.client.get("/open311/v2/requests/999999")  # no extension: XML, as the spec's default
    assert unknown.status_code == 404 and unknown.content.startswith(b"<?xml")


# ---------------------------------------------------------------- bad input: the spec's errors, never 422 or 500


@pytest.mark.parametrize(
    ("path", "params", "status", "names"),
    [
        ("requests.json", {"start_date": "yesterday"}, 400, "start_date"),
        ("requests.json", {"end_date": "2026-13-45T99:00:00Z"}, 400, "end_date"),
        ("requests.json", {"start_date": "0001-01-01T00:00:00+14:00"}, 400, "start_date"),
        ("requests.json", {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-12-01T00:00:00Z"}, 400, "90 days"),
        ("requests.json", {"start_date": "2026-05-01T00:00:00Z", "end_date": "2026-04-01T00:00:00Z"}, 400, "after"),
        ("requests.json", {"status": "pending"}, 400, "status"),
        ("requests.json", {"service_request_id": "1,x"}, 400, "service_request_id"),
        ("requests.json", {"service_request_id": "9" * 40}, 400, "service_request_id"),
        ("requests.json", {"service_code": "a\x00b"}, 400, "NUL"),
        ("requests.json", {"service_code": "x" * 5000}, 400, "service_code"),
        ("requests.json", {"jurisdiction_id": "elsewhere.gov"}, 404, "jurisdiction_id"),
        ("requests.txt", {}, 404, "format"),
        ("requests/99999999999999999999999.json", {}, 404, "service_request_id"),
        ("requests/-1.json", {}, 404, "service_request_id"),
        ("services/bogus.json", {}, 404, "service_code"),
        ("tokens/nope.json", {}, 404, "token"),
        ("media/1%00.jpg", {}, 400, "NUL"),  # refused before any handler (input_guard.py), in the spec's format
        ("no-such-thing.json", {}, 404, "Not Found"),
    ],
)
def test_bad_reads_answer_the_spec_error_list(
    session_factory: sessionmaker[Session], central_settings: CentralSettings,
    path: str, params: dict[str, str], status: int, names: str,
) -> None:
    settings = central_settings.model_copy(
        update={"web": DEV, "open311": Open311Settings(public=True, jurisdiction_id="city.example")}
    )
    with TestClient(build_app(settings, session_factory)) as client:
        answer = client.get(f"/open311/v2/{path}", params=params)
    assert answer.status_code == status, answer.text
    if path.endswith(".json"):
        check(ERRORS, answer.json())
        assert names in answer.json()[0]["description"]
    else:
        assert xmltodict.parse(answer.content)["errors"]["error"]["code"] == str(status)


# ---------------------------------------------------------------- citizen reports


def test_a_citizen_report_becomes_a_case_in_the_review_queue(city: City) -> None:
    photo = (city.street_dir / PHOTO).read_bytes()
    answer = city.post(
        photo=photo, description="白色轿车停在人行道上", email="Li.Wei@example.cn", first_name="Wei",
        lat="31.22512", long="121.47512",  # inside Fresh Fruit Corner's zone: no camera case open there now
    )
    assert answer.status_code == 200, answer.text
    check(POST_RESPONSE, answer.json())
    posted = answer.json()[0]
    case_id = int(posted["service_request_id"])
    follow = city.client.get(f"/open311/v2/tokens/{posted['token']}.json")
    check(TOKEN_RESPONSE, follow.json())
    assert follow.json()[0]["service_request_id"] == str(case_id)
    pending = city.client.get(f"/open311/v2/requests/{case_id}.json").json()
    check(REQUESTS, pending)
    assert pending[0]["status"] == "open" and "awaiting review" in str(pending[0]["status_notes"])
    assert pending[0]["lat"] is None and pending[0]["description"] is None  # unreviewed: nothing more published
    with city.factory() as session:
        case = session.get(Case, case_id)
        report = session.scalars(select(CitizenReport).where(CitizenReport.case_id == case_id)).one()
        alert = session.scalars(select(Alert).where(Alert.case_id == case_id)).one()
        assert case is not None
        assert (case.source, case.status, case.violation) == ("citizen", "new", "illegal_parking")
        # attributed like a camera case
        assert (case.merchant_id, case.attribution_method) == ("m-fruit", "inside_zone")
        assert case.area_id == "south"
        assert case.evidence_sha256 == report.media_sha256 is not None
        assert "Li.Wei@example.cn" not in str(alert.payload)  # the contact stays in citizen_reports
        assert report.email == "Li.Wei@example.cn" and report.description == "白色轿车停在人行道上"
    # the photo was re-encoded: a JPEG without the camera's metadata
    stored = Image.open(city.settings.evidence_dir / report.media_sha256[:2] / f"{report.media_sha256}.jpg")
    assert stored.format == "JPEG" and not stored.getexif()
    queue = city.client.get("/api/cases", params={"status": "new"},
                            headers={"Authorization": f"Bearer {city.tokens['admin']}"}).json()
    assert case_id in {c["id"] for c in queue["data"]}


def test_a_report_at_a_camera_case_joins_it(city: City) -> None:
    now = datetime.now(UTC)
    jpeg = street_jpeg(city.street_dir, PHOTO)
    camera_case = ingest_sighting(city.factory, city.settings, lat=31.23800, lon=121.46500, jpeg=jpeg, observed=now)
    near = city.post(lat="31.23802", long="121.46502", description="again that car")  # about 3 m away
    far = city.post(lat="31.23900", long="121.46500")  # 110 m north: another spot
    other_kind = city.post(lat="31.23802", long="121.46502", service_code="stacked_goods")
    assert near.status_code == far.status_code == other_kind.status_code == 200
    assert near.json()[0]["service_request_id"] == str(camera_case)
    assert "joined" in str(near.json()[0]["service_notice"])
    assert far.json()[0]["service_request_id"] != str(camera_case)
    assert other_kind.json()[0]["service_request_id"] != str(camera_case)  # not the same violation
    with city.factory() as session:
        case = session.get(Case, camera_case)
        assert case is not None and case.source == "camera" and case.alert_count == 3  # two camera alerts + the report
        report = session.scalars(select(CitizenReport).where(CitizenReport.case_id == camera_case)).one()
        assert report.joined_existing
        far_case = session.get(Case, int(far.json()[0]["service_request_id"]))
        assert far_case is not None and far_case.source == "citizen"


def test_an_address_places_the_report_at_the_merchant(city: City) -> None:
    answer = city.post(lat="", long="", address_string="3 south road")
    assert answer.status_code == 200, answer.text
    with city.factory() as session:
        case = session.get(Case, int(answer.json()[0]["service_request_id"]))
        assert case is not None and case.merchant_id == "m-fruit"
    unknown = city.post(lat="", long="", address_string="nowhere lane")
    assert unknown.status_code == 400 and "address_string" in unknown.json()[0]["description"]


def _png(street_dir: Path) -> bytes:
    out = io.BytesIO()
    Image.open(street_dir / PHOTO).convert("RGB").resize((320, 240)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("change", "status", "names"),
    [
        ({"service_code": ""}, 400, "service_code"),
        ({"service_code": "graffiti"}, 400, "service_code"),
        ({"lat": "31.2", "long": ""}, 400, "lat, long"),
        ({"lat": "", "long": ""}, 400, "lat, long"),
        ({"lat": "nan"}, 400, "lat"),
        ({"lat": "1e400"}, 400, "lat"),
        ({"lat": "9" * 100}, 400, "lat"),
        ({"long": "181"}, 400, "long"),
        ({"email": "not an email"}, 400, "email"),
        ({"phone": "call me"}, 400, "phone"),
        ({"description": "x" * 4001}, 400, "description"),
        ({"description": "a\x00b"}, 400, "NUL"),
        ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
        ({"attribute[colour]": "red"}, 400, "attribute[colour]"),
        ({"attribute[duration]": "forever"}, 400, "attribute[duration]"),
        ({"jurisdiction_id": "elsewhere.gov"}, 404, "jurisdiction_id"),
        ({"api_key": ""}, 403, "api_key"),
        ({"api_key": "o311_guessed"}, 403, "api_key"),
        ({"api_key": "sw_a-user-token-is-no-client-key"}, 403, "api_key"),
    ],
)
def test_bad_reports_are_refused_naming_the_field(city: City, change: dict[str, str], status: int, names: str) -> None:
    answer = city.post(**change)
    assert answer.status_code == status, answer.text
    check(ERRORS, answer.json())
    assert names in answer.json()[0]["description"]
    with city.factory() as session:
        assert session.scalar(select(CitizenReport.id)) is None  # nothing half-stored


@pytest.mark.parametrize(
    ("name", "payload", "status"),
    [
        ("notes.jpg", b"just text, named like a photo", 400),
        ("cut.jpg", None, 400),  # the real photo cut in half: its header is fine, its data is not
        ("huge.jpg", b"\xff\xd8" + b"\x00" * (1024 * 1024), 413),  # over the 512 KiB limit set below
    ],
)
def test_media_must_be_a_whole_jpeg_or_png_within_the_limit(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, street_dir: Path,
    name: str, payload: bytes | None, status: int,
) -> None:
    settings = Open311Settings(public=True, max_media_bytes=512 * 1024)
    for city in _city(session_factory, central_settings, street_dir, settings):
        data = payload if payload is not None else street_jpeg(street_dir, PHOTO, width=640)[:20_000]
        answer = city.client.post(
            "/open311/v2/requests.json", data={"api_key": city.key, "service_code": "stacked_goods", **TEA_SPOT},
            files={"media": (name, data, "image/jpeg")},
        )
        assert answer.status_code == status, answer.text
        assert "media" in answer.json()[0]["description"]
        png = city.client.post(
            "/open311/v2/requests.json", data={"api_key": city.key, "service_code": "stacked_goods", **TEA_SPOT},
            files={"media": ("shot.png", _png(street_dir), "image/png")},
        )
        assert png.status_code == 200, png.text  # a PNG is accepted (stored as a JPEG)


def test_a_revoked_key_can_no_longer_post(city: City) -> None:
    assert city.post().status_code == 200
    assert revoke_key(city.factory, city.key_id)
    refused = city.post()
    assert refused.status_code == 403 and "revoked" in refused.json()[0]["description"]


def test_a_client_posting_too_often_is_held_back(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, street_dir: Path
) -> None:
    for city in _city(session_factory, central_settings, street_dir, Open311Settings(max_posts_per_hour=2)):
        assert [city.post().status_code for _ in range(3)] == [200, 200, 429]


def test_xml_post_answers_the_spec_document(city: City) -> None:
    answer = city.post("xml")
    assert answer.status_code == 200
    request = xmltodict.parse(answer.content)["service_requests"]["request"]
    assert request["service_request_id"].isdigit() and len(request["token"]) == 32


# ---------------------------------------------------------------- verification and the reward count


def test_a_reviewer_verifies_a_citizen_report_and_the_reporter_is_counted(city: City) -> None:
    admin = {"Authorization": f"Bearer {city.tokens['admin']}"}
    first = city.post(email="reporter@example.cn", lat="31.2270", long="121.4800")
    second = city.post(email="REPORTER@example.cn", first_name='=HYPERLINK("http://evil")', lat="31.2290",
                       long="121.4820", service_code="stacked_goods")
    city.post(phone="+86 138 0000 0000", lat="31.2280", long="121.4810")  # another reporter, never verified
    ids = [int(a.json()[0]["service_request_id"]) for a in (first, second)]
    early = city.client.post(f"/api/cases/{ids[0]}/verify-report", headers=admin)
    assert early.status_code == 409  # confirm it first
    camera = city.client.post(f"/api/cases/{city.cases['tea']}/verify-report", headers=admin)
    assert camera.status_code == 409 and "no citizen report" in camera.json()["detail"]
    for case_id in ids:
        assert city.client.post(f"/api/cases/{case_id}/confirm", headers=admin).status_code == 200
        done = city.client.post(f"/api/cases/{case_id}/verify-report", headers=admin)
        assert done.status_code == 200, done.text
    again = city.client.post(f"/api/cases/{ids[0]}/verify-report", headers=admin)
    assert again.status_code == 409
    with city.factory() as session:
        audit = session.scalars(select(AuditLog).where(AuditLog.case_id == ids[0], AuditLog.action == "verify_report"))
        assert [a.actor for a in audit] == ["admin"]
    export = city.client.get("/api/citizen-reporters.csv", headers=admin)
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [(r["email"], r["reports"], r["verified_reports"]) for r in rows] == [
        ("REPORTER@example.cn", "2", "2"),  # one reporter (the address in any case), both reports verified
        ("", "1", "0"),
    ]
    assert rows[1]["phone"] == "'+86 138 0000 0000"  # a leading + is neutralised too (a spreadsheet formula)
    assert rows[0]["first_name"] == "'=HYPERLINK(\"http://evil\")"  # the latest report's contact; never a live cell
    assert not any(v.startswith(("=", "+", "-", "@")) for r in rows for v in r.values())
    north = city.client.get("/api/citizen-reporters.csv", headers={"Authorization": f"Bearer {city.tokens['north']}"})
    assert north.status_code == 403  # the file holds contacts: city-wide admins only


def test_verified_citizen_case_is_published_without_the_citizens_words_or_contact(city: City) -> None:
    admin = {"Authorization": f"Bearer {city.tokens['admin']}"}
    posted = city.post(description="我的电话 13800000000，车牌沪A12345", email="me@example.cn",
                       lat="31.2270", long="121.4800").json()[0]
    case_id = posted["service_request_id"]
    city.client.post(f"/api/cases/{case_id}/confirm", headers=admin)
    public = city.client.get(f"/open311/v2/requests/{case_id}.json").json()[0]
    check(REQUESTS, [public])
    text = str(public)
    assert "13800000000" not in text and "me@example.cn" not in text and "沪A12345" not in text
    assert public["description"] == "illegal parking reported by a citizen"
    staff = city.client.get(f"/open311/v2/requests/{case_id}.json", params={"api_key": city.tokens["admin"]}).json()[0]
    assert "沪A12345" in str(staff["description"]) and "me@example.cn" not in str(staff)


# ---------------------------------------------------------------- the national lifecycle export


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


# ---------------------------------------------------------------- merges, and anything a caller may send


def test_a_merged_report_follows_its_case_and_is_verified_with_it(city: City) -> None:
    admin = {"Authorization": f"Bearer {city.tokens['admin']}"}
    posted = city.post(lat="31.2270", long="121.4800", email="a@example.cn").json()[0]
    source, target = int(posted["service_request_id"]), city.cases["north-poly"]  # an unreviewed camera case
    merged = city.client.post(f"/api/cases/{source}/merge", json={"into_case_id": target}, headers=admin)
    assert merged.status_code == 200, merged.text
    followed = city.client.get(f"/open311/v2/tokens/{posted['token']}.json").json()
    assert followed[0]["service_request_id"] == str(target)  # the token leads to the case it is part of now
    assert city.client.post(f"/api/cases/{target}/confirm", headers=admin).status_code == 200
    assert city.client.post(f"/api/cases/{target}/verify-report", headers=admin).status_code == 200
    with city.factory() as session:
        report = session.scalars(select(CitizenReport).where(CitizenReport.token == posted["token"])).one()
        assert report.verified_by == "admin"


_text = st.text(st.characters(codec="utf-8"), max_size=60)
_params = st.dictionaries(
    st.sampled_from(["service_request_id", "service_code", "start_date", "end_date", "status", "jurisdiction_id",
                     "api_key", "page"]),
    st.one_of(_text, st.integers().map(str), st.datetimes().map(lambda d: d.isoformat())),
    max_size=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=_params, fmt=st.sampled_from(["json", "xml"]),
       name=st.one_of(st.integers().map(str), _text, st.sampled_from(["²", "١٢", "0", "1" * 30])))
def test_no_query_makes_open311_fail(city: City, params: dict[str, str], fmt: str, name: str) -> None:
    """Whatever the query, the answer is a document or the spec's error list: never a 422 or a 5xx."""
    named = quote(name, safe="")
    for path in (f"/open311/v2/requests.{fmt}", f"/open311/v2/requests/{named}.{fmt}",
                 f"/open311/v2/tokens/{named}.{fmt}", f"/open311/v2/media/{named}.jpg"):
        answer = city.client.get(path, params=params)
        assert answer.status_code in (200, 400, 403, 404), (path, params, answer.text)
        if answer.status_code != 200 and path.endswith(".json"):
            check(ERRORS, answer.json())
        elif answer.status_code != 200:
            assert xmltodict.parse(answer.content)["errors"]["error"]["code"] == str(answer.status_code)


_fields = st.dictionaries(
    st.sampled_from(["service_code", "lat", "long", "address_string", "address_id", "description", "email",
                     "phone", "media_url", "first_name", "attribute[duration]", "attribute[x]", "device_id"]),
    st.one_of(_text, st.floats(allow_nan=True).map(str), st.integers().map(str)),
    max_size=8,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=_fields)
def test_no_report_makes_open311_fail(city: City, fields: dict[str, str]) -> None:
    """Whatever a client POSTs with a valid key, the answer is a created request or a 400 naming a field."""
    answer = city.client.post("/open311/v2/requests.json", data={"api_key": city.key, **fields})
    assert answer.status_code in (200, 400, 404), (fields, answer.text)
    if answer.status_code == 200:
        check(POST_RESPONSE, answer.json())
    else:
        check(ERRORS, answer.json())


def test_a_confirmed_citizen_case_follows_the_workflow_to_an_inspector(city: City, tmp_path: Path) -> None:
    """Nobody watches the spot a citizen reported, so its episode stays open: at the deadline the
    workflow sends an inspector instead of taking the case for self-rectified."""
    from datetime import timedelta

    from streetwatch.central.workflow.clock import ManualClock
    from streetwatch.central.workflow.notify import LocalSinkChannel
    from streetwatch.central.workflow.worker import WorkflowEngine

    admin = {"Authorization": f"Bearer {city.tokens['admin']}"}
    # in Golden Noodle Bar's zone (its only case was dismissed: nothing of it waits in the workflow)
    case_id = int(city.post(lat="31.23510", long="121.47250").json()[0]["service_request_id"])
    assert city.client.post(f"/api/cases/{case_id}/confirm", headers=admin).status_code == 200
    clock = ManualClock(datetime.now(UTC) + timedelta(minutes=1))  # past the undo window
    engine = WorkflowEngine(city.factory, city.settings.workflow, clock=clock,
                            channel=LocalSinkChannel(tmp_path / "notices.jsonl"))
    engine.tick()
    with city.factory() as session:
        assert session.get(Case, case_id).status == "notified"  # type: ignore[union-attr]
    clock.advance(timedelta(minutes=city.settings.workflow.rectify_window_min + 1))
    engine.tick()
    with city.factory() as session:
        assert session.get(Case, case_id).status == "escalated"  # type: ignore[union-attr]
    assert "m-noodle" in (tmp_path / "notices.jsonl").read_text(encoding="utf-8")  # the merchant was told
    public = city.client.get(f"/open311/v2/requests/{case_id}.json").json()[0]
    assert public["status"] == "open" and "处置" in str(public["status_notes"])
