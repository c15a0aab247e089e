"""The case engine: pure decision tables, then the database path through the real ingest function."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from factories import make_alert
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.case_store import merge_cases, take_case_locks
from streetwatch.central.cases import (
    Candidate,
    Sighting,
    choose_case,
    distance_m,
    episode_lock_key,
    lock_keys,
    priority_of,
    running_mean,
)
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import IngestResult, ingest_alert
from streetwatch.central.models import Alert, Case, CaseLock, Episode
from streetwatch.edge.alerts import Alert as WireAlert

T0 = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
LAT, LON = 31.30000, 120.58560
M_LAT = 1 / 111_320  # degrees of latitude per metre
M_LON = 1 / (111_320 * math.cos(math.radians(LAT)))  # degrees of longitude per metre here


def north(metres: float) -> float:
    return LAT + metres * M_LAT


def east(metres: float) -> float:
    return LON + metres * M_LON


# ---------------------------------------------------------------- pure functions


@pytest.mark.parametrize(
    ("lat1", "lon1", "lat2", "lon2", "expected_m", "tolerance_m"),
    [
        (LAT, LON, LAT, LON, 0.0, 1e-6),
        (0.0, 0.0, 1.0, 0.0, 111_195.0, 5.0),  # one degree of latitude on the mean-radius sphere
        (LAT, LON, north(15), LON, 15.0, 0.1),
        (LAT, LON, LAT, east(25), 25.0, 0.1),
        (LAT, LON, north(3), east(4), 5.0, 0.05),
    ],
)
def test_distance_m(
    lat1: float, lon1: float, lat2: float, lon2: float, expected_m: float, tolerance_m: float
) -> None:
    assert distance_m(lat1, lon1, lat2, lon2) == pytest.approx(expected_m, abs=tolerance_m)


def sighting(*, metres_north: float = 0.0, at: datetime = T0, located: bool = True) -> Sighting:
    return Sighting(
        violation="illegal_parking",
        observed_at=at,
        lat=north(metres_north) if located else None,
        lon=LON if located else None,
        camera_id="cam-1",
        zone_id="z-1",
    )


def candidate(
    case_id: int,
    *,
    metres_north: float = 0.0,
    first: datetime = T0,
    last: datetime = T0,
    located: bool = True,
    camera_id: str = "cam-1",
) -> Candidate:
    return Candidate(
        id=case_id,
        lat=north(metres_north) if located else None,
        lon=LON if located else None,
        first_seen=first,
        last_seen=last,
        camera_id=camera_id,
        zone_id="z-1",
    )


RADIUS, GAP = 15.0, timedelta(hours=2)


@pytest.mark.parametrize(
    ("alert_north_m", "alert_at", "candidates", "expected"),
    [
        # the de-duplication radius: inside joins, outside opens a new case
        (14.9, T0, [candidate(1)], 1),
        (15.1, T0, [candidate(1)], None),
        # the time gap: since last_seen, and before first_seen (late-arriving alerts)
        (0.0, T0 + timedelta(hours=2), [candidate(1)], 1),
        (0.0, T0 + timedelta(hours=2, seconds=1), [candidate(1)], None),
        (0.0, T0 - timedelta(hours=1), [candidate(1, first=T0, last=T0 + timedelta(hours=3))], 1),
        (0.0, T0 + timedelta(hours=4), [candidate(1, first=T0, last=T0 + timedelta(hours=3))], 1),
        # several within reach: the nearest wins; equally near: the older (lower id)
        (5.0, T0, [candidate(1, metres_north=0.0), candidate(2, metres_north=8.0)], 2),
        (5.0, T0, [candidate(2, metres_north=0.0), candidate(1, metres_north=10.0)], 1),
        # a nearer case out of time loses to a farther one in time
        (
            5.0,
            T0,
            [candidate(1, metres_north=5.0, last=T0 - timedelta(hours=3)), candidate(2, metres_north=12.0)],
            2,
        ),
        (0.0, T0, [], None),
    ],
    ids=[
        "inside-radius",
        "outside-radius",
        "gap-edge",
        "gap-exceeded",
        "before-first-seen",
        "inside-span",
        "nearest",
        "tie-older",
        "out-of-time-skipped",
        "no-candidates",
    ],
)
def test_choose_case_radius_and_gap(
    alert_north_m: float, alert_at: datetime, candidates: list[Candidate], expected: int | None
) -> None:
    chosen = choose_case(
        sighting(metres_north=alert_north_m, at=alert_at), candidates, radius_m=RADIUS, max_gap=GAP
    )
    assert chosen == expected


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ([candidate(1, located=False)], 1),
        ([candidate(1, located=False, camera_id="cam-2")], None),  # another camera's view
        ([candidate(1)], None),  # a located case is not matched without a location
        ([candidate(1, located=False), candidate(2, located=False, last=T0 + timedelta(minutes=5))], 2),
    ],
    ids=["same-view", "other-camera", "located-case", "most-recent"],
)
def test_choose_case_without_location_matches_the_camera_view(
    candidates: list[Candidate], expected: int | None
) -> None:
    assert choose_case(sighting(located=False), candidates, radius_m=RADIUS, max_gap=GAP) == expected


def test_lock_keys_are_shared_by_every_pair_within_the_radius() -> None:
    """The race-freedom argument: two alerts that could share a case always take a common lock."""
    rng = random.Random(7)
    for _ in range(3000):
        lat = rng.uniform(-79.0, 79.0)
        lon = rng.uniform(-179.0, 179.0)
        radius = rng.choice([5.0, 15.0, 25.0])
        bearing = rng.uniform(0, 2 * math.pi)
        reach = rng.uniform(0, radius * 0.999)
        lat2 = lat + reach * math.cos(bearing) / 111_320
        lon2 = lon + reach * math.sin(bearing) / (111_320 * math.cos(math.radians(lat)))
        a = Sighting("illegal_parking", T0, lat, lon, "cam-1", "z")
        b = Sighting("illegal_parking", T0, lat2, lon2, "cam-2", "z")
        keys_a = set(lock_keys(a, episode_id="ep-a", radius_m=radius))
        keys_b = set(lock_keys(b, episode_id="ep-b", radius_m=radius))
        assert keys_a & keys_b, (lat, lon, lat2, lon2, radius)


def test_lock_keys_are_sorted_and_cover_episode_and_view() -> None:
    keys = lock_keys(sighting(located=False), episode_id="ep-1", radius_m=RADIUS)
    assert keys == sorted(keys)
    assert keys == [episode_lock_key("ep-1"), "illegal_parking|view|cam-1|z-1"]
    assert episode_lock_key("ep-1") == episode_lock_key("ep-1") != episode_lock_key("ep-2")
    located = lock_keys(sighting(), episode_id="ep-1", radius_m=RADIUS)
    assert len(located) == 5 and episode_lock_key("ep-1") in located  # 2x2 cells + the episode


def test_case_locks_hold_until_commit_on_postgresql(session_factory: sessionmaker[Session], db_backend: str) -> None:
    """take_case_locks row-locks its keys (new ones too) until the transaction ends: a second
    transaction wanting any of them cannot have it meanwhile (lock_timeout makes it say so at once
    instead of waiting), and gets it after the commit."""
    if db_backend != "postgresql":
        pytest.skip("SQLite serialises writers with BEGIN IMMEDIATE; there are no lock rows")
    keys = ["illegal_parking|1|2", "illegal_parking|1|3", episode_lock_key("ep-1")]
    with session_factory() as holder, session_factory() as other:
        take_case_locks(holder, keys)
        other.execute(text("SET LOCAL lock_timeout = '100ms'"))
        with pytest.raises(OperationalError, match="lock timeout"):
            take_case_locks(other, ["illegal_parking|1|3"])
        other.rollback()
        holder.commit()
        other.execute(text("SET LOCAL lock_timeout = '100ms'"))
        take_case_locks(other, sorted(keys))
        assert sorted(other.scalars(select(CaseLock.key))) == sorted(keys)
        other.commit()


@pytest.mark.parametrize(
    ("weight", "alerts", "dwell", "expected"),
    [
        (30, 1, timedelta(0), 31),
        (10, 3, timedelta(minutes=4, seconds=59), 13),
        (10, 3, timedelta(minutes=5), 14),
        (20, 500, timedelta(days=2), 20 + 50 + 36),  # both caps
    ],
)
def test_priority_of(weight: int, alerts: int, dwell: timedelta, expected: int) -> None:
    assert priority_of(weight=weight, alert_count=alerts, first_seen=T0, last_seen=T0 + dwell) == expected


def test_running_mean_averages_points() -> None:
    lat, lon, n = running_mean(None, None, 0, new_lat=1.0, new_lon=2.0)
    for value in (3.0, 5.0):
        lat, lon, n = running_mean(lat, lon, n, new_lat=value, new_lon=value)
    assert (lat, lon, n) == (pytest.approx(3.0), pytest.approx(10 / 3), 3)


# ---------------------------------------------------------------- through the database


def located(metres_north: float = 0.0, metres_east: float = 0.0, **overrides: object) -> WireAlert:
    fields: dict[str, object] = {
        "location": {"lat": north(metres_north), "lon": LON + metres_east * M_LON, "accuracy_m": 2.0},
        "observed_at": T0,
        "started_at": T0 - timedelta(minutes=3),
    }
    fields.update(overrides)
    return make_alert(**fields)


def ingest(factory: sessionmaker[Session], settings: CentralSettings, alert: WireAlert) -> IngestResult:
    with session_scope(factory, write_lock=True) as session:
        return ingest_alert(session, alert, topic=None, settings=settings)


def test_same_spot_seen_by_two_cameras_and_two_edges_is_one_case(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    results = [
        ingest(session_factory, central_settings, located(0, 0, edge_id="box-01", camera_id="cam-1")),
        ingest(
            session_factory,
            central_settings,
            located(3, 2, edge_id="box-01", camera_id="cam-2", observed_at=T0 + timedelta(minutes=1)),
        ),
        ingest(
            session_factory,
            central_settings,
            located(-4, 1, edge_id="box-02", camera_id="cam-9", observed_at=T0 + timedelta(minutes=2)),
        ),
    ]
    assert [r.outcome for r in results] == ["created", "joined", "joined"]
    with session_scope(session_factory) as session:
        case = session.scalars(select(Case)).one()
        assert (case.alert_count, case.episode_count) == (3, 3)
        assert case.lat == pytest.approx(north(-1 / 3), abs=1e-9)
        assert case.last_seen == T0 + timedelta(minutes=2)


def test_other_violation_far_spot_or_late_alert_opens_new_cases(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    first = ingest(session_factory, central_settings, located(0))
    assert first.outcome == "created"
    others = [
        located(0, violation="street_vending"),
        located(40),  # beyond 15 m
        located(0, observed_at=T0 + timedelta(hours=3), started_at=T0 + timedelta(hours=3)),
    ]
    results = [ingest(session_factory, central_settings, alert) for alert in others]
    assert [r.outcome for r in results] == ["created", "created", "created"]
    assert len({first.case_id, *(r.case_id for r in results)}) == 4


def test_episode_joins_its_case_beyond_the_radius_and_ended_deactivates(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    start = located(0, episode_id="ep-moving", source_kind="vehicle")
    # a patrol car's second pass places the same car 20 m off: the episode still decides
    far = located(20, episode_id="ep-moving", source_kind="vehicle", observed_at=T0 + timedelta(minutes=15))
    other = located(9, episode_id="ep-other", observed_at=T0 + timedelta(minutes=16))
    end_one = located(0, episode_id="ep-moving", state="ended", observed_at=T0 + timedelta(minutes=20))
    results = [ingest(session_factory, central_settings, a) for a in (start, far, other, end_one)]
    assert len({r.case_id for r in results}) == 1
    with session_scope(session_factory) as session:
        case = session.scalars(select(Case)).one()
        assert case.active is True  # ep-other is still open
        assert case.episode_count == 2
    end_other = located(2, episode_id="ep-other", state="ended", observed_at=T0 + timedelta(minutes=25))
    ingest(session_factory, central_settings, end_other)
    with session_scope(session_factory) as session:
        case = session.scalars(select(Case)).one()
        assert case.active is False
        assert case.last_seen == T0 + timedelta(minutes=25)
        ended = session.scalars(select(Episode.ended_at).order_by(Episode.id)).all()
        assert ended == [T0 + timedelta(minutes=20), T0 + timedelta(minutes=25)]


def test_dismissed_case_is_not_joined_by_a_new_episode_but_by_its_own(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    first = ingest(session_factory, central_settings, located(0, episode_id="ep-1"))
    with session_scope(session_factory) as session:
        session.get(Case, first.case_id).status = "dismissed"  # type: ignore[union-attr]
    reminder = ingest(
        session_factory,
        central_settings,
        located(0, episode_id="ep-1", observed_at=T0 + timedelta(minutes=15)),
    )
    fresh = ingest(
        session_factory,
        central_settings,
        located(0, episode_id="ep-2", observed_at=T0 + timedelta(minutes=16)),
    )
    assert reminder.case_id == first.case_id
    assert fresh.outcome == "created" and fresh.case_id != first.case_id


def test_unlocated_alerts_group_by_camera_view(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    a = ingest(session_factory, central_settings, make_alert(location=None, observed_at=T0))
    b = ingest(
        session_factory, central_settings, make_alert(location=None, observed_at=T0 + timedelta(minutes=5))
    )
    c = ingest(
        session_factory,
        central_settings,
        make_alert(location=None, camera_id="cam-2", observed_at=T0 + timedelta(minutes=5)),
    )
    assert (a.outcome, b.outcome, c.outcome) == ("created", "joined", "created")
    assert a.case_id == b.case_id != c.case_id
    with session_scope(session_factory) as session:
        case = session.get(Case, a.case_id)
        assert case is not None and case.lat is None and case.attribution_method == "none"


def test_merge_cases_moves_alerts_and_future_episode_alerts(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    a = ingest(session_factory, central_settings, located(0, episode_id="ep-a"))
    b = ingest(session_factory, central_settings, located(100, episode_id="ep-b"))
    assert a.case_id is not None and b.case_id is not None
    with session_scope(session_factory) as session:
        target = merge_cases(session, source_id=b.case_id, target_id=a.case_id)
        assert (target.alert_count, target.episode_count) == (2, 2)
    later = ingest(
        session_factory,
        central_settings,
        located(100, episode_id="ep-b", observed_at=T0 + timedelta(minutes=15)),
    )
    assert later.outcome == "joined" and later.case_id == a.case_id
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).where(Alert.case_id == a.case_id)) == 3
        source = session.get(Case, b.case_id)
        assert source is not None and source.merged_into_id == a.case_id
        # Each alert counts once over all cases: the merged case keeps its place, not its alerts.
        assert (source.alert_count, source.episode_count, source.active) == (0, 0, False)
        assert source.lat is not None
        assert session.scalar(select(func.sum(Case.alert_count))) == session.scalar(select(func.count(Alert.alert_id)))
