"""Password hashing for central users: Argon2id through argon2-cffi (the library's defaults).

Only hashes are stored. `needs_rehash` lets a login upgrade old hashes when the parameters change.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
MIN_PASSWORD_CHARS = 8


def hash_password(password: str) -> str:
    """An Argon2id hash (with its salt and parameters) of `password`."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"password: expected at least {MIN_PASSWORD_CHARS} characters, got {len(password)}")
    return _HASHER.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    """True if `password` matches; False for a wrong password or an unreadable hash."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True if the hash was made with weaker parameters than the current ones."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True
