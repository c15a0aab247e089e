"""A central ingest worker on a RabbitMQ cluster's quorum queue, over AMQP 0-9-1 (the benchmark's).

Not a product feature (central has no `broker.kind: amqp`): it exists so the broker comparison of
bench_central.py measures RabbitMQ the way RabbitMQ is made for, beside the JetStream consumer.

The edges publish MQTT QoS 1 to the RabbitMQ MQTT plugin, which routes every PUBLISH through the
`amq.topic` exchange with the topic as routing key ('/' and '.' swapped: `streetwatch/v1/alerts/b/x`
is `streetwatch.v1.alerts.b.x`) and answers PUBACK once the queues it reached have confirmed it. The
workers share one durable quorum queue (`x-queue-type: quorum`, a Raft group over the three nodes,
so a confirmed alert survives the loss of one) bound to `streetwatch.v1.alerts.#`; the broker pushes
to each worker up to `prefetch` unacknowledged alerts. A worker ingests what has arrived (up to
`batch_size`) in one transaction with `ingest_many`, as the JetStream consumer does, and acknowledges
after the commit (one `multiple` ack). A worker that dies or loses its connection has its
unacknowledged alerts requeued to the others, where a duplicate of one committed is recognised by
`alert_id`. The same face as consumer.AlertConsumer (start, stop, alive, subscribed, summary).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.adapters.utils import io_services_utils
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.attribution import MerchantIndexCache
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import IngestResult, IngestSummary, Message, ingest_many
from streetwatch.central.message_store import MessageStore
from streetwatch.edge.alerts import TOPIC_PREFIX

log = logging.getLogger(__name__)

QUEUE = "central"
EXCHANGE = "amq.topic"  # where the MQTT plugin routes every publish
IDLE_S = 0.5  # an idle consumer wakes up this often, so a stop is noticed
# pika reads its socket 4 KiB at a time, each read a turn of its I/O loop: six turns per ~20 KB alert,
# which doubled the worker's CPU per alert in the first run. One read takes what the socket holds.
io_services_utils._AsyncTransportBase._MAX_RECV_BYTES = 256 * 1024


def topic_to_routing_key(topic: str) -> str:
    """The routing key the MQTT plugin gives a topic ('/' and '.' swapped, '+' -> '*')."""
    return topic.translate(str.maketrans({"/": ".", ".": "/", "+": "*"}))


def routing_key_to_topic(key: str) -> str:
    return key.translate(str.maketrans({".": "/", "/": "."}))


def alerts_binding() -> str:
    return topic_to_routing_key(f"{TOPIC_PREFIX}/alerts/#")


class AmqpQuorumConsumer:
    """One worker on the shared quorum queue (run several: the broker splits the alerts)."""

    def __init__(self, *, settings: CentralSettings, session_factory: sessionmaker[Session], urls: list[str],
                 batch_size: int = 100, prefetch: int = 200) -> None:
        self.settings = settings
        self.session_factory = session_factory
        shift = zlib.crc32(settings.broker.client_id.encode()) % len(urls)  # spread workers over the nodes
        self.urls = urls[shift:] + urls[:shift]
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.summary = IngestSummary()
        self.heartbeat: float | None = None
        self.index_cache = MerchantIndexCache(max_distance_m=settings.attribution.max_distance_m)
        self.subscribed = threading.Event()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._store = MessageStore(settings.broker.client_id, settings, session_factory, self.index_cache,
                                   self._stopping)

    @property
    def alive(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def start(self) -> None:
        try:
            with session_scope(self.session_factory) as session:
                self.index_cache.get(session)
        except SQLAlchemyError as exc:
            log.warning("amqp consumer: merchant index not loaded at start (%s)", exc)
        self._worker = threading.Thread(target=self._run, name="ingest-amqp", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Finish the batch in hand (committed and acknowledged), then close: the rest is requeued."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(30)

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self.subscribed.wait(timeout_s)

    def _run(self) -> None:
        """Connect to the first node that answers, consume until a stop; on a lost connection or
        node, connect again (to another node)."""
        while not self._stopping.is_set():
            try:
                connection = pika.BlockingConnection([self._parameters(url) for url in self.urls])
            except pika.exceptions.AMQPError as exc:
                log.warning("amqp consumer: no node answers (%r); trying again", exc)
                time.sleep(0.5)
                continue
            try:
                self._consume(connection.channel())
            except pika.exceptions.AMQPError as exc:
                log.warning("amqp consumer: connection lost (%r); reconnecting", exc)
            finally:
                self.subscribed.clear()
                if connection.is_open:
                    with contextlib.suppress(pika.exceptions.AMQPError):
                        connection.close()

    def _parameters(self, url: str) -> pika.URLParameters:
        parameters = pika.URLParameters(url)
        if self.settings.broker.username:
            parameters.credentials = pika.PlainCredentials(self.settings.broker.username,
                                                           self.settings.broker_password_value() or "")
        parameters.connection_attempts = 1
        parameters.socket_timeout = 2
        parameters.heartbeat = 10  # a dead node is noticed within ~20 s even without a TCP reset
        return parameters

    def _consume(self, channel: BlockingChannel) -> None:
        channel.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(QUEUE, EXCHANGE, routing_key=alerts_binding())
        channel.basic_qos(prefetch_count=self.prefetch)
        self.subscribed.set()
        batch: list[tuple[int, Message]] = []
        for method, _properties, body in channel.consume(QUEUE, inactivity_timeout=IDLE_S):
            self.heartbeat = time.monotonic()
            if self._stopping.is_set():
                break
            if method is not None:
                batch.append((method.delivery_tag, Message(routing_key_to_topic(method.routing_key), body)))
            # Store what has arrived: a full batch, or all that was waiting (never wait for more).
            if batch and len(batch) < self.batch_size and not channel.get_waiting_message_count():
                channel.connection.process_data_events(time_limit=0)  # what the socket holds counts too
            if batch and (len(batch) >= self.batch_size or not channel.get_waiting_message_count()):
                self._process(channel, batch)
                batch = []

    def _process(self, channel: BlockingChannel, batch: list[tuple[int, Message]]) -> None:
        """One transaction for the batch, one ack after its commit; on any error one by one."""
        try:
            results = self._ingest([message for _tag, message in batch])
        except Exception as exc:  # OSError: the evidence folder
            log.warning("amqp consumer: batch of %d failed (%r); retrying one by one", len(batch), exc)
            for tag, message in batch:
                self._process_one(channel, tag, message)
            return
        for result in results:
            self.summary.add(result)
        channel.basic_ack(delivery_tag=batch[-1][0], multiple=True)

    def _ingest(self, messages: list[Message]) -> list[IngestResult]:
        with session_scope(self.session_factory, write_lock=True) as session:
            return ingest_many(session, messages, settings=self.settings, index=self.index_cache.get(session))

    def _process_one(self, channel: BlockingChannel, tag: int, message: Message) -> None:
        assert message.topic is not None
        result = self._store.store_with_retries(message.topic, message.payload)
        if result is None:  # the database failed: back in the queue, for any worker
            self.summary.db_errors += 1
            channel.basic_nack(delivery_tag=tag, requeue=True)
            return
        self.summary.add(result)
        channel.basic_ack(delivery_tag=tag)


__all__ = ["AmqpQuorumConsumer", "alerts_binding", "routing_key_to_topic", "topic_to_routing_key"]
