"""The errors of central's case services, and the one place they become HTTP status codes.

The services (review.py, workflow/service.py) raise these with a `detail` written for the reviewer;
the app turns an uncaught one into `{"detail": ...}` with `http_status(exc)` (app.py), and the pages
show the same detail as the page's message. Nothing else maps a domain error to a status code.
"""

from __future__ import annotations


class DomainError(Exception):
    """A case action that cannot be done; `detail` is shown to API callers as is. `code` and `params`
    (optional) let the pages say the same in the user's language (web/labels.ERRORS)."""

    def __init__(self, detail: str, *, code: str | None = None, **params: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.params = params


class NotFound(DomainError):
    """The case or merchant does not exist or lies outside the caller's area (no existence leak)."""


class Conflict(DomainError):
    """The case is not in a state that allows the action (e.g. already confirmed)."""


class InvalidInput(DomainError):
    """The request names a bad value (empty reason, merge into itself, ...)."""


HTTP_STATUS: dict[type[DomainError], int] = {NotFound: 404, Conflict: 409, InvalidInput: 422}


def http_status(exc: DomainError) -> int:
    """404 not found or outside the area, 409 wrong state, 422 bad input; 400 for any other kind."""
    for kind, code in HTTP_STATUS.items():
        if isinstance(exc, kind):
            return code
    return 400
