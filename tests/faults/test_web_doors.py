"""The web doors of issue 17 against a real `central serve` (uvicorn, its own proxy-header and
access-log handling, the database of the backend under test), over real HTTP:

(e) log in, copy the cookie, log out: the copy gets 401 from a JSON fetch and the login page from a
    page, and cannot reassign a case;
(f) 20 wrong passwords with 20 different X-Forwarded-For values: refused from the sixth on, the right
    password too until the window has passed, with a message saying how long to wait;
and: an address limit that a forged X-Forwarded-For does not reset unless the peer is a configured
proxy, and an Open311 `api_key=` that never reaches the access log.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from fault_harness import Process, accepts, wait_for
from review_seed import PASSWORD, add_case, seed_city
from support import free_port

from streetwatch.central.db import make_engine, make_session_factory, session_scope
from streetwatch.central.models import Case

WINDOW_S = 15  # the login window, short so the test can wait it out (long enough for 5 Argon2 checks)


@dataclass
class Served:
    base: str
    process: Process
    db_url: str
    case_id: int


def _serve(workdir: Path, db_url: str, processes: list[Process], web: dict[str, object]) -> Served:
    factory = make_session_factory(make_engine(db_url))
    seed_city(factory)
    with session_scope(factory) as session:
        case_id = add_case(session, lat=31.23510, lon=121.47215, area_id="north", merchant_id="m-tea").id
    port = free_port()
    config = workdir / "central.yaml"
    config.write_text(yaml.safe_dump({
        "evidence_dir": str(workdir / "evidence"),
        "web": {"host": "127.0.0.1", "port": port, "mode": "development", "login_window_s": WINDOW_S} | web,
    }))
    command = [sys.executable, "-m", "streetwatch.central.cli", "--database-url", db_url, "--config", str(config),
               "serve", "--no-ingest"]
    process = Process("central-web", command, workdir / "central-web.log")
    processes.append(process)
    process.start()
    wait_for(lambda: accepts(port), 30, "central serve to listen", why=process.log)
    return Served(f"http://127.0.0.1:{port}", process, db_url, case_id)


@pytest.fixture()
def served(tmp_path: Path, fault_db: str, processes: list[Process]) -> Iterator[Served]:
    yield _serve(tmp_path, fault_db, processes, {})


def _csrf(client: httpx.Client, path: str = "/login") -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found, f"no CSRF field on {path}"
    return found.group(1)


def _login(client: httpx.Client, user: str, password: str, *, forwarded: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    form = {"username": user, "password": password, "csrf_token": _csrf(client)}
    return client.post("/login", data=form, headers=headers)


def _merchant(db_url: str, case_id: int) -> str | None:
    with make_session_factory(make_engine(db_url))() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case.merchant_id


def test_e_a_cookie_copied_before_logout_is_worth_nothing_after_it(served: Served) -> None:
    with httpx.Client(base_url=served.base) as browser:
        assert _login(browser, "north", PASSWORD).status_code == 303
        copied = dict(browser.cookies)
        csrf = _csrf(browser, "/")
        assert browser.post("/logout", data={"csrf_token": csrf}).status_code == 303
    with httpx.Client(base_url=served.base, cookies=copied) as thief:
        page = thief.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F"
        fetch = thief.get("/", headers={"Accept": "application/json"})
        assert fetch.status_code == 401 and fetch.json() == {"detail": "Not logged in"}
        reassign = thief.post(f"/cases/{served.case_id}/reassign", data={"merchant_id": "m-noodle"},
                              headers={"Accept": "application/json", "X-CSRF-Token": csrf})
        assert reassign.status_code == 401
        as_form = thief.post(f"/cases/{served.case_id}/reassign", data={"merchant_id": "m-noodle", "csrf_token": csrf})
        assert as_form.status_code == 303 and as_form.headers["location"].startswith("/login")
        assert thief.get("/evidence/" + "0" * 64).status_code == 401
    assert _merchant(served.db_url, served.case_id) == "m-tea"


def test_f_twenty_wrong_passwords_from_twenty_forwarded_addresses_are_refused_from_the_sixth(served: Served) -> None:
    codes = []
    with httpx.Client(base_url=served.base) as client:
        started = time.monotonic()
        for index in range(20):
            codes.append(_login(client, "north", f"wrong-{index}", forwarded=f"198.51.100.{index + 1}").status_code)
        assert codes == [401] * 5 + [429] * 15, codes
        right = _login(client, "north", PASSWORD, forwarded="198.51.100.99")
        assert right.status_code == 429
        wait = int(right.headers["retry-after"])
        assert 1 <= wait <= WINDOW_S
        assert f"该用户名登录失败次数过多，请在 {wait} 秒后再试。" in right.text
        time.sleep(wait + 0.5)  # the oldest failure leaves the window: 4 of 5 left
        assert _login(client, "north", PASSWORD).status_code == 303
        waited = time.monotonic() - started
    print(f"\nfault (f): {codes.count(401)} wrong passwords answered 401, then {codes.count(429)} refused (429); "
          f"the right password refused for {wait} s more, then accepted ({waited:.1f} s after the first)")


@pytest.mark.parametrize(
    ("trusted", "blocked_from_another_forwarded_address"),
    [([], True), (["127.0.0.1"], False)],
    ids=["no-proxy-configured", "loopback-is-the-proxy"],
)
def test_the_address_limit_believes_x_forwarded_for_only_from_a_configured_proxy(
    tmp_path: Path, fault_db: str, processes: list[Process], trusted: list[str],
    blocked_from_another_forwarded_address: bool,
) -> None:
    web = {"trusted_proxies": trusted, "login_max_failures_per_address": 6, "login_window_s": 300}
    served = _serve(tmp_path, fault_db, processes, web)
    with httpx.Client(base_url=served.base) as client:
        for index in range(6):  # six accounts from one address
            assert _login(client, f"user-{index}", "wrong-password", forwarded="203.0.113.7").status_code == 401
        assert _login(client, "north", PASSWORD, forwarded="203.0.113.7").status_code == 429
        other = _login(client, "north", PASSWORD, forwarded="203.0.113.8")
        assert (other.status_code == 429) is blocked_from_another_forwarded_address, other.status_code
        if blocked_from_another_forwarded_address:
            assert "该地址登录失败次数过多" in other.text


def test_an_open311_api_key_never_reaches_the_access_log(served: Served) -> None:
    with httpx.Client(base_url=served.base) as client:
        answer = client.get("/open311/v2/requests.json", params={"api_key": "sw_leak_me_please", "status": "open"})
        assert answer.status_code in (401, 403)
    wait_for(lambda: "/open311/v2/requests.json" in served.process.log(), 10, "the access log line")
    log = served.process.log()
    assert "sw_leak_me_please" not in log
    assert re.search(r'"GET /open311/v2/requests.json\?api_key=\*\*\*&status=open HTTP/1.1" 40[13]', log), log[-2000:]
