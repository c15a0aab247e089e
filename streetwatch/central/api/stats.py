"""/api/stats: the statistics page's numbers as JSON, and the cases behind them as CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from streetwatch.central.api.deps import CurrentUser, SessionDep, scope_of
from streetwatch.central.api.workflow import workflow_clock
from streetwatch.central.workflow.stats import CaseFact, case_facts, summarise

router = APIRouter(prefix="/stats", tags=["statistics"])

DaysParam = Annotated[int, Query(ge=1, le=366, description="days back from now")]


def facts_for(request: Request, session: SessionDep, user: CurrentUser, days: int) -> list[CaseFact]:
    now: datetime = workflow_clock(request)()
    return case_facts(session, scope=scope_of(session, user), since=now - timedelta(days=days), until=now)


@router.get("")
def read_stats(request: Request, session: SessionDep, user: CurrentUser, days: DaysParam = 30) -> dict[str, object]:
    return asdict(summarise(facts_for(request, session, user, days)))


@router.get("/cases.csv", response_class=PlainTextResponse)
def stats_csv(request: Request, session: SessionDep, user: CurrentUser, days: DaysParam = 30) -> PlainTextResponse:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(CaseFact.__dataclass_fields__), lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(f) for f in facts_for(request, session, user, days))
    return PlainTextResponse(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="cases.csv"'},
    )
