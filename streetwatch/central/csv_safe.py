"""CSV that a spreadsheet opens without running anything: a cell that starts with = + - @, a tab
or a carriage return is prefixed with an apostrophe (OWASP's advice against CSV injection), since
Excel and LibreOffice read such a cell as a formula. Numbers are written as numbers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """The value to write: strings that a spreadsheet would run are neutralised; others unchanged."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> str:
    """The rows as CSV text (a header, then one line per row, every cell through `safe_cell`)."""
    out = io.StringIO()
    # CRLF (RFC 4180): the writer then quotes a cell holding a CR or LF, so no cell can break a row
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([safe_cell(row.get(column)) for column in columns])
    return out.getvalue()
