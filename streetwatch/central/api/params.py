"""Bounds shared by every query parameter that reaches the database: offsets and times.

An offset past 2^63 does not fit the database's integer; a year-1 or year-9999 time with a UTC
offset overflows Python's datetime when converted, and the far ends of the calendar mean nothing
for street cases anyway. Handlers refuse them with a 4xx that names the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import HTTPException, Query, status

MAX_OFFSET = 1_000_000
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]


def bounded_time(value: datetime, field: str, *, code: int = status.HTTP_422_UNPROCESSABLE_CONTENT) -> datetime:
    """`value` in UTC (a naive time is taken as UTC), or an HTTP error naming `field` when it lies
    outside 1970..2200 (including times that overflow when converted)."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise HTTPException(code, f"{field}: expected a time between 1970 and 2200, got {value.isoformat()}")
    return utc


def parse_time(text: str, field: str, *, code: int = status.HTTP_400_BAD_REQUEST) -> datetime:
    """An ISO 8601 text parameter as a bounded UTC time (`bounded_time`); `code` on any problem."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(code, f"{field}: expected ISO 8601, got {text[:40]!r}") from None
    return bounded_time(parsed, field, code=code)
