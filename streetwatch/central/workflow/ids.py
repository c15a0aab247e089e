"""Path ids bounded to what the `cases.id` column holds (INTEGER: 32 bits on PostgreSQL), so an
absurd id is a 422 at the edge instead of an overflow error inside the database driver."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Path

MAX_ID: Final = 2**31 - 1
CaseId = Annotated[int, Path(ge=1, le=MAX_ID, description="a case id")]
TokenId = Annotated[int, Path(ge=1, le=MAX_ID, description="an API token id")]
DecisionId = Annotated[int, Path(ge=1, le=MAX_ID, description="the audit row of a review decision")]
