"""Login rate limit shared by every web process: failed logins are rows in the database.

At most `max_failures` failures per (user name, client address) within `window_s` seconds; after
that even the right password is refused until the window has passed. Each web process behind a
load balancer reads the same rows, so running more processes does not multiply the guesses an
attacker gets (a per-process counter did). Counting is not locked: two processes refusing at the
same moment may let a failure or two more through, never many. The key is a digest, so the table
holds no user names or addresses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.db import session_scope
from streetwatch.central.models import LoginFailure, utcnow


def failure_key(username: str, ip: str) -> str:
    return hashlib.sha256(f"{username.casefold()}\x00{ip}".encode()).hexdigest()


class LoginRateLimiter:
    """Failed logins counted in the database, per (user name, client address) in a sliding window."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        max_failures: int = 5,
        window_s: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if max_failures < 1 or window_s <= 0:
            raise ValueError("max_failures must be >= 1 and window_s > 0")
        self._factory = session_factory
        self._max = max_failures
        self._window = timedelta(seconds=window_s)
        self._clock = clock

    def blocked(self, username: str, ip: str) -> bool:
        """True while the key has used up its failures in the current window."""
        since = self._clock() - self._window
        query = select(func.count()).where(
            LoginFailure.key == failure_key(username, ip), LoginFailure.failed_at > since
        )
        with session_scope(self._factory) as session:
            return session.scalar(query) >= self._max  # type: ignore[operator]

    def record_failure(self, username: str, ip: str) -> None:
        """Store one failure; failures older than the window (anyone's) go at the same time."""
        now = self._clock()
        with session_scope(self._factory) as session:
            session.execute(delete(LoginFailure).where(LoginFailure.failed_at <= now - self._window))
            session.add(LoginFailure(key=failure_key(username, ip), failed_at=now))

    def reset(self, username: str, ip: str) -> None:
        """Forget the key's failures (after a successful login)."""
        with session_scope(self._factory) as session:
            session.execute(delete(LoginFailure).where(LoginFailure.key == failure_key(username, ip)))
