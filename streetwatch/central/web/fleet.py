"""The fleet page (`/fleet`, admins): every edge box, online or not since when, what it runs, its
last alert, and the delivery audit's view of it: an open gap in its numbering, the resend requests
sent for it, and the alerts lost for good (central/delivery.py). The JSON is /api/fleet."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from starlette.responses import Response

from streetwatch.central.api.deps import SessionDep, WebUser
from streetwatch.central.api.queries import area_names
from streetwatch.central.delivery import fleet_summary
from streetwatch.central.web.render import render, user_label

router = APIRouter(include_in_schema=False)


@router.get("/fleet", name="fleet_page")
def fleet_page(request: Request, session: SessionDep, user: WebUser) -> Response:
    if user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin role required")
    boxes = fleet_summary(session)
    context = {
        "user": user_label(user, area_names(session).get(user.area_id or "")),
        "boxes": boxes,
        "online": sum(1 for b in boxes if b.state == "online"),
        "with_gaps": sum(1 for b in boxes if any(s.gap for s in b.streams)),
        "lost": sum(b.lost_alerts for b in boxes),
    }
    return render(request, "fleet.html", context)
