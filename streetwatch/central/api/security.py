"""Web and API security primitives: CSRF tokens, login rate limiting, API token secrets.

Kept free of FastAPI and the database so each door can be tested on its own:
- CSRF: a random token bound to the signed session; every state-changing form or fetch carries it
  (form field `csrf_token` or header `X-CSRF-Token`) and it is compared in constant time.
- Login rate limiting: failures counted per (username, client IP) in a sliding window. The counter
  lives in the worker process; with several web workers each keeps its own (the bound per worker
  still holds, and a restart clears it).
- API tokens: `sw_` + 32 random bytes, shown once; only the SHA-256 is stored, so a database leak
  does not leak usable tokens. A token is revoked by stamping `revoked_at` on its row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

CSRF_SESSION_KEY: Final = "csrf"
CSRF_FORM_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
API_TOKEN_PREFIX: Final = "sw_"


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, presented: str | None) -> bool:
    """True only if both are present and equal (constant-time compare)."""
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def new_api_token_secret() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_api_token(secret: str) -> str:
    """SHA-256 hex of a token secret: tokens carry 256 bits of randomness, so no salt/KDF is needed."""
    return hashlib.sha256(secret.encode()).hexdigest()


def password_fingerprint(password_hash: str) -> str:
    """A short digest of the stored password hash, kept in the session: a password change logs out."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


class LoginRateLimiter:
    """At most `max_failures` failed logins per (username, ip) within `window_s` seconds."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_s <= 0:
            raise ValueError("max_failures must be >= 1 and window_s > 0")
        self._max = max_failures
        self._window = window_s
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        stamps = self._failures.setdefault(key, deque())
        while stamps and now - stamps[0] >= self._window:
            stamps.popleft()
        return stamps

    def blocked(self, username: str, ip: str) -> bool:
        """True while the key has used up its failures in the current window."""
        key = (username.casefold(), ip)
        with self._lock:
            return len(self._recent(key, self._clock())) >= self._max

    def record_failure(self, username: str, ip: str) -> None:
        key = (username.casefold(), ip)
        with self._lock:
            now = self._clock()
            self._recent(key, now).append(now)
            if len(self._failures) > 100_000:  # bound memory under a spray of usernames
                self._failures = {k: v for k, v in self._failures.items() if self._recent(k, now)}

    def reset(self, username: str, ip: str) -> None:
        with self._lock:
            self._failures.pop((username.casefold(), ip), None)
