"""The one CSV writer of every export (statistics, lifecycle, `central export-cases`).

A spreadsheet runs a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return as a
formula, so a merchant name such as `=HYPERLINK("http://evil", "click")` coming from an import or a
box would run on the city's desk. OWASP's rule: such a text cell gets a leading `'`, which the
spreadsheet shows as plain text. Numbers are written as numbers (a negative count stays a number).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """`value`, with a `'` in front when it is text a spreadsheet would take for a formula."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(out: TextIO, fieldnames: Sequence[str], rows: Iterable[Mapping[str, object]]) -> None:
    """A header and the rows, every text cell neutralised (`safe_cell`)."""
    # CRLF (RFC 4180): the writer then quotes a cell holding a CR or LF, so no cell can break a row
    writer = csv.DictWriter(out, fieldnames=list(fieldnames), lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: safe_cell(value) for key, value in row.items()})


def to_csv(fieldnames: Sequence[str], rows: Iterable[Mapping[str, object]]) -> str:
    out = io.StringIO()
    write_csv(out, fieldnames, rows)
    return out.getvalue()
