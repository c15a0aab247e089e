"""The review desk in a real browser (Debian's Chromium, headless, Playwright) as Chinese city staff
use it: a zh-CN browser, a backlog of two pages through the real ingest path with real street-photo
evidence, desktop and phone.

- every page in zh-CN: no English interface word and no raw stored token in what the page shows;
- a key acts on the case last clicked; a double key press is one request; undo restores the case and
  no merchant notice is ever written for it; bulk dismiss after a preview; search by a Chinese
  merchant name; merge by picking a candidate; weak cases say why; the evidence viewer zooms;
- at 390×844 no page scrolls sideways and the decision buttons are 44 px targets.
Screenshots (1440×900 and 390×844) go to $STREETWATCH_TEST_ARTEFACTS (default: pytest's tmp).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from desk_seed import PASSWORD, Desk, seed_desk
from playwright.sync_api import Browser, BrowserContext, Page, expect
from review_seed import street_jpeg
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from workflow_support import serve_app

from streetwatch.central.app import build_app
from streetwatch.central.case_status import ALL_STATUSES
from streetwatch.central.config import CentralSettings, WebSettings
from streetwatch.central.models import AuditLog, Case, Notification
from streetwatch.central.review import DISMISS_REASONS
from streetwatch.central.web.labels import TABLES
from streetwatch.central.workflow.clock import ManualClock
from streetwatch.central.workflow.notify import LocalSinkChannel
from streetwatch.central.workflow.worker import WorkflowEngine
from streetwatch.edge.alerts import VIOLATIONS

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
# Words a Chinese page may show in Latin letters: the file format of the export.
ALLOWED_LATIN = {"CSV"}
RAW_TOKENS = sorted(
    {*VIOLATIONS, *(s.value for s in ALL_STATUSES), *DISMISS_REASONS, *(k for t in TABLES.values() for k in t)}
    - {"none", "new", "to", "from", "other"},  # short English words the Latin check catches anyway
    key=len,
    reverse=True,
)


@dataclass
class DeskServer:
    url: str
    factory: sessionmaker[Session]
    settings: CentralSettings
    desk: Desk


@pytest.fixture()
def desk(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, street_dir: Path
) -> Iterator[DeskServer]:
    jpegs = [
        street_jpeg(street_dir, "kerb_parked_cars_street.jpg"),
        street_jpeg(street_dir, "market_hanoi_goods_on_ground.jpg"),
    ]
    seeded = seed_desk(session_factory, central_settings, jpegs)
    web = WebSettings(mode="development", secret_key="d" * 40, cookie_secure=False)  # type: ignore[arg-type]
    settings = central_settings.model_copy(update={"web": web})
    app = build_app(settings, session_factory)
    with serve_app(app) as url:
        yield DeskServer(url, session_factory, settings, seeded)


def zh_context(browser: Browser, viewport: dict[str, int] = DESKTOP) -> BrowserContext:
    return browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai")  # type: ignore[arg-type]


def log_in(page: Page, base: str, user: str = "wang") -> None:
    page.goto(f"{base}/login")
    page.get_by_label("用户名").fill(user)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(f"{base}/")


def watch(page: Page) -> list[str]:
    problems: list[str] = []  # script errors and CSP violations
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


# What a person sees: text nodes and the attributes a browser shows, outside data marked translate="no".
VISIBLE_TEXT_JS = """
() => {
  const shown = [], data = [];
  const walker = document.createTreeWalker(document.documentElement, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, el = node.parentElement;
    if (!el || el.closest('script,style,template')) continue;
    const text = node.textContent.trim();
    if (!text) continue;
    (el.closest('[translate="no"]') ? data : shown).push(text);
  }
  for (const el of document.querySelectorAll('[title],[placeholder],[aria-label],[alt],[data-confirm]')) {
    for (const a of ['title', 'placeholder', 'aria-label', 'alt', 'data-confirm']) {
      const v = el.getAttribute(a);
      if (v) (el.closest('[translate="no"]') ? data : shown).push(v);
    }
  }
  for (const el of document.querySelectorAll('#i18n-strings')) for (const v of Object.values(el.dataset)) shown.push(v);
  return {shown, data, lang: document.documentElement.lang, title: document.title};
}
"""


def untranslated(page: Page) -> list[str]:
    """English words and raw stored tokens on the page (empty: all of it is in Chinese)."""
    seen = page.evaluate(VISIBLE_TEXT_JS)
    problems = [f"lang={seen['lang']}"] if seen["lang"] != "zh-CN" else []
    for text in [re.sub(r"%\(\w+\)s", "", t) for t in [*seen["shown"], seen["title"]]]:  # placeholders are no text
        words = [w for w in re.findall(r"[A-Za-z]{3,}", text) if w not in ALLOWED_LATIN]
        if words:
            problems.append(f"English {words} in {text[:80]!r}")
    for text in [re.sub(r"%\(\w+\)s", "", t) for t in [*seen["shown"], *seen["data"]]]:
        for token in RAW_TOKENS:
            if re.search(rf"(?<![A-Za-z_]){re.escape(token)}(?![A-Za-z_])", text):
                problems.append(f"raw token {token!r} in {text[:80]!r}")
    return problems


def _workflow_case(server: DeskServer) -> int:
    """Confirm the noodle shop's case as wang and let the workflow notify the merchant."""
    from streetwatch.central.case_service import Reviewer
    from streetwatch.central.review import ReviewService

    case_id = server.desk.cases["noodle"]
    with server.factory() as s:
        from streetwatch.central.models import User

        wang = s.scalars(select(User).where(User.username == "wang")).one()
        reviewer = Reviewer(user_id=wang.id, username="wang")
    ReviewService(server.factory).confirm(case_id, reviewer=reviewer)
    later = ManualClock(datetime.now(UTC) + timedelta(minutes=1))
    sink = LocalSinkChannel(server.settings.evidence_dir.parent / "notices.jsonl")
    WorkflowEngine(server.factory, server.settings.workflow, clock=later, channel=sink).tick()
    return case_id


def pages_to_check(server: DeskServer, workflow_case: int) -> dict[str, str]:
    cases = server.desk.cases
    return {
        "queue": "/",
        "queue-2": "/?page=2",
        "case": f"/cases/{cases['nowhere']}",
        "case-beyond": f"/cases/{cases['beyond']}",
        "evidence": f"/cases/{cases['noodle-twin']}/evidence",
        "workflow": f"/cases/{workflow_case}/workflow",
        "workflow-new": f"/cases/{cases['tea']}/workflow",
        "inspections": "/inspections",
        "map": "/map",
        "stats": "/stats",
        "not-found": "/cases/999999",
    }


SHOTS = {"queue": "queue", "case": "case", "evidence": "evidence", "workflow": "workflow", "inspections": "inspections"}


def test_every_page_in_zh_cn_is_chinese_and_screenshots(desk: DeskServer, browser: Browser, artefacts: Path) -> None:
    workflow_case = _workflow_case(desk)
    context = zh_context(browser)
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{desk.url}/login")
    assert untranslated(page) == [], "login page"
    log_in(page, desk.url)
    found = {}
    for name, path in pages_to_check(desk, workflow_case).items():
        page.goto(desk.url + path)
        found[name] = untranslated(page)
        if name in SHOTS:
            page.screenshot(path=str(artefacts / f"zh_{SHOTS[name]}_1440.png"), full_page=name != "queue")
    assert {k: v for k, v in found.items() if v} == {}
    page.set_viewport_size(PHONE)
    for name, path in pages_to_check(desk, workflow_case).items():
        if name in SHOTS:
            page.goto(desk.url + path)
            page.screenshot(path=str(artefacts / f"zh_{SHOTS[name]}_390.png"), full_page=False)
    assert [p for p in problems if "404" not in p] == []
    context.close()


def test_weak_cases_say_why_and_the_queue_counts_pages(desk: DeskServer, browser: Browser) -> None:
    context = zh_context(browser)
    page = context.new_page()
    log_in(page, desk.url)
    expect(page.get_by_test_id("page-of")).to_have_text("第 1 / 2 页")
    expect(page.get_by_test_id("count")).to_contain_text("共 28 件")
    page.get_by_test_id("next-page").click()
    expect(page.get_by_test_id("page-of")).to_have_text("第 2 / 2 页")
    expect(page.locator('[data-testid="case-card"]')).to_have_count(8)
    expect(page.get_by_test_id("prev-page")).to_be_visible()
    page.goto(f"{desk.url}/cases/{desk.desk.cases['nowhere']}")
    card = page.locator('[data-testid="case-card"]')
    expect(card.get_by_test_id("position")).to_have_text("无位置（摄像机未标定）")
    reasons = card.get_by_test_id("weak-reasons")
    for reason in ("无定位：摄像机未标定", "未归属商户", "仅一次告警", "检测置信度低"):
        expect(reasons).to_contain_text(reason)
    page.goto(f"{desk.url}/cases/{desk.desk.cases['beyond']}")
    expect(page.get_by_test_id("suggestion")).to_have_text(re.compile(r"最近：福来五金，相距 (19|20)\.\d 米"))
    priority = page.get_by_test_id("priority")
    priority.locator("summary").click()
    expect(priority).to_contain_text("优先级")
    expect(priority).to_contain_text("乱堆物料 10 + 告警 2")
    context.close()


def test_a_key_acts_on_the_clicked_case(desk: DeskServer, browser: Browser) -> None:
    context = zh_context(browser)
    page = context.new_page()
    log_in(page, desk.url)
    cards = page.locator('[data-testid="case-card"]')
    third = cards.nth(2)
    target = int(third.get_attribute("data-case-id") or 0)
    third.locator("dl").click()  # a click on the card, not on a button
    expect(third).to_have_class(re.compile(r"\bselected\b"))
    page.keyboard.press("c")
    expect(page.locator("#toast")).to_contain_text(f"已确认 #{target}")
    with desk.factory() as s:
        confirmed = list(s.scalars(select(AuditLog.case_id).where(AuditLog.action == "confirm")))
    assert confirmed == [target]
    context.close()


def test_a_double_key_press_makes_one_request(desk: DeskServer, browser: Browser) -> None:
    context = zh_context(browser)
    page = context.new_page()
    log_in(page, desk.url)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and r.url.endswith("/confirm") else None)
    first = page.locator('[data-testid="case-card"]').first
    first_id = int(first.get_attribute("data-case-id") or 0)
    page.keyboard.press("c")
    page.keyboard.press("c")  # at once, as a double press
    expect(first).to_have_class(re.compile(r"\bdone\b"))
    page.wait_for_timeout(800)
    assert len(posts) == 1
    with desk.factory() as s:
        assert list(s.scalars(select(AuditLog.case_id).where(AuditLog.action == "confirm"))) == [first_id]
    context.close()


def test_undo_restores_the_case_and_no_notice_is_sent(desk: DeskServer, browser: Browser, tmp_path: Path) -> None:
    context = zh_context(browser)
    page = context.new_page()
    log_in(page, desk.url)
    noodle = desk.desk.cases["noodle"]
    card = page.locator(f"#case-{noodle}")  # on the first page, among 19 others
    card.locator("dl").click()
    page.keyboard.press("c")
    undo = page.locator("#toast .toast-undo")
    expect(undo).to_be_visible()
    expect(card).to_have_class(re.compile(r"\bdone\b"))
    undo.click()
    expect(page.locator("#toast")).to_contain_text("决定已撤销")
    expect(card).not_to_have_class(re.compile(r"\bdone\b"))
    expect(card.get_by_test_id("status")).to_have_text("待审核")
    sink = tmp_path / "notices.jsonl"
    later = ManualClock(datetime.now(UTC) + timedelta(minutes=5))  # long past the undo window
    WorkflowEngine(desk.factory, desk.settings.workflow, clock=later, channel=LocalSinkChannel(sink)).tick()
    with desk.factory() as s:
        case = s.get(Case, noodle)
        assert case is not None and case.status == "new"
        assert list(s.scalars(select(Notification.id))) == []
        actions = list(s.scalars(select(AuditLog.action).where(AuditLog.case_id == noodle).order_by(AuditLog.id)))
    assert actions == ["confirm", "undo"]
    assert not sink.exists()
    page.reload()
    expect(page.locator(f"#case-{noodle}")).to_be_visible()  # back in the queue
    context.close()


def test_bulk_dismiss_after_a_preview(desk: DeskServer, browser: Browser) -> None:
    context = zh_context(browser)
    page = context.new_page()
    log_in(page, desk.url)
    cards = page.locator('[data-testid="case-card"]')
    chosen = [int(cards.nth(i).get_attribute("data-case-id") or 0) for i in (1, 3, 4)]
    for case_id in chosen:
        page.locator(f"#case-{case_id} .bulk-pick").check()
    expect(page.get_by_test_id("bulk-bar")).to_contain_text("已选 3 件")
    page.get_by_role("button", name="批量驳回").click()
    dialog = page.get_by_test_id("bulk-dialog")
    expect(dialog).to_contain_text("驳回这 3 件案件？")
    expect(dialog.get_by_test_id("bulk-preview").locator("li")).to_have_count(3)
    dialog.locator('select[name="bulk-reason"]').select_option("false_detection")
    dialog.get_by_test_id("bulk-go").click()
    expect(page.locator("#toast")).to_contain_text("已驳回 3 / 3 件")
    with desk.factory() as s:
        rows = s.execute(select(Case.id, Case.status).where(Case.id.in_(chosen))).all()
        reasons = list(s.scalars(select(AuditLog.detail).where(AuditLog.action == "dismiss")))
    assert {r.status for r in rows} == {"dismissed"} and len(rows) == 3
    assert [d["reason"] for d in reasons] == ["false_detection"] * 3
    context.close()


def test_search_by_a_chinese_merchant_name(desk: DeskServer, browser: Browser) -> None:
    context = zh_context(browser)
    page = context.new_page()
    log_in(page, desk.url)
    page.fill('[data-testid="search"]', "老王")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q=%E8%80%81%E7%8E%8B"))
    ids = {
        int(i) for i in page.locator('[data-testid="case-card"]').evaluate_all("els => els.map(e => e.dataset.caseId)")
    }
    with desk.factory() as s:
        expected = set(s.scalars(select(Case.id).where(Case.merchant_id == "SZ-001", Case.status == "new")))
    assert ids == expected and desk.desk.cases["noodle"] in ids
    page.fill('[data-testid="search"]', "人民路")
    page.keyboard.press("Enter")
    expect(page.locator('[data-testid="case-card"]')).to_have_count(1)
    expect(page.locator('[data-testid="merchant"]')).to_contain_text("碧螺茶庄")
    context.close()


def test_merge_by_picking_a_candidate(desk: DeskServer, browser: Browser) -> None:
    context = zh_context(browser)
    page = context.new_page()
    log_in(page, desk.url)
    problems = watch(page)
    noodle, twin = desk.desk.cases["noodle"], desk.desk.cases["noodle-twin"]
    page.fill('[data-testid="search"]', "老王面馆")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q="))
    page.locator(f"#case-{twin} dl").click()
    page.keyboard.press("m")
    dialog = page.locator("#merge-dialog")
    candidates = dialog.get_by_test_id("merge-candidates").locator(".candidate")
    expect(dialog).to_be_visible()
    assert problems == []
    expect(candidates).to_have_count(1)
    expect(candidates.first).to_contain_text(f"#{noodle}")
    expect(candidates.first).to_contain_text("同一商户 · 相距 4 米")
    candidates.first.click()
    expect(dialog.locator(".that-case figcaption")).to_contain_text(f"#{noodle}")
    expect(dialog.locator(".this-case img")).to_be_visible()
    dialog.get_by_role("button", name=f"并入 #{noodle}").click()
    expect(page.locator("#toast")).to_contain_text(f"并入案件 #{noodle}")
    with desk.factory() as s:
        merged = s.get(Case, twin)
        target = s.get(Case, noodle)
        assert merged is not None and (merged.status, merged.merged_into_id) == ("closed", noodle)
        assert target is not None and target.alert_count == 5
    page.goto(f"{desk.url}/cases/{noodle}/evidence")  # the viewer shows the merged case's images too
    expect(page.get_by_test_id("viewer-strip").locator(".frame")).to_have_count(2)
    context.close()


def test_the_evidence_viewer_shows_the_whole_frame_zooms_and_draws_the_boxes(
    desk: DeskServer, browser: Browser
) -> None:
    context = zh_context(browser)
    page = context.new_page()
    problems = watch(page)
    log_in(page, desk.url)
    page.goto(f"{desk.url}/cases/{desk.desk.cases['noodle']}/evidence")
    viewer = page.get_by_test_id("viewer")
    page.wait_for_function("document.querySelector('.viewer-image').naturalWidth > 0")
    assert page.locator(".viewer-image").evaluate("i => [i.naturalWidth, getComputedStyle(i).objectFit]") == [
        480,
        "contain",
    ]
    expect(page.get_by_test_id("viewer-overlay").locator("rect.subject")).to_have_count(1)
    page.get_by_role("button", name="放大").click()
    expect(viewer).to_have_attribute("data-zoom", "1.50")
    page.get_by_role("button", name="适应窗口").click()
    expect(viewer).to_have_attribute("data-zoom", "1.00")
    assert problems == []
    context.close()


PHONE_PAGES = ("queue", "case", "evidence", "workflow", "inspections", "map", "stats")


def test_phone_layout_has_no_sideways_scroll_and_44px_targets(desk: DeskServer, browser: Browser) -> None:
    workflow_case = _workflow_case(desk)
    context = zh_context(browser, PHONE)
    page = context.new_page()
    log_in(page, desk.url)
    paths = pages_to_check(desk, workflow_case)
    wide = {}
    for name in PHONE_PAGES:
        page.goto(desk.url + paths[name])
        width = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
        if width[0] > width[1]:
            wide[name] = width
    assert wide == {}
    page.goto(desk.url + "/")
    heights = (
        page.locator(".case-card")
        .first.locator(".actions button, .actions select")
        .evaluate_all("els => els.map(e => e.getBoundingClientRect().height)")
    )
    assert heights and min(heights) >= 44
    assert page.get_by_role("button", name="退出").bounding_box()["height"] >= 44  # type: ignore[index]
    page.goto(desk.url + "/inspections")
    buttons = page.locator(".visit button").evaluate_all("els => els.map(e => e.getBoundingClientRect().height)")
    assert buttons and min(buttons) >= 44
    context.close()


def test_the_highlight_follows_focus_and_the_card_in_view(desk: DeskServer, browser: Browser) -> None:
    context = zh_context(browser)
    page = context.new_page()
    log_in(page, desk.url)
    cards = page.locator('[data-testid="case-card"]')
    expect(cards.first).to_have_class(re.compile(r"\bselected\b"))
    cards.nth(1).focus()  # tabbing onto a card
    expect(cards.nth(1)).to_have_class(re.compile(r"\bselected\b"))
    cards.nth(12).scroll_into_view_if_needed()  # the highlighted card scrolled away: one in view takes over
    page.wait_for_timeout(300)
    selected = page.locator(".case-card.selected")
    expect(selected).to_have_count(1)
    in_view = "el => { const r = el.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight; }"
    assert selected.evaluate(in_view)
    target = int(selected.get_attribute("data-case-id") or 0)
    page.keyboard.press("c")
    expect(page.locator("#toast")).to_contain_text(f"已确认 #{target}")
    context.close()
