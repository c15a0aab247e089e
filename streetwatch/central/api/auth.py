"""API tokens (issue, revoke), /api/me, and ending a user's web sessions, for API clients; the
login pages are web/login.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from pydantic import BaseModel
from sqlalchemy import select

from streetwatch.central.api.deps import CurrentUser, SessionDep
from streetwatch.central.api.schemas import TokenCreatedPublic, TokenCreateRequest, UserPublic
from streetwatch.central.api.tokens import TokenError, issue_token, revoke_token
from streetwatch.central.models import ApiToken, User
from streetwatch.central.web_sessions import end_all_sessions
from streetwatch.central.workflow.ids import TokenId

router = APIRouter(tags=["auth"])


@router.get("/me", response_model=UserPublic)
def read_me(user: CurrentUser) -> UserPublic:
    return UserPublic(id=user.id, username=user.username, role=user.role, area_id=user.area_id)


def _require_admin(user: User) -> None:
    if user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin role required")


@router.post("/tokens", response_model=TokenCreatedPublic, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenCreateRequest, request: Request, user: CurrentUser) -> TokenCreatedPublic:
    """Issue a token for a user (admins only). The secret is in this response and nowhere else."""
    _require_admin(user)
    try:
        issued = issue_token(
            request.app.state.session_factory, username=body.username, name=body.name, actor=user.username
        )
    except TokenError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.detail) from None
    return TokenCreatedPublic(id=issued.id, username=issued.username, name=issued.name, token=issued.secret)


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_token(token_id: TokenId, request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """Revoke a token: its owner or an admin may. Requests with it get 401 from then on."""
    token = session.get(ApiToken, token_id)
    if token is None or (token.user_id != user.id and user.role != "admin"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"token {token_id} not found")
    session.rollback()  # end the read transaction before the service writes (SQLite: one writer)
    revoke_token(request.app.state.session_factory, token_id, actor=user.username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class SessionsEndedPublic(BaseModel):
    username: str
    ended: int


Username = Annotated[str, Path(min_length=1, max_length=64, description="the user's login name")]


@router.delete("/users/{username}/sessions", response_model=SessionsEndedPublic)
def delete_sessions(
    username: Username, request: Request, session: SessionDep, user: CurrentUser
) -> SessionsEndedPublic:
    """Log a user out everywhere: every web session of theirs ends now (a user may for themselves,
    an admin for anyone). API tokens are not touched: revoke those with DELETE /api/tokens/{id}."""
    target = session.scalars(select(User).where(User.username == username)).one_or_none()
    if target is None or (target.id != user.id and user.role != "admin"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"user {username!r} not found")
    target_id = target.id
    session.rollback()  # end the read transaction before the service writes (SQLite: one writer)
    ended = end_all_sessions(request.app.state.session_factory, target_id, actor=user.username)
    return SessionsEndedPublic(username=username, ended=ended)
