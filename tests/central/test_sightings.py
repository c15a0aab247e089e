"""Central confirmation of moving-camera sightings (central/sightings.py) on the real database.

Runs on SQLite, and on PostgreSQL where STREETWATCH_TEST_DATABASE_URL names one (the concurrent
test then really races two connections through the row locks).
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from factories import make_alert
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import IngestResult, ingest_alert
from streetwatch.central.models import Alert, Case, Episode
from streetwatch.edge.alerts import Alert as WireAlert

T0 = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
LAT, LON = 31.2304, 121.4737
M_LAT = 1 / 110_900.0  # degrees per metre north, near enough at this latitude


def sighting(minutes: float, *, north_m: float = 0.0, camera: str = "patrol-7", accuracy: float = 3.0,
             violation: str = "illegal_parking") -> WireAlert:
    observed = T0 + timedelta(minutes=minutes)
    return make_alert(state="sighting", source_kind="vehicle", camera_id=camera, violation=violation,
                      observed_at=observed, started_at=observed - timedelta(seconds=3), dwell_s=3.0,
                      location={"lat": LAT + north_m * M_LAT, "lon": LON, "accuracy_m": accuracy},
                      zone_id="kerb", track_id="g1")


def ingest(factory: sessionmaker[Session], settings: CentralSettings, alert: WireAlert) -> IngestResult:
    with session_scope(factory, write_lock=True) as session:
        return ingest_alert(session, alert, topic=None, settings=settings)


def cases_and_pending(factory: sessionmaker[Session]) -> tuple[list[tuple[str, int, int, bool]], int]:
    with session_scope(factory) as session:
        cases = [(c.violation, c.alert_count, c.episode_count, c.active)
                 for c in session.scalars(select(Case).order_by(Case.id))]
        pending = session.scalar(select(func.count(Alert.alert_id)).where(Alert.case_id.is_(None))) or 0
    return cases, pending


def test_one_pass_waits_the_second_confirms_the_third_joins(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    first, second, third = sighting(0), sighting(6, north_m=1.0), sighting(30, north_m=-1.0)
    assert ingest(session_factory, central_settings, first).outcome == "pending"
    assert cases_and_pending(session_factory) == ([], 1)
    confirmed = ingest(session_factory, central_settings, second)
    assert confirmed.outcome == "created"
    assert cases_and_pending(session_factory) == ([("illegal_parking", 2, 2, False)], 0)
    joined = ingest(session_factory, central_settings, third)
    assert (joined.outcome, joined.case_id) == ("joined", confirmed.case_id)
    assert cases_and_pending(session_factory) == ([("illegal_parking", 3, 3, False)], 0)
    with session_scope(session_factory) as session:
        case = session.get(Case, confirmed.case_id)
        assert case is not None
        assert (case.first_seen, case.last_seen) == (first.observed_at, third.observed_at)
        assert case.lat == pytest.approx(LAT, abs=1e-6)  # mean of the three sightings
        assert {e.id for e in session.scalars(select(Episode).where(Episode.case_id == case.id))} == {
            first.episode_id, second.episode_id, third.episode_id}


@pytest.mark.parametrize(
    ("later", "outcome"),
    [
        (sighting(3), "pending"),  # too soon: the car may just be stopping
        (sighting(6, north_m=12.0), "pending"),  # another spot (beyond max(5 m, accuracy))
        (sighting(6, violation="stacked_goods"), "pending"),  # another violation
        (sighting(6, north_m=4.0, camera="drone-2"), "created"),  # another platform confirms too
    ],
)
def test_what_confirms_a_first_sighting(
    later: WireAlert, outcome: str, session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    assert ingest(session_factory, central_settings, sighting(0)).outcome == "pending"
    assert ingest(session_factory, central_settings, later).outcome == outcome


def test_duplicate_sighting_delivery_changes_nothing(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    alert = sighting(0)
    assert ingest(session_factory, central_settings, alert).outcome == "pending"
    assert ingest(session_factory, central_settings, alert).outcome == "duplicate"
    assert cases_and_pending(session_factory) == ([], 1)


def test_a_sighting_joins_a_fixed_cameras_open_case(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    fixed = make_alert(observed_at=T0, location={"lat": LAT, "lon": LON, "accuracy_m": 2.0})
    created = ingest(session_factory, central_settings, fixed)
    joined = ingest(session_factory, central_settings, sighting(2, north_m=3.0))
    assert (created.outcome, joined.outcome, joined.case_id) == ("created", "joined", created.case_id)


def test_concurrent_workers_confirm_one_case(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    """Four passes 6 minutes apart, two cameras each, ingested by four threads at once in random
    order: as with one worker, every sighting ends in one case and none stays pending."""
    alerts = [sighting(6 * p, north_m=random.Random(p).uniform(-2, 2), camera=f"patrol-{c}")
              for p in range(4) for c in (1, 2)]
    random.Random(11).shuffle(alerts)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def work(batch: list[WireAlert]) -> None:
        try:
            barrier.wait(10)
            for alert in batch:
                ingest(session_factory, central_settings, alert)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(alerts[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert cases_and_pending(session_factory) == ([("illegal_parking", 8, 8, False)], 0)
