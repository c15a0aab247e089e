"""API tokens: issue (shown once), look up by hash, revoke. Each change is audited.

Used by the `/api/tokens` router and by the CLI (`central create-token USER`): both go through
`issue_token` / `revoke_token`, which own their transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.api.security import hash_api_token, new_api_token_secret
from streetwatch.central.db import session_scope
from streetwatch.central.models import ApiToken, AuditLog, User, utcnow

log = logging.getLogger(__name__)

MAX_TOKEN_NAME_CHARS = 100


class TokenError(ValueError):
    """A token request that names a missing user or token; `detail` is safe to show."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class IssuedToken:
    id: int
    user_id: int
    username: str
    name: str
    secret: str  # shown to the caller once; only its hash is stored


def issue_token(
    session_factory: sessionmaker[Session], *, username: str, name: str = "", actor: str = "cli"
) -> IssuedToken:
    """Create a token for `username`; return it with its secret (never retrievable again)."""
    name = name.strip()[:MAX_TOKEN_NAME_CHARS]
    with session_scope(session_factory) as session:
        user = session.scalars(select(User).where(User.username == username)).one_or_none()
        if user is None or not user.is_active:
            raise TokenError(f"username: no active user {username!r}")
        secret = new_api_token_secret()
        token = ApiToken(user_id=user.id, token_hash=hash_api_token(secret), name=name, created_at=utcnow())
        session.add(token)
        session.flush()
        session.add(
            AuditLog(
                case_id=None,
                actor=actor,
                action="token_issue",
                detail={"token_id": token.id, "user": user.username, "name": name},
            )
        )
        log.info("api token %s issued for user %s by %s", token.id, user.username, actor)
        return IssuedToken(id=token.id, user_id=user.id, username=user.username, name=name, secret=secret)


def revoke_token(session_factory: sessionmaker[Session], token_id: int, *, actor: str = "cli") -> bool:
    """Revoke a token; True if it was active. Requests with it get 401 from then on."""
    with session_scope(session_factory) as session:
        token = session.get(ApiToken, token_id)
        if token is None:
            raise TokenError(f"token_id: no token {token_id}")
        if token.revoked_at is not None:
            return False
        token.revoked_at = utcnow()
        session.add(AuditLog(case_id=None, actor=actor, action="token_revoke", detail={"token_id": token_id}))
        log.info("api token %s revoked by %s", token_id, actor)
        return True


def user_for_token(session: Session, secret: str) -> User | None:
    """The active user a presented token belongs to, or None (unknown, revoked or user disabled)."""
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_api_token(secret))
    ).one_or_none()
    if row is None:
        return None
    token, user = row
    if token.revoked_at is not None or not user.is_active:
        return None
    return user
