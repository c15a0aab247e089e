"""Statistics, their series per day/week/month, and the city map's road lines as tables (pure functions)."""

from __future__ import annotations

import pytest

from streetwatch.central.web.citymap import road_line
from streetwatch.central.workflow.stats import CaseFact, summarise
from streetwatch.central.workflow.stats_series import period_of, series


def fact(
    i: int,
    day: str,
    violation: str,
    status: str,
    *,
    merchant: str | None = "A",
    road: str | None = "R1",
    hours: float | None = None,
    area: str | None = "North",
) -> CaseFact:
    return CaseFact(i, day, violation, status, merchant, road, hours, area)


def test_summary_counts_per_day_share_and_median() -> None:
    facts = [
        fact(1, "2026-03-01", "illegal_parking", "rectified", hours=0.5),
        fact(2, "2026-03-01", "street_vending", "closed", merchant="B", hours=4.0),
        fact(3, "2026-03-02", "illegal_parking", "closed", road="R2", hours=2.0),
        fact(4, "2026-03-02", "illegal_parking", "notified"),
        fact(5, "2026-03-02", "illegal_parking", "dismissed", hours=0.1),  # not a violation: counts nowhere
    ]
    s = summarise(facts)
    assert s.total == 4
    assert s.per_day == {
        "2026-03-01": {"illegal_parking": 1, "street_vending": 1},
        "2026-03-02": {"illegal_parking": 2},
    }
    assert s.self_rectified_share == pytest.approx(1 / 3)
    assert s.median_hours_to_close == 2.0
    assert s.top_merchants == [("A", 3), ("B", 1)]
    assert s.top_roads == [("R1", 3), ("R2", 1)]


def test_summary_of_nothing() -> None:
    s = summarise([])
    assert (s.total, s.self_rectified_share, s.median_hours_to_close, s.per_day) == (0, None, None, {})


@pytest.mark.parametrize(
    ("points", "order"),
    [
        ([(0.0, 0.0), (2.0, 0.0), (1.0, 0.0)], [0.0, 1.0, 2.0]),  # east-west road
        ([(5.0, 3.0), (5.0, 1.0), (5.0, 2.0)], [1.0, 2.0, 3.0]),  # north-south road
    ],
)
def test_road_line_orders_merchants_along_the_road(points: list[tuple[float, float]], order: list[float]) -> None:
    line = road_line(points)
    axis = [p[0] for p in line] if order[0] == 0.0 else [p[1] for p in line]
    assert axis in (order, order[::-1])




@pytest.mark.parametrize(
    ("day", "period", "label"),
    [
        ("2026-03-04", "day", "2026-03-04"),
        ("2026-03-04", "month", "2026-03"),
        ("2026-03-04", "week", "2026-W10"),
        ("2026-01-01", "week", "2026-W01"),  # a Thursday: ISO week 1 of 2026
        ("2027-01-01", "week", "2026-W53"),  # a Friday: still the last ISO week of 2026
    ],
)
def test_period_labels(day: str, period: str, label: str) -> None:
    assert period_of(day, period) == label  # type: ignore[arg-type]


def test_weekly_series_keeps_unreviewed_apart_and_rates_each_week() -> None:
    facts = [
        fact(1, "2026-03-02", "illegal_parking", "rectified", hours=0.5),  # week 10
        fact(2, "2026-03-03", "illegal_parking", "closed", hours=5.0),
        fact(3, "2026-03-04", "street_vending", "new"),  # unreviewed: counted apart only
        fact(4, "2026-03-05", "stacked_goods", "dismissed"),  # no violation: nowhere
        fact(5, "2026-03-10", "illegal_parking", "notified", merchant="B", road="R2", area="South"),  # week 11
    ]
    days = [f"2026-03-{d:02d}" for d in range(1, 17)]  # 1 March is a Sunday: week 9 starts the window
    s = series(facts, "week", days=days)
    assert [r.period for r in s.rows] == ["2026-W09", "2026-W10", "2026-W11", "2026-W12"]
    w9, w10, w11, w12 = s.rows
    assert (w9.total, w9.unreviewed, w9.self_rectified_share) == (0, 0, None)  # an empty week is a zero
    assert (w10.confirmed, w10.unreviewed) == ({"illegal_parking": 2}, 1)
    assert (w10.ended, w10.self_rectified, w10.self_rectified_share) == (2, 1, 0.5)
    assert w10.median_hours_to_close == 2.75
    assert (w11.total, w11.ended, w11.median_hours_to_close) == (1, 0, None)
    assert w12.total == 0
    assert s.violations == ["illegal_parking"]
    assert [(b.name, b.confirmed, b.unreviewed) for b in s.merchants] == [("A", 2, 1), ("B", 1, 0)]
    assert [(b.name, b.confirmed) for b in s.areas] == [("North", 2), ("South", 1)]
    monthly = series(facts, "month", days=days)
    assert [(r.period, r.total, r.unreviewed) for r in monthly.rows] == [("2026-03", 3, 1)]
