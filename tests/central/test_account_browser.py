"""Log out everywhere, in a real zh-CN browser: the user's own button on the account page ends the
session on another device too, and an admin's button ends every session of one user and no one
else's. A `?flash=` in a link puts no words on the page.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect
from review_seed import PASSWORD, seed_city
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from test_review_desk_browser import PHONE, untranslated, zh_context
from workflow_support import serve_app

from streetwatch.central.app import build_app
from streetwatch.central.config import CentralSettings, WebSettings
from streetwatch.central.db import session_scope
from streetwatch.central.models import Area

AREA_NAMES = {"city": "上海市", "north": "北区", "south": "南区", "north-st1": "茶街"}


@pytest.fixture()
def desk_url(session_factory: sessionmaker[Session], central_settings: CentralSettings) -> Iterator[str]:
    seed_city(session_factory)
    with session_scope(session_factory) as session:  # the city's own names, as a city would have them
        for area_id, name in AREA_NAMES.items():
            session.execute(update(Area).where(Area.id == area_id).values(name=name))
    web = WebSettings(mode="development", secret_key="b" * 40, cookie_secure=False)  # type: ignore[arg-type]
    with serve_app(build_app(central_settings.model_copy(update={"web": web}), session_factory)) as url:
        yield url


def log_in(page: Page, url: str, user: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("用户名").fill(user)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_test_id("who")).to_be_visible()


def test_log_out_everywhere_ends_the_session_on_the_phone_too(desk_url: str, browser: Browser) -> None:
    desktop, phone = zh_context(browser), zh_context(browser, PHONE)
    desk_page, phone_page = desktop.new_page(), phone.new_page()
    log_in(desk_page, desk_url, "north")
    log_in(phone_page, desk_url, "north")
    desk_page.get_by_role("link", name="账户").click()
    expect(desk_page.get_by_test_id("live-sessions")).to_contain_text("您当前在 2 处登录。")
    expect(desk_page.get_by_test_id("live-sessions")).to_contain_text("30 分钟无操作后结束")
    assert untranslated(desk_page) == []
    desk_page.get_by_role("button", name="在所有设备上退出登录").click()
    expect(desk_page.get_by_role("button", name="登录")).to_be_visible()
    phone_page.reload()  # the phone's cookie names an ended session now
    expect(phone_page).to_have_url(f"{desk_url}/login?next=%2F")
    expect(phone_page.get_by_label("用户名")).to_be_visible()
    desktop.close()
    phone.close()


def test_an_admin_logs_one_user_out_everywhere(desk_url: str, browser: Browser) -> None:
    admin_ctx, north_ctx, south_ctx = zh_context(browser), zh_context(browser, PHONE), zh_context(browser)
    admin, north, south = admin_ctx.new_page(), north_ctx.new_page(), south_ctx.new_page()
    for page, user in ((admin, "admin"), (north, "north"), (south, "south")):
        log_in(page, desk_url, user)
    admin.goto(f"{desk_url}/account")
    row = admin.locator('[data-testid="user-row"][data-user="north"]')
    expect(row.get_by_test_id("user-live")).to_have_text("1")
    expect(row).to_contain_text("审核员")
    assert untranslated(admin) == []
    row.get_by_role("button", name="让该用户在所有设备上退出登录").click()
    expect(admin.get_by_test_id("flash")).to_have_text("north：已结束 1 个登录。")
    expect(admin.locator('[data-testid="user-row"][data-user="north"]').get_by_test_id("user-live")).to_have_text("0")
    admin.reload()
    expect(admin.get_by_test_id("flash")).to_have_count(0)  # a message is shown once
    north.reload()
    expect(north.get_by_label("用户名")).to_be_visible()
    south.reload()
    expect(south.get_by_test_id("who")).to_be_visible()  # another user's session goes on
    south.goto(f"{desk_url}/?flash=%E8%B4%A6%E6%88%B7%E5%B7%B2%E5%86%BB%E7%BB%93&failed=1")  # "账户已冻结"
    expect(south.get_by_test_id("who")).to_be_visible()
    expect(south.get_by_test_id("flash")).to_have_count(0)
    for context in (admin_ctx, north_ctx, south_ctx):
        context.close()
