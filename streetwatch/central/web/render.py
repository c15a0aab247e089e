"""Template rendering with what every page needs: the CSRF token, the logged-in user's label, the
request's language (i18n.py) and the one-line message a form leaves for the page it returns to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response

from streetwatch.central.api.deps import csrf_token
from streetwatch.central.models import User
from streetwatch.central.web import i18n, labels

TEMPLATES_DIR = Path(str(files("streetwatch.central.web") / "templates"))
STATIC_DIR = Path(str(files("streetwatch.central.web") / "static"))


@dataclass(frozen=True)
class UserLabel:
    display_name: str
    area_label: str | None  # None: the whole city (the template says so in the page's language)
    role: str = "reviewer"


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(("html",)),
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.template_gettext, i18n.template_ngettext, newstyle=True
    )
    env.filters.update(
        when=i18n.format_when,
        age=i18n.format_age,
        number=i18n.format_number,
        label=lambda value, kind: labels.label(kind, value),
    )
    env.globals.update(
        ui_labels=labels.ui_labels,
        describe_detail=labels.describe_detail,
        locale_name=i18n.locale_name,
        LOCALES=i18n.LOCALES,
    )
    return Jinja2Templates(env=env)


def user_label(user: User, area_name: str | None) -> UserLabel:
    return UserLabel(display_name=user.username, area_label=area_name, role=user.role)


def render(
    request: Request,
    name: str,
    context: dict[str, object],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    locale = i18n.request_locale(request)
    full = {
        "csrf_token": csrf_token(request),
        "user": None,
        "locale": locale,
        "html_lang": locale.replace("_", "-"),
        **context,
    }
    with i18n.rendering(request):  # Starlette renders the template right here, in the constructor
        return templates.TemplateResponse(request, name, full, status_code=status_code, headers=headers)


def safe_next(target: str | None, default: str = "/") -> str:
    """A same-site relative path to go back to after a form (no open redirect to other hosts)."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target:
        return default
    return target


FLASH_KEY = "flash"
MAX_FLASH_CHARS = 500


def redirect_with_flash(request: Request, target: str, message: str, *, failed: bool = False) -> RedirectResponse:
    """303 back to a page of this site with a message for it to show once (`flash_context`);
    failed=True shows it as a refusal. The message travels in the signed session cookie, written
    by the server: a link cannot put words on the page (a `?flash=` in a URL could). `target`
    must already be safe (`safe_next` or a route path)."""
    request.session[FLASH_KEY] = [message[:MAX_FLASH_CHARS], bool(failed)]
    return RedirectResponse(target, status_code=303)


def flash_context(request: Request) -> dict[str, object]:
    """The template fields for the message `redirect_with_flash` left, shown once then forgotten."""
    value = request.session.pop(FLASH_KEY, None)
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
        return {"flash": None, "flash_error": False}
    return {"flash": value[0], "flash_error": bool(value[1])}
