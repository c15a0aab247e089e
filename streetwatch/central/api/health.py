"""/healthz (the process answers) and /readyz (it can do its work) for a load balancer or orchestrator.

No login, and nothing in the answer a stranger could use: check names and short problems only.
The checks (central/metrics.py `Health`) are the process's own: `central serve` adds its database,
broker and worker threads; a web app built alone checks its database.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]


class Liveness(BaseModel):
    alive: bool


@router.get("/healthz", response_model=Liveness)
def healthz() -> Liveness:
    return Liveness(alive=True)


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(request: Request) -> JSONResponse:
    ok, checks = request.app.state.health.ready()
    return JSONResponse(Readiness(ready=ok, checks=checks).model_dump(), status_code=200 if ok else 503)
