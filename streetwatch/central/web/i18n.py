"""The interface language and the city's clock: gettext catalogues (Babel) for every page, script
message and flash, chosen per request, and dates in the configured time zone.

Catalogues: `web/locale/<locale>/LC_MESSAGES/messages.po` ship with the package (zh_CN; English is
the source language, so its msgids are the English text). A city extends or rewords them with its
own `.po` files under `web.locale_dir` (same layout), read over the shipped ones. The `.po` files are
compiled into memory when a locale is first used (Babel's own compiler), so no binary `.mo` is kept
in the repository and no build step can be forgotten.

Which language a request gets: the logged-in user's own setting (`users.locale`), else the
browser's `Accept-Language`, else `web.default_locale` (zh_CN).

Templates call `_()` / `ngettext()` / `{% trans %}` (Jinja2's i18n extension, new style: the
arguments are formatted and escaped by Jinja); they read the translations of the request being
rendered from a context variable that `render` sets.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Final, Literal
from zoneinfo import ZoneInfo

from babel.core import Locale
from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations
from fastapi import Request

from streetwatch.central.config import UiLocale, WebSettings

log = logging.getLogger(__name__)

LOCALES: Final[tuple[UiLocale, ...]] = ("zh_CN", "en")
SHIPPED_DIR = Path(str(files("streetwatch.central.web") / "locale"))
DOMAIN = "messages"
MAX_ACCEPT_LANGUAGE = 400  # characters of the header read (a bounded input)
DateStyle = Literal["short", "medium", "long"]

_current: ContextVar[Translations | NullTranslations | None] = ContextVar("streetwatch_translations", default=None)
_current_locale: ContextVar[str] = ContextVar("streetwatch_locale", default="zh_CN")
_current_zone: ContextVar[str] = ContextVar("streetwatch_time_zone", default="Asia/Shanghai")


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "translate later"
    """Marks a string for the catalogue without translating it now (labels.py's tables)."""
    return message


def _compile(po_path: Path, locale: str) -> Translations:
    with po_path.open("rb") as handle:
        catalog = read_po(handle, locale=locale, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


@functools.lru_cache(maxsize=8)
def translations_for(locale: str, city_dir: Path | None = None) -> Translations | NullTranslations:
    """The catalogue of `locale`: the shipped one with the city's (if any) read over it."""
    found: Translations | NullTranslations = NullTranslations()
    for folder in (SHIPPED_DIR, city_dir):
        if folder is None:
            continue
        po_path = folder / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
        if not po_path.is_file():
            continue
        compiled = _compile(po_path, locale)
        if isinstance(found, Translations):
            found.merge(compiled)
        else:
            found = compiled
        log.info("i18n: %s catalogue read from %s", locale, po_path)
    return found


def parse_accept_language(header: str) -> list[str]:
    """Language tags of an Accept-Language header, best first (q=0 dropped; bounded length)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header[:MAX_ACCEPT_LANGUAGE].split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and tag != "*" and quality > 0:
            ranked.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


def choose_locale(*, user_locale: str | None, accept_language: str, default: UiLocale) -> UiLocale:
    """The user's own setting, else the browser's best supported language, else the default."""
    if user_locale in LOCALES:
        return user_locale  # type: ignore[return-value]
    for tag in parse_accept_language(accept_language):
        primary = tag.replace("_", "-").split("-")[0].lower()
        # "zh", "zh-TW" or "zh-Hans" still mean Chinese to these users; "en-GB" is English
        picked = next((loc for loc in LOCALES if loc.split("_")[0] == primary), None)
        if picked is not None:
            return picked
    return default


def request_locale(request: Request) -> UiLocale:
    """The locale of this request (cached on it); see the module docstring for the order."""
    cached = getattr(request.state, "locale", None)
    if cached in LOCALES:
        return cached  # type: ignore[no-any-return]
    web: WebSettings = request.app.state.settings.web
    locale = choose_locale(
        user_locale=getattr(request.state, "user_locale", None),
        accept_language=request.headers.get("accept-language", ""),
        default=web.default_locale,
    )
    request.state.locale = locale
    return locale


def request_translations(request: Request) -> Translations | NullTranslations:
    web: WebSettings = request.app.state.settings.web
    return translations_for(request_locale(request), web.locale_dir)


def gettext(request: Request, message: str, **values: object) -> str:
    """`message` in the request's language, with `%(name)s` placeholders filled from `values`."""
    text = request_translations(request).gettext(message)
    return text % values if values else text


@contextmanager
def rendering(request: Request) -> Iterator[None]:
    """Templates rendered inside this block use the request's catalogue, locale and clock."""
    web: WebSettings = request.app.state.settings.web
    token = _current.set(request_translations(request))
    locale_token = _current_locale.set(request_locale(request))
    zone_token = _current_zone.set(web.time_zone)
    try:
        yield
    finally:
        _current.reset(token)
        _current_locale.reset(locale_token)
        _current_zone.reset(zone_token)


def _active() -> Translations | NullTranslations:
    return _current.get() or NullTranslations()


def template_gettext(message: str) -> str:
    return _active().gettext(message)


def template_ngettext(singular: str, plural: str, n: int) -> str:
    return _active().ngettext(singular, plural, n)


def current_locale() -> str:
    return _current_locale.get()


@functools.lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def format_when(value: datetime | str | None, style: DateStyle = "short") -> str:
    """A time (or an ISO 8601 string) in the city's zone and the page's format ("2026/3/2 16:00")."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        when = value
    return format_datetime(when, style, tzinfo=_zone(_current_zone.get()), locale=current_locale())


def city_zone(name: str) -> ZoneInfo:
    return _zone(name)


def format_age(delta: timedelta) -> str:
    """A duration the way the locale says it ("3天", "5 hours"), at least a minute."""
    seconds = max(delta.total_seconds(), 60.0)
    return format_timedelta(timedelta(seconds=seconds), threshold=1.0, locale=current_locale())


def format_number(value: float | int) -> str:
    return format_decimal(value, locale=current_locale())


def locale_name(locale: str) -> str:
    """A language's own name ("中文", "English") for the switcher."""
    return Locale.parse(locale).language_name or locale
