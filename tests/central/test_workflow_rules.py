"""The city's rules as tables (pure functions, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streetwatch.central.config import load_settings
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.rules import (
    RoadRecord,
    close_blocker,
    hotspot_active,
    inspection_due_at,
    inspection_frequency,
    lifecycle_stage,
    merchant_grade,
    rectify_decision,
    retry_delay_s,
    road_grade,
    strike_action,
    strike_counts,
    strike_step,
)

T = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
DUE = T + timedelta(minutes=30)


@pytest.mark.parametrize(
    ("now", "clear_since", "expected"),
    [
        (T + timedelta(minutes=10), None, "wait"),
        (T + timedelta(minutes=10), T + timedelta(minutes=9), "rectified"),
        (DUE, DUE, "rectified"),  # cleared exactly at the deadline
        (DUE, None, "inspection"),
        (DUE + timedelta(hours=1), DUE + timedelta(minutes=1), "inspection"),  # cleared too late
        (DUE - timedelta(seconds=1), None, "wait"),
    ],
)
def test_rectify_decision(now: datetime, clear_since: datetime | None, expected: str) -> None:
    assert rectify_decision(now=now, due_at=DUE, clear_since=clear_since) == expected


def test_rectify_decision_ignores_a_clear_view_older_than_a_redispatch() -> None:
    old_clear = T - timedelta(minutes=5)
    assert rectify_decision(now=T, due_at=DUE, clear_since=old_clear) == "rectified"
    assert rectify_decision(now=T, due_at=DUE, clear_since=old_clear, not_before=T) == "wait"
    assert rectify_decision(now=DUE, due_at=DUE, clear_since=old_clear, not_before=T) == "inspection"


@pytest.mark.parametrize(
    ("prior", "step", "action"),
    [(0, 1, "warning"), (1, 2, "rectification_notice"), (2, 3, "penalty"), (7, 3, "penalty")],
)
def test_strike_steps(prior: int, step: int, action: str) -> None:
    assert strike_step(prior) == step
    assert strike_action(step) == action


@pytest.mark.parametrize(
    ("status", "count_rectified", "counts"),
    [("escalated", False, True), ("rectified", False, False), ("rectified", True, True), ("dismissed", True, False)],
)
def test_strike_counts(status: str, count_rectified: bool, counts: bool) -> None:
    assert strike_counts(status=status, count_self_rectified=count_rectified) is counts


@pytest.mark.parametrize(
    ("step", "decision", "blocked"),
    [(None, None, False), (1, None, False), (2, None, False), (3, None, True), (3, "  ", True), (3, "fine", False)],
)
def test_close_blocker(step: int | None, decision: str | None, blocked: bool) -> None:
    assert (close_blocker(strike_step=step, penalty_decision=decision) is not None) is blocked


@pytest.mark.parametrize(
    ("records", "grade"), [(0, "green"), (2, "green"), (3, "yellow"), (4, "yellow"), (5, "red"), (12, "red")]
)
def test_merchant_grade(records: int, grade: str) -> None:
    assert merchant_grade(records) == grade


@pytest.mark.parametrize(
    ("grade", "frequency", "days"), [("red", "daily", 1), ("yellow", "weekly", 7), ("green", "monthly", 30)]
)
def test_inspection_frequency(grade: str, frequency: str, days: int) -> None:
    assert inspection_frequency(grade) == frequency
    assert inspection_due_at(grade=grade, last_done=T, since=T) == T + timedelta(days=days)
    assert inspection_due_at(grade=grade, last_done=None, since=T) == T  # never inspected: due now


@pytest.mark.parametrize(
    ("was", "count", "active"),
    [(False, 4, False), (False, 5, True), (True, 4, True), (True, 1, True), (True, 0, False), (False, 0, False)],
)
def test_hotspot_hysteresis(was: bool, count: int, active: bool) -> None:
    assert hotspot_active(was_active=was, case_count=count, threshold=5) is active


@pytest.mark.parametrize(
    ("grades", "hotspots", "expected"),
    [
        ([], 0, "green"),
        (["green", "green"], 0, "green"),
        (["green", "yellow"], 0, "yellow"),
        (["green"] * 9 + ["red"], 0, "yellow"),  # 10 % red
        (["green"] * 4 + ["red"], 0, "red"),  # 20 % red
        (["green"], 1, "red"),  # an active hotspot
    ],
)
def test_road_grade(grades: list[str], hotspots: int, expected: str) -> None:
    assert road_grade(RoadRecord.of(grades, hotspots=hotspots)) == expected


@pytest.mark.parametrize(("attempts", "delay"), [(1, 30.0), (2, 60.0), (3, 120.0), (10, 3600.0), (200, 3600.0)])
def test_retry_delay(attempts: int, delay: float) -> None:
    assert retry_delay_s(attempts, base_s=30, max_s=3600) == delay


@pytest.mark.parametrize(
    ("status", "verified", "stage"),
    [
        ("new", False, "report"),
        ("confirmed", False, "file"),
        ("notified", False, "dispatch"),
        ("escalated", False, "handle"),
        ("rectified", False, "feedback"),
        ("rectified", True, "verify"),
        ("closed", False, "close"),
        ("dismissed", False, "void"),
    ],
)
def test_lifecycle_stage(status: str, verified: bool, stage: str) -> None:
    assert lifecycle_stage(status, verified=verified)[0] == stage


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(ValueError, match="step: expected 1, 2 or 3"):
        strike_action(4)
    with pytest.raises(ValueError, match="grade: expected red, yellow or green"):
        inspection_frequency("blue")
    with pytest.raises(ValueError, match="yellow_at"):
        WorkflowSettings(yellow_at=5, red_at=5)
    with pytest.raises(ValueError, match="STREETWATCH_RECTIFY_WINDOW_MIN"):
        load_settings(None, environ={"STREETWATCH_RECTIFY_WINDOW_MIN": "-3"})
    assert load_settings(None, environ={"STREETWATCH_RECTIFY_WINDOW_MIN": "15"}).workflow.rectify_window_min == 15
