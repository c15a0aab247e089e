"""Three strikes: each confirmed case of a merchant is a step (warning, rectification notice, penalty).

Functions here take an open session and never commit: the caller's transaction (worker.py or the
workflow service) holds the case row while they run.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from streetwatch.central.models import Case, Strike
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.rules import strike_action, strike_counts, strike_step

log = logging.getLogger(__name__)


def prior_strikes(session: Session, *, merchant_id: str, now: datetime, settings: WorkflowSettings) -> int:
    """The merchant's strikes in the window that still count (dismissed never; self-rectified as configured)."""
    since = now - timedelta(days=settings.strike_window_days)
    rows = session.execute(
        select(Case.status)
        .join(Strike, Strike.case_id == Case.id)
        .where(Strike.merchant_id == merchant_id, Strike.at >= since, Strike.at <= now)
    ).scalars()
    return sum(strike_counts(status=s, count_self_rectified=settings.strikes_count_self_rectified) for s in rows)


def record_strike(session: Session, case: Case, *, now: datetime, settings: WorkflowSettings) -> Strike:
    """The strike of a confirmed, attributed case (idempotent: a case has at most one strike)."""
    existing = session.get(Strike, case.id)
    if existing is not None:
        return existing
    assert case.merchant_id is not None
    step = strike_step(prior_strikes(session, merchant_id=case.merchant_id, now=now, settings=settings))
    strike = Strike(case_id=case.id, merchant_id=case.merchant_id, step=step, action=strike_action(step), at=now)
    session.add(strike)
    session.flush()
    log.info("case %s: strike %d (%s) for merchant %s", case.id, step, strike.action, case.merchant_id)
    return strike


def strike_history(session: Session, merchant_id: str, *, limit: int = 50) -> list[Strike]:
    """The merchant's strikes, newest first (the case page shows them)."""
    query = select(Strike).where(Strike.merchant_id == merchant_id).order_by(Strike.at.desc()).limit(limit)
    return list(session.scalars(query))
