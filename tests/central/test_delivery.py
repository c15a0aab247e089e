"""The end-to-end delivery audit (central/delivery.py, fleet.py; the box's half: edge/outbox.py and
edge/publisher.py): every alert a box numbered ends up stored, refused, or reported lost, even when
the broker forgets alerts it had acknowledged to the box.

Pure rules first (tables), then the auditor on the test's real database, then the whole loop on a
real broker: a real edge Outbox and Publisher, a real AlertConsumer and FleetWorker. The broker
"forgetting" is made exactly: alerts are marked delivered in the box's outbox without ever being
published, which is what the box sees when the broker acknowledged and then lost them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from factories import make_alert
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from streetwatch.central.app import build_app
from streetwatch.central.config import BrokerSettings, CentralSettings, DeliverySettings, WebSettings
from streetwatch.central.consumer import AlertConsumer
from streetwatch.central.db import session_scope
from streetwatch.central.delivery import AuditTimes, DeliveryAuditor, audit_step, first_gap, next_contiguous
from streetwatch.central.fleet import FleetWorker
from streetwatch.central.ingest import Message, ingest_many
from streetwatch.central.models import Alert, DeliveryLoss, DeliveryStream, EdgeBox
from streetwatch.edge.alerts import EdgeStatus, ResendReply
from streetwatch.edge.config import BrokerConfig, CameraConfig, EdgeConfig
from streetwatch.edge.outbox import Outbox
from streetwatch.edge.publisher import Publisher

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TIMES = AuditTimes(resend_after=timedelta(seconds=30), resend_every=timedelta(seconds=60))


# ---------------------------------------------------------------- pure rules


@pytest.mark.parametrize(("contiguous", "numbers", "losses", "expected"), [
    (0, [], [], 0),
    (0, [1, 2, 3], [], 3),
    (0, [3, 2, 1], [], 3),
    (0, [2, 3], [], 0),  # 1 missing
    (0, [1, 3], [(2, 2)], 3),  # 2 lost for good counts as accounted
    (5, [6, 8, 9], [], 6),
    (5, [], [(1, 9)], 9),
    (5, [4, 5, 6], [], 6),  # numbers at or below the mark change nothing
])
def test_next_contiguous(contiguous: int, numbers: list[int], losses: list[tuple[int, int]], expected: int) -> None:
    assert next_contiguous(contiguous, numbers, losses) == expected


@pytest.mark.parametrize(("contiguous", "numbers", "highest", "gap"), [
    (3, [], 3, None),
    (3, [], 7, (4, 7)),  # the tail: only the box's status says 7 exists
    (3, [6, 9], 9, (4, 5)),
    (3, [5], 5, (4, 4)),
])
def test_first_gap(contiguous: int, numbers: list[int], highest: int, gap: tuple[int, int] | None) -> None:
    assert first_gap(contiguous, numbers, highest) == gap


def step(**kw: object) -> object:
    base: dict[str, object] = {"contiguous": 0, "highest": 0, "numbers": [], "losses": [], "gap_since": None,
                               "requested_at": None, "now": NOW, "times": TIMES}
    return audit_step(**{**base, **kw})  # type: ignore[arg-type]


def test_a_gap_is_asked_for_only_after_resend_after_and_again_every_resend_every() -> None:
    fresh = step(numbers=[1, 2, 5])
    assert (fresh.contiguous, fresh.gap, fresh.gap_since, fresh.request) == (2, (3, 4), NOW, None)
    due = step(contiguous=2, highest=5, numbers=[5], gap_since=NOW - timedelta(seconds=30))
    assert due.request == (3, 4)
    asked = step(contiguous=2, highest=5, numbers=[5], gap_since=NOW - timedelta(seconds=90),
                 requested_at=NOW - timedelta(seconds=10))
    assert asked.request is None and asked.gap == (3, 4)
    again = step(contiguous=2, highest=5, numbers=[5], gap_since=NOW - timedelta(seconds=90),
                 requested_at=NOW - timedelta(seconds=60))
    assert again.request == (3, 4)
    filled = step(contiguous=2, highest=5, numbers=[3, 4, 5], gap_since=NOW - timedelta(seconds=90))
    assert (filled.contiguous, filled.gap, filled.gap_since, filled.request) == (5, None, None, None)


def test_a_huge_gap_is_asked_for_in_bounded_spans() -> None:
    big = step(contiguous=0, highest=10_000_000, gap_since=NOW - timedelta(hours=1))
    assert big.request is not None and big.request[0] == 1 and big.request[1] - big.request[0] < 100_000


# ---------------------------------------------------------------- the auditor on a real database


def numbered(edge: str, outbox: str, seq: int) -> bytes:
    return make_alert(edge_id=edge, outbox_id=outbox, seq=seq, observed_at=datetime.now(UTC)).to_json()


def store(factory: sessionmaker[Session], settings: CentralSettings, payloads: list[bytes]) -> None:
    with session_scope(factory, write_lock=True) as session:
        ingest_many(session, [Message(None, p) for p in payloads], settings=settings)


def test_the_auditor_follows_gaps_to_a_resend_and_records_what_the_box_no_longer_holds(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    clock = [NOW]
    auditor = DeliveryAuditor(session_factory, times=TIMES, clock=lambda: clock[0])
    store(session_factory, central_settings, [numbered("box-a", "ob-1", n) for n in (1, 2, 5)])
    store(session_factory, central_settings, [b'{"schema": "streetwatch.alert/1", "edge_id": "box-a", '
                                              b'"outbox_id": "ob-1", "seq": 6, "state": "bogus"}'])  # refused
    auditor.record_status(EdgeStatus(edge_id="box-a", state="online", at=NOW, outbox_id="ob-1", last_seq=8))

    first = auditor.tick()
    assert [(g.first_seq, g.last_seq) for g in first.open_gaps] == [(3, 4)] and first.commands == []
    clock[0] = NOW + timedelta(seconds=31)
    asked = auditor.tick()
    assert [(e, c.outbox_id, c.first_seq, c.last_seq) for e, c in asked.commands] == [("box-a", "ob-1", 3, 4)]
    assert auditor.tick().commands == []  # not again before resend_every

    store(session_factory, central_settings, [numbered("box-a", "ob-1", n) for n in (3, 4)])  # resent, stored
    clock[0] = NOW + timedelta(seconds=100)
    tail = auditor.tick()  # 1-6 accounted (6 as a dead letter); 7-8 only in the status: the tail gap
    assert [(g.first_seq, g.last_seq) for g in tail.open_gaps] == [(7, 8)]
    reply = ResendReply(request_id="rq-1", edge_id="box-a", outbox_id="ob-1", first_seq=7, last_seq=8,
                        requeued=0, missing=[(7, 8)])
    assert auditor.record_reply(reply) == [(7, 8)]
    assert auditor.record_reply(reply) == []  # an answer repeated is recorded once
    closed = auditor.tick()
    assert closed.open_gaps == [] and closed.closed[0][:2] == ("box-a", "ob-1")
    with session_scope(session_factory) as session:
        stream = session.get(DeliveryStream, ("box-a", "ob-1"))
        assert stream is not None and (stream.contiguous_seq, stream.highest_seq, stream.gap_since) == (8, 8, None)
        assert [(x.first_seq, x.last_seq) for x in session.scalars(select(DeliveryLoss))] == [(7, 8)]
        box = session.get(EdgeBox, "box-a")
        assert box is not None and (box.state, box.outbox_id, box.last_seq) == ("online", "ob-1", 8)


def test_a_status_that_turns_offline_moves_state_since(
    session_factory: sessionmaker[Session],
) -> None:
    clock = [NOW]
    auditor = DeliveryAuditor(session_factory, times=TIMES, clock=lambda: clock[0])
    auditor.record_status(EdgeStatus(edge_id="box-b", state="online", at=NOW))
    clock[0] = NOW + timedelta(minutes=5)
    auditor.record_status(EdgeStatus(edge_id="box-b", state="online", at=NOW))
    clock[0] = NOW + timedelta(minutes=9)
    auditor.record_status(EdgeStatus(edge_id="box-b", state="offline", at=NOW, reason="connection lost"))
    with session_scope(session_factory) as session:
        box = session.get(EdgeBox, "box-b")
        assert box is not None and box.state == "offline" and box.state_since == NOW + timedelta(minutes=9)
        assert box.reason == "connection lost"


# ---------------------------------------------------------------- the whole loop on a real broker


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture()
def loop(
    tmp_path: Path, mqtt_broker: object, session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> Iterator[tuple[Outbox, Publisher, CentralSettings]]:
    """A box (outbox + publisher) and central (consumer + fleet worker) on the session's broker."""
    edge_id, group = f"box-{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"
    url, protocol = mqtt_broker.url, mqtt_broker.protocol  # type: ignore[attr-defined]
    settings = central_settings.model_copy(update={
        "broker": BrokerSettings(url=url, protocol=protocol, client_id=f"{group}-w1",
                                 subscription=f"streetwatch/v1/alerts/{edge_id}/+"),
        "delivery": DeliverySettings(audit_interval_s=0.5, resend_after_s=1, resend_every_s=3,
                                     status_subscription=f"streetwatch/v1/status/{edge_id}",
                                     replies_subscription=f"streetwatch/v1/replies/{edge_id}"),
        "web": WebSettings(mode="development"),
    })
    outbox = Outbox(tmp_path / "outbox.sqlite")
    box = EdgeConfig(edge_id=edge_id, broker=BrokerConfig(url=url, protocol=protocol),
                     cameras=[CameraConfig(id="cam-1", url="street.mp4")])
    publisher = Publisher(box, outbox, status_interval_s=1)
    consumer = AlertConsumer(settings=settings, session_factory=session_factory)
    fleet = FleetWorker(settings, session_factory)
    stop = threading.Event()
    fleet_thread = threading.Thread(target=fleet.run, args=(stop,), daemon=True)
    consumer.start()
    fleet_thread.start()
    assert consumer.wait_subscribed(15) and fleet.connected.wait(15)
    publisher.start()
    try:
        yield outbox, publisher, settings
    finally:
        publisher.stop()
        stop.set()
        fleet_thread.join(10)
        consumer.stop()
        outbox.close()


def stored_ids(factory: sessionmaker[Session]) -> set[str]:
    with session_scope(factory) as session:
        return set(session.scalars(select(Alert.alert_id)))


def test_alerts_the_broker_forgot_are_asked_for_and_stored(
    loop: tuple[Outbox, Publisher, CentralSettings], session_factory: sessionmaker[Session]
) -> None:
    outbox, publisher, settings = loop
    edge_id = publisher.edge_id
    alerts = [make_alert(edge_id=edge_id, observed_at=datetime.now(UTC)) for _ in range(8)]
    for alert in alerts[:3]:
        outbox.put(alert)
    publisher.notify()
    wait_for(lambda: stored_ids(session_factory) >= {a.alert_id for a in alerts[:3]}, "the first three")
    for alert in alerts[3:6]:  # the broker acknowledged these to the box, then lost them
        outbox.put(alert)
        outbox.ack(alert.alert_id)
    for alert in alerts[6:]:
        outbox.put(alert)
    publisher.notify()
    took = wait_for(lambda: stored_ids(session_factory) == {a.alert_id for a in alerts}, "every alert, resent")
    print(f"\nDELIVERY gap of 3 closed through the resend path in {took:.1f} s")
    with session_scope(session_factory) as session:
        stream = session.get(DeliveryStream, (edge_id, outbox.outbox_id))
        assert stream is not None and stream.requests >= 0
    wait_for(lambda: _stream_closed(session_factory, edge_id, outbox.outbox_id, 8), "the gap to close")


def _stream_closed(factory: sessionmaker[Session], edge_id: str, outbox_id: str, upto: int) -> bool:
    with session_scope(factory) as session:
        stream = session.get(DeliveryStream, (edge_id, outbox_id))
        return stream is not None and stream.contiguous_seq == upto and stream.gap_since is None


def test_alerts_past_the_box_retention_are_reported_lost_in_the_fleet_api(
    loop: tuple[Outbox, Publisher, CentralSettings], session_factory: sessionmaker[Session]
) -> None:
    outbox, publisher, settings = loop
    edge_id = publisher.edge_id
    alerts = [make_alert(edge_id=edge_id, observed_at=datetime.now(UTC)) for _ in range(5)]
    outbox.put(alerts[0])
    publisher.notify()
    wait_for(lambda: alerts[0].alert_id in stored_ids(session_factory), "the first alert")
    for alert in alerts[1:3]:  # lost by the broker, and gone from the box too (retention passed)
        outbox.put(alert)
        outbox.ack(alert.alert_id)
    outbox._conn.execute("DELETE FROM outbox WHERE delivery_seq IN (2, 3)")
    for alert in alerts[3:]:
        outbox.put(alert)
    publisher.notify()
    wait_for(lambda: _losses(session_factory) == [(edge_id, 2, 3)], "the loss to be recorded")
    wait_for(lambda: _stream_closed(session_factory, edge_id, outbox.outbox_id, 5), "the numbering accounted")
    app = build_app(settings, session_factory)
    admin = _admin_token(session_factory)
    with TestClient(app) as client:
        answer = client.get("/api/fleet", headers={"Authorization": f"Bearer {admin}"})
        assert answer.status_code == 200, answer.text
        box = next(b for b in answer.json()["data"] if b["edge_id"] == edge_id)
        assert box["state"] == "online" and box["lost_alerts"] == 2
        assert box["streams"][0]["lost"] == [[2, 3]] and box["streams"][0]["gap"] is None
        assert client.get("/api/fleet", headers={"Authorization": f"Bearer {_admin_token(session_factory, 'reviewer')}"}
                          ).status_code == 403


def _losses(factory: sessionmaker[Session]) -> list[tuple[str, int, int]]:
    with session_scope(factory) as session:
        return [(x.edge_id, x.first_seq, x.last_seq) for x in session.scalars(select(DeliveryLoss))]


def _admin_token(factory: sessionmaker[Session], role: str = "admin") -> str:
    from streetwatch.central.api.tokens import issue_token
    from streetwatch.central.models import User

    name = f"{role}-{uuid.uuid4().hex[:6]}"
    with session_scope(factory) as session:
        session.add(User(username=name, password_hash="x", role=role, area_id=None, is_active=True))
    return issue_token(factory, username=name, name="test", actor="test").secret
