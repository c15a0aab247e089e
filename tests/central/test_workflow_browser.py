"""The city pages in a real browser (Debian Chromium, headless, Playwright): a district user sees only
its district's cases on the queue, the map and the API; screenshots of the map and statistics pages
are saved to $STREETWATCH_TEST_ARTEFACTS (default: pytest's tmp folder)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from review_seed import PASSWORD, T0, add_case, seed_cases, seed_city, street_jpeg
from sqlalchemy.orm import Session, sessionmaker
from workflow_support import serve_app

from streetwatch.central.api.tokens import issue_token
from streetwatch.central.app import build_app
from streetwatch.central.config import CentralSettings, WebSettings
from streetwatch.central.db import session_scope
from streetwatch.central.models import AuditLog
from streetwatch.central.workflow.clock import ManualClock
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.worker import WorkflowEngine

log = logging.getLogger(__name__)

NOW = T0 + timedelta(days=1)
TEA, NOODLE, FRUIT = (31.23510, 121.47215), (31.23510, 121.47250), (31.22510, 121.47515)


@dataclass
class City:
    url: str
    cases: dict[str, int]
    north_ids: set[int]
    south_ids: set[int]
    north_token: str


def _history(factory: sessionmaker[Session]) -> tuple[set[int], set[int]]:
    """Two weeks of reviewed cases in both districts; returns (north ids, south ids)."""
    north: set[int] = set()
    south: set[int] = set()
    with session_scope(factory) as session:
        for day in range(12):
            at = NOW - timedelta(days=day, hours=3)
            for (lat, lon), mid, area, status, violation in (
                (TEA, "m-tea", "north", "confirmed" if day < 3 else "closed", "illegal_parking"),
                (NOODLE, "m-noodle", "north", "rectified", "street_vending"),
                (FRUIT, "m-fruit", "south", "closed" if day % 2 else "escalated", "stacked_goods"),
            ):
                if mid == "m-noodle" and day % 3:
                    continue
                case = add_case(
                    session,
                    lat=lat,
                    lon=lon,
                    merchant_id=mid,
                    method="inside_zone",
                    area_id=area,
                    status=status,
                    violation=violation,
                    first_seen=at,
                    camera_id=f"cam-{area}",
                )
                (north if area == "north" else south).add(case.id)
                if status in ("closed", "rectified"):
                    done = at + timedelta(minutes=20 if status == "rectified" else 60 * (2 + day % 4))
                    session.add(
                        AuditLog(
                            case_id=case.id,
                            actor="workflow",
                            action=status.replace("closed", "close"),
                            detail={},
                            at=done,
                        )
                    )
    return north, south


@pytest.fixture()
def city(session_factory: sessionmaker[Session], central_settings: CentralSettings, street_dir: Path) -> Iterator[City]:
    seed_city(session_factory)
    cases = seed_cases(session_factory, central_settings, [street_jpeg(street_dir, "kerb_parked_cars_street.jpg")])
    north, south = _history(session_factory)
    north |= {cases["tea"], cases["noodle"], cases["north-poly"]}
    south |= {cases["fruit"]}
    clock = ManualClock(NOW)
    WorkflowEngine(session_factory, WorkflowSettings(), clock=clock).tick()  # grades and hotspots
    token = issue_token(session_factory, username="north", name="browser").secret
    security = WebSettings(mode="development", secret_key="w" * 40, cookie_secure=False)  # type: ignore[arg-type]
    app = build_app(central_settings.model_copy(update={"web": security}), session_factory, clock=clock)
    with serve_app(app) as url:
        yield City(url, cases, north, south, token)


def log_in(page: Page, base: str, user: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base}/")


def open_map(page: Page, base: str) -> None:
    page.goto(f"{base}/map")
    expect(page.locator("#city-map[data-ready='1']")).to_be_attached()
    expect(page.locator("path.zone").first).to_be_visible()


def ids_of(page: Page, selector: str, attribute: str) -> set[str]:
    loc = page.locator(selector)
    return {loc.nth(i).get_attribute(attribute) or "" for i in range(loc.count())}


def test_district_user_sees_only_its_district_on_queue_map_and_api(
    city: City, browser: Browser, artefacts: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    log_in(page, city.url, "north")
    queue = {int(i) for i in ids_of(page, '[data-testid="case-card"]', "data-case-id")}
    assert queue == {city.cases["tea"], city.cases["noodle"], city.cases["north-poly"]}

    open_map(page, city.url)
    on_map = {int(i) for i in ids_of(page, '[data-testid="in-view-list"] a', "data-case")}
    assert on_map and on_map <= city.north_ids and not on_map & city.south_ids
    assert city.cases["tea"] in on_map
    assert ids_of(page, "path.zone", "data-merchant") == {"m-tea", "m-noodle"}
    assert page.locator('path.zone[data-merchant="m-tea"]').get_attribute("data-grade") == "red"
    # m-tea: 12 confirmed cases; m-noodle: 4 rectified (its seeded vending case is new: not counted,
    # so no hotspot); m-fruit is south's
    assert ids_of(page, "path.hotspot", "data-hotspot") == {"merchant:m-tea"}
    expect(page.locator('[data-testid="road-grades"]')).to_contain_text("Tea Street")
    page.screenshot(path=str(artefacts / "map_north.png"), full_page=True)

    page.goto(f"{city.url}/stats?days=30")
    expect(page.locator("#chart-cases")).to_be_visible()
    expect(page.get_by_test_id("table-periods").locator("tr")).to_have_count(31)  # a header and 30 days
    total = int(page.locator('[data-testid="kpi-total"] b').inner_text())
    unreviewed = int(page.locator('[data-testid="kpi-unreviewed"] b').inner_text())
    assert (total, unreviewed) == (len(city.north_ids) - 3, 3)  # the three new cases are shown apart
    expect(page.get_by_test_id("table-merchants")).to_contain_text("Lotus Tea House")
    expect(page.get_by_test_id("table-merchants")).not_to_contain_text("Fresh Fruit")
    page.screenshot(path=str(artefacts / "stats_north.png"), full_page=True)
    csv_text = page.request.get(f"{city.url}/stats.csv?days=30").text()
    assert len(csv_text.strip().splitlines()) == len(city.north_ids) + 1

    auth = {"Authorization": f"Bearer {city.north_token}"}
    for status, expected in (("new", {city.cases[n] for n in ("tea", "noodle", "north-poly")}), ("notified", None)):
        api = page.request.get(f"{city.url}/api/cases?status={status}&limit=200", headers=auth).json()
        api_ids = {c["id"] for c in api["data"]}
        assert api_ids and api_ids <= city.north_ids  # the tick notified north's confirmed cases
        assert expected is None or api_ids == expected
    notified = min(api_ids)  # the last loop ran with status=notified: a case the worker started
    page.goto(f"{city.url}/cases/{notified}/workflow")
    expect(page.locator('[data-testid="strike"]')).to_contain_text("Strike 1 of 3: Warning")
    expect(page.locator('[data-testid="deadline"]')).to_contain_text("to rectify")
    expect(page.locator('[data-testid="history"]')).to_contain_text("merchant notified")
    page.screenshot(path=str(artefacts / "case_workflow_north.png"), full_page=True)
    hotspots = page.request.get(f"{city.url}/api/workflow/hotspots", headers=auth).json()
    assert {h["key"] for h in hotspots} == {"merchant:m-tea"}
    foreign = page.request.get(f"{city.url}/api/workflow/cases/{city.cases['fruit']}", headers=auth)
    assert foreign.status == 404
    assert page.request.get(f"{city.url}/cases/{city.cases['fruit']}/workflow").status == 404
    # The workflow's own steps have buttons on the page. A notified case is not verified yet: the
    # district reviewer cannot close it; a supervisor (here the admin) may, with a note.
    page.goto(f"{city.url}/cases/{notified}/workflow")
    expect(page.get_by_test_id("needs-verification")).to_contain_text("Closing needs the verification first.")
    expect(page.get_by_role("button", name="Close case")).to_be_disabled()
    assert problems == []
    page.close()
    boss = browser.new_page(viewport={"width": 1280, "height": 900})
    boss.on("dialog", lambda dialog: dialog.accept())  # "Close this case?"
    log_in(boss, city.url, "admin")
    boss.goto(f"{city.url}/cases/{notified}/workflow")
    boss.get_by_label("Closing note").fill("kerb clear on the patrol")
    boss.get_by_label("Close without verification (supervisor)").check()
    boss.get_by_role("button", name="Close case").click()
    expect(boss.locator('[data-testid="flash"]')).to_have_text(f"Case #{notified} closed.")
    expect(boss.locator('[data-testid="stage"]')).to_contain_text("Closed")
    expect(boss.locator('[data-testid="history"]')).to_contain_text("kerb clear on the patrol")
    expect(boss.locator('[data-testid="history"]')).to_contain_text("supervisor override")
    expect(boss.locator('[data-testid="close-form"]')).to_have_count(0)
    boss.close()


def test_city_user_sees_both_districts(city: City, browser: Browser, artefacts: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, city.url, "city")
    open_map(page, city.url)
    on_map = {int(i) for i in ids_of(page, '[data-testid="in-view-list"] a', "data-case")}
    assert on_map & city.north_ids and on_map & city.south_ids
    assert ids_of(page, "path.zone", "data-merchant") == {"m-tea", "m-noodle", "m-fruit"}
    page.screenshot(path=str(artefacts / "map_city.png"), full_page=True)
    page.goto(f"{city.url}/stats?days=30")
    expect(page.get_by_test_id("table-merchants")).to_contain_text("Fresh Fruit")
    page.screenshot(path=str(artefacts / "stats_city.png"), full_page=True)
    page.goto(f"{city.url}/inspections")
    rows = page.get_by_test_id("visit")
    # both red merchants (12 cases each) first, by name, inspected daily; the yellow one weekly
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Fresh Fruit Corner")
    expect(rows.nth(1)).to_contain_text("Lotus Tea House")
    expect(rows.nth(1)).to_contain_text("daily")
    expect(rows.nth(2)).to_contain_text("Golden Noodle Bar")
    expect(rows.nth(2)).to_contain_text("weekly")
    page.goto(f"{city.url}/cases/{city.cases['tea']}")
    page.locator('[data-testid="workflow-link"]').click()  # the case page leads to its workflow
    expect(page).to_have_url(f"{city.url}/cases/{city.cases['tea']}/workflow")
    expect(page.locator('[data-testid="stage"]')).to_contain_text("To review")
    page.close()
