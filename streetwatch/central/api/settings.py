"""Security settings of the web queue and API: the session secret, cookie flags, login limits.

Read from the environment (the secret must not live in a YAML file next to the code):
- STREETWATCH_SECRET_KEY: signs session cookies; at least 32 characters, not a placeholder;
- STREETWATCH_MODE: `production` (default), `development` or `demo`. Only development and demo
  may run without a secret: they get a random one per process (sessions end at restart) and
  cookies without the Secure flag, so http://127.0.0.1 works;
- STREETWATCH_COOKIE_SECURE: `1`/`0` to force the Secure cookie flag either way.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

log = logging.getLogger(__name__)

SECRET_KEY_ENV = "STREETWATCH_SECRET_KEY"
MODE_ENV = "STREETWATCH_MODE"
COOKIE_SECURE_ENV = "STREETWATCH_COOKIE_SECURE"
MIN_SECRET_CHARS = 32
PLACEHOLDER_SECRETS = frozenset({"changethis", "changeme", "change-me", "secret", "secret-key", "dev", "test"})

Mode = Literal["production", "development", "demo"]


class InsecureSettings(ValueError):
    """Settings that would run the web queue without a real secret outside development/demo."""


class WebSecurity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = Field(default="production", description="production refuses a missing or placeholder secret")
    secret_key: SecretStr | None = Field(default=None, description=f"session signing key (${SECRET_KEY_ENV})")
    cookie_secure: bool | None = Field(
        default=None, description="Secure flag on the session cookie; default: on in production only"
    )
    session_max_age_s: int = Field(default=8 * 3600, ge=60, le=30 * 24 * 3600, description="session lifetime")
    login_max_failures: int = Field(default=5, ge=1, le=1000, description="failed logins per user+IP ...")
    login_window_s: float = Field(default=60.0, gt=0, le=86_400, description="... within this many seconds")

    @property
    def secure_cookies(self) -> bool:
        return self.cookie_secure if self.cookie_secure is not None else self.mode == "production"

    def resolved_secret(self) -> str:
        """The signing secret; a random one in development/demo when none is set."""
        value = self.secret_key.get_secret_value() if self.secret_key is not None else ""
        problem = _secret_problem(value)
        if problem is None:
            return value
        if self.mode == "production":
            raise InsecureSettings(
                f"{SECRET_KEY_ENV}: {problem}; set it to a random string of at least {MIN_SECRET_CHARS} "
                f"characters (python -c 'import secrets; print(secrets.token_urlsafe(48))'), or run with "
                f"{MODE_ENV}=development"
            )
        log.warning("web: %s in %s mode; using a random per-process secret", problem, self.mode)
        return secrets.token_urlsafe(48)


def _secret_problem(value: str) -> str | None:
    if not value:
        return "no secret key is set"
    if value.strip().lower() in PLACEHOLDER_SECRETS:
        return f"the secret key is a placeholder ({value!r})"
    if len(value) < MIN_SECRET_CHARS:
        return f"the secret key has {len(value)} characters, expected at least {MIN_SECRET_CHARS}"
    return None


def web_security_from_env(environ: Mapping[str, str] | None = None) -> WebSecurity:
    """WebSecurity from $STREETWATCH_SECRET_KEY, $STREETWATCH_MODE and $STREETWATCH_COOKIE_SECURE."""
    env = os.environ if environ is None else environ
    mode = env.get(MODE_ENV, "production").strip().lower() or "production"
    if mode not in ("production", "development", "demo"):
        raise InsecureSettings(f"{MODE_ENV}: expected production, development or demo, got {mode!r}")
    secure_raw = env.get(COOKIE_SECURE_ENV)
    secure = None if secure_raw is None else secure_raw.strip().lower() in ("1", "true", "yes", "on")
    secret = env.get(SECRET_KEY_ENV)
    return WebSecurity(
        mode=mode,  # type: ignore[arg-type]
        secret_key=SecretStr(secret) if secret else None,
        cookie_secure=secure,
    )
