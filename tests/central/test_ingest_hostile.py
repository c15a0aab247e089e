"""No message can stop ingest (issue 17): every failure while parsing, validating or storing one
message, of any exception type, makes that message a dead letter with its reason, and the rest of
its batch, its file or its consumer's queue goes on.

The MQTT half runs a real AlertConsumer on the session's broker; the file half runs
`central ingest-jsonl`'s function; both on the test's real database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from factories import make_alert
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_consumer import Publisher, count, edge_id, make_consumer, publisher, wait_for  # noqa: F401 - fixtures

from streetwatch.central.case_engine import CaseEngine
from streetwatch.central.config import CentralSettings, IngestSettings
from streetwatch.central.consumer import AlertConsumer
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import Message, ingest_alert, ingest_many
from streetwatch.central.models import Alert, Case, DeadLetter, Episode
from streetwatch.central.offline import ingest_jsonl
from streetwatch.edge.alerts import alert_topic

NOW = datetime.now(UTC).replace(microsecond=0)


def recent(**overrides: object) -> bytes:
    """A valid alert observed a minute ago (within any sane time bounds)."""
    return make_alert(observed_at=NOW - timedelta(minutes=1), **overrides).to_json()


def hostile_payloads(box: str) -> list[tuple[bytes, str]]:
    """Payloads that once escaped ingest's error handling, or came close, with the reason's key."""
    good = json.loads(recent(edge_id=box))

    def variant(**fields: object) -> bytes:
        return json.dumps({**good, **fields}).encode()

    return [
        (variant(started_at="0001-01-01T00:00:00+14:00"), "started_at"),
        (variant(observed_at="9999-12-31T23:59:59-14:00"), "observed_at"),
        (variant(observed_at="9999-12-31T23:59:59Z"), "observed_at"),
        (variant(started_at="1970-01-01T00:00:00Z"), "started_at"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (variant(dwell_s=1).replace(b'"dwell_s": 1', b'"dwell_s": NaN'), "dwell_s"),
        (variant(extra=[[[[[[[[[[[1]]]]]]]]]]]), "extra"),
        (variant(track_id=2**80), "track_id"),
        (variant(zone_id="z\x00"), "zone_id"),
        (variant(location={"lat": "north", "lon": 0, "accuracy_m": 1}), "location.lat"),
        (b'{"schema": "streetwatch.alert/1", "alert_id": ' + b'"' + b"a" * 300_000 + b'"}', "alert_id"),
    ]


def test_a_batch_of_hostile_payloads_stores_the_good_ones_and_names_each_bad_field(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    bad = hostile_payloads("box-01")
    good = [recent(), recent()]
    messages = [Message(None, good[0], "good-0"), *(Message(None, p, f"bad-{i}") for i, (p, _) in enumerate(bad)),
                Message(None, good[1], "good-1")]
    with session_scope(session_factory, write_lock=True) as session:
        results = ingest_many(session, messages, settings=central_settings)
    assert [r.outcome for r in results] == ["created"] + ["dead_letter"] * len(bad) + ["joined"]
    for result, (_payload, field) in zip(results[1:-1], bad, strict=True):
        assert result.reason is not None and field in result.reason
    assert count(session_factory, Alert) == 2 and count(session_factory, DeadLetter) == len(bad)


def test_time_bounds_come_from_the_settings(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    tight = central_settings.model_copy(update={"ingest": IngestSettings(max_ahead_h=1)})
    ahead = make_alert(observed_at=NOW + timedelta(hours=2)).to_json()
    with session_scope(session_factory, write_lock=True) as session:
        refused, = ingest_many(session, [Message(None, ahead)], settings=tight)
        accepted, = ingest_many(session, [Message(None, ahead)], settings=central_settings)
    assert refused.outcome == "dead_letter" and "more than 1 h after" in (refused.reason or "")
    assert accepted.outcome == "created"


def test_a_box_cannot_end_another_box_episode(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    """The per-box ACL keeps a box to its own topic, not to its own episode ids."""
    opened = make_alert(edge_id="box-a", observed_at=NOW - timedelta(minutes=5))
    forged = make_alert(edge_id="box-b", episode_id=opened.episode_id, state="ended",
                        observed_at=NOW - timedelta(minutes=1))
    with session_scope(session_factory, write_lock=True) as session:
        first = ingest_alert(session, opened, topic=alert_topic("box-a", "cam-1"), settings=central_settings)
    with session_scope(session_factory) as session:
        before = session.get(Case, first.case_id)
        assert before is not None
        snapshot = (before.status, before.active, before.alert_count, before.last_seen)
    with session_scope(session_factory, write_lock=True) as session:
        result = ingest_alert(session, forged, topic=alert_topic("box-b", "cam-1"), settings=central_settings)
    assert result.outcome == "dead_letter"
    assert "belongs to box 'box-a', not to 'box-b'" in (result.reason or "")
    with session_scope(session_factory) as session:
        after = session.get(Case, first.case_id)
        episode = session.get(Episode, opened.episode_id)
        assert after is not None and episode is not None
        assert (after.status, after.active, after.alert_count, after.last_seen) == snapshot
        assert episode.ended_at is None
        assert session.get(Alert, forged.alert_id) is None


@pytest.fixture()
def exploding_alert(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Alert ids whose case decision raises an exception no handler names (a bug's stand-in)."""
    doomed: set[str] = set()
    decide = CaseEngine.decide

    def decide_or_explode(self: CaseEngine, arrival: object) -> object:
        if arrival.alert.alert_id in doomed:  # type: ignore[attr-defined]
            raise OverflowError("date value out of range")
        return decide(self, arrival)  # type: ignore[arg-type]

    monkeypatch.setattr(CaseEngine, "decide", decide_or_explode)
    yield doomed


def test_ingest_jsonl_keeps_the_good_lines_when_one_line_breaks_its_batch(
    tmp_path: Path,
    session_factory: sessionmaker[Session],
    central_settings: CentralSettings,
    exploding_alert: set[str],
) -> None:
    alerts = [make_alert(observed_at=NOW - timedelta(minutes=1)) for _ in range(6)]
    exploding_alert.add(alerts[3].alert_id)
    path = tmp_path / "alerts.jsonl"
    lines = [a.to_json() for a in alerts[:3]] + [b"[" * 100_000, alerts[3].to_json()]
    lines += [a.to_json() for a in alerts[4:]]
    path.write_bytes(b"\n".join(lines) + b"\n")
    summary = ingest_jsonl(path, session_factory=session_factory, settings=central_settings, batch_size=50)
    assert (summary.created + summary.joined, summary.dead_letter) == (5, 2)
    with session_scope(session_factory) as session:
        stored = set(session.scalars(select(Alert.alert_id)))
        letters = {d.topic: d.reason for d in session.scalars(select(DeadLetter))}
    assert stored == {a.alert_id for i, a in enumerate(alerts) if i != 3}
    assert "nested too deeply" in letters[f"file:{path}:4"]
    assert letters[f"file:{path}:5"] == "internal error: OverflowError: date value out of range"


def test_a_message_that_breaks_its_batch_is_a_dead_letter_and_the_consumer_goes_on(
    session_factory: sessionmaker[Session],
    make_consumer: Callable[..., AlertConsumer],  # noqa: F811
    publisher: Publisher,  # noqa: F811
    edge_id: str,  # noqa: F811
    exploding_alert: set[str],
) -> None:
    consumer = make_consumer(session_factory)
    topic = alert_topic(edge_id, "cam-1")
    doomed = make_alert(edge_id=edge_id, observed_at=NOW - timedelta(minutes=1))
    exploding_alert.add(doomed.alert_id)
    fine = [make_alert(edge_id=edge_id, observed_at=NOW - timedelta(minutes=1)) for _ in range(3)]
    for payload in [fine[0].to_json(), doomed.to_json(), *(p for p, _ in hostile_payloads(edge_id)),
                    fine[1].to_json(), fine[2].to_json()]:
        publisher.send(topic, payload)
    expected_letters = 1 + len(hostile_payloads(edge_id))
    wait_for(lambda: count(session_factory, Alert) == 3 and count(session_factory, DeadLetter) == expected_letters,
             what="3 alerts and every hostile message as a dead letter")
    with session_scope(session_factory) as session:
        reasons = [d.reason for d in session.scalars(select(DeadLetter))]
    assert "internal error: OverflowError: date value out of range" in reasons
    assert consumer.subscribed.is_set() and consumer._worker is not None and consumer._worker.is_alive()
    later = make_alert(edge_id=edge_id, observed_at=NOW)
    publisher.send(topic, later.to_json())
    wait_for(lambda: count(session_factory, Alert) == 4, what="an alert after the hostile ones")
