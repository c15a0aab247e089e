"""/api/stats: the statistics page's numbers as JSON, and the cases behind them as CSV."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from streetwatch.central.api.deps import ClockDep, CurrentUser, SessionDep, scope_of
from streetwatch.central.csv_export import to_csv
from streetwatch.central.workflow.clock import Clock
from streetwatch.central.workflow.stats import CaseFact, Summary, case_facts, summarise

router = APIRouter(prefix="/stats", tags=["statistics"])

DaysParam = Annotated[int, Query(ge=1, le=366, description="days back from now")]


def facts_for(session: SessionDep, user: CurrentUser, clock: Clock, days: int) -> list[CaseFact]:
    now = clock()
    return case_facts(session, scope=scope_of(session, user), since=now - timedelta(days=days), until=now)


@router.get("", response_model=Summary)
def read_stats(session: SessionDep, user: CurrentUser, clock: ClockDep, days: DaysParam = 30) -> Summary:
    """Cases per day by violation, the share self-rectified, the median time to close, top merchants and roads."""
    return summarise(facts_for(session, user, clock, days))


@router.get("/cases.csv", response_class=PlainTextResponse)
def stats_csv(session: SessionDep, user: CurrentUser, clock: ClockDep, days: DaysParam = 30) -> PlainTextResponse:
    text = to_csv(list(CaseFact.__dataclass_fields__), (asdict(f) for f in facts_for(session, user, clock, days)))
    return PlainTextResponse(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="cases.csv"'},
    )
