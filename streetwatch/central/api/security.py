"""Web and API security primitives: CSRF tokens, API token secrets (the login rate limit is in
`login_limit.py`: it keeps its counts in the database).

Kept free of FastAPI and the database so each door can be tested on its own:
- CSRF: a random token bound to the signed session; every state-changing form or fetch carries it
  (form field `csrf_token` or header `X-CSRF-Token`) and it is compared in constant time.
- API tokens: `sw_` + 32 random bytes, shown once; only the SHA-256 is stored, so a database leak
  does not leak usable tokens. A token is revoked by stamping `revoked_at` on its row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
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
