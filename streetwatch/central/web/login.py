"""The login and logout pages (the API uses tokens instead: api/auth.py).

Login: CSRF-checked form; at most N failures per account (from any address) and M per client
address per window, counted in the database for every web process (`api/login_limit.py`), then 429
even for the right password until the window passes, saying how long to wait. The cookie is cleared
on login (no fixation) and holds the secret of a new server-side session (web_sessions.py), a
fingerprint of the password hash (a password change ends old sessions) and a fresh CSRF token.
Unknown user names cost the same hash check as wrong passwords.

Logout ends the server-side session, so a copy of the cookie is worth nothing afterwards. "Log out
everywhere" (the account page, `/account`) ends every session of the user.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from streetwatch.central.api.deps import SESSION_KEY, SESSION_PASSWORD_KEY, CsrfChecked, SessionDep
from streetwatch.central.api.login_limit import Block, LoginRateLimiter
from streetwatch.central.api.security import CSRF_SESSION_KEY, new_csrf_token, password_fingerprint
from streetwatch.central.models import User
from streetwatch.central.passwords import hash_password, needs_rehash, verify_password
from streetwatch.central.web import i18n
from streetwatch.central.web.render import render, safe_next
from streetwatch.central.web_sessions import end_session, start_session

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password("streetwatch-timing-equaliser")


def client_ip(request: Request) -> str:
    """The TCP peer, or the address a trusted proxy forwarded (uvicorn applies `web.trusted_proxies`)."""
    return request.client.host if request.client else "unknown"


BLOCK_MESSAGES = {
    "account": i18n.N_("Too many failed logins for this user name. Try again in %(seconds)s seconds."),
    "address": i18n.N_("Too many failed logins from this address. Try again in %(seconds)s seconds."),
}


def _refused(request: Request, context: Mapping[str, object], block: Block) -> Response:
    message = i18n.gettext(request, BLOCK_MESSAGES[block.by], seconds=block.retry_after_s)
    return render(
        request,
        "login.html",
        {**context, "error": message},
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(block.retry_after_s)},
    )


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
    block = limiter.blocked(username, ip)
    if block is not None:
        log.warning("login: user %s from %s refused: too many failures for the %s", username, ip, block.by)
        return _refused(request, context, block)
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
    limiter.reset(username)
    _upgrade_hash(session, user, password)
    session.rollback()  # end the read transaction before the session row is written (SQLite: one writer)
    secret = start_session(request.app.state.session_factory, user.id, request.app.state.session_policy)
    request.session.clear()
    request.session.update(
        {
            SESSION_KEY: secret,
            SESSION_PASSWORD_KEY: password_fingerprint(user.password_hash),
            CSRF_SESSION_KEY: new_csrf_token(),
        }
    )
    log.info("login: user %s from %s", user.username, ip)
    return RedirectResponse(safe_next(next), status_code=status.HTTP_303_SEE_OTHER)


@router.post("/logout", name="logout", dependencies=[CsrfChecked])
def logout(request: Request) -> Response:
    """End this session on the server too: the cookie, or any copy of it, no longer logs in."""
    secret = request.session.get(SESSION_KEY)
    if isinstance(secret, str) and secret:
        end_session(request.app.state.session_factory, secret)
    request.session.clear()
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
