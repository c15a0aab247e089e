"""The city workflow on a backlog, on a controllable clock and a real database: a merchant's seven old
cases confirmed within one minute give one warning now and each next step only after the previous
notice was delivered (the local merchant-notice sink) and its deadline passed, in the order the
violations happened; the notice waits for the undo window; an undone merge puts everything back;
hotspots and statistics count confirmed cases only; a visit is one row per merchant and day;
closing a dispatched case needs its verification or a supervisor's override with a note."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from workflow_support import T0, add_merchant, open_episode, reviewer

from streetwatch.central.case_service import Reviewer
from streetwatch.central.config import CentralSettings
from streetwatch.central.errors import Conflict
from streetwatch.central.models import Alert, Case, Hotspot, Notification, Strike
from streetwatch.central.review import ReviewService
from streetwatch.central.workflow.clock import ManualClock
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.grades import group_visits, inspections_due
from streetwatch.central.workflow.notify import LocalSinkChannel
from streetwatch.central.workflow.service import WorkflowService
from streetwatch.central.workflow.stats import case_facts, summarise
from streetwatch.central.workflow.worker import WorkflowEngine

MIN = timedelta(minutes=1)


def _backlog(factory: sessionmaker[Session], central: CentralSettings, count: int) -> list[int]:
    """`count` cases of one merchant, seen on different days over the past weeks (oldest first)."""
    add_merchant(factory, "m1")
    return [
        open_episode(factory, central, at=T0 - timedelta(days=3 * (count - i)), episode_id=f"old-{i}")
        for i in range(count)
    ]


def _confirm_now(factory: sessionmaker[Session], cases: list[int], clock: ManualClock) -> None:
    """Confirm each case with no undo window, so the next tick may start them."""
    review = ReviewService(factory, clock=clock, undo_window_s=0)
    for case_id in cases:
        review.confirm(case_id, reviewer=reviewer(factory))


def _steps(factory: sessionmaker[Session]) -> list[tuple[int, int, str]]:
    with factory() as s:
        return [(r.case_id, r.step, r.action) for r in s.scalars(select(Strike).order_by(Strike.at, Strike.step))]


def test_a_backlog_confirmed_in_a_minute_gives_one_step_at_a_time_in_occurrence_order(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, tmp_path: Path
) -> None:
    cases = _backlog(session_factory, central_settings, 7)
    clock = ManualClock(T0)
    review = ReviewService(session_factory, clock=clock, undo_window_s=30)
    rev = reviewer(session_factory)
    for case_id in reversed(cases):  # confirmed newest first, 8 s apart: all within one minute
        review.confirm(case_id, reviewer=rev)
        clock.advance(timedelta(seconds=8))
    sink = tmp_path / "notices.jsonl"
    settings = WorkflowSettings(rectify_window_min=30)
    engine = WorkflowEngine(session_factory, settings, clock=clock, channel=LocalSinkChannel(sink))
    assert engine.tick().started == []  # the last confirm is still inside its undo window
    clock.advance(40 * timedelta(seconds=1))
    report = engine.tick()
    assert report.started == [cases[0]] and report.delivery.sent == 1  # the oldest violation first
    assert _steps(session_factory) == [(cases[0], 1, "warning")]
    for _ in range(5):  # delivered, but its 30-minute deadline is ahead: nothing more
        clock.advance(5 * MIN)
        assert engine.tick().started == []
    clock.advance(6 * MIN)  # 31 minutes after the warning: served
    assert engine.tick().started == [cases[1]]
    assert _steps(session_factory)[-1] == (cases[1], 2, "rectification_notice")
    clock.advance(31 * MIN)
    assert engine.tick().started == [cases[2]]
    assert [s[1:] for s in _steps(session_factory)] == [(1, "warning"), (2, "rectification_notice"), (3, "penalty")]
    notices = [json.loads(line) for line in sink.read_text(encoding="utf-8").splitlines()]
    assert [(n["case_id"], n["kind"]) for n in notices] == [
        (cases[0], "warning"),
        (cases[1], "rectification_notice"),
        (cases[2], "penalty_notice"),
    ]
    with session_factory() as s:
        waiting = s.scalars(select(Case.status).where(Case.id.in_(cases[3:]))).all()
    assert set(waiting) == {"confirmed"}  # the rest still wait their turn
    # Three unrectified cases of one shop on one day: one visit with its reasons and cases.
    with session_factory() as s:
        due = inspections_due(s, now=clock())
    visits = group_visits(due, day_of=lambda at: at.date().isoformat(), addresses={"m1": "m1 Tea Street"})
    # one row: both unrectified cases and the routine visit its grade asks for
    assert [(v.merchant_id, v.reasons, v.case_ids) for v in visits] == [("m1", ("case", "routine"), tuple(cases[:2]))]


def test_without_a_channel_the_next_step_waits_for_the_deadline_only(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    cases = _backlog(session_factory, central_settings, 2)
    clock = ManualClock(T0)
    _confirm_now(session_factory, cases, clock)
    engine = WorkflowEngine(session_factory, WorkflowSettings(undo_window_s=0), clock=clock, channel=None)
    assert engine.tick().started == [cases[0]]
    clock.advance(29 * MIN)
    assert engine.tick().started == []
    clock.advance(2 * MIN)
    assert engine.tick().started == [cases[1]]


def test_the_old_rule_still_counts_every_confirmed_case_at_once(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    cases = _backlog(session_factory, central_settings, 3)
    clock = ManualClock(T0)
    _confirm_now(session_factory, cases, clock)
    settings = WorkflowSettings(undo_window_s=0, strike_waits_for_served=False)
    assert WorkflowEngine(session_factory, settings, clock=clock).tick().started == cases
    assert [s[1] for s in _steps(session_factory)] == [1, 2, 3]


def test_undo_of_a_merge_puts_the_alerts_back_and_a_late_undo_is_refused(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    add_merchant(session_factory, "m1")
    first = open_episode(session_factory, central_settings, at=T0, episode_id="a")
    second = open_episode(session_factory, central_settings, at=T0 + 3 * timedelta(hours=3), episode_id="b")
    assert first != second
    clock = ManualClock(T0 + timedelta(days=1))
    review = ReviewService(session_factory, clock=clock, undo_window_s=30)
    rev = reviewer(session_factory)
    merged = review.merge(second, into_case_id=first, reviewer=rev)
    with session_factory() as s:
        assert s.get(Case, first).alert_count == 2  # type: ignore[union-attr]
    undone = review.undo(merged.audit_id, reviewer=rev)
    assert undone.status == "new"
    with session_factory() as s:
        source, target = s.get(Case, second), s.get(Case, first)
        assert source is not None and target is not None
        assert (source.status, source.merged_into_id, source.alert_count) == ("new", None, 1)
        assert target.alert_count == 1
        assert set(s.scalars(select(Alert.case_id).where(Alert.episode_id == "b"))) == {second}
    confirmed = review.confirm(first, reviewer=rev)
    clock.advance(timedelta(seconds=31))
    with pytest.raises(Conflict, match="can no longer be undone"):
        review.undo(confirmed.audit_id, reviewer=rev)
    other = Reviewer(user_id=rev.user_id + 1000, username="someone-else")
    again = review.confirm(second, reviewer=rev)
    with pytest.raises(Conflict, match="only rev can undo"):
        review.undo(again.audit_id, reviewer=other)


def test_hotspots_and_statistics_count_confirmed_cases_and_keep_new_ones_apart(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    cases = _backlog(session_factory, central_settings, 6)
    clock = ManualClock(T0)
    review = ReviewService(session_factory, clock=clock, undo_window_s=0)
    review.confirm(cases[0], reviewer=reviewer(session_factory))
    settings = WorkflowSettings(undo_window_s=0)
    WorkflowEngine(session_factory, settings, clock=clock).tick()
    with session_factory() as s:
        hotspot = s.get(Hotspot, "merchant:m1")
        facts = case_facts(s, scope=None, since=T0 - timedelta(days=60), until=T0)
    assert hotspot is None or (hotspot.active, hotspot.case_count) == (False, 1)  # 1 confirmed, not 6
    summary = summarise(facts)
    assert (summary.total, summary.unreviewed) == (1, 5)
    for case_id in cases[1:5]:
        review.confirm(case_id, reviewer=reviewer(session_factory))
    WorkflowEngine(session_factory, settings, clock=clock).tick()
    with session_factory() as s:
        hotspot = s.get(Hotspot, "merchant:m1")
        assert hotspot is not None and (hotspot.active, hotspot.case_count, hotspot.unreviewed_count) == (True, 5, 1)


def test_closing_a_dispatched_case_needs_its_verification_or_a_supervisors_override(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    cases = _backlog(session_factory, central_settings, 1)
    clock = ManualClock(T0)
    ReviewService(session_factory, clock=clock, undo_window_s=0).confirm(cases[0], reviewer=reviewer(session_factory))
    WorkflowEngine(session_factory, WorkflowSettings(undo_window_s=0), clock=clock).tick()
    service = WorkflowService(session_factory, clock=clock)
    rev = reviewer(session_factory)
    with pytest.raises(Conflict, match="verification step"):
        service.close(cases[0], reviewer=rev, note="looks fine")
    supervisor = Reviewer(user_id=rev.user_id, username="boss", role="supervisor")
    with pytest.raises(Conflict, match="verification step"):
        service.close(cases[0], reviewer=supervisor, override=True)  # an override needs a note
    step = service.close(cases[0], reviewer=supervisor, override=True, note="shop closed down")
    assert step.status == "closed"
    with session_factory() as s:
        assert list(s.scalars(select(Notification.kind))) == ["warning"]


def test_one_merchants_long_backlog_does_not_hide_another_merchants_case(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    from workflow_support import LAT, LON

    from streetwatch.central.workflow.timers import cases_to_start

    busy = _backlog(session_factory, central_settings, 5)
    add_merchant(session_factory, "m2", lat=LAT + 0.01)
    other = open_episode(session_factory, central_settings, at=T0, episode_id="other", lat=LAT + 0.01, lon=LON)
    clock = ManualClock(T0)
    _confirm_now(session_factory, [*busy, other], clock)
    with session_factory() as s:
        ready = [c.id for c in cases_to_start(s, now=clock(), settings=WorkflowSettings(undo_window_s=0), limit=2)]
    assert ready == [busy[0], other]  # each merchant's oldest, though m1 has four more waiting
