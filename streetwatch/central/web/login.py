"""The login and logout pages (the API uses tokens instead: api/auth.py).

Login: CSRF-checked form; at most N failures per (user name, client IP) per window, counted in the
database for every web process (`api/login_limit.py`), then 429 even for the right password until the
window passes; the session is cleared on login (no fixation) and holds the user id, a fingerprint
of the password hash (a password change ends old sessions) and a fresh CSRF token. Unknown user
names cost the same hash check as wrong passwords.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from streetwatch.central.api.deps import SESSION_PASSWORD_KEY, SESSION_USER_KEY, CsrfChecked, SessionDep
from streetwatch.central.api.login_limit import LoginRateLimiter
from streetwatch.central.api.security import CSRF_SESSION_KEY, new_csrf_token, password_fingerprint
from streetwatch.central.models import User
from streetwatch.central.passwords import hash_password, needs_rehash, verify_password
from streetwatch.central.web.render import render, safe_next

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password("streetwatch-timing-equaliser")


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/login", name="login_page")
def login_page(request: Request, next: str | None = None) -> Response:  # noqa: A002 - query name
    return render(request, "login.html", {"error": None, "next_url": safe_next(next), "username": ""})


def _check_password(session: SessionDep, username: str, password: str) -> User | None:
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None or not user.is_active:
        verify_password(password, _dummy_hash())
        return None
    return user if verify_password(password, user.password_hash) else None


def _upgrade_hash(session: SessionDep, user: User, password: str) -> None:
    """Re-hash with the current Argon2 parameters when the stored hash was made with weaker ones."""
    if not needs_rehash(user.password_hash):
        return
    try:
        user.password_hash = hash_password(password)
    except ValueError:  # a legacy password shorter than today's minimum: keep its hash
        return
    session.commit()
    log.info("login: password hash of user %s upgraded", user.username)


@router.post("/login", name="login", dependencies=[CsrfChecked])
def login(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=2000)] = "/",  # noqa: A002 - form field name
) -> Response:
    limiter: LoginRateLimiter = request.app.state.login_limiter
    ip = client_ip(request)
    context = {"next_url": safe_next(next), "username": username}
    if limiter.blocked(username, ip):
        log.warning("login: user %s from %s blocked by the rate limit", username, ip)
        return render(
            request,
            "login.html",
            {**context, "error": "Too many failed logins. Wait a minute."},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": "60"},
        )
    user = _check_password(session, username, password)
    if user is None:
        limiter.record_failure(username, ip)
        log.info("login: failed for user %s from %s", username, ip)
        return render(
            request,
            "login.html",
            {**context, "error": "Wrong user name or password."},
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    limiter.reset(username, ip)
    _upgrade_hash(session, user, password)
    request.session.clear()
    request.session.update(
        {
            SESSION_USER_KEY: user.id,
            SESSION_PASSWORD_KEY: password_fingerprint(user.password_hash),
            CSRF_SESSION_KEY: new_csrf_token(),
        }
    )
    log.info("login: user %s from %s", user.username, ip)
    return RedirectResponse(safe_next(next), status_code=status.HTTP_303_SEE_OTHER)


@router.post("/logout", name="logout", dependencies=[CsrfChecked])
def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
