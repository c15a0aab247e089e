"""Per-area visibility: the pure rules as tables, then the queue query on a real database."""

from __future__ import annotations

import pytest
import shapely
from review_seed import T0, add_case, box, seed_city
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.access import (
    AreaScope,
    build_scope,
    descendants,
    is_unrestricted,
    load_scope,
)
from streetwatch.central.api.queries import CaseFilters, QueueCursor, count_cases, filter_scope, list_cases
from streetwatch.central.db import session_scope
from streetwatch.central.models import Area, User

PARENTS = {"city": None, "north": "city", "south": "city", "n1": "north", "n2": "north", "n1a": "n1"}


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("city", {"city", "north", "south", "n1", "n2", "n1a"}),
        ("north", {"north", "n1", "n2", "n1a"}),
        ("n1", {"n1", "n1a"}),
        ("south", {"south"}),
        ("unknown", {"unknown"}),
    ],
)
def test_descendants_are_the_area_and_everything_below_it(root: str, expected: set[str]) -> None:
    assert descendants(PARENTS, root) == expected


def test_descendants_survive_a_parent_cycle() -> None:
    assert descendants({"a": "b", "b": "a"}, "a") == {"a", "b"}


# A triangle, so the bounding box and the polygon differ: (0,0) (10,0) (0,10) in lon/lat.
TRIANGLE = AreaScope(
    root_id="tri",
    area_ids=frozenset({"tri", "tri-child"}),
    polygon=shapely.from_wkt("POLYGON((0 0, 10 0, 0 10, 0 0))"),
    bbox=(0.0, 0.0, 10.0, 10.0),
)


@pytest.mark.parametrize(
    ("area_id", "lat", "lon", "visible"),
    [
        ("tri", None, None, True),  # by area id, no position
        ("tri-child", 50.0, 50.0, True),  # by a descendant's id, even far outside the polygon
        (None, 2.0, 2.0, True),  # by the polygon alone
        ("other", 2.0, 2.0, True),  # inside the polygon though filed under another area
        (None, 8.0, 8.0, False),  # inside the bounding box, outside the triangle
        (None, 5.0, 0.0, True),  # on the edge: counts, as BETWEEN does in the SQL pre-filter
        ("other", 8.0, 8.0, False),
        (None, None, None, False),
        ("other", 20.0, 20.0, False),
    ],
)
def test_scope_covers_by_area_id_or_polygon(
    area_id: str | None, lat: float | None, lon: float | None, visible: bool
) -> None:
    assert TRIANGLE.covers(area_id=area_id, lat=lat, lon=lon) is visible


@pytest.mark.parametrize(
    ("role", "area_id", "level", "unrestricted"),
    [
        ("admin", "north", "district", True),
        ("reviewer", None, None, True),
        ("reviewer", "city", "city", True),
        ("reviewer", "north", "district", False),
        ("reviewer", "n1", "street", False),
    ],
)
def test_who_sees_the_whole_city(role: str, area_id: str | None, level: str | None, unrestricted: bool) -> None:
    user = User(username="u", password_hash="x", role=role, area_id=area_id)
    assert is_unrestricted(user, level) is unrestricted


def test_build_scope_parses_the_polygon_and_its_bounds() -> None:
    areas = [
        Area(id="north", name="N", level="district", parent_id=None, polygon_wkt=box(1, 2, 3, 4)),
        Area(id="n1", name="N1", level="street", parent_id="north", polygon_wkt=None),
    ]
    scope = build_scope(areas, "north")
    assert scope.area_ids == {"north", "n1"}
    assert scope.bbox == (1.0, 2.0, 3.0, 4.0)
    assert scope.contains_point(3.0, 2.0) and not scope.contains_point(5.0, 2.0)


# ------------------------------------------------------------------------------- on the database


@pytest.fixture()
def city(session_factory: sessionmaker[Session]) -> dict[str, int]:
    """The review_seed city plus cases: 3 on Tea street, 2 elsewhere in north (one by polygon only),
    2 in south; one far away outside every area."""
    seed_city(session_factory)
    ids: dict[str, int] = {}
    with session_scope(session_factory) as s:
        for i in range(3):
            ids[f"tea{i}"] = add_case(
                s, lat=31.2351, lon=121.4721 + i * 0.0004, area_id="north-st1", priority=30 + i
            ).id
        ids["north-id"] = add_case(s, lat=31.2385, lon=121.4650, area_id="north", priority=10).id
        ids["north-poly"] = add_case(s, lat=31.2385, lon=121.4660, area_id=None, priority=10).id
        ids["south0"] = add_case(s, lat=31.2251, lon=121.4751, area_id="south", priority=50).id
        ids["south1"] = add_case(
            s, lat=31.2255, lon=121.4755, area_id="south", priority=5, violation="stacked_goods"
        ).id
        ids["far"] = add_case(s, lat=30.0, lon=120.0, area_id=None, priority=99).id
    return ids


def _user(session: Session, name: str) -> User:
    return session.scalars(select(User).where(User.username == name)).one()


def _visible_names(session: Session, user_name: str, ids: dict[str, int], **filters: str) -> set[str]:
    scope = load_scope(session, _user(session, user_name))
    f = CaseFilters(**filters)
    page = list_cases(session, f, scopes=[scope, filter_scope(session, f.area_id)], limit=200)
    by_id = {v: k for k, v in ids.items()}
    return {by_id[c.id] for c in page.cases}


ALL = {"tea0", "tea1", "tea2", "north-id", "north-poly", "south0", "south1", "far"}


@pytest.mark.parametrize(
    ("user_name", "expected"),
    [
        ("admin", ALL),
        ("city", ALL),
        ("north", {"tea0", "tea1", "tea2", "north-id", "north-poly"}),
        ("south", {"south0", "south1"}),
        ("street", {"tea0", "tea1", "tea2"}),
    ],
)
def test_each_user_sees_only_its_area(
    session_factory: sessionmaker[Session], city: dict[str, int], user_name: str, expected: set[str]
) -> None:
    with session_factory() as session:
        assert _visible_names(session, user_name, city) == expected
        scope = load_scope(session, _user(session, user_name))
        assert count_cases(session, CaseFilters(), scopes=[scope]) == (len(expected), False)


def test_area_filter_narrows_but_never_widens(session_factory: sessionmaker[Session], city: dict[str, int]) -> None:
    with session_factory() as session:
        assert _visible_names(session, "city", city, area_id="north-st1") == {"tea0", "tea1", "tea2"}
        assert _visible_names(session, "city", city, area_id="south") == {"south0", "south1"}
        # a south reviewer filtering on north gets nothing, not north's cases
        assert _visible_names(session, "south", city, area_id="north") == set()


def test_filters_and_order(session_factory: sessionmaker[Session], city: dict[str, int]) -> None:
    with session_factory() as session:
        assert _visible_names(session, "south", city, violation="stacked_goods") == {"south1"}
        scope = load_scope(session, _user(session, "north"))
        page = list_cases(session, CaseFilters(), scopes=[scope], limit=10)
        # priority first (high to low), then the older first
        assert [c.id for c in page.cases] == [city[n] for n in ("tea2", "tea1", "tea0", "north-id", "north-poly")]


def test_keyset_pages_cover_everything_once(session_factory: sessionmaker[Session], city: dict[str, int]) -> None:
    with session_factory() as session:
        seen: list[int] = []
        cursor: QueueCursor | None = None
        while True:
            page = list_cases(session, CaseFilters(), scopes=[None], limit=3, after=cursor)
            seen.extend(c.id for c in page.cases)
            if page.next_cursor is None:
                break
            cursor = QueueCursor.decode(page.next_cursor.encode())
        assert len(seen) == len(set(seen)) == len(ALL)
        first = list_cases(session, CaseFilters(), scopes=[None], limit=100)
        assert seen == [c.id for c in first.cases]


def test_equal_priority_and_time_page_by_id(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as s:
        ids = [add_case(s, lat=31.0, lon=121.0, priority=7, first_seen=T0, alerts=1).id for _ in range(5)]
    with session_factory() as session:
        page1 = list_cases(session, CaseFilters(), scopes=[None], limit=2)
        page2 = list_cases(session, CaseFilters(), scopes=[None], limit=2, after=page1.next_cursor)
        page3 = list_cases(session, CaseFilters(), scopes=[None], limit=2, after=page2.next_cursor)
        assert [c.id for p in (page1, page2, page3) for c in p.cases] == ids
        assert page3.next_cursor is None


def test_count_is_capped(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as s:
        for _ in range(6):
            add_case(s, lat=31.0, lon=121.0, alerts=0)
    with session_factory() as session:
        assert count_cases(session, CaseFilters(), scopes=[None], cap=5) == (5, True)
        assert count_cases(session, CaseFilters(), scopes=[None], cap=6) == (6, False)


def test_non_rectangular_area_is_refined_exactly(session_factory: sessionmaker[Session]) -> None:
    """A triangular district: its bounding box lets corner cases into the SQL result; the exact
    polygon test must drop them from the page and from the count alike."""
    seed_city(session_factory)
    triangle = "POLYGON((121.50 31.20, 121.52 31.20, 121.50 31.22, 121.50 31.20))"
    with session_scope(session_factory) as s:
        s.add(Area(id="tri", name="Triangle", level="district", parent_id="city", polygon_wkt=triangle))
        s.flush()
        s.add(User(username="tri", password_hash="x", role="reviewer", area_id="tri"))
        inside = [add_case(s, lat=31.201 + i * 0.001, lon=121.501, priority=50 - i).id for i in range(4)]
        # inside the bounding box but beyond the hypotenuse, with higher priority: first in SQL order
        for i in range(6):
            add_case(s, lat=31.218, lon=121.518 - i * 0.0001, priority=90)
    with session_factory() as session:
        scope = load_scope(session, _user(session, "tri"))
        assert scope is not None and not scope.bbox_exact
        page = list_cases(session, CaseFilters(), scopes=[scope], limit=2)
        assert [c.id for c in page.cases] == inside[:2]
        rest = list_cases(session, CaseFilters(), scopes=[scope], limit=2, after=page.next_cursor)
        assert [c.id for c in rest.cases] == inside[2:]
        assert count_cases(session, CaseFilters(), scopes=[scope]) == (4, False)
        assert page.count == 4
