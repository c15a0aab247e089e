"""/api/alerts: one received alert by its id (the edge's idempotency key)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from streetwatch.central.access import case_visible
from streetwatch.central.api.deps import CurrentUser, SessionDep, scope_of
from streetwatch.central.api.schemas import AlertPublic
from streetwatch.central.models import Alert, Case

router = APIRouter(prefix="/alerts", tags=["alerts"])


@router.get("/{alert_id}", response_model=AlertPublic)
def read_alert(alert_id: str, session: SessionDep, user: CurrentUser) -> AlertPublic:
    """The alert, if the case it belongs to lies in the caller's area (404 otherwise)."""
    alert = session.get(Alert, alert_id)
    # A pending sighting (no case yet) is not shown: access is decided by the case's area.
    case = session.get(Case, alert.case_id) if alert is not None and alert.case_id is not None else None
    if alert is None or case is None or not case_visible(scope_of(session, user), case):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alert {alert_id!r} not found")
    return AlertPublic.of(alert)
