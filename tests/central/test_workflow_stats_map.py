"""Statistics and the city map's geometry as tables (pure functions)."""

from __future__ import annotations

import pytest

from streetwatch.central.web.charts import horizontal, stacked_days
from streetwatch.central.web.citymap import PointIn, ZoneIn, build_city_map, fit, road_line
from streetwatch.central.workflow.stats import CaseFact, summarise


def fact(
    i: int,
    day: str,
    violation: str,
    status: str,
    *,
    merchant: str | None = "A",
    road: str | None = "R1",
    hours: float | None = None,
) -> CaseFact:
    return CaseFact(i, day, violation, status, merchant, road, hours)


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


def test_stacked_bars_scale_to_the_busiest_day() -> None:
    chart = stacked_days({"2026-03-01": {"a": 2, "b": 2}, "2026-03-02": {"a": 1}}, ["a", "b"], height=240)
    heights = [b.h for b in chart.bars]
    assert chart.max_value == 4 and heights == [100.0, 100.0, 50.0]  # plot height 240 - 40 px
    bars = horizontal([("x", 10), ("y", 5)], width=390)
    assert [b.w for b in bars.bars] == [200.0, 100.0]


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


def test_map_projection_north_up_and_everything_inside_the_view() -> None:
    zone = ZoneIn(
        "m1",
        "Shop",
        "Tea Street",
        "red",
        [(121.0, 31.0), (121.0001, 31.0), (121.0001, 31.0001), (121.0, 31.0001), (121.0, 31.0)],
    )
    north_case = PointIn("1", "c1", "illegal_parking", 31.002, 121.00005)
    south_case = PointIn("2", "c2", "street_vending", 30.999, 121.00005)
    m = build_city_map([zone], [north_case, south_case], [], size=(400, 300))
    (n, s) = m.cases
    assert n.y < s.y  # north is up
    for shape in (n, s, m.zones[0]):
        assert 0 <= shape.x <= 400 and 0 <= shape.y <= 300
    assert m.zones[0].fill == "#d1242f" and m.roads[0].label == "Tea Street"
    assert fit([]).scale == 1.0
