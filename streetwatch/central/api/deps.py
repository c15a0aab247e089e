"""Typed FastAPI dependencies: the settings, the services, the database session, the current user
(token or cookie), scope, CSRF. Everything comes from what `build_app` put on `app.state` once.

- API routes use `CurrentUser`: `Authorization: Bearer <token>`; 401 otherwise.
- Pages use `WebUser`: the signed session cookie naming a live server-side session
  (web_sessions.py); a missing, ended or idle login redirects to /login (401 to a JSON fetch).
- `CsrfChecked` guards every state-changing page route: the form field `csrf_token` or the header
  `X-CSRF-Token` must equal the token bound to the session (403 otherwise).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.access import AreaScope, load_scope
from streetwatch.central.api.security import (
    CSRF_FORM_FIELD,
    CSRF_HEADER,
    CSRF_SESSION_KEY,
    csrf_matches,
    new_csrf_token,
    password_fingerprint,
)
from streetwatch.central.api.tokens import user_for_token
from streetwatch.central.config import CentralSettings
from streetwatch.central.models import User
from streetwatch.central.review import ReviewService
from streetwatch.central.web_sessions import SessionPolicy, live_session
from streetwatch.central.workflow.clock import Clock
from streetwatch.central.workflow.service import WorkflowService

SESSION_KEY = "sid"  # the secret of the server-side session (web_sessions.py)
SESSION_PASSWORD_KEY = "pwfp"


class LoginRequired(Exception):
    """Raised by page dependencies; the app turns it into a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def get_session(request: Request) -> Iterator[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    with factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_settings(request: Request) -> CentralSettings:
    settings: CentralSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[CentralSettings, Depends(get_settings)]


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


ClockDep = Annotated[Clock, Depends(get_clock)]


def get_review_service(request: Request) -> ReviewService:
    service: ReviewService = request.app.state.review
    return service


ReviewDep = Annotated[ReviewService, Depends(get_review_service)]


def get_workflow_service(request: Request) -> WorkflowService:
    service: WorkflowService = request.app.state.workflow
    return service


WorkflowDep = Annotated[WorkflowService, Depends(get_workflow_service)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


bearer_scheme = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer sw_...`")


def _user_from_token(session: Session, token: str | None) -> User:
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})
    user = user_for_token(session, token)
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Invalid or revoked token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return user


def get_token_user(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> User:
    return _user_from_token(session, credentials.credentials.strip() if credentials else None)


CurrentUser = Annotated[User, Depends(get_token_user)]


def get_session_policy(request: Request) -> SessionPolicy:
    policy: SessionPolicy = request.app.state.session_policy
    return policy


def session_user(request: Request, session: Session) -> User | None:
    """The user of the session the cookie names, if that session is live (not ended, idle or too
    old: web_sessions.py) and the user still active with an unchanged password."""
    secret = request.session.get(SESSION_KEY)
    if not isinstance(secret, str) or not secret:
        return None
    live = live_session(session, secret, get_session_policy(request))
    if live is None:
        return None
    user = session.get(User, live.user_id)
    if user is None or not user.is_active:
        return None
    if request.session.get(SESSION_PASSWORD_KEY) != password_fingerprint(user.password_hash):
        return None
    return user


def get_web_user(request: Request, session: SessionDep) -> User:
    user = session_user(request, session)
    if user is None:
        request.session.pop(SESSION_KEY, None)
        raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    request.state.user_locale = user.locale  # the page's language follows the user's own setting first
    return user


WebUser = Annotated[User, Depends(get_web_user)]


def get_token_or_web_user(request: Request, session: SessionDep) -> User:
    """For resources both pages and API clients fetch (evidence images): a token or a login."""
    token = _bearer(request)
    if token is not None:
        return _user_from_token(session, token)
    user = session_user(request, session)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Not authenticated")
    request.state.user_locale = user.locale
    return user


AnyUser = Annotated[User, Depends(get_token_or_web_user)]


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use (also before login: the login form has one)."""
    token = request.session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = new_csrf_token()
        request.session[CSRF_SESSION_KEY] = token
    return token


async def require_csrf(request: Request) -> None:
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        form = await request.form()
        value = form.get(CSRF_FORM_FIELD)
        presented = value if isinstance(value, str) else None
    if not csrf_matches(request.session.get(CSRF_SESSION_KEY), presented):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "CSRF token missing or invalid")


CsrfChecked = Depends(require_csrf)


def scope_of(session: Session, user: User) -> AreaScope | None:
    return load_scope(session, user)
