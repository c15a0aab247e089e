"""The review queue in a real browser: Debian's Chromium, headless, driven by Playwright.

A uvicorn server (in a thread of this process) serves the app over a database seeded through the
real ingest path, with real street-photo JPEG evidence. The test logs in, confirms one case with the
`c` key and dismisses another with `d` + a reason key, then checks the audit log in the database and
on the case page. A screenshot of the queue goes to $STREETWATCH_TEST_ARTEFACTS (default: pytest's tmp).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect
from review_seed import PASSWORD, seed_cases, seed_city, street_jpeg
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support import free_port

from streetwatch.central.app import build_app
from streetwatch.central.config import CentralSettings, WebSettings
from streetwatch.central.models import AuditLog, Case

log = logging.getLogger(__name__)


@dataclass
class Server:
    url: str
    factory: sessionmaker[Session]
    cases: dict[str, int]


@pytest.fixture()
def server(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, street_dir: Path
) -> Iterator[Server]:
    seed_city(session_factory)
    jpegs = [
        street_jpeg(street_dir, "kerb_parked_cars_street.jpg"),
        street_jpeg(street_dir, "market_hanoi_goods_on_ground.jpg"),
    ]
    cases = seed_cases(session_factory, central_settings, jpegs)
    security = WebSettings(mode="development", secret_key="b" * 40, cookie_secure=False)  # type: ignore[arg-type]
    app = build_app(central_settings.model_copy(update={"web": security}), session_factory)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Server(f"http://127.0.0.1:{port}", session_factory, cases)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


def _log_in(page: Page, base: str, user: str) -> None:
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/login?next=%2F")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base}/")


def _audit(factory: sessionmaker[Session]) -> list[tuple[int | None, str, str, dict[str, object]]]:
    with factory() as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.case_id.is_not(None)).order_by(AuditLog.id))
        return [(r.case_id, r.actor, r.action, dict(r.detail)) for r in rows]


def test_review_queue_confirm_and_dismiss_by_keyboard(server: Server, browser: Browser, artefacts: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []  # script errors and CSP violations show up here
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    _log_in(page, server.url, "north")
    cards = page.locator('[data-testid="case-card"]')
    # north sees its three cases, highest priority first (parking 33 > vending 22 > polygon-only 20)
    expect(cards).to_have_count(3)
    order = [int(cards.nth(i).get_attribute("data-case-id") or 0) for i in range(3)]
    assert order == [server.cases["tea"], server.cases["noodle"], server.cases["north-poly"]]
    first = cards.nth(0)
    expect(first).to_have_class(re.compile(r"\bselected\b"))
    expect(first.locator('[data-testid="merchant"]')).to_contain_text("Lotus Tea House")
    expect(first.locator("svg.map polygon.zone.attributed")).to_have_count(1)
    expect(first.locator("svg.map circle.point")).to_have_count(1)
    first.locator(".evidence img").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('.evidence img').naturalWidth > 0")
    assert first.locator(".evidence img").evaluate("img => img.naturalWidth") == 480
    assert first.locator(".evidence img").evaluate("img => getComputedStyle(img).objectFit") == "contain"  # uncropped
    shot = artefacts / "queue.png"
    page.screenshot(path=str(shot), full_page=True)
    log.info("queue screenshot: %s", shot)

    page.keyboard.press("c")  # confirm the selected (first) case
    tea = server.cases["tea"]
    expect(page.locator("#toast")).to_contain_text(f"#{tea} Illegal parking · Lotus Tea House confirmed.")
    expect(first).to_have_class(re.compile(r"\bdone\b"))
    second = cards.nth(1)
    expect(second).to_have_class(re.compile(r"\bselected\b"))  # the selection moved on by itself
    page.wait_for_timeout(500)  # a key right after the highlight moved by itself is taken as a repeat
    page.keyboard.press("d")  # dismiss: the reason dialog opens
    expect(page.locator("#dismiss-dialog")).to_be_visible()
    page.keyboard.press("2")  # the second reason: not_a_violation
    expect(page.locator("#toast")).to_contain_text(
        f"#{server.cases['noodle']} Street vending · Golden Noodle Bar dismissed (Not a violation)."
    )
    expect(second).to_have_class(re.compile(r"\bdone\b"))

    entries = _audit(server.factory)
    assert [(c, actor, action) for c, actor, action, _ in entries] == [
        (server.cases["tea"], "north", "confirm"),
        (server.cases["noodle"], "north", "dismiss"),
    ]
    assert entries[1][3]["reason"] == "not_a_violation"
    with server.factory() as s:
        assert s.get(Case, server.cases["tea"]).status == "confirmed"  # type: ignore[union-attr]
        assert s.get(Case, server.cases["noodle"]).status == "dismissed"  # type: ignore[union-attr]

    for case_name, action in (("tea", "confirm"), ("noodle", "dismiss")):
        page.goto(f"{server.url}/cases/{server.cases[case_name]}")
        rows = page.locator('[data-testid="audit-row"]')
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("north")
        expect(rows.first).to_contain_text(action)
    page.screenshot(path=str(artefacts / "case.png"), full_page=True)

    page.goto(f"{server.url}/")
    expect(cards).to_have_count(1)  # only the untouched case is still new
    assert problems == []
    page.close()


def test_merge_and_reassign_by_keyboard(server: Server, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _log_in(page, server.url, "city")
    cards = page.locator('[data-testid="case-card"]')
    expect(cards).to_have_count(4)
    page.keyboard.press("r")  # reassign the first card (tea) to the noodle bar, found by its name
    dialog = page.locator("#reassign-dialog")
    expect(dialog).to_be_visible()
    page.keyboard.type("Noodle")
    pick = dialog.get_by_test_id("merchant-candidates").locator(".candidate")
    expect(pick).to_have_count(1)
    expect(pick).to_contain_text("Golden Noodle Bar")
    pick.click()
    expect(page.locator("#toast")).to_contain_text(
        f"#{server.cases['tea']} Illegal parking · Lotus Tea House reassigned to Golden Noodle Bar."
    )
    page.keyboard.press("j")  # the reassigned card stays; move down to the next one
    page.keyboard.press("j")  # skip noodle: the polygon-only parking case is third
    expect(cards.nth(2)).to_have_class(re.compile(r"\bselected\b"))
    page.keyboard.press("m")
    merge = page.locator("#merge-dialog")
    expect(merge).to_be_visible()
    expect(merge.locator(".no-candidates")).to_be_visible()  # 1.3 km from any other parking case
    merge.locator('input[name="value"]').fill(str(server.cases["tea"]))  # a case number typed in instead
    merge.locator('input[name="value"]').press("Enter")
    expect(page.locator("#toast")).to_contain_text(
        f"#{server.cases['north-poly']} Illegal parking merged into case #{server.cases['tea']}."
    )
    entries = _audit(server.factory)
    assert [(c, actor, action) for c, actor, action, _ in entries] == [
        (server.cases["tea"], "city", "reassign"),
        (server.cases["tea"], "city", "merge_in"),
        (server.cases["north-poly"], "city", "merge"),
    ]
    with server.factory() as s:
        tea = s.get(Case, server.cases["tea"])
        assert tea is not None and (tea.merchant_id, tea.attribution_method) == ("m-noodle", "manual")
        assert tea.alert_count == 5  # 3 of its own + 2 merged in
    page.close()


def test_api_docs_work_offline(server: Server, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(f"{server.url}/docs")
    expect(page.get_by_text("/api/cases/{case_id}/confirm").first).to_be_visible()
    page.close()


def test_district_user_sees_only_its_district(server: Server, browser: Browser) -> None:
    page = browser.new_page()
    _log_in(page, server.url, "south")
    cards = page.locator('[data-testid="case-card"]')
    expect(cards).to_have_count(1)
    assert cards.first.get_attribute("data-case-id") == str(server.cases["fruit"])
    expect(page.locator('[data-testid="merchant"]')).to_contain_text("Fresh Fruit Corner")
    response = page.goto(f"{server.url}/cases/{server.cases['tea']}")
    assert response is not None and response.status == 404
    expect(page.get_by_test_id("error")).to_have_text(f"Case {server.cases['tea']} was not found.")
    page.close()
