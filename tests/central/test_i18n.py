"""The interface language: the shipped zh_CN catalogue covers every string the pages and their
script use (extracted from the templates and the web code with Babel, as `pybabel extract` does), a
city's own catalogue rewords over it, and the language follows the user's setting, then the
browser, then the default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from fastapi.testclient import TestClient
from review_seed import PASSWORD, seed_city
from sqlalchemy.orm import Session, sessionmaker
from web_forms import csrf_field, form_login

from streetwatch.central.app import build_app
from streetwatch.central.config import CentralSettings, WebSettings
from streetwatch.central.web import i18n

REPO = Path(__file__).resolve().parents[2]
DEV = {"mode": "development", "secret_key": "i" * 40, "cookie_secure": False}


def extracted_msgids() -> set[str]:
    method_map = [("streetwatch/central/web/**.py", "python"), ("streetwatch/central/web/templates/**.html", "jinja2")]
    options = {"streetwatch/central/web/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(REPO),
        method_map=method_map,
        options_map=options,
        keywords={"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)},
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


def test_every_interface_string_has_a_chinese_translation() -> None:
    catalogue = i18n.translations_for("zh_CN")
    msgids = extracted_msgids()
    assert len(msgids) > 300
    missing = sorted(m for m in msgids if catalogue.gettext(m) == m and not re.fullmatch(r"[#%()\w\s.:·…-]*", m))
    assert missing == []
    # placeholders survive translation (a dropped %(name)s would lose the value on the page)
    broken = [
        m for m in msgids if set(re.findall(r"%\(\w+\)s", m)) != set(re.findall(r"%\(\w+\)s", catalogue.gettext(m)))
    ]
    assert broken == []


def test_the_catalogue_holds_no_string_the_pages_no_longer_use() -> None:
    from babel.messages.pofile import read_po

    po = i18n.SHIPPED_DIR / "zh_CN" / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as handle:
        shipped = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(handle) if m.id}
    assert shipped - extracted_msgids() == set()


@pytest.mark.parametrize(
    ("user", "header", "expected"),
    [
        (None, "", "zh_CN"),
        (None, "en-US,en;q=0.9", "en"),
        (None, "zh-TW,zh;q=0.9,en;q=0.5", "zh_CN"),
        (None, "fr-FR,fr;q=0.9", "zh_CN"),
        (None, "fr;q=0.9,en;q=0.8", "en"),
        (None, "en;q=0,zh;q=0.1", "zh_CN"),
        ("en", "zh-CN", "en"),
        ("zh_CN", "en-US", "zh_CN"),
        ("xx", "en", "en"),
        (None, "en" * 500, "zh_CN"),
    ],
)
def test_the_language_follows_the_user_then_the_browser_then_the_default(
    user: str | None, header: str, expected: str
) -> None:
    assert i18n.choose_locale(user_locale=user, accept_language=header, default="zh_CN") == expected


def test_a_city_catalogue_rewords_over_the_shipped_one(tmp_path: Path) -> None:
    folder = tmp_path / "zh_CN" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "messages.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
        'msgid "Illegal parking"\nmsgstr "机动车乱停放"\n',
        encoding="utf-8",
    )
    city = i18n.translations_for("zh_CN", tmp_path)
    assert city.gettext("Illegal parking") == "机动车乱停放"
    assert city.gettext("Street vending") == "占道经营"  # the rest as shipped


def test_a_user_picks_english_and_keeps_it(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    seed_city(session_factory)
    app = build_app(central_settings.model_copy(update={"web": WebSettings(**DEV)}), session_factory)  # type: ignore[arg-type]
    with TestClient(app) as client:
        assert "用户名" in client.get("/login").text  # no Accept-Language: the default, zh-CN
        assert "User name" in client.get("/login", headers={"Accept-Language": "en-US"}).text
        form_login(client, "north", PASSWORD)
        page = client.get("/").text
        assert '<html lang="zh-CN">' in page and "审核队列" in page
        saved = client.post("/settings/locale", data={"locale": "en", "csrf_token": csrf_field(page), "next": "/"})
        assert saved.status_code == 200 and "Language saved." in saved.text
        english = client.get("/", headers={"Accept-Language": "zh-CN"}).text  # the user's choice wins
        assert '<html lang="en">' in english and "Review queue" in english and "Illegal parking" in english
        bad = client.post("/settings/locale", data={"locale": "fr", "csrf_token": csrf_field(english)})
        assert bad.status_code == 422


def test_times_are_shown_in_the_city_time_zone(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    from review_seed import T0, add_case

    from streetwatch.central.db import session_scope

    seed_city(session_factory)
    with session_scope(session_factory) as s:
        case_id = add_case(s, lat=31.2351, lon=121.4721, area_id="north", first_seen=T0).id  # 08:00 UTC
    for zone, shown in (("Asia/Shanghai", "2026/3/2 16:00"), ("Asia/Urumqi", "2026/3/2 14:00")):
        web = WebSettings(**DEV, time_zone=zone)  # type: ignore[arg-type]
        app = build_app(central_settings.model_copy(update={"web": web}), session_factory)
        with TestClient(app) as client:
            form_login(client, "admin", PASSWORD)
            assert shown in client.get(f"/cases/{case_id}").text
