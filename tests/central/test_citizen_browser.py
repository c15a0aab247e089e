"""A citizen's report on the review desk, in a real browser (Debian's Chromium, headless) as
Chinese city staff see it: POSTed through Open311 with a real street photo, it waits in the queue
as a case marked 市民举报 with its photo; the reviewer confirms it there, opens the case, reads the
citizen's words (never the contact) and verifies the report (核实举报), which counts for the
reporter. Screenshots go to $STREETWATCH_TEST_ARTEFACTS (default: pytest's tmp)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, expect
from review_seed import PASSWORD, seed_city
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from workflow_support import serve_app

from streetwatch.central.app import build_app
from streetwatch.central.citizen import reporter_rows
from streetwatch.central.config import CentralSettings, Open311Settings, WebSettings
from streetwatch.central.models import CitizenReport
from streetwatch.central.open311_keys import issue_key

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
CONTACT = "zhang.san@example.cn"
WORDS = "水果店门口堆满了纸箱，行人只能走机动车道"


@pytest.fixture()
def desk(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, street_dir: Path
) -> Iterator[tuple[str, int]]:
    """(the desk's URL, the case a citizen's report opened)."""
    seed_city(session_factory)
    web = WebSettings(mode="development", secret_key="c" * 40, cookie_secure=False)  # type: ignore[arg-type]
    settings = central_settings.model_copy(update={"web": web, "open311": Open311Settings()})
    key = issue_key(session_factory, name="city app").secret
    with serve_app(build_app(settings, session_factory)) as url:
        with (street_dir / "market_hanoi_goods_on_ground.jpg").open("rb") as photo:
            posted = requests.post(
                f"{url}/open311/v2/requests.json", timeout=30,
                data={"api_key": key, "service_code": "stacked_goods", "lat": "31.22510", "long": "121.47515",
                      "description": WORDS, "email": CONTACT, "phone": "13800000000"},
                files={"media": ("goods.jpg", photo, "image/jpeg")},
            )
        assert posted.status_code == 200, posted.text
        yield url, int(posted.json()[0]["service_request_id"])


def latin_words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]{3,}", text)


def test_a_citizen_report_is_confirmed_and_verified_on_the_desk(
    desk: tuple[str, int], browser: Browser, artefacts: Path, session_factory: sessionmaker[Session]
) -> None:
    url, case_id = desk
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN", timezone_id="Asia/Shanghai")  # type: ignore[arg-type]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{url}/login")
    page.get_by_label("用户名").fill("admin")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(f"{url}/")

    card = page.locator(f"#case-{case_id}")
    expect(card).to_be_visible()
    expect(card.get_by_test_id("source")).to_contain_text("市民举报")
    expect(card.get_by_test_id("source")).to_contain_text("1 条市民举报")
    expect(card.get_by_test_id("merchant")).to_contain_text("Fresh Fruit Corner")  # attributed like a camera case
    thumb = card.locator("img").first
    expect(thumb).to_be_visible()
    assert thumb.evaluate("img => img.complete && img.naturalWidth > 0")  # the citizen's photo loads
    assert CONTACT not in page.content() and "13800000000" not in page.content()  # the contact stays private
    page.screenshot(path=str(artefacts / "zh_citizen_queue_1440.png"))

    card.locator("button.confirm").click()
    expect(card).to_be_hidden()  # decided: it leaves the queue

    page.goto(f"{url}/cases/{case_id}")
    section = page.get_by_test_id("citizen-reports")
    expect(section).to_contain_text(WORDS)
    expect(section.get_by_test_id("unverified")).to_have_text("尚未核实")
    assert latin_words(section.inner_text()) == []  # every word of the section is Chinese
    assert CONTACT not in page.content()
    section.get_by_role("button", name="核实举报").click()
    expect(page.get_by_test_id("flash")).to_contain_text("市民举报已核实")
    expect(page.get_by_test_id("citizen-reports").get_by_test_id("verified")).to_have_text("已核实")
    expect(page.get_by_role("button", name="核实举报")).to_have_count(0)  # verified once
    expect(page.locator("table").last).to_contain_text("市民举报已核实")  # the audit log says who verified it
    page.screenshot(path=str(artefacts / "zh_citizen_case_1440.png"), full_page=True)

    page.set_viewport_size(PHONE)
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(artefacts / "zh_citizen_case_390.png"), full_page=True)
    assert errors == []
    context.close()

    with session_factory() as session:
        report = session.scalars(select(CitizenReport).where(CitizenReport.case_id == case_id)).one()
        assert report.verified_by == "admin" and report.verified_at is not None
        rows = reporter_rows(session)
    assert [(r["email"], r["reports"], r["verified_reports"]) for r in rows] == [(CONTACT, 1, 1)]
