"""Template rendering with what every page needs: the CSRF token, the logged-in user's label, and
the one-line message a form leaves for the page it returns to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response

from streetwatch.central.api.deps import csrf_token
from streetwatch.central.models import User

TEMPLATES_DIR = Path(str(files("streetwatch.central.web") / "templates"))
STATIC_DIR = Path(str(files("streetwatch.central.web") / "static"))


@dataclass(frozen=True)
class UserLabel:
    display_name: str
    area_label: str


def make_templates() -> Jinja2Templates:
    return Jinja2Templates(directory=TEMPLATES_DIR)  # autoescape is on for .html


def user_label(user: User, area_name: str | None) -> UserLabel:
    return UserLabel(display_name=user.username, area_label=area_name or "whole city")


def render(
    request: Request,
    name: str,
    context: dict[str, object],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    full = {"csrf_token": csrf_token(request), "user": None, **context}
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


def redirect_with_flash(target: str, message: str, *, failed: bool = False) -> RedirectResponse:
    """303 back to a page of this site with a message for it to show (`flash_context`); failed=True
    shows it as a refusal. `target` must already be safe (`safe_next` or a route path)."""
    query = {"flash": message, **({"failed": "1"} if failed else {})}
    joiner = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{joiner}{urlencode(query)}", status_code=303)


def flash_context(request: Request) -> dict[str, object]:
    """The template fields for the message `redirect_with_flash` left in the query."""
    return {"flash": request.query_params.get("flash"), "flash_error": request.query_params.get("failed") == "1"}
