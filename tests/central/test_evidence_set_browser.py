"""The evidence set in the review desk, in a real browser (Debian's Chromium, headless, Playwright), zh-CN.

Two episodes of the parked white sedan on the real traffic-cam footage, made by the edge's own
evidence-set builder (tests/central/media_seed.py) and ingested through central's real paths (alert,
then media pieces). The second case is merged into the first. The viewer of the merged case shows
each alert's set: three frames per episode (first seen, confirmed, latest: the latest on its clean frame
with the boxes overlaid, the subject highlighted and the SUV beside it thin), the subject's crop, and a
clip that plays in the browser (H.264 decoded: the video has a size and its time advances). Every label
is Chinese.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from desk_seed import LAT, seed_people
from media_seed import START, ingest_sets, real_sets
from playwright.sync_api import Browser, expect
from sqlalchemy.orm import Session, sessionmaker
from test_review_desk_browser import log_in, untranslated, watch, zh_context
from workflow_support import serve_app

from streetwatch.central.app import build_app
from streetwatch.central.case_service import Reviewer
from streetwatch.central.config import CentralSettings, WebSettings
from streetwatch.central.db import session_scope
from streetwatch.central.models import User
from streetwatch.central.review import ReviewService

LON = 120.58500  # the noodle shop's frontage on 干将路 (desk_seed.SHOPS)
ALL_LOADED = "(selector) => Array.from(document.querySelectorAll(selector)).every(i => i.naturalWidth > 0)"


@dataclass
class SetDesk:
    url: str
    target: int
    merged: int


@pytest.fixture()
def set_desk(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, assets_dir: Path
) -> Iterator[SetDesk]:
    seed_people(session_factory)
    target = ingest_sets(session_factory, central_settings, real_sets(assets_dir, lat=LAT, lon=LON))
    merged = ingest_sets(session_factory, central_settings,
                         real_sets(assets_dir, lat=LAT, lon=120.59000, camera_id="cam-kerb-2",
                                   start=START + timedelta(hours=2)))  # 人民路: a case of its own
    assert merged != target
    with session_scope(session_factory) as session:
        user = session.query(User).filter_by(username="zhang").one()
        reviewer = Reviewer.of(session, user)
    ReviewService(session_factory).merge(merged, into_case_id=target, reviewer=reviewer)
    web = WebSettings(mode="development", secret_key="e" * 40, cookie_secure=False)  # type: ignore[arg-type]
    app = build_app(central_settings.model_copy(update={"web": web}), session_factory)
    with serve_app(app) as url:
        yield SetDesk(url, target, merged)


def test_the_viewer_shows_each_alerts_set_frames_crop_and_a_playing_clip(
    set_desk: SetDesk, browser: Browser, artefacts: Path
) -> None:
    context = zh_context(browser)
    page = context.new_page()
    problems = watch(page)
    log_in(page, set_desk.url)
    page.goto(f"{set_desk.url}/cases/{set_desk.target}/evidence")

    frames = page.get_by_test_id("viewer-strip").get_by_test_id("frame")
    expect(frames).to_have_count(6)  # two episodes (the merged case's too), three frames each
    moments = [frames.nth(i).get_attribute("data-moment") for i in range(6)]
    assert sorted(moments) == sorted(["first seen", "confirmed", "latest"] * 2)
    labels = [frames.nth(i).locator(".moment").inner_text() for i in range(6)]
    assert set(labels) == {"首次发现", "确认", "最新"}
    page.wait_for_function(ALL_LOADED, arg=".viewer-strip img")

    # The latest frame is the clean frame: the subject and the context overlaid in their own styles.
    latest = frames.nth(moments.index("latest"))
    latest.click()
    src = latest.get_attribute("data-src") or ""
    assert "/media/" in src and src.endswith("/clean")
    page.wait_for_function("() => document.querySelector('.viewer-image').naturalWidth > 0")
    overlay = page.get_by_test_id("viewer-overlay")
    expect(overlay.locator("rect.subject")).to_have_count(1)
    expect(overlay.locator("rect.context")).to_have_count(1)
    expect(overlay.locator("polygon.zone")).to_have_count(1)
    assert "最新" in page.get_by_test_id("viewer-info").inner_text()

    sets = page.get_by_test_id("alert-set")
    expect(sets).to_have_count(4)  # a start and a reminder per episode, each with its own crop
    page.wait_for_function(ALL_LOADED, arg=".alert-set .crop")
    clips = page.get_by_test_id("clip")
    expect(clips).to_have_count(2)  # one per episode: a reminder announces its start's clip again
    page.evaluate("() => { const v = document.querySelector('.alert-set .clip'); v.muted = true; return v.play(); }")
    page.wait_for_function(
        "() => { const v = document.querySelector('.alert-set .clip');"
        " return v.readyState >= 2 && v.videoWidth === 640 && v.currentTime > 0.5; }",
        timeout=20_000,
    )
    assert page.evaluate("() => document.querySelector('.alert-set .clip').error") is None
    assert untranslated(page) == []
    assert problems == []
    page.screenshot(path=str(artefacts / "evidence-set-viewer.png"), full_page=True)
    context.close()
