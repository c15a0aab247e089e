"""Keeping secrets out of logs, metrics, status messages and errors.

Three rules, applied to any text on its way out:
- the password of any URL (`rtsp://user:PASSWORD@host/...`) becomes `***`;
- the value of a token-ish query parameter (`?api_key=...`, `token=`, `password=`, ...) becomes
  `***`: Open311 clients put their API token in the URL, and access logs print URLs;
- every value registered as a secret (what `${VAR}` substitution read from a `_FILE` or from a
  variable whose name says it is a secret) becomes `***`.

The registry is process-wide on purpose: logging is process-wide too, and `RedactingFilter` on
the root handlers catches a secret in any module's log line, including a library's error text
that quotes the URL it failed on (PyAV does).
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"
# scheme://user:password@  (the user part may be empty: rtsp://:pw@host)
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)([^/\s@]+)@")
# ?api_key=VALUE or &token=VALUE (percent-encoded or not), up to the next & or the end of the URL
_QUERY_SECRET = re.compile(
    r"([?&;](?:api[_-]?key|access[_-]?token|token|secret|password|passwd|pwd|signature|sig|auth|key)=)[^&\s\"'#]+",
    re.IGNORECASE,
)
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words and digits everywhere

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Mask `value` wherever redact() sees it from now on (very short values are not masked)."""
    if len(value) >= MIN_SECRET_CHARS:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """`text` with URL passwords and registered secrets replaced by ***."""
    text = _URL_PASSWORD.sub(rf"\g<1>{MASK}@", text)
    text = _QUERY_SECRET.sub(rf"\g<1>{MASK}", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # longest first: a secret may contain another
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Redacts each record's final message (arguments merged in) before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):  # uvicorn's access formatter unpacks the arguments: keep them
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction() -> None:
    """Add a RedactingFilter to every handler of the root logger (call after logging.basicConfig)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
