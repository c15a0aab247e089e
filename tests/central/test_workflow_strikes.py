"""Three strikes on a controllable clock: warning, rectification notice, penalty (needed to close)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from workflow_support import T0, add_merchant, end_episode, open_episode, reviewer, undo_passed

from streetwatch.central.config import CentralSettings
from streetwatch.central.errors import Conflict
from streetwatch.central.models import AuditLog, Notification, Strike
from streetwatch.central.review import ReviewService
from streetwatch.central.workflow.clock import ManualClock
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.service import WorkflowService
from streetwatch.central.workflow.worker import WorkflowEngine

MIN = timedelta(minutes=1)


class Loop:
    """Confirm a new case at the merchant's spot and let the workflow run over it."""

    def __init__(self, factory: sessionmaker[Session], central: CentralSettings, settings: WorkflowSettings) -> None:
        self.factory, self.central, self.settings = factory, central, settings
        self.clock = ManualClock(T0)
        self.engine = WorkflowEngine(factory, settings, clock=self.clock)
        self.episodes = 0

    def violation(self, at: datetime, *, self_rectify: bool = False) -> int:
        self.clock.set(at)
        self.episodes += 1
        episode = f"ep-{self.episodes}"
        case_id = open_episode(self.factory, self.central, at=at, episode_id=episode)
        ReviewService(self.factory, clock=undo_passed(self.clock)).confirm(case_id, reviewer=reviewer(self.factory))
        assert self.engine.tick().started == [case_id]
        if self_rectify:
            end_episode(self.factory, self.central, at=at + 10 * MIN, episode_id=episode)
        self.clock.advance(31 * MIN)
        self.engine.tick()
        return case_id

    def strike(self, case_id: int) -> tuple[int, str, str]:
        with self.factory() as session:
            strike = session.get(Strike, case_id)
            assert strike is not None
            kind = session.scalars(select(Notification.kind).where(Notification.case_id == case_id)).one()
            return strike.step, strike.action, kind


def test_three_strikes_sequence_and_penalty_before_close(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    add_merchant(session_factory, "m1")
    loop = Loop(session_factory, central_settings, WorkflowSettings())
    cases = [loop.violation(T0 + timedelta(days=d)) for d in (0, 2, 5, 6)]
    assert [loop.strike(c) for c in cases] == [
        (1, "warning", "warning"),
        (2, "rectification_notice", "rectification_notice"),
        (3, "penalty", "penalty_notice"),
        (3, "penalty", "penalty_notice"),  # capped at the third step
    ]
    service = WorkflowService(session_factory, clock=loop.clock)
    rev = reviewer(session_factory)
    service.verify(cases[0], passed=True, reviewer=rev)  # every dispatched case is verified before it closes
    assert service.close(cases[0], reviewer=rev).status == "closed"  # a warning case needs no penalty
    with pytest.raises(Conflict, match="penalty decision"):
        service.close(cases[2], reviewer=rev)
    with pytest.raises(Conflict, match="not a third strike"):
        service.decide_penalty(cases[1], decision="fine", reviewer=rev)
    step = service.decide_penalty(cases[2], decision="fine 500 CNY", reviewer=rev)
    assert (step.strike_step, step.penalty_decision, step.close_blocker) == (3, "fine 500 CNY", None)
    service.verify(cases[2], passed=True, reviewer=rev)
    assert service.close(cases[2], reviewer=rev).status == "closed"
    with session_factory() as session:
        history = session.scalars(select(AuditLog.action).where(AuditLog.case_id == cases[2]).order_by(AuditLog.id))
        assert list(history) == ["confirm", "notify", "inspection", "penalty", "verified", "close"]


def test_strikes_outside_the_window_do_not_count(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    add_merchant(session_factory, "m1")
    loop = Loop(session_factory, central_settings, WorkflowSettings(strike_window_days=30))
    first = loop.violation(T0)
    second = loop.violation(T0 + timedelta(days=29))
    third = loop.violation(T0 + timedelta(days=61))  # the first two are > 30 days back
    assert [loop.strike(c)[0] for c in (first, second, third)] == [1, 2, 1]


@pytest.mark.parametrize(("count_self_rectified", "second_step"), [(False, 1), (True, 2)])
def test_self_rectified_cases_count_as_configured(
    session_factory: sessionmaker[Session],
    central_settings: CentralSettings,
    count_self_rectified: bool,
    second_step: int,
) -> None:
    add_merchant(session_factory, "m1")
    settings = WorkflowSettings(strikes_count_self_rectified=count_self_rectified)
    loop = Loop(session_factory, central_settings, settings)
    first = loop.violation(T0, self_rectify=True)
    second = loop.violation(T0 + timedelta(days=1))
    assert loop.strike(first)[0] == 1
    assert loop.strike(second)[0] == second_step
