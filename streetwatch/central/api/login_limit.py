"""Login rate limit shared by every web process: failed logins are rows in the database.

Two counts, each in a sliding window of `window_s` seconds:
- per account: at most `max_failures` failures for one user name, from any address. Guessing one
  account's password from many addresses (or with a forged `X-Forwarded-For`) gets no further;
- per address: at most `max_per_address` failures from one client address, for any user names.
Past either, even the right password is refused until the window has passed. The client address is
the TCP peer unless the peer is a configured proxy (`web.trusted_proxies`; uvicorn applies it).

Each web process behind a load balancer reads the same rows, so more processes do not multiply the
guesses. Counting is not locked: two processes refusing at the same moment may let a failure or two
more through, never many. The keys are digests, so the table holds no user names or addresses.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.db import session_scope
from streetwatch.central.models import LoginFailure, utcnow


def account_key(username: str) -> str:
    return hashlib.sha256(f"account\x00{username.strip().casefold()}".encode()).hexdigest()


def address_key(ip: str) -> str:
    return hashlib.sha256(f"address\x00{ip}".encode()).hexdigest()


@dataclass(frozen=True)
class Block:
    """Why a login is refused before its password is checked, and for how long."""

    by: str  # "account" | "address"
    retry_after_s: int


class LoginRateLimiter:
    """Failed logins counted in the database, per account and per client address."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        max_failures: int = 5,
        max_per_address: int = 20,
        window_s: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if max_failures < 1 or max_per_address < 1 or window_s <= 0:
            raise ValueError("max_failures and max_per_address must be >= 1 and window_s > 0")
        self._factory = session_factory
        self._limits = (("account", max_failures), ("address", max_per_address))
        self._window = timedelta(seconds=window_s)
        self._clock = clock

    def blocked(self, username: str, ip: str) -> Block | None:
        """The block in force for this account or address, if either used up its failures."""
        now = self._clock()
        keys = {"account": account_key(username), "address": address_key(ip)}
        with session_scope(self._factory) as session:
            for by, limit in self._limits:
                query = select(func.count(), func.min(LoginFailure.failed_at)).where(
                    LoginFailure.key == keys[by], LoginFailure.failed_at > now - self._window
                )
                count, oldest = session.execute(query).one()
                if count >= limit:
                    wait = (oldest + self._window - now).total_seconds() if oldest else self._window.total_seconds()
                    return Block(by=by, retry_after_s=max(1, math.ceil(wait)))
        return None

    def record_failure(self, username: str, ip: str) -> None:
        """Count one failure against the account and the address; failures older than the window
        (anyone's) go at the same time."""
        now = self._clock()
        with session_scope(self._factory) as session:
            session.execute(delete(LoginFailure).where(LoginFailure.failed_at <= now - self._window))
            session.add(LoginFailure(key=account_key(username), failed_at=now))
            session.add(LoginFailure(key=address_key(ip), failed_at=now))

    def reset(self, username: str) -> None:
        """Forget the account's failures after a successful login (the address keeps its count:
        one known password must not wipe the guesses made at other accounts from there)."""
        with session_scope(self._factory) as session:
            session.execute(delete(LoginFailure).where(LoginFailure.key == account_key(username)))
