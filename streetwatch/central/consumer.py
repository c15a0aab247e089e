"""The MQTT consumer: one central ingest worker on the shared alert subscription.

Delivery guarantee: the consumer subscribes with QoS 1 on a persistent session (fixed client id,
clean_session=False / clean_start=False) and acknowledges a message only after its transaction
committed (paho's manual ack). A message that cannot be stored because the database failed is
retried in place, and if it still fails it is left unacknowledged and the consumer reconnects, so the
broker delivers it again. A message that can never be stored (not JSON, schema, size, wrong topic,
broken evidence, or any error of any type while storing it) goes to the dead-letter table with the
reason and is acknowledged: no message can stop ingest, so a restart always makes progress. A
failing batch falls back to one by one, so one bad message costs only itself.

Throughput: paho's network thread only queues messages; the ingest thread takes whatever has queued
up (up to `batch_size`) into one transaction (`ingest.ingest_many`), so under load a commit serves a
batch; idle, a message is handled at once.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import paho.mqtt.client as mqtt
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.attribution import MerchantIndexCache
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import (
    IngestResult,
    IngestSummary,
    Message,
    ingest_many,
)
from streetwatch.central.media_ingest import ingest_media
from streetwatch.central.message_store import MessageStore
from streetwatch.central.metrics import CentralMetrics
from streetwatch.edge.alerts import edge_id_from_media_topic
from streetwatch.mqtt_common import connect_async, describe_reason, make_client, parse_broker_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Received:
    """A message taken off the wire, with the connection it came on (acks are per connection) and
    when it arrived (time.monotonic(), for the latency metric)."""

    message: mqtt.MQTTMessage
    connection: int
    at: float


class AlertConsumer:
    """One central ingest worker on the shared alert subscription (run several: the broker splits).

    paho's network thread only queues messages; a worker thread ingests whatever has queued up (up
    to `batch_size`) in one transaction, and acks each message after the commit. Under load that
    means one commit per batch instead of per alert; idle, a message is handled at once. An ack
    is only sent on the connection the message arrived on: after a reconnect the broker resends
    unacked messages itself, and they are recognised as duplicates.
    """

    def __init__(
        self,
        *,
        settings: CentralSettings,
        session_factory: sessionmaker[Session],
        db_retries: int = 2,
        retry_delay_s: float = 0.5,
        batch_size: int = 100,
        metrics: CentralMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.heartbeat: float | None = None  # time.monotonic() of the ingest loop's last turn
        self.session_factory = session_factory
        self.db_retries = db_retries
        self.retry_delay_s = retry_delay_s
        self.batch_size = batch_size
        self.summary = IngestSummary()
        self.index_cache = MerchantIndexCache(max_distance_m=settings.attribution.max_distance_m)
        self.subscribed = threading.Event()
        self._stopping = threading.Event()
        self._bounce_lock = threading.Lock()
        self._queue: queue.Queue[_Received] = queue.Queue()
        self._connection = 0
        self._worker: threading.Thread | None = None
        self._store = MessageStore(settings.broker.client_id, settings, session_factory, self.index_cache,
                                   self._stopping, db_retries=db_retries, retry_delay_s=retry_delay_s)
        broker = settings.broker
        self._host, self._port, tls = parse_broker_url(broker.url)
        self.client = make_client(
            client_id=broker.client_id,
            protocol=broker.protocol,
            username=broker.username,
            password=settings.broker_password_value(),
            tls=broker.tls if broker.tls is not None else tls,
            persistent_session=True,
        )
        self.client.manual_ack_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    @property
    def name(self) -> str:
        return self.settings.broker.client_id

    @property
    def alive(self) -> bool:
        """The ingest thread runs (False before start and after it ended, asked or not)."""
        return self._worker is not None and self._worker.is_alive()

    # -- lifecycle

    def start(self) -> None:
        """Load the merchant index, start the ingest thread and connect; paho's loop thread
        reconnects after an outage."""
        self._warm_up()
        log.info("consumer %s: connecting to %s:%d", self.name, self._host, self._port)
        self._worker = threading.Thread(target=self._run, name=f"ingest-{self.name}", daemon=True)
        self._worker.start()
        self._connect()

    def _warm_up(self) -> None:
        """Load the attribution index before the first alert arrives: built on demand, it held the
        first batch (and every alert queued behind it) for ~0.3 s with 10,000 merchants."""
        try:
            with session_scope(self.session_factory) as session:
                self.index_cache.get(session)
        except SQLAlchemyError as exc:  # the database may come up later: the first batch loads it then
            log.warning("consumer %s: merchant index not loaded at start (%s)", self.name, exc)

    def _connect(self) -> None:
        connect_async(
            self.client,
            host=self._host,
            port=self._port,
            keepalive_s=self.settings.broker.keepalive_s,
            persistent_session=True,
            # A batch is what has arrived unacknowledged: room for one batch in hand and the next
            # arriving. (A 3.1.1 broker decides itself: Mosquitto sends 20, so batches stay small.)
            receive_maximum=2 * self.batch_size,
        )
        self.client.loop_start()

    def stop(self) -> None:
        """Finish the batch in hand, then disconnect (the broker keeps the session and queues)."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(30)
        self.client.disconnect()
        self.client.loop_stop()
        log.info("consumer %s: stopped (%s)", self.name, self.summary)

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self.subscribed.wait(timeout_s)

    # -- paho callbacks (run in paho's network thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason_code: mqtt.ReasonCode,
        _props: object = None,
    ) -> None:
        if reason_code.is_failure:
            log.error("consumer %s: broker refused: %s", self.name, describe_reason(reason_code))
            return
        self._connection += 1
        # Resubscribing is harmless on a resumed session and needed on a new one.
        topics = [(self.settings.broker.subscription, 1)]
        if self.settings.media.subscription:
            topics.append((self.settings.media.subscription, 1))
        client.subscribe(topics)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reason_codes: list[mqtt.ReasonCode],
        _props: object = None,
    ) -> None:
        failed = [describe_reason(code) for code in reason_codes if code.is_failure]
        if failed:
            log.error(
                "consumer %s: subscription %s refused: %s",
                self.name,
                self.settings.broker.subscription,
                ", ".join(failed),
            )
            return
        log.info("consumer %s: subscribed to %s", self.name, self.settings.broker.subscription)
        self.subscribed.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason_code: mqtt.ReasonCode,
        _props: object = None,
    ) -> None:
        self.subscribed.clear()
        if not self._stopping.is_set():
            log.warning("consumer %s: disconnected (%s); reconnecting", self.name, describe_reason(reason_code))

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        self._queue.put(_Received(message, self._connection, time.monotonic()))

    # -- the ingest thread

    def _run(self) -> None:
        while not self._stopping.is_set() or not self._queue.empty():
            self.heartbeat = time.monotonic()
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._process(batch)
            except Exception:  # a bug here must not end ingest: the messages stay unacked and come back
                log.exception("consumer %s: batch of %d not handled; the broker will deliver it again",
                              self.name, len(batch))
                self._drop_unacked()
                self._bounce()

    def _process(self, batch: list[_Received]) -> None:
        """Ingest the batch in one transaction; on any error fall back to one by one (a database
        or storage error is retried there, anything else makes that message a dead letter).
        Evidence-set pieces (the media topic) go apart, after the alerts they belong to."""
        media = [r for r in batch if edge_id_from_media_topic(r.message.topic) is not None]
        if media:
            batch = [r for r in batch if edge_id_from_media_topic(r.message.topic) is None]
            if batch:
                self._process(batch)
            for received in media:
                self._process_media(received)
            return
        try:
            with session_scope(self.session_factory, write_lock=True) as session:
                messages = [Message(r.message.topic, bytes(r.message.payload)) for r in batch]
                results = ingest_many(session, messages, settings=self.settings, index=self.index_cache.get(session))
        except Exception as exc:  # OSError: the evidence folder (disk full, mount gone)
            log.warning("consumer %s: batch of %d failed (%r); retrying one by one", self.name, len(batch), exc)
            for received in batch:
                if not self._process_one(received):
                    self._drop_unacked()
                    return
            return
        committed = time.monotonic()
        for received, result in zip(batch, results, strict=True):
            self._count(received, result, committed)
            self._ack(received)

    def _process_media(self, received: _Received) -> None:
        """One evidence-set piece in its own transaction, acknowledged whatever happens: a piece is
        worth less than the queue behind it, and a box sends what is missing again only if it still
        holds it (logged here when it is lost)."""
        message = received.message
        try:
            with session_scope(self.session_factory, write_lock=True) as session:
                result = ingest_media(session, bytes(message.payload), topic=message.topic, settings=self.settings)
            self.summary.media[result.outcome] = self.summary.media.get(result.outcome, 0) + 1
        except Exception:
            log.exception("consumer %s: media piece on %s (%d bytes) not stored; acknowledged and dropped",
                          self.name, message.topic, len(message.payload))
            self.summary.media["lost"] = self.summary.media.get("lost", 0) + 1
        self._ack(received)

    def _process_one(self, received: _Received) -> bool:
        """Ingest one message alone; False if the database failed (the message stays unacked)."""
        result = self._store_with_retries(received.message)
        if result is None:
            self.summary.db_errors += 1
            self._bounce()  # not acked: reconnect so the broker delivers it again
            return False
        self._count(received, result, time.monotonic())
        self._ack(received)
        return True

    def _count(self, received: _Received, result: IngestResult, committed: float) -> None:
        self.summary.add(result)
        if self.metrics is not None:
            self.metrics.observe_ingest(outcome=result.outcome, reason=result.reason, received_at=received.at,
                                        observed_at=result.observed_at, committed_at=committed)

    def _ack(self, received: _Received) -> None:
        if received.connection == self._connection:
            self.client.ack(received.message.mid, received.message.qos)
        # else: an older connection's message; the broker resends it and it is seen as a duplicate

    def _drop_unacked(self) -> None:
        """Forget queued messages: after the reconnect the broker resends everything unacked."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _store_with_retries(self, message: mqtt.MQTTMessage) -> IngestResult | None:
        """Ingest alone with retries (message_store.py); None = the database failed, do not ack."""
        return self._store.store_with_retries(message.topic, bytes(message.payload))

    def _bounce(self) -> None:
        """Drop and re-open the connection from another thread: the broker resends unacked messages."""
        if self._stopping.is_set() or not self._bounce_lock.acquire(blocking=False):
            return

        def _run() -> None:
            try:
                self.client.disconnect()
                self.client.loop_stop()
                if not self._stopping.wait(self.retry_delay_s):
                    self._connect()
            finally:
                self._bounce_lock.release()

        threading.Thread(target=_run, name="central-consumer-reconnect", daemon=True).start()


def freeze_startup_objects() -> None:
    """Take every object alive now (modules, ORM mappers, schemas, the merchant index) out of the
    cyclic garbage collector's view. A full collection walks them all: with ~120,000 objects after
    start-up it stalled every thread for 55-90 ms, every few seconds under load, which was most of
    the ingest p99. Frozen objects are still freed by reference counting; only cycles among them
    stay. Call once start-up is done, from the process's main job (it is process-wide)."""
    gc.collect()
    gc.freeze()


SUMMARY_EVERY_S = 60.0


def run_consumer(settings: CentralSettings, session_factory: sessionmaker[Session], stop: threading.Event) -> None:
    """Run one consumer until `stop` is set."""
    keep_consuming(AlertConsumer(settings=settings, session_factory=session_factory), stop)


class IngestWorker(Protocol):
    """What `central serve` runs for ingest: AlertConsumer (MQTT) or consumer_jetstream.JetStreamConsumer."""

    @property
    def name(self) -> str: ...

    @property
    def alive(self) -> bool: ...

    summary: IngestSummary

    def start(self) -> None: ...

    def stop(self) -> None: ...


def keep_consuming(consumer: IngestWorker, stop: threading.Event) -> None:
    """Start `consumer` and run it until `stop` is set (the body of `central serve` for ingest).
    Raises if its ingest thread ended on its own, so the supervisor stops the process."""
    consumer.start()
    freeze_startup_objects()
    next_summary = time.monotonic() + SUMMARY_EVERY_S
    try:
        while not stop.wait(1.0):
            if not consumer.alive:
                raise RuntimeError(f"consumer {consumer.name}: its ingest thread ended")
            if time.monotonic() >= next_summary:
                log.info("consumer %s: %s", consumer.name, consumer.summary)
                next_summary += SUMMARY_EVERY_S
    finally:
        consumer.stop()


__all__ = ["AlertConsumer", "IngestWorker", "freeze_startup_objects", "keep_consuming", "run_consumer"]
