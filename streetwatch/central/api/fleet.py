"""The fleet (admins): every box, online or not since when, what it runs, its last alert, and the
delivery audit's view of it: open gaps in its numbering, resend requests, alerts lost for good."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from streetwatch.central.api.deps import AnyUser, SessionDep
from streetwatch.central.delivery import fleet_summary

router = APIRouter(tags=["fleet"])


class StreamPublic(BaseModel):
    outbox_id: str
    contiguous_seq: int
    highest_seq: int
    gap: tuple[int, int] | None
    gap_since: datetime | None
    resend_requests: int
    lost: list[tuple[int, int]]


class BoxPublic(BaseModel):
    edge_id: str
    state: str
    state_since: datetime
    last_status_at: datetime
    version: str | None
    model: str | None
    cameras: list[str]
    last_alert_at: datetime | None
    streams: list[StreamPublic]
    lost_alerts: int


class FleetPublic(BaseModel):
    data: list[BoxPublic]
    count: int


def _text(value: object) -> str | None:
    return value[:128] if isinstance(value, str) else None


def _cameras(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [c if isinstance(c, str) else str(c.get("id")) for c in value[:256] if isinstance(c, str | dict)]


@router.get("/fleet", response_model=FleetPublic)
def read_fleet(session: SessionDep, user: AnyUser) -> FleetPublic:
    """Admins only: the boxes are the city's, not an area's."""
    if user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin role required")
    boxes = [
        BoxPublic(
            edge_id=b.edge_id, state=b.state, state_since=b.state_since, last_status_at=b.last_status_at,
            version=_text(b.status.get("version")), model=_text(b.status.get("model")),
            cameras=_cameras(b.status.get("cameras")), last_alert_at=b.last_alert_at,
            streams=[StreamPublic(**s.__dict__) for s in b.streams], lost_alerts=b.lost_alerts,
        )
        for b in fleet_summary(session)
    ]
    return FleetPublic(data=boxes, count=len(boxes))
