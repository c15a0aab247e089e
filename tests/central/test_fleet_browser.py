"""The fleet page (/fleet) in a real zh-CN browser: an admin sees every box, online or not, what it
runs, and the delivery audit's view (an open gap with its resend requests, alerts lost for good),
all in Chinese, on a desktop and a phone; a reviewer is refused.

The rows are what the fleet worker and the auditor write (central/delivery.py), made through the
auditor's own methods from statuses and answers the boxes would send.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy.orm import Session, sessionmaker
from test_review_desk_browser import PHONE, untranslated, zh_context
from workflow_support import serve_app

from streetwatch.central.app import build_app
from streetwatch.central.config import CentralSettings, WebSettings
from streetwatch.central.db import session_scope
from streetwatch.central.delivery import AuditTimes, DeliveryAuditor
from streetwatch.central.models import User
from streetwatch.central.passwords import hash_password
from streetwatch.edge.alerts import EdgeStatus, ResendReply

PASSWORD = "fleet-page-password-1"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture()
def fleet_url(session_factory: sessionmaker[Session], central_settings: CentralSettings) -> Iterator[str]:
    with session_scope(session_factory) as session:
        hashed = hash_password(PASSWORD)
        session.add_all([User(username="ops", password_hash=hashed, role="admin", is_active=True),
                         User(username="wang", password_hash=hashed, role="reviewer", is_active=True)])
    auditor = DeliveryAuditor(session_factory, times=AuditTimes(timedelta(0), timedelta(seconds=60)))
    auditor.record_status(EdgeStatus(edge_id="box-east", state="online", at=NOW, outbox_id="ob-e", last_seq=40,
                                     version="0.2.0", model="yolox_nano", cameras=[{"id": "cam-1", "kind": "fixed"}]))
    auditor.record_status(EdgeStatus(edge_id="box-west", state="offline", at=NOW, reason="connection lost",
                                     outbox_id="ob-w", last_seq=7))
    auditor.tick()  # both numberings have gaps (nothing stored): resend requests go out
    auditor.record_reply(ResendReply(request_id="rq-1", edge_id="box-west", outbox_id="ob-w", first_seq=1,
                                     last_seq=7, requeued=0, missing=[(1, 7)]))
    auditor.tick()
    web = WebSettings(mode="development", secret_key="f" * 40, cookie_secure=False)  # type: ignore[arg-type]
    app = build_app(central_settings.model_copy(update={"web": web}), session_factory)
    with serve_app(app) as url:
        yield url


def log_in(page: object, url: str, user: str) -> None:
    page.goto(f"{url}/login")  # type: ignore[attr-defined]
    page.get_by_label("用户名").fill(user)  # type: ignore[attr-defined]
    page.get_by_label("密码").fill(PASSWORD)  # type: ignore[attr-defined]
    page.get_by_role("button", name="登录").click()  # type: ignore[attr-defined]


def test_an_admin_sees_the_fleet_in_chinese_on_desktop_and_phone(fleet_url: str, browser: Browser) -> None:
    context = zh_context(browser)
    page = context.new_page()
    log_in(page, fleet_url, "ops")
    page.get_by_role("link", name="边缘设备").click()
    expect(page.get_by_test_id("fleet-summary")).to_contain_text("2 台中 1 台在线")
    east = page.locator('[data-testid="box"][data-edge="box-east"]')
    expect(east).to_contain_text("在线")
    expect(east).to_contain_text("0.2.0 · yolox_nano")
    expect(east.get_by_test_id("delivery")).to_contain_text("第 1–40 条告警自")
    expect(east.get_by_test_id("delivery")).to_contain_text("已请求重发 1 次")
    west = page.locator('[data-testid="box"][data-edge="box-west"]')
    expect(west).to_contain_text("离线")
    expect(west.get_by_test_id("delivery")).to_contain_text("第 1–7 条告警已无法找回")
    expect(west.get_by_test_id("delivery")).to_contain_text("已送达 0 条，无缺失")  # the loss is recorded, no gap
    assert untranslated(page) == []
    page.set_viewport_size(PHONE)
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    context.close()


def test_a_reviewer_is_refused_the_fleet(fleet_url: str, browser: Browser) -> None:
    context = zh_context(browser)
    page = context.new_page()
    log_in(page, fleet_url, "wang")
    expect(page.get_by_role("link", name="边缘设备")).to_have_count(0)
    answer = page.goto(f"{fleet_url}/fleet")
    assert answer is not None and answer.status == 403
    context.close()
