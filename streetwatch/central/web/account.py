"""The account page (`/account`): how many sessions the user has open, and "log out everywhere".

Admins also see every user with their open sessions and can end them all for one user (a lost
phone, a leaver). The same is `DELETE /api/users/{username}/sessions` and `central logout-user`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, status
from sqlalchemy import select
from starlette.responses import RedirectResponse, Response

from streetwatch.central.api.deps import CsrfChecked, SessionDep, WebUser, get_session_policy
from streetwatch.central.api.queries import area_names
from streetwatch.central.models import User
from streetwatch.central.web import i18n
from streetwatch.central.web.render import flash_context, redirect_with_flash, render, user_label
from streetwatch.central.web_sessions import count_live, end_all_sessions
from streetwatch.central.workflow.ids import MAX_ID

router = APIRouter(include_in_schema=False)
UserPathId = Annotated[int, Path(gt=0, le=MAX_ID, description="a user's number")]


@router.get("/account", name="account_page")
def account_page(request: Request, session: SessionDep, user: WebUser) -> Response:
    policy = get_session_policy(request)
    names = area_names(session)
    users = []
    if user.role == "admin":
        for other in session.scalars(select(User).order_by(User.username)):
            live = count_live(session, other.id, policy)
            users.append({"user": other, "area": names.get(other.area_id or ""), "live": live})
    context = {
        "user": user_label(user, names.get(user.area_id or "")),
        "live": count_live(session, user.id, policy),
        "idle_min": int(policy.idle.total_seconds() // 60),
        "max_age_h": round(policy.max_age.total_seconds() / 3600, 1),
        "users": users,
        **flash_context(request),
    }
    return render(request, "account.html", context)


@router.post("/account/logout-everywhere", name="logout_everywhere", dependencies=[CsrfChecked])
def logout_everywhere(request: Request, session: SessionDep, user: WebUser) -> Response:
    """End every session of this user, this one included (other browsers, a lost phone)."""
    user_id, username = user.id, user.username
    session.rollback()  # the service writes in its own transaction
    end_all_sessions(request.app.state.session_factory, user_id, actor=username)
    request.session.clear()
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/users/{user_id}/logout-everywhere", name="logout_user_everywhere", dependencies=[CsrfChecked])
def logout_user_everywhere(user_id: UserPathId, request: Request, session: SessionDep, user: WebUser) -> Response:
    """An admin ends every session of another user (or their own)."""
    if user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin role required")
    target = session.get(User, user_id)
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"user {user_id} not found")
    username, actor, own = target.username, user.username, target.id == user.id
    session.rollback()
    ended = end_all_sessions(request.app.state.session_factory, user_id, actor=actor)
    if own:
        request.session.clear()
        return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    message = i18n.gettext(request, i18n.N_("%(user)s: %(count)s sessions ended."), user=username, count=ended)
    return redirect_with_flash(request, "/account", message)
