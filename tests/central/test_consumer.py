"""The MQTT consumer on a real broker: dead letters, persistent sessions, redelivery, two workers.

Each test subscribes to its own share group and its own edge id, so tests (and other helpers' test
runs on the same Mosquitto) never receive each other's alerts.

Embedded broker (iotcore 0.4 = rumqttd 0.20, MQTT 3.1.1) facts these tests rely on or avoid:
- shared subscriptions, QoS 1, manual acks and queued messages for a persistent session work;
- a client that drops while it holds unacknowledged messages from a *shared* subscription makes
  the broker's router panic ("group must exists") and stop routing; it also does not resend
  unacknowledged messages of a shared subscription after a reconnect. So the database-failure
  redelivery test uses a plain subscription there (Mosquitto: the shared one).
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from factories import make_alert
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.config import BrokerSettings, CentralSettings, MediaSettings
from streetwatch.central.consumer import AlertConsumer
from streetwatch.central.db import make_engine, make_session_factory, migrate, session_scope
from streetwatch.central.ingest import ingest_alert
from streetwatch.central.models import Alert, Case, DeadLetter
from streetwatch.edge.alerts import MAX_PAYLOAD_BYTES, MediaRef, alert_topic, media_chunks, media_topic
from streetwatch.edge.alerts import Alert as WireAlert
from streetwatch.mqtt_common import connect_async, make_client

WAIT_S = 60.0  # generous upper bound for rows to appear; tests finish as soon as they do


def wait_for(condition: Callable[[], bool], *, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def count(factory: sessionmaker[Session], model: type) -> int:
    with session_scope(factory) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


class Publisher:
    """A plain QoS 1 publisher (what an edge box does), on a clean session."""

    def __init__(self, broker: object) -> None:
        self.client = make_client(client_id=f"test-pub-{uuid.uuid4().hex[:8]}", protocol=broker.protocol)  # type: ignore[attr-defined]
        connected = threading.Event()
        self.client.on_connect = lambda *_args: connected.set()
        connect_async(self.client, host=broker.host, port=broker.port, keepalive_s=30)  # type: ignore[attr-defined]
        self.client.loop_start()
        assert connected.wait(10), "publisher could not connect"

    def send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture()
def publisher(mqtt_broker: object) -> Iterator[Publisher]:
    pub = Publisher(mqtt_broker)
    yield pub
    pub.close()


@pytest.fixture()
def edge_id() -> str:
    return f"box-{uuid.uuid4().hex[:10]}"


def forget_session(broker: object, client_id: str) -> None:
    """Connect once with a clean session so the broker drops the persistent one."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True
    )
    try:
        client.connect(broker.host, broker.port)  # type: ignore[attr-defined]
        client.loop_start()
        time.sleep(0.2)
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass


@pytest.fixture()
def make_consumer(
    mqtt_broker: object, central_settings: CentralSettings, edge_id: str
) -> Iterator[Callable[..., AlertConsumer]]:
    group = f"t{uuid.uuid4().hex[:10]}"
    made: list[AlertConsumer] = []

    def _make(
        factory: sessionmaker[Session], *, worker: int = 1, shared: bool = True, **kwargs: object
    ) -> AlertConsumer:
        topic = f"streetwatch/v1/alerts/{edge_id}/+"
        broker = BrokerSettings(
            url=mqtt_broker.url,  # type: ignore[attr-defined]
            protocol=mqtt_broker.protocol,  # type: ignore[attr-defined]
            client_id=f"{group}-w{worker}",
            subscription=f"$share/{group}/{topic}" if shared else topic,
        )
        settings = central_settings.model_copy(update={"broker": broker, "media": MediaSettings(subscription="")})
        consumer = AlertConsumer(settings=settings, session_factory=factory, **kwargs)  # type: ignore[arg-type]
        consumer.start()
        assert consumer.wait_subscribed(15), "consumer did not subscribe"
        made.append(consumer)
        return consumer

    yield _make
    for consumer in made:
        consumer.stop()
    for consumer in made:
        forget_session(mqtt_broker, consumer.settings.broker.client_id)


def test_bad_payloads_are_dead_lettered_and_ingest_goes_on(
    session_factory: sessionmaker[Session],
    make_consumer: Callable[..., AlertConsumer],
    publisher: Publisher,
    edge_id: str,
) -> None:
    consumer = make_consumer(session_factory)
    topic = alert_topic(edge_id, "cam-1")
    good = [make_alert(edge_id=edge_id, camera_id="cam-1") for _ in range(2)]
    oversized = make_alert(edge_id=edge_id, padding="x" * MAX_PAYLOAD_BYTES).to_json()
    bad = [
        (b"\x00\xffnot json", "not JSON"),
        (
            make_alert(edge_id=edge_id).to_json().replace(b'"state":"active"', b'"state":"paused"'),
            "schema violation: state",
        ),
        (
            make_alert(edge_id=edge_id).to_json().replace(b"streetwatch.alert/1", b"streetwatch.alert/2"),
            "unknown schema version",
        ),
        (oversized, "payload too large"),
        (make_alert(edge_id="box-impostor").to_json(), f"edge_id mismatch: topic names {edge_id!r}"),
    ]
    publisher.send(topic, good[0].to_json())
    for payload, _reason in bad:
        publisher.send(topic, payload)
    publisher.send(topic, good[1].to_json())
    wait_for(
        lambda: count(session_factory, Alert) == 2 and count(session_factory, DeadLetter) == len(bad),
        what="2 alerts and 5 dead letters",
    )
    with session_scope(session_factory) as session:
        letters = session.scalars(select(DeadLetter).order_by(DeadLetter.id)).all()
        stored = {a.alert_id for a in session.scalars(select(Alert))}
    assert stored == {a.alert_id for a in good}
    for letter, (_payload, reason) in zip(letters, bad, strict=True):
        assert reason in letter.reason and letter.topic == topic
    assert consumer.subscribed.is_set()
    assert (consumer.summary.dead_letter, consumer.summary.created + consumer.summary.joined) == (5, 2)


@pytest.fixture()
def own_broker() -> Iterator[object]:
    """An embedded broker of this test's own: after this test the session's shared one stopped taking
    connections for the next test (seen twice on rumqttd; not reproduced outside the consumer)."""
    from support import BrokerEndpoint, free_port

    from streetwatch.embedded_broker import start_embedded_broker

    port = free_port()
    broker = start_embedded_broker(port)
    try:
        yield BrokerEndpoint(f"mqtt://127.0.0.1:{port}", "127.0.0.1", port, "3.1.1", True)
    finally:
        broker.stop()


def test_bad_media_pieces_never_stop_ingest(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, own_broker: object, edge_id: str
) -> None:
    """Evidence-set pieces (wire 1.2) that are junk, malformed, another box's or unannounced are dead
    letters, acknowledged; the alerts around them are stored and the consumer goes on."""
    broker = BrokerSettings(url=own_broker.url, protocol=own_broker.protocol,  # type: ignore[attr-defined]
                            client_id=f"c-{edge_id}", subscription=f"$share/a/streetwatch/v1/alerts/{edge_id}/+")
    settings = central_settings.model_copy(update={
        "broker": broker, "media": MediaSettings(subscription=f"$share/m/streetwatch/v1/media/{edge_id}/+")})
    consumer = AlertConsumer(settings=settings, session_factory=session_factory)
    consumer.start()
    publisher = Publisher(own_broker)
    try:
        assert consumer.wait_subscribed(15)
        _send_bad_media(session_factory, consumer, publisher, edge_id)
    finally:
        publisher.close()
        consumer.stop()


def _send_bad_media(
    session_factory: sessionmaker[Session], consumer: AlertConsumer, publisher: Publisher, edge_id: str
) -> None:
    good = [make_alert(edge_id=edge_id, camera_id="cam-1") for _ in range(2)]
    data = b"\xff\xd8" + b"\x00" * 300
    ref = MediaRef(kind="crop", sha256=hashlib.sha256(data).hexdigest(), content_type="image/jpeg", size=len(data),
                   width=4, height=4)
    unannounced = media_chunks(good[0].alert_id, edge_id, ref, data)[0].to_json()
    media = media_topic(edge_id, "cam-1")
    publisher.send(alert_topic(edge_id, "cam-1"), good[0].to_json())
    for junk in (b"\x00\xffnot json", b"{" * 2000, b'{"schema": "streetwatch.media/1"}', unannounced,
                 unannounced.replace(edge_id.encode(), b"box-other")):
        publisher.send(media, junk)
    publisher.send(alert_topic(edge_id, "cam-1"), good[1].to_json())
    wait_for(lambda: count(session_factory, Alert) == 2 and count(session_factory, DeadLetter) == 5,
             what="2 alerts and 5 media dead letters")
    with session_scope(session_factory) as session:
        reasons = [d.reason for d in session.scalars(select(DeadLetter).order_by(DeadLetter.id))]
    assert all(r.startswith("media: ") for r in reasons), reasons
    assert any("does not announce" in r for r in reasons) and any("edge_id mismatch" in r for r in reasons)
    assert consumer.alive and consumer.summary.media == {"dead_letter": 5}


def test_redelivery_through_the_broker_is_idempotent(
    session_factory: sessionmaker[Session],
    make_consumer: Callable[..., AlertConsumer],
    publisher: Publisher,
    edge_id: str,
) -> None:
    make_consumer(session_factory)
    alert = make_alert(edge_id=edge_id)
    for _ in range(3):  # the edge's outbox resends after a lost PUBACK
        publisher.send(alert_topic(edge_id, "cam-1"), alert.to_json())
    marker = make_alert(edge_id=edge_id, location={"lat": 31.0, "lon": 121.0, "accuracy_m": 1})
    publisher.send(alert_topic(edge_id, "cam-1"), marker.to_json())
    wait_for(lambda: count(session_factory, Case) == 2, what="two cases")
    with session_scope(session_factory) as session:
        case = session.scalars(select(Case).where(Case.lat > 31.1)).one()
        assert case.alert_count == 1 and count(session_factory, Alert) == 2


def test_persistent_session_keeps_alerts_published_while_the_worker_was_down(
    mqtt_broker: object,
    session_factory: sessionmaker[Session],
    make_consumer: Callable[..., AlertConsumer],
    publisher: Publisher,
    edge_id: str,
) -> None:
    first = make_consumer(session_factory, worker=1)
    first.stop()
    alerts = [
        make_alert(edge_id=edge_id, location={"lat": 31.2 + i * 0.01, "lon": 121.4, "accuracy_m": 1}) for i in range(3)
    ]
    for alert in alerts:
        publisher.send(alert_topic(edge_id, "cam-1"), alert.to_json())
    # the same worker (same client id) comes back: the broker hands over what it queued
    make_consumer(session_factory, worker=1)
    wait_for(lambda: count(session_factory, Alert) == 3, what="queued alerts after the restart")


class FlakyFactory:
    """A session factory whose first `failures` sessions fail as if the database were down."""

    def __init__(self, real: sessionmaker[Session], failures: int) -> None:
        self.real, self.failures = real, failures

    def __call__(self) -> Session:
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("BEGIN", {}, ConnectionRefusedError("database is down"))
        return self.real()


def test_database_failure_is_not_acked_and_the_broker_redelivers(
    mqtt_broker: object,
    session_factory: sessionmaker[Session],
    make_consumer: Callable[..., AlertConsumer],
    publisher: Publisher,
    edge_id: str,
) -> None:
    flaky = FlakyFactory(session_factory, failures=0)
    # iotcore breaks on unacked shared-subscription messages (module docstring): plain there.
    shared = not mqtt_broker.embedded  # type: ignore[attr-defined]
    consumer = make_consumer(flaky, shared=shared, db_retries=0, retry_delay_s=0.2)
    flaky.failures = 2  # the database goes down once the worker runs
    alert = make_alert(edge_id=edge_id)
    publisher.send(alert_topic(edge_id, "cam-1"), alert.to_json())
    wait_for(lambda: count(session_factory, Alert) == 1, what="the alert after the database came back")
    # the batch attempt and the one-by-one retry failed; the redelivered message then went through
    assert flaky.failures == 0 and consumer.summary.db_errors == 1
    with session_scope(session_factory) as session:
        assert session.scalars(select(Case)).one().alert_count == 1


def test_a_worker_starts_while_its_database_is_down_and_ingests_once_it_is_up(
    session_factory: sessionmaker[Session],
    make_consumer: Callable[..., AlertConsumer],
    publisher: Publisher,
    edge_id: str,
) -> None:
    """Start-up loads the merchant index; a database that is not up yet must not stop the worker."""
    make_consumer(FlakyFactory(session_factory, failures=1))
    publisher.send(alert_topic(edge_id, "cam-1"), make_alert(edge_id=edge_id).to_json())
    wait_for(lambda: count(session_factory, Alert) == 1, what="the alert once the database is up")


def test_on_mqtt5_a_worker_takes_whole_batches_from_the_broker(
    mqtt_broker: object,
    session_factory: sessionmaker[Session],
    make_consumer: Callable[..., AlertConsumer],
    publisher: Publisher,
    edge_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch is what has arrived unacknowledged. A 3.1.1 client gets the broker's in-flight limit
    (Mosquitto: 20), which capped batches at 20; on MQTT 5 the worker asks for two batches' worth."""
    if mqtt_broker.protocol != "5":  # type: ignore[attr-defined]
        pytest.skip("MQTT 5 only: on 3.1.1 the broker alone sets the in-flight limit (the embedded one: 3.1.1)")
    from streetwatch.central import consumer, ingest

    gate, sizes = threading.Event(), []
    real_ingest_many = ingest.ingest_many

    def held(session: Session, messages: list[ingest.Message], **kwargs: object) -> list[ingest.IngestResult]:
        gate.wait(30)  # the first batch waits while the rest of the alerts arrive
        sizes.append(len(messages))
        return real_ingest_many(session, messages, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(consumer, "ingest_many", held)  # the name the consumer calls
    make_consumer(session_factory, batch_size=50)
    for _ in range(150):
        publisher.send(alert_topic(edge_id, "cam-1"), make_alert(edge_id=edge_id).to_json())
    time.sleep(2.0)  # let the broker send what the worker may hold
    gate.set()
    wait_for(lambda: count(session_factory, Alert) == 150, what="all 150 alerts")
    assert sizes[1] == 50, f"batch sizes {sizes}: the second batch should be a full 50"
    assert sum(sizes) == 150 and max(sizes) == 50


def test_a_full_evidence_disk_is_not_acked_and_ingest_goes_on(
    mqtt_broker: object,
    session_factory: sessionmaker[Session],
    make_consumer: Callable[..., AlertConsumer],
    publisher: Publisher,
    edge_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writing the evidence file fails twice (ENOSPC): the alert is neither acked nor dead-lettered,
    the ingest thread survives, and once the disk has room the alert is stored once."""
    from streetwatch.central import evidence_store

    real_put, failures = evidence_store.EvidenceStore.put, [2]

    def full_disk(self: evidence_store.EvidenceStore, data: bytes) -> str:
        if failures[0] > 0:
            failures[0] -= 1
            raise OSError(28, "No space left on device")
        return real_put(self, data)

    monkeypatch.setattr(evidence_store.EvidenceStore, "put", full_disk)
    shared = not mqtt_broker.embedded  # type: ignore[attr-defined]
    consumer = make_consumer(session_factory, shared=shared, db_retries=1, retry_delay_s=0.1)
    first = make_alert(edge_id=edge_id)
    publisher.send(alert_topic(edge_id, "cam-1"), first.to_json())
    wait_for(lambda: count(session_factory, Alert) == 1, what="the alert once the disk has room")
    second = make_alert(edge_id=edge_id, camera_id="cam-2")
    publisher.send(alert_topic(edge_id, "cam-2"), second.to_json())
    wait_for(lambda: count(session_factory, Alert) == 2, what="a later alert: the ingest thread is alive")
    assert failures[0] == 0 and count(session_factory, DeadLetter) == 0
    assert consumer.summary.dead_letter == 0 and consumer.summary.created + consumer.summary.joined == 2


# ---------------------------------------------------------------- two workers, one result


SPOTS = [(31.30000 + 0.002 * i, 120.58560 + 0.0015 * (i % 3)) for i in range(8)]  # >= 140 m apart
T0 = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)


def race_alerts(edge_id: str, *, n: int = 320, seed: int = 3) -> list[WireAlert]:
    """Sightings of 8 parked cars from 4 cameras, GPS noise ~2 m, in one burst (a busy street)."""
    rng = random.Random(seed)
    episodes: dict[tuple[int, int], str] = {}
    alerts = []
    for i in range(n):
        spot, camera = rng.randrange(len(SPOTS)), rng.randrange(4)
        lat, lon = SPOTS[spot]
        episode = episodes.setdefault((spot, camera), f"ep-{uuid.uuid4().hex[:12]}")
        noise_n, noise_e = rng.gauss(0, 2.0), rng.gauss(0, 2.0)
        alerts.append(
            make_alert(
                edge_id=edge_id,
                camera_id=f"cam-{camera}",
                episode_id=episode,
                observed_at=T0 + timedelta(seconds=i),
                started_at=T0,
                location={
                    "lat": lat + noise_n / 111_320,
                    "lon": lon + noise_e / (111_320 * math.cos(math.radians(lat))),
                    "accuracy_m": 2.0,
                },
            )
        )
    return alerts


def case_partition(factory: sessionmaker[Session]) -> set[frozenset[str]]:
    """The cases as sets of alert ids (ids of cases differ between runs; membership must not)."""
    groups: dict[int, set[str]] = {}
    with session_scope(factory) as session:
        for alert_id, case_id in session.execute(select(Alert.alert_id, Alert.case_id)):
            groups.setdefault(case_id, set()).add(alert_id)
    return {frozenset(g) for g in groups.values()}


def test_two_workers_make_exactly_the_cases_one_worker_makes(
    tmp_path: Path,
    session_factory: sessionmaker[Session],
    central_settings: CentralSettings,
    make_consumer: Callable[..., AlertConsumer],
    publisher: Publisher,
    edge_id: str,
) -> None:
    alerts = race_alerts(edge_id)
    duplicates = alerts[::10]  # redeliveries mixed in
    workers = [make_consumer(session_factory, worker=w) for w in (1, 2)]
    for alert in alerts + duplicates:
        publisher.send(alert_topic(edge_id, alert.camera_id), alert.to_json())
    wait_for(
        lambda: (
            sum(w.summary.total for w in workers) >= len(alerts) + len(duplicates)
            and count(session_factory, Alert) >= len(alerts)
        ),
        what="every message processed",
    )  # the reference: one worker, in publish order, on its own SQLite database
    reference_url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    migrate(reference_url)
    reference = make_session_factory(make_engine(reference_url))
    for alert in alerts:
        with session_scope(reference, write_lock=True) as session:
            ingest_alert(session, alert, topic=None, settings=central_settings)
    assert all(w.summary.total > 0 for w in workers), "the broker did not split the load"
    assert count(session_factory, Alert) == len(alerts)
    assert case_partition(session_factory) == case_partition(reference)
    assert count(session_factory, Case) == len(SPOTS)
    with session_scope(session_factory) as session:
        assert sum(session.scalars(select(Case.alert_count))) == len(alerts)
    assert sum(w.summary.duplicate for w in workers) == len(duplicates)
