"""Notification and the 30-minute self-rectification window, on a controllable clock.

Cases come through the real ingest path (alerts, episodes, `ended`), are confirmed through the
review service, and the workflow worker runs tick by tick at times the test sets. Notifications go
to a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from workflow_support import T0, add_merchant, end_episode, open_episode, reviewer, undo_passed, webhook_server

from streetwatch.central.config import CentralSettings
from streetwatch.central.db import make_engine, make_session_factory
from streetwatch.central.models import AuditLog, Case, CaseTimer, Inspection, Notification
from streetwatch.central.review import ReviewService
from streetwatch.central.workflow.clock import ManualClock
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.notify import WebhookChannel
from streetwatch.central.workflow.worker import WorkflowEngine, start_worker_thread

MIN = timedelta(minutes=1)


def confirmed_case(factory: sessionmaker[Session], settings: CentralSettings, clock: ManualClock) -> int:
    case_id = open_episode(factory, settings, at=clock(), episode_id="ep-1")
    # confirmed just over the undo window ago, so the next tick starts the workflow
    ReviewService(factory, clock=undo_passed(clock)).confirm(case_id, reviewer=reviewer(factory))
    return case_id


def case_row(factory: sessionmaker[Session], case_id: int) -> Case:
    with factory() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case


def test_spot_clear_within_30_minutes_is_rectified_and_the_merchant_was_notified(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    add_merchant(session_factory, "m1")
    clock = ManualClock(T0)
    with webhook_server() as hook:
        settings = WorkflowSettings(webhook_url=hook.url, webhook_secret="s3cret")  # type: ignore[arg-type]
        engine = WorkflowEngine(session_factory, settings, clock=clock)
        case_id = confirmed_case(session_factory, central_settings, clock)
        report = engine.tick()
        assert report.started == [case_id] and report.delivery.sent == 1
        assert case_row(session_factory, case_id).status == "notified"
        body = hook.received[0]
        assert body["case_id"] == case_id and body["merchant_id"] == "m1" and body["kind"] == "warning"
        assert body["rectify_by"] == (T0 + 30 * MIN).isoformat()
        raw = json.dumps(body, ensure_ascii=False, sort_keys=True).encode()
        expected = "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
        assert hook.headers[0]["x-streetwatch-signature"] == expected
        assert hook.headers[0]["idempotency-key"].endswith(str(body["notification_id"]))

        clock.advance(20 * MIN)
        assert engine.tick().resolved == {}  # still seen, still inside the window
        end_episode(session_factory, central_settings, at=clock(), episode_id="ep-1")  # the edge sees it clear
        clock.advance(MIN)
        assert engine.tick().resolved == {case_id: "rectified"}
        assert len(hook.received) == 1  # sent once, not again on later ticks
    assert case_row(session_factory, case_id).status == "rectified"
    with session_factory() as session:
        assert session.scalars(select(Inspection)).all() == []
        actions = session.scalars(select(AuditLog.action).where(AuditLog.case_id == case_id).order_by(AuditLog.id))
        assert list(actions) == ["confirm", "notify", "rectified"]


def test_spot_still_seen_after_30_minutes_creates_an_inspection(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    add_merchant(session_factory, "m1")
    clock = ManualClock(T0)
    engine = WorkflowEngine(session_factory, WorkflowSettings(), clock=clock)
    case_id = confirmed_case(session_factory, central_settings, clock)
    engine.tick()
    clock.advance(30 * MIN - timedelta(seconds=1))
    assert engine.tick().resolved == {}
    clock.advance(timedelta(seconds=1))
    assert engine.tick().resolved == {case_id: "inspection"}
    # clearing after the deadline does not turn it into a self-rectification
    end_episode(session_factory, central_settings, at=clock() + MIN, episode_id="ep-1")
    clock.advance(2 * MIN)
    assert engine.tick().resolved == {}
    assert case_row(session_factory, case_id).status == "escalated"
    with session_factory() as session:
        inspection = session.scalars(select(Inspection)).one()
        assert (inspection.case_id, inspection.merchant_id, inspection.reason) == (case_id, "m1", "case")
        assert inspection.due_at == T0 + 30 * MIN and inspection.status == "open"


def test_window_is_configurable(session_factory: sessionmaker[Session], central_settings: CentralSettings) -> None:
    add_merchant(session_factory, "m1")
    clock = ManualClock(T0)
    engine = WorkflowEngine(session_factory, WorkflowSettings(rectify_window_min=5), clock=clock)
    case_id = confirmed_case(session_factory, central_settings, clock)
    engine.tick()
    clock.advance(5 * MIN)
    assert engine.tick().resolved == {case_id: "inspection"}


def test_timers_survive_a_restart_of_central(
    db_url: str, session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    add_merchant(session_factory, "m1")
    clock = ManualClock(T0)
    WorkflowEngine(session_factory, WorkflowSettings(), clock=clock).tick()  # nothing yet
    case_id = confirmed_case(session_factory, central_settings, clock)
    WorkflowEngine(session_factory, WorkflowSettings(), clock=clock).tick()  # timer stored, then "crash"
    session_factory.kw["bind"].dispose()

    clock.advance(45 * MIN)  # central was down past the deadline
    engine = make_engine(db_url)
    try:
        restarted = WorkflowEngine(make_session_factory(engine), WorkflowSettings(), clock=clock)
        assert restarted.tick().resolved == {case_id: "inspection"}
        with make_session_factory(engine)() as session:
            timer = session.scalars(select(CaseTimer)).one()
            assert (timer.status, timer.outcome, timer.due_at) == ("done", "inspection", T0 + 30 * MIN)
    finally:
        engine.dispose()


def test_outbox_retries_with_back_off_then_delivers(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    add_merchant(session_factory, "m1")
    clock = ManualClock(T0)
    with webhook_server(fail_first=2) as hook:
        settings = WorkflowSettings(webhook_url=hook.url, retry_base_s=60)  # type: ignore[arg-type]
        engine = WorkflowEngine(session_factory, settings, clock=clock)
        confirmed_case(session_factory, central_settings, clock)
        assert engine.tick().delivery.retried == 1
        clock.advance(timedelta(seconds=59))
        assert engine.tick().delivery.retried == 0 and hook.calls == 1  # not yet due again
        clock.advance(timedelta(seconds=1))
        assert engine.tick().delivery.retried == 1  # second failure: next in 120 s
        clock.advance(timedelta(seconds=120))
        assert engine.tick().delivery.sent == 1
        assert len(hook.received) == 1 and hook.calls == 3
    with session_factory() as session:
        row = session.scalars(select(Notification)).one()
        assert (row.status, row.attempts, row.sent_at) == ("sent", 3, T0 + timedelta(seconds=180))


def test_outbox_gives_up_after_max_attempts(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    add_merchant(session_factory, "m1")
    clock = ManualClock(T0)
    with webhook_server(fail_first=100) as hook:
        settings = WorkflowSettings(webhook_url=hook.url, retry_base_s=1, max_attempts=3)  # type: ignore[arg-type]
        engine = WorkflowEngine(session_factory, settings, clock=clock)
        confirmed_case(session_factory, central_settings, clock)
        for _ in range(5):
            engine.tick()
            clock.advance(MIN)
        assert hook.calls == 3
    with session_factory() as session:
        row = session.scalars(select(Notification)).one()
        assert (row.status, row.attempts) == ("failed", 3)
        assert row.last_error == f"HTTP 500 from {hook.url}"


def test_unattributed_confirmed_case_is_not_notified(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    clock = ManualClock(T0)
    case_id = confirmed_case(session_factory, central_settings, clock)  # no merchant near the spot
    assert WorkflowEngine(session_factory, WorkflowSettings(), clock=clock).tick().started == []
    assert case_row(session_factory, case_id).status == "confirmed"


def test_worker_thread_runs_ticks_until_stopped(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    """What `central serve` starts: the same engine, ticking in a thread until the stop event."""
    add_merchant(session_factory, "m1")
    clock = ManualClock(T0)
    case_id = confirmed_case(session_factory, central_settings, clock)
    stop = threading.Event()
    thread = start_worker_thread(
        WorkflowEngine(session_factory, WorkflowSettings(tick_interval_s=0.05), clock=clock), stop
    )
    try:
        for _ in range(400):  # until the worker has notified the merchant (no timing is asserted)
            if case_row(session_factory, case_id).status == "notified":
                break
            stop.wait(0.05)
        assert case_row(session_factory, case_id).status == "notified"
        clock.advance(31 * MIN)
        for _ in range(400):
            if case_row(session_factory, case_id).status == "escalated":
                break
            stop.wait(0.05)
        assert case_row(session_factory, case_id).status == "escalated"
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


class CrashingChannel:
    """Stands for a worker that dies while sending (after the claim, before the outcome is stored)."""

    name = "crash"

    def deliver(self, message: object) -> None:
        raise RuntimeError("worker died mid-send")


def test_a_send_interrupted_by_a_crash_is_sent_again_after_the_lease(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    add_merchant(session_factory, "m1")
    clock = ManualClock(T0)
    settings = WorkflowSettings(webhook_timeout_s=5)
    confirmed_case(session_factory, central_settings, clock)
    with pytest.raises(RuntimeError, match="mid-send"):
        WorkflowEngine(session_factory, settings, clock=clock, channel=CrashingChannel()).tick()
    with webhook_server() as hook:
        engine = WorkflowEngine(session_factory, settings, clock=clock, channel=WebhookChannel(hook.url))
        clock.advance(timedelta(seconds=69))
        assert engine.tick().delivery.sent == 0  # still claimed by the dead worker
        clock.advance(timedelta(seconds=1))  # lease = 2 x timeout + 60 s
        assert engine.tick().delivery.sent == 1
        assert len(hook.received) == 1
    with session_factory() as session:
        row = session.scalars(select(Notification)).one()
        assert (row.status, row.attempts) == ("sent", 2)
