"""Server-side sessions of the review pages: a login is a row, the cookie carries only its secret.

A signed cookie alone stays valid until it expires, so a copy made before logout kept working
(issue 17). Now the cookie names a row here, and a request is logged in only while that row:
- has not been ended (logout, "log out everywhere" by the user or an admin, `central logout-user`);
- was used within the idle timeout (`web.session_idle_s`, default 30 min);
- is younger than the absolute cap (`web.session_max_age_s`, default 8 h).
Only the SHA-256 of the secret is stored (a database leak leaks no usable session). `last_seen_at`
is written at most once a minute per session, so reading pages does not mean a write per request.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.db import session_scope
from streetwatch.central.models import AuditLog, User, WebSession, utcnow

log = logging.getLogger(__name__)

TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta
    max_age: timedelta


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def start_session(factory: sessionmaker[Session], user_id: int, policy: SessionPolicy) -> str:
    """A new session for the user; returns the secret for the cookie. Sessions past the cap
    (anyone's) are deleted at the same time, so the table holds only live and recent rows."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    with session_scope(factory) as session:
        session.execute(delete(WebSession).where(WebSession.created_at < now - policy.max_age))
        session.add(WebSession(user_id=user_id, secret_hash=_digest(secret), created_at=now, last_seen_at=now))
    return secret


def live_session(
    session: Session, secret: str, policy: SessionPolicy, *, now: datetime | None = None
) -> WebSession | None:
    """The session the cookie's secret names, if not ended, idle or too old; records its use."""
    now = now or utcnow()
    row = session.scalars(select(WebSession).where(WebSession.secret_hash == _digest(secret))).one_or_none()
    if row is None or row.ended_at is not None:
        return None
    if now - row.last_seen_at > policy.idle or now - row.created_at > policy.max_age:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        session.commit()
    return row


def end_session(factory: sessionmaker[Session], secret: str) -> bool:
    """End the session the secret names (logout); True if it was live."""
    with session_scope(factory) as session:
        result = session.execute(
            update(WebSession)
            .where(WebSession.secret_hash == _digest(secret), WebSession.ended_at.is_(None))
            .values(ended_at=utcnow())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def end_all_sessions(factory: sessionmaker[Session], user_id: int, *, actor: str) -> int:
    """End every session of the user ("log out everywhere"); audited; the number ended."""
    with session_scope(factory) as session:
        user = session.get(User, user_id)
        if user is None:
            raise LookupError(f"user_id: no user {user_id}")
        result = session.execute(
            update(WebSession)
            .where(WebSession.user_id == user_id, WebSession.ended_at.is_(None))
            .values(ended_at=utcnow())
        )
        ended = int(result.rowcount)  # type: ignore[attr-defined]
        detail = {"user": user.username, "ended": ended}
        session.add(AuditLog(case_id=None, actor=actor, action="logout_all", detail=detail))
    log.info("sessions: %d of user %s ended by %s", ended, user.username, actor)
    return ended


def count_live(session: Session, user_id: int, policy: SessionPolicy, *, now: datetime | None = None) -> int:
    """How many sessions of the user are live (for the account page)."""
    now = now or utcnow()
    query = select(func.count()).where(
        WebSession.user_id == user_id,
        WebSession.ended_at.is_(None),
        WebSession.last_seen_at >= now - policy.idle,
        WebSession.created_at >= now - policy.max_age,
    )
    return int(session.scalar(query) or 0)



