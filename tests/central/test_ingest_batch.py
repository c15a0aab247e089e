"""A batch through `ingest_many` (one transaction, rows read once per batch) decides exactly as the
same messages ingested one by one, each in its own transaction: duplicates inside the batch and of
stored alerts, reminders of an episode opened earlier in the batch, a nearby alert joining a case
the batch opened, dead letters, and moving-camera sightings confirmed within the batch.

Runs on SQLite, and on PostgreSQL where STREETWATCH_TEST_DATABASE_URL names one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from factories import make_alert
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.case_engine import CaseEngine
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import IngestResult, Message, ingest_many, ingest_payload
from streetwatch.central.merchants import MerchantFields, MerchantRecord, store_merchants
from streetwatch.central.models import Alert, Case, DeadLetter, Episode
from streetwatch.edge.alerts import alert_topic

T0 = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
TOPIC = alert_topic("box-01", "cam-1")
M_LAT = 1 / 110_900.0  # degrees per metre north, near enough at this latitude


def _alert(tag: str, name: str, *, lat: float, minutes: float, episode: str, **overrides: object) -> bytes:
    observed = T0 + timedelta(minutes=minutes)
    fields: dict[str, object] = {
        "alert_id": f"al-{tag}-{name}",
        "episode_id": f"ep-{tag}-{episode}",
        "observed_at": observed,
        "started_at": observed - timedelta(seconds=150),
        "location": {"lat": lat, "lon": 121.4737, "accuracy_m": 3.0},
    }
    fields.update(overrides)
    return make_alert(**fields).to_json()


def _sighting(tag: str, name: str, *, lat: float, minutes: float) -> bytes:
    observed = T0 + timedelta(minutes=minutes)
    return _alert(tag, name, lat=lat, minutes=minutes, episode=name, state="sighting", source_kind="vehicle",
                  camera_id="patrol-7", started_at=observed - timedelta(seconds=3), dwell_s=3.0, zone_id="kerb",
                  track_id="g1")


def stored_before(tag: str, lat: float) -> list[Message]:
    """What is already stored when the batch arrives: one alert of an open episode."""
    return [Message(TOPIC, _alert(tag, "old", lat=lat + 300 * M_LAT, minutes=0, episode="old"))]


def batch(tag: str, lat: float) -> list[Message]:
    """The batch; `lat` places this copy of the scenario (copies lie far apart, never interact)."""
    first = _alert(tag, "a1", lat=lat, minutes=0, episode="a")
    return [
        Message(TOPIC, first),
        Message(TOPIC, _alert(tag, "a2", lat=lat, minutes=5, episode="a")),  # reminder, episode new in batch
        Message(TOPIC, first),  # duplicate of an alert stored earlier in the same batch
        Message(TOPIC, _alert(tag, "b1", lat=lat + 4 * M_LAT, minutes=6, episode="b")),  # joins a's case nearby
        Message(TOPIC, _alert(tag, "a3", lat=lat, minutes=9, episode="a", state="ended")),  # b keeps it active
        Message(alert_topic("box-99", "cam-1"), _alert(tag, "x1", lat=lat, minutes=9, episode="x")),  # wrong edge
        Message(TOPIC, b"{not json", origin=f"{tag}:line"),
        Message(TOPIC, _alert(tag, "c1", lat=lat + 2_000 * M_LAT, minutes=1, episode="c")),  # far: own case
        Message(TOPIC, stored_before(tag, lat)[0].payload),  # duplicate of a stored alert
        Message(TOPIC, _alert(tag, "old2", lat=lat + 300 * M_LAT, minutes=4, episode="old")),  # stored episode
        Message(TOPIC, _sighting(tag, "s1", lat=lat + 900 * M_LAT, minutes=0)),  # one pass: pending
        Message(TOPIC, _sighting(tag, "s2", lat=lat + 901 * M_LAT, minutes=6)),  # second pass confirms
        Message(TOPIC, _sighting(tag, "s1", lat=lat + 900 * M_LAT, minutes=0)),  # duplicate, now in s2's case
        Message(TOPIC, _alert(tag, "c2", lat=lat + 2_000 * M_LAT, minutes=3, episode="c")),
    ]


Outcomes = list[tuple[str, int | None]]
Snapshot = tuple[Outcomes, list[tuple[object, ...]], list[tuple[str, int | None]], list[str]]


def snapshot(factory: sessionmaker[Session], tag: str, results: list[IngestResult]) -> Snapshot:
    """Outcomes, cases, alert -> case and dead letters of one copy, case ids numbered in order of
    appearance and locations relative to the copy's own (so two copies compare equal)."""
    with session_scope(factory) as session:
        rows = session.scalars(select(Alert).where(Alert.alert_id.like(f"al-{tag}-%")).order_by(Alert.alert_id))
        alerts = [(row.alert_id.removeprefix(f"al-{tag}-"), row.case_id) for row in rows]
        ids = sorted({case_id for _, case_id in alerts if case_id is not None})
        number = {case_id: i for i, case_id in enumerate(ids)}
        base = min(lat for lat in session.scalars(select(Case.lat).where(Case.id.in_(ids))) if lat is not None)
        cases: list[tuple[object, ...]] = []
        for case in session.scalars(select(Case).where(Case.id.in_(ids)).order_by(Case.id)):
            episodes = session.scalars(select(Episode.id).where(Episode.case_id == case.id).order_by(Episode.id))
            north_m = None if case.lat is None else round((case.lat - base) / M_LAT, 3)
            cases.append((case.alert_count, case.episode_count, case.active, case.first_seen, case.last_seen,
                          north_m, case.location_count, case.priority, case.status,
                          [e.removeprefix(f"ep-{tag}-") for e in episodes]))
        letters = sorted(d.reason.replace(tag, "TAG") for d in session.scalars(select(DeadLetter))
                         if tag in d.reason or tag in d.topic or tag in d.payload)
    outcomes: Outcomes = [(r.outcome, number.get(r.case_id) if r.case_id is not None else None) for r in results]
    return outcomes, cases, [(a, number.get(c) if c is not None else None) for a, c in alerts], letters


def one_by_one(
    factory: sessionmaker[Session], settings: CentralSettings, messages: list[Message]
) -> list[IngestResult]:
    results = []
    for message in messages:
        with session_scope(factory, write_lock=True) as session:
            results.append(ingest_payload(session, message.payload, topic=message.topic, settings=settings,
                                          origin=message.origin))
    return results


def test_a_batch_decides_as_one_by_one(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    alone_lat, batch_lat = 31.2304, 31.5304  # ~33 km apart
    one_by_one(session_factory, central_settings, stored_before("alone", alone_lat))
    one_by_one(session_factory, central_settings, stored_before("batch", batch_lat))
    alone = one_by_one(session_factory, central_settings, batch("alone", alone_lat))
    with session_scope(session_factory, write_lock=True) as session:
        batched = ingest_many(session, batch("batch", batch_lat), settings=central_settings)

    expected, cases, alerts, letters = snapshot(session_factory, "alone", alone)
    assert [outcome for outcome, _ in expected] == [
        "created", "joined", "duplicate", "joined", "joined", "dead_letter", "dead_letter", "created",
        "duplicate", "joined", "pending", "created", "duplicate", "joined",
    ]
    a_case = expected[0][1]
    assert expected[1][1] == expected[2][1] == expected[3][1] == expected[4][1] == a_case  # one case
    assert expected[12] == ("duplicate", expected[11][1])  # the confirmed sighting's duplicate: its case
    assert len(cases) == 4 and len(letters) == 2
    assert a_case is not None and cases[a_case][:3] == (4, 2, True)  # a1-a3 (a ended) and b1: b is open
    assert snapshot(session_factory, "batch", batched) == (expected, cases, alerts, letters)


def test_a_batch_attributes_each_case_as_one_by_one_does(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    """A batch attributes each case once, at its place after the whole batch. One by one, case a
    is first 5 m south of the shop's zone (nearest), then its second sighting moves it inside."""
    lon, m_lon = 121.4737, 1 / 94_800.0  # degrees per metre east at this latitude

    def shop(tag: str, lat: float) -> MerchantRecord:
        south, north, west, east = lat + 5 * M_LAT, lat + 15 * M_LAT, lon - 10 * m_lon, lon + 10 * m_lon
        wkt = f"POLYGON(({west} {south}, {east} {south}, {east} {north}, {west} {north}, {west} {south}))"
        return MerchantRecord(MerchantFields(id=f"shop-{tag}", name=f"Shop {tag}"), wkt)

    def scenario(tag: str, lat: float) -> list[Message]:
        return [
            Message(TOPIC, _alert(tag, "a1", lat=lat, minutes=0, episode="a")),
            Message(TOPIC, _alert(tag, "a2", lat=lat + 20 * M_LAT, minutes=5, episode="a")),  # mean: inside
            Message(TOPIC, _alert(tag, "c1", lat=lat + 2_000 * M_LAT, minutes=1, episode="c")),  # far: nobody's
        ]

    def attributions(tag: str) -> list[tuple[object, ...]]:
        with session_scope(session_factory) as session:
            ids = session.scalars(select(Alert.case_id).where(Alert.alert_id.like(f"al-{tag}-%"))).all()
            cases = session.scalars(select(Case).where(Case.id.in_(ids)).order_by(Case.id)).all()
            return [(c.merchant_id and c.merchant_id.removesuffix(tag), c.attribution_method,
                     c.attribution_distance_m) for c in cases]

    with session_scope(session_factory) as session:
        store_merchants(session, [shop("solo", 31.2304), shop("many", 31.5304)], source="test")
    one_by_one(session_factory, central_settings, scenario("solo", 31.2304)[:1])
    assert attributions("solo") == [("shop-", "nearest", pytest.approx(5.0, abs=0.5))]
    one_by_one(session_factory, central_settings, scenario("solo", 31.2304)[1:])
    with session_scope(session_factory, write_lock=True) as session:
        ingest_many(session, scenario("many", 31.5304), settings=central_settings)

    assert attributions("solo") == [("shop-", "inside_zone", 0.0), (None, "none", None)]
    assert attributions("many") == attributions("solo")


def test_a_batch_sees_its_own_unflushed_case_changes(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    """Within one batch, case searches read the database without flushing first: a case whose span
    and location only the batch moved (not written yet) must still be found as one by one finds it.
    b1 lies within max_gap (2 h) of a2's time but not of a1's, which is all the stored row knows."""

    def scenario(tag: str, lat: float) -> list[Message]:
        return [
            Message(TOPIC, _alert(tag, "a1", lat=lat, minutes=0, episode="a")),
            Message(TOPIC, _alert(tag, "a2", lat=lat + 8 * M_LAT, minutes=110, episode="a")),
            Message(TOPIC, _alert(tag, "b1", lat=lat + 12 * M_LAT, minutes=229, episode="b")),
            Message(TOPIC, _alert(tag, "a3", lat=lat + 8 * M_LAT, minutes=230, episode="a", state="ended")),
        ]

    alone = one_by_one(session_factory, central_settings, scenario("solo", 31.2304))
    with session_scope(session_factory, write_lock=True) as session:
        batched = ingest_many(session, scenario("many", 31.5304), settings=central_settings)

    expected, cases, alerts, letters = snapshot(session_factory, "solo", alone)
    assert [outcome for outcome, _ in expected] == ["created", "joined", "joined", "joined"]
    assert len(cases) == 1 and cases[0][:3] == (4, 2, True)  # episode b is still open
    assert snapshot(session_factory, "many", batched) == (expected, cases, alerts, letters)


def test_a_failed_batch_leaves_nothing_and_its_redelivery_counts_once(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alert rows are written in bulk at the end of the batch, after its cases: a failure there rolls
    the whole batch back (cases included), and the broker's redelivery then stores each alert once."""
    messages = batch("fail", 31.2304)[:10]  # no sightings (their rows are ORM rows, flushed early)
    real_write = CaseEngine.write_alert_rows

    def failing(self: CaseEngine) -> None:
        raise OperationalError("INSERT INTO alerts", {}, Exception("disk I/O error"))

    monkeypatch.setattr(CaseEngine, "write_alert_rows", failing)
    with pytest.raises(OperationalError), session_scope(session_factory, write_lock=True) as session:
        ingest_many(session, messages, settings=central_settings)
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count(Case.id))) == 0
        assert session.scalar(select(func.count(Alert.alert_id))) == 0
        assert session.scalar(select(func.count(Episode.id))) == 0

    monkeypatch.setattr(CaseEngine, "write_alert_rows", real_write)
    for _ in range(2):  # redelivered, then redelivered again after it was stored
        with session_scope(session_factory, write_lock=True) as session:
            ingest_many(session, messages, settings=central_settings)
    with session_scope(session_factory) as session:
        stored = session.scalar(select(func.count(Alert.alert_id)))
        counted = session.scalar(select(func.sum(Case.alert_count)))
    # 10 messages: 2 dead letters and a duplicate within the batch -> 7 alerts, each counted once.
    assert stored == counted == 7


def test_new_cases_after_a_confirmed_sighting_in_the_same_batch(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    """A batch hands out ids for its new cases ahead of time; a case the sighting rules open in
    between takes an id by itself. Cases opened before and after it must all be stored, each once."""

    def scenario(tag: str, lat: float) -> list[Message]:
        return [
            Message(TOPIC, _alert(tag, "a1", lat=lat, minutes=0, episode="a")),
            Message(TOPIC, _sighting(tag, "s1", lat=lat + 900 * M_LAT, minutes=0)),
            Message(TOPIC, _sighting(tag, "s2", lat=lat + 901 * M_LAT, minutes=6)),
            Message(TOPIC, _alert(tag, "d1", lat=lat + 2_000 * M_LAT, minutes=7, episode="d")),
            Message(TOPIC, _alert(tag, "e1", lat=lat + 4_000 * M_LAT, minutes=8, episode="e")),
        ]

    alone = one_by_one(session_factory, central_settings, scenario("solo", 31.2304))
    with session_scope(session_factory, write_lock=True) as session:
        batched = ingest_many(session, scenario("many", 31.5304), settings=central_settings)

    expected, cases, alerts, letters = snapshot(session_factory, "solo", alone)
    assert [outcome for outcome, _ in expected] == ["created", "pending", "created", "created", "created"]
    assert len(cases) == 4
    assert snapshot(session_factory, "many", batched) == (expected, cases, alerts, letters)


def test_a_sighting_joins_a_case_the_batch_opened_as_one_by_one(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    """A patrol car passes a spot a fixed camera reported earlier in the same batch: its sighting joins
    that case, which the batch has not written yet (the sighting's row must not be inserted before
    its case), and the case's counts, span and activity come out as one by one."""

    def scenario(tag: str, lat: float) -> list[Message]:
        return [
            Message(TOPIC, _alert(tag, "a1", lat=lat, minutes=0, episode="a")),
            Message(TOPIC, _sighting(tag, "s1", lat=lat + 3 * M_LAT, minutes=2)),
            Message(TOPIC, _alert(tag, "a2", lat=lat, minutes=4, episode="a", state="ended")),
            Message(TOPIC, _sighting(tag, "s2", lat=lat + 2 * M_LAT, minutes=9)),
        ]

    alone = one_by_one(session_factory, central_settings, scenario("solo", 31.2304))
    with session_scope(session_factory, write_lock=True) as session:
        batched = ingest_many(session, scenario("many", 31.5304), settings=central_settings)

    expected, cases, alerts, letters = snapshot(session_factory, "solo", alone)
    assert [outcome for outcome, _ in expected] == ["created", "joined", "joined", "joined"]
    assert len(cases) == 1 and cases[0][:3] == (4, 3, False)  # a ended; each pass is over at once
    assert snapshot(session_factory, "many", batched) == (expected, cases, alerts, letters)


def test_a_batch_costs_a_few_statements_per_new_episode_not_per_alert(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    """What keeps ingest fast: per new episode one candidate search (and one open-episode check at
    its end), per batch a few reads and one write per table; no flush or INSERT per alert or case."""
    episodes = 10
    messages = [
        Message(TOPIC, _alert("cost", f"{e}-{i}", lat=31.2304 + e * 1_000 * M_LAT, minutes=i, episode=str(e),
                              state="ended" if i == 2 else "active"))
        for e in range(episodes)
        for i in range(3)
    ]
    statements: list[str] = []
    engine = session_factory.kw["bind"]
    listener = lambda *args: statements.append(args[2])  # noqa: E731 (conn, cursor, statement, ...)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        with session_scope(session_factory, write_lock=True) as session:
            results = ingest_many(session, messages, settings=central_settings)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert [r.outcome for r in results] == ["created", "joined", "joined"] * episodes
    writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert len(writes) <= 5, writes  # case locks (PostgreSQL), cases, episodes, alerts, and one spare
    assert len(statements) <= 2 * episodes + 12, statements
