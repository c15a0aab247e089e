"""Grades both ways, inspections due, hotspots on and off, road grades: on a controllable clock."""

from __future__ import annotations

from datetime import timedelta

from review_seed import add_case
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from workflow_support import LAT, LON, T0, add_merchant, reviewer

from streetwatch.central.db import session_scope
from streetwatch.central.models import AuditLog, Hotspot, Inspection, Merchant
from streetwatch.central.workflow.clock import ManualClock
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.grades import inspections_due
from streetwatch.central.workflow.hotspots import road_grades
from streetwatch.central.workflow.service import WorkflowService
from streetwatch.central.workflow.worker import WorkflowEngine

DAY = timedelta(days=1)


def grade(factory: sessionmaker[Session], merchant_id: str) -> str:
    with factory() as session:
        merchant = session.get(Merchant, merchant_id)
        assert merchant is not None
        return merchant.grade


def add_cases(
    factory: sessionmaker[Session], merchant_id: str | None, n: int, *, status: str, days_ago: int = 0, now: ManualClock
) -> None:
    with session_scope(factory) as session:
        for _ in range(n):
            add_case(
                session,
                lat=LAT,
                lon=LON,
                merchant_id=merchant_id,
                method="inside_zone",
                status=status,
                first_seen=now() - timedelta(days=days_ago),
            )


def test_grade_goes_up_with_cases_and_complaints_and_down_when_they_leave_the_window(
    session_factory: sessionmaker[Session],
) -> None:
    add_merchant(session_factory, "m1")
    clock = ManualClock(T0)
    settings = WorkflowSettings(grade_window_days=90, recompute_every_s=0)
    engine = WorkflowEngine(session_factory, settings, clock=clock)
    service = WorkflowService(session_factory, settings, clock=clock)
    add_cases(session_factory, "m1", 2, status="escalated", now=clock)
    add_cases(session_factory, "m1", 3, status="dismissed", now=clock)  # dismissed never count
    engine.tick()
    assert grade(session_factory, "m1") == "green"  # 2 records
    clock.advance(10 * DAY)
    service.add_complaint("m1", source="hotline", note="goods on the pavement", reviewer=reviewer(session_factory))
    assert grade(session_factory, "m1") == "yellow"  # 3: recomputed at once, not at the next tick
    add_cases(session_factory, "m1", 2, status="closed", now=clock)
    engine.tick()
    assert grade(session_factory, "m1") == "red"  # 5
    clock.advance(81 * DAY)  # the first two cases (day 0) leave the 90-day window
    engine.tick()
    assert grade(session_factory, "m1") == "yellow"  # 3
    clock.advance(10 * DAY)  # everything has left
    engine.tick()
    assert grade(session_factory, "m1") == "green"
    with session_factory() as session:
        changes = session.scalars(select(AuditLog).where(AuditLog.action == "grade").order_by(AuditLog.id)).all()
        assert [(c.detail["from"], c.detail["to"]) for c in changes] == [
            ("green", "yellow"),
            ("yellow", "red"),
            ("red", "yellow"),
            ("yellow", "green"),
        ]


def test_inspections_due_follow_the_grade(session_factory: sessionmaker[Session]) -> None:
    add_merchant(session_factory, "red-shop", road="Tea Street")
    add_merchant(session_factory, "green-shop", lat=LAT + 0.001, road="Tea Street")
    clock = ManualClock(T0)
    engine = WorkflowEngine(session_factory, WorkflowSettings(recompute_every_s=0), clock=clock)
    add_cases(session_factory, "red-shop", 5, status="escalated", now=clock)
    engine.tick()
    service = WorkflowService(session_factory, clock=clock)
    rev = reviewer(session_factory)
    with session_factory() as session:
        due = inspections_due(session, now=clock())
    assert {(d.merchant_id, d.frequency) for d in due} == {("red-shop", "daily"), ("green-shop", "monthly")}
    assert due[0].merchant_id == "red-shop"  # red first
    with session_scope(session_factory) as session:  # record both routine visits as done today
        for mid in ("red-shop", "green-shop"):
            session.add(Inspection(merchant_id=mid, reason="routine", due_at=clock(), created_at=clock()))
    with session_factory() as session:
        ids = session.scalars(select(Inspection.id)).all()
    for inspection_id in ids:
        service.complete_inspection(inspection_id, reviewer=rev)
    with session_factory() as session:
        assert inspections_due(session, now=clock()) == []
        tomorrow = [d.merchant_id for d in inspections_due(session, now=clock() + DAY)]
        next_month = {d.merchant_id for d in inspections_due(session, now=clock() + 30 * DAY)}
    assert tomorrow == ["red-shop"]
    assert next_month == {"red-shop", "green-shop"}


def hotspot(factory: sessionmaker[Session], key: str) -> Hotspot | None:
    with factory() as session:
        return session.get(Hotspot, key)


def test_hotspot_on_at_five_cases_and_off_only_at_zero(session_factory: sessionmaker[Session]) -> None:
    add_merchant(session_factory, "m1", road="Tea Street")
    add_merchant(session_factory, "m2", lat=LAT + 0.001, road="Tea Street")
    clock = ManualClock(T0)
    engine = WorkflowEngine(session_factory, WorkflowSettings(hotspot_window_days=30, recompute_every_s=0), clock=clock)
    add_cases(session_factory, "m1", 4, status="confirmed", days_ago=5, now=clock)
    add_cases(session_factory, "m1", 2, status="dismissed", now=clock)
    assert engine.tick().hotspots == []
    with session_factory() as session:
        # m1 is yellow (4 confirmed cases), m2 green, no hotspot yet: the road is yellow
        assert [(r.road, r.grade) for r in road_grades(session)] == [("Tea Street", "yellow")]
    add_cases(session_factory, "m1", 1, status="new", now=clock)
    assert engine.tick().hotspots == []  # a detection nobody reviewed is no violation yet
    add_cases(session_factory, "m1", 1, status="closed", now=clock)
    assert engine.tick().hotspots == ["merchant:m1"]
    spot = hotspot(session_factory, "merchant:m1")
    assert spot is not None and spot.case_count == 5 and spot.label == "m1 Tea Street" and spot.since == T0
    assert spot.unreviewed_count == 1  # shown apart
    assert spot.lat is not None and abs(spot.lat - LAT) < 1e-9
    with session_factory() as session:
        assert [(r.road, r.grade) for r in road_grades(session)] == [("Tea Street", "red")]
    clock.advance(26 * DAY)  # the four older cases leave the window: 1 left, still shown
    assert engine.tick().hotspots == ["merchant:m1"]
    assert hotspot(session_factory, "merchant:m1").case_count == 1  # type: ignore[union-attr]
    clock.advance(5 * DAY)  # zero: off
    assert engine.tick().hotspots == []
    spot = hotspot(session_factory, "merchant:m1")
    assert spot is not None and (spot.active, spot.case_count) == (False, 0)


def test_unattributed_cases_make_a_zone_hotspot(session_factory: sessionmaker[Session]) -> None:
    clock = ManualClock(T0)
    add_cases(session_factory, None, 5, status="confirmed", now=clock)
    assert WorkflowEngine(session_factory, WorkflowSettings(recompute_every_s=0), clock=clock).tick().hotspots == [
        "zone:cam-1/z-1"
    ]


def test_grades_and_hotspots_are_recomputed_at_most_every_interval(session_factory: sessionmaker[Session]) -> None:
    clock = ManualClock(T0)
    engine = WorkflowEngine(session_factory, WorkflowSettings(recompute_every_s=60), clock=clock)
    assert engine.tick().hotspots == []
    add_cases(session_factory, None, 5, status="confirmed", now=clock)
    clock.advance(timedelta(seconds=59))
    assert engine.tick().hotspots == []  # not yet: the last scan was 59 s ago
    clock.advance(timedelta(seconds=1))
    assert engine.tick().hotspots == ["zone:cam-1/z-1"]
