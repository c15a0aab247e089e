"""API tokens (issue, revoke) and /api/me for API clients; the login pages are web/login.py."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from streetwatch.central.api.deps import CurrentUser, SessionDep
from streetwatch.central.api.schemas import TokenCreatedPublic, TokenCreateRequest, UserPublic
from streetwatch.central.api.tokens import TokenError, issue_token, revoke_token
from streetwatch.central.models import ApiToken, User
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
