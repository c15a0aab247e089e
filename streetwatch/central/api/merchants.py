"""/api/merchants: the merchants the caller's area covers (for reassigning and for maps)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import func, select

from streetwatch.central.access import merchant_clause, merchant_visible
from streetwatch.central.api.deps import CurrentUser, SessionDep, scope_of
from streetwatch.central.api.params import Offset
from streetwatch.central.api.queries import MAX_PAGE
from streetwatch.central.api.schemas import MerchantPublic, Page
from streetwatch.central.models import Merchant

router = APIRouter(prefix="/merchants", tags=["merchants"])


@router.get("", response_model=Page[MerchantPublic])
def read_merchants(
    session: SessionDep,
    user: CurrentUser,
    road: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=100, description="part of the name or id")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Offset = 0,
) -> Page[MerchantPublic]:
    """Merchants by id, filtered by road or a name/id fragment; `count` is of the caller's area only."""
    scope = scope_of(session, user)
    conditions = [merchant_clause(scope)]
    if road:
        conditions.append(Merchant.road == road)
    if q:
        pattern = f"%{q.replace('%', '').replace('_', '')}%"
        conditions.append(Merchant.name.ilike(pattern) | Merchant.id.ilike(pattern))
    stmt = select(Merchant).where(*conditions).order_by(Merchant.id)
    if scope is not None and scope.polygon is not None:
        # The SQL pre-filter also passes merchants without an area, for the polygon test: count and
        # page only those that pass it (counting the pre-filter told a district about its neighbours).
        visible = [m for m in session.scalars(stmt) if merchant_visible(scope, m)]
        page, count = visible[offset : offset + limit], len(visible)
    else:
        page = list(session.scalars(stmt.offset(offset).limit(limit)))
        count = int(session.scalar(select(func.count()).select_from(Merchant).where(*conditions)) or 0)
    return Page[MerchantPublic](data=[MerchantPublic.model_validate(m) for m in page], count=count)


@router.get("/{merchant_id}", response_model=MerchantPublic)
def read_merchant(merchant_id: str, session: SessionDep, user: CurrentUser) -> MerchantPublic:
    merchant = session.get(Merchant, merchant_id)
    if merchant is None or not merchant_visible(scope_of(session, user), merchant):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"merchant {merchant_id!r} not found")
    return MerchantPublic.model_validate(merchant)
