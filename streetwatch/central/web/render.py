"""Template rendering with what every page needs: the CSRF token and the logged-in user's label."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

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
