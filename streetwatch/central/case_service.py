"""What every case action shares: one transaction, the case row locked and checked against the
reviewer's area, the status moved through `case_status.move`, and one audit row.

`ReviewService` (review.py: confirm, dismiss, merge, reassign) and `WorkflowService`
(workflow/service.py: penalty, verify, close, complaints, inspections) are both `CaseService`s, so
a case action is written once:

    with self._case_action(case_id, reviewer) as (session, case):
        return self._move(session, case, CaseStatus.CONFIRMED, action="confirm", reviewer=reviewer)

Locking: `SELECT .. FOR UPDATE` on PostgreSQL; SQLite takes the write lock up front (BEGIN
IMMEDIATE), so two reviewers acting on one case are serialised and the second gets a clear
conflict. A case outside the reviewer's area is reported as not found (no existence leak).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.access import AreaScope, case_visible, load_scope
from streetwatch.central.case_status import CaseStatus, move, sources_of
from streetwatch.central.db import session_scope
from streetwatch.central.errors import Conflict, NotFound
from streetwatch.central.models import SUPERVISOR_ROLES, AuditLog, Case, User
from streetwatch.central.workflow.clock import Clock, system_clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reviewer:
    """Who acts: the user name written to the audit log, and the area the user may act on."""

    user_id: int
    username: str
    scope: AreaScope | None = field(default=None, compare=False)
    role: str = field(default="reviewer", compare=False)

    @classmethod
    def of(cls, session: Session, user: User) -> Reviewer:
        return cls(user_id=user.id, username=user.username, scope=load_scope(session, user), role=user.role)

    @property
    def is_supervisor(self) -> bool:
        return self.role in SUPERVISOR_ROLES


@dataclass(frozen=True)
class ActionOutcome:
    """What a case action did: the case's status after it and the audit row that records it."""

    case_id: int
    action: str
    status: str
    audit_id: int
    at: datetime


def write_audit(
    session: Session, *, case_id: int | None, actor: str, action: str, detail: Mapping[str, object], at: datetime
) -> AuditLog:
    """One audit row (reviewers' actions, the workflow worker's, complaints), flushed for its id."""
    entry = AuditLog(case_id=case_id, actor=actor, action=action, detail=dict(detail), at=at)
    session.add(entry)
    session.flush()
    return entry


def locked_case(session: Session, case_id: int, reviewer: Reviewer) -> Case:
    """The case row, locked for this transaction; NotFound when missing or outside the area."""
    case = session.scalars(select(Case).where(Case.id == case_id).with_for_update()).one_or_none()
    if case is None or not case_visible(reviewer.scope, case):
        raise NotFound(f"case {case_id} not found", code="case_not_found", case_id=case_id)
    return case


def require_status(case: Case, action: str, *, allowed: Sequence[str]) -> None:
    """Conflict unless the case is in one of `allowed` (the message the reviewer sees)."""
    if case.status not in allowed:
        wanted = " or ".join(allowed)
        raise Conflict(
            f"case {case.id} is {case.status}; {action} needs a case that is {wanted}",
            code="wrong_status", case_id=case.id, status=case.status,
        )


class CaseService:
    """Case actions over a session factory; `clock` makes the audit time testable."""

    def __init__(self, session_factory: sessionmaker[Session], *, clock: Clock = system_clock) -> None:
        self._factory = session_factory
        self._clock = clock

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with session_scope(self._factory, write_lock=True) as session:
            yield session

    @contextmanager
    def _case_action(self, case_id: int, reviewer: Reviewer) -> Iterator[tuple[Session, Case]]:
        """One write transaction holding the case row (visible to the reviewer) until it commits."""
        with self._transaction() as session:
            yield session, locked_case(session, case_id, reviewer)

    def _move(
        self,
        session: Session,
        case: Case,
        to: CaseStatus,
        *,
        action: str,
        reviewer: Reviewer,
        detail: Mapping[str, object] | None = None,
    ) -> ActionOutcome:
        """The status move `action` stands for (refused as a Conflict from any other status), audited."""
        require_status(case, action, allowed=sources_of(action))
        move(case, to, action=action)
        return self._audit(session, case, reviewer, action, detail or {})

    def _audit(
        self, session: Session, case: Case, reviewer: Reviewer, action: str, detail: Mapping[str, object]
    ) -> ActionOutcome:
        at = self._clock()
        case.updated_at = at
        entry = write_audit(session, case_id=case.id, actor=reviewer.username, action=action, detail=detail, at=at)
        log.info("case %s: %s by %s (%s)", case.id, action, reviewer.username, dict(detail))
        return ActionOutcome(case_id=case.id, action=action, status=case.status, audit_id=entry.id, at=at)
