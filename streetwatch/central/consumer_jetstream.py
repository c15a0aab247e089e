"""The JetStream consumer: one central ingest worker on a NATS JetStream cluster (`broker.kind: jetstream`).

The edges keep speaking MQTT to the cluster's MQTT gateway. For every QoS 1 PUBLISH the NATS server
stores the message, replicated, in the stream `$MQTT_msgs` (subject `$MQTT.msgs.<topic as subject>`)
before it sends the PUBACK. That stream has interest retention: a message stays while a consumer
whose filter matches has not acknowledged it. Every central worker binds to one durable pull
consumer on it (`broker.jetstream.durable`, filter `$MQTT.msgs.streetwatch.v1.alerts.>`), which is
how JetStream splits work: each fetch hands a worker alerts no other worker holds.

Delivery guarantee: a worker fetches up to `batch_size` alerts, ingests them in one transaction
(`ingest.ingest_many`, the MQTT consumer's structure) and acknowledges each only after the commit.
A worker that dies leaves what it fetched unacknowledged; after `ack_wait_s` JetStream delivers it
to another worker, where a duplicate of something already committed is recognised by `alert_id`.
A message the database cannot take is retried alone (message_store.py) and then negatively
acknowledged with a delay, so it comes back; one that can never be stored is a dead letter and
acknowledged. The consumer itself is replicated like the stream, so a node loss keeps its state.

Evidence-set pieces (the media topic, media_ingest.py) come the same way from a second durable pull
consumer (`broker.jetstream.media_durable`, filter `$MQTT.msgs.streetwatch.v1.media.>`), unless
`media.subscription` is '': each piece is stored in its own transaction and acknowledged after its
commit. A piece the database or the evidence folder cannot take is negatively acknowledged with a
delay and comes back (any worker), up to MEDIA_MAX_DELIVERIES times; then it is acknowledged and
logged as lost, as a piece that raises anything else is at once (the MQTT consumer's rule: a piece
is worth less than the queue behind it). A piece that beats its alert (the two consumers run side by
side) waits staged until the alert's ingest promotes it, as with several MQTT workers.

The nats-py client runs on an asyncio loop in the worker's own thread; it fails over between the
configured servers and reconnects by itself. A batch is stored in a helper thread while the loop
fetches the next one, so the fetch's round trip to the consumer's leader overlaps the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.attribution import MerchantIndexCache
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import IngestResult, IngestSummary, Message, ingest_many
from streetwatch.central.media_ingest import ingest_media
from streetwatch.central.message_store import MessageStore
from streetwatch.central.metrics import CentralMetrics
from streetwatch.edge.alerts import TOPIC_PREFIX
from streetwatch.mqtt_common import connect_async, make_client, parse_broker_url

log = logging.getLogger(__name__)

MQTT_STREAM_PREFIX = "$MQTT.msgs."
FETCH_WAIT_S = 0.5  # an idle fetch returns after this, so a stop is noticed
MEDIA_BATCH = 16  # pieces per fetch: each is up to 256 KiB of base64 JSON, stored alone
MEDIA_MAX_DELIVERIES = 10  # a piece that fails to store this often is dropped (logged), not retried for ever


def topic_to_subject(topic: str) -> str:
    """The NATS subject the MQTT gateway uses for `topic` ('/' -> '.', '.' -> '//')."""
    return ".".join(level.replace(".", "//") for level in topic.split("/"))


def subject_to_topic(subject: str) -> str:
    """The MQTT topic of a NATS subject (the inverse of topic_to_subject)."""
    return "/".join(token.replace("//", ".") for token in subject.split("."))


def alerts_filter() -> str:
    """The consumer's filter: every alert topic, as the MQTT gateway stores it."""
    return f"{MQTT_STREAM_PREFIX}{topic_to_subject(TOPIC_PREFIX)}.alerts.>"


def media_filter() -> str:
    """The media consumer's filter: every evidence-set piece (streetwatch/v1/media/{edge_id}/{camera_id})."""
    return f"{MQTT_STREAM_PREFIX}{topic_to_subject(TOPIC_PREFIX)}.media.>"


def message_topic(subject: str) -> str:
    """The MQTT topic an alert was published on, from its `$MQTT_msgs` subject."""
    return subject_to_topic(subject.removeprefix(MQTT_STREAM_PREFIX))


class JetStreamConsumer:
    """One worker on the shared durable consumer (run several: JetStream splits the alerts).

    The same face as consumer.AlertConsumer (start, stop, alive, heartbeat, subscribed, summary), so
    `central serve` runs either."""

    def __init__(
        self,
        *,
        settings: CentralSettings,
        session_factory: sessionmaker[Session],
        batch_size: int = 100,
        metrics: CentralMetrics | None = None,
        db_retries: int = 2,
        retry_delay_s: float = 0.5,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.batch_size = batch_size
        self.metrics = metrics
        self.heartbeat: float | None = None
        self.summary = IngestSummary()
        self.index_cache = MerchantIndexCache(max_distance_m=settings.attribution.max_distance_m)
        self.subscribed = threading.Event()
        self.media_subscribed = threading.Event()  # bound to the media durable (after `subscribed`)
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._store = MessageStore(self.name, settings, session_factory, self.index_cache, self._stopping,
                                   db_retries=db_retries, retry_delay_s=retry_delay_s)

    @property
    def name(self) -> str:
        return self.settings.broker.client_id

    @property
    def alive(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def start(self) -> None:
        self._warm_up()
        self._worker = threading.Thread(target=lambda: asyncio.run(self._main()), name=f"ingest-{self.name}",
                                        daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Finish the batch in hand (committed and acknowledged), then close the connection."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(30)
        log.info("consumer %s: stopped (%s)", self.name, self.summary)

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self.subscribed.wait(timeout_s)

    def _warm_up(self) -> None:
        try:
            with session_scope(self.session_factory) as session:
                self.index_cache.get(session)
        except SQLAlchemyError as exc:
            log.warning("consumer %s: merchant index not loaded at start (%s)", self.name, exc)

    # -- the worker's loop

    async def _main(self) -> None:
        nc = await self._connect()
        if nc is None:
            return
        settings = self.settings.broker.jetstream
        try:
            js = nc.jetstream(timeout=5.0)
            sub = await self._bind(js, settings.durable, alerts_filter())
            if sub is None:
                return
            log.info("consumer %s: subscribed to %s (durable %s on %s)", self.name, alerts_filter(),
                     settings.durable, settings.stream)
            self.subscribed.set()
            loops = [self._consume(sub, self.batch_size, self._process, beat=True)]
            if self._takes_media():
                loops.append(self._consume_media(js))
            await asyncio.gather(*loops)
        finally:
            self.subscribed.clear()
            await nc.close()

    async def _consume_media(self, js: JetStreamContext) -> None:
        """The media durable, bound beside the alerts' (not before them: a cluster whose permissions
        predate it refuses the media consumer, and that must not stop the alerts)."""
        durable = self.settings.broker.jetstream.media_durable
        media = await self._bind(js, durable, media_filter())
        if media is None:
            return
        log.info("consumer %s: subscribed to %s (durable %s)", self.name, media_filter(), durable)
        self.media_subscribed.set()
        try:
            await self._consume(media, MEDIA_BATCH, self._process_media)
        finally:
            self.media_subscribed.clear()

    def _takes_media(self) -> bool:
        return bool(self.settings.media.subscription)

    async def _consume(self, sub: JetStreamContext.PullSubscription, size: int,
                       process: Callable[[list[Msg]], Awaitable[None]], *, beat: bool = False) -> None:
        """Fetch, store, acknowledge until a stop. The next batch is fetched while one is stored
        (in a thread), so a fetch's round trip to the consumer's leader costs no ingest time.
        `beat`: this loop (the alerts') is the one the heartbeat follows."""
        fetching = asyncio.ensure_future(self._fetch(sub, size))
        while True:
            batch = await fetching
            if self._stopping.is_set():
                await self._release(batch)
                return
            if beat:
                self.heartbeat = time.monotonic()
            fetching = asyncio.ensure_future(self._fetch(sub, size))
            if batch:
                await process(batch)

    async def _release(self, batch: list[Msg]) -> None:
        """Give back alerts fetched but not stored (stopping): the other workers get them at once."""
        for msg in batch:
            with contextlib.suppress(nats.errors.Error, OSError):
                await msg.nak()

    async def _connect(self) -> Nats | None:
        """Connect to any of the servers, retrying until one answers or a stop is asked."""
        broker = self.settings.broker
        while not self._stopping.is_set():
            try:
                return await nats.connect(
                    servers=broker.jetstream.servers, name=self.name, user=broker.username,
                    password=self.settings.broker_password_value(), connect_timeout=2,
                    reconnect_time_wait=0.5, max_reconnect_attempts=-1,
                    disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                )
            except (OSError, nats.errors.Error) as exc:
                log.warning("consumer %s: no NATS server answers (%s); trying again", self.name, exc)
                await asyncio.sleep(1.0)
        return None

    async def _bind(self, js: JetStreamContext, durable: str, subject: str) -> JetStreamContext.PullSubscription | None:
        """Create the durable consumer `durable` on `subject` (idempotent) and bind to it. The stream
        appears when the first MQTT client connects to the cluster; until then this worker makes one connect."""
        settings = self.settings.broker.jetstream
        config = ConsumerConfig(
            durable_name=durable, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL, ack_wait=settings.ack_wait_s, max_ack_pending=settings.max_ack_pending,
            max_deliver=-1,
        )
        while not self._stopping.is_set():
            try:
                await js.add_consumer(settings.stream, config)
                return await js.pull_subscribe_bind(durable=durable, stream=settings.stream)
            except nats.js.errors.NotFoundError:
                log.warning("consumer %s: stream %s does not exist yet; connecting once over MQTT so the "
                            "broker makes it", self.name, settings.stream)
                await asyncio.to_thread(self._touch_mqtt)
            except nats.js.errors.BadRequestError as exc:  # it exists with another configuration: use it
                log.warning("consumer %s: durable %s exists with another configuration (%s); binding to it",
                            self.name, durable, exc.description)
                return await js.pull_subscribe_bind(durable=durable, stream=settings.stream)
            except (nats.errors.Error, OSError) as exc:
                log.warning("consumer %s: cannot create the durable consumer %s yet (%r; a timeout may be the "
                            "permissions: configs/nats/permissions.yaml)", self.name, durable, exc)
            await asyncio.sleep(1.0)
        return None

    def _touch_mqtt(self) -> None:
        """One MQTT connection to broker.url: the server creates its MQTT streams on the first."""
        broker = self.settings.broker
        host, port, tls = parse_broker_url(broker.url)
        client = make_client(client_id=f"{broker.client_id}-init", protocol=broker.protocol,
                             username=broker.username, password=self.settings.broker_password_value(),
                             tls=broker.tls if broker.tls is not None else tls)
        connected = threading.Event()
        client.on_connect = lambda *_args: connected.set()
        connect_async(client, host=host, port=port, keepalive_s=broker.keepalive_s)
        client.loop_start()
        connected.wait(5)
        client.disconnect()
        client.loop_stop()

    async def _fetch(self, sub: JetStreamContext.PullSubscription, size: int) -> list[Msg]:
        try:
            return await sub.fetch(size, timeout=FETCH_WAIT_S)
        except (nats.errors.TimeoutError, TimeoutError):  # nothing arrived within FETCH_WAIT_S
            return []
        except (nats.errors.Error, OSError) as exc:  # a node or leader change: the client reconnects
            log.warning("consumer %s: fetch failed (%r); trying again", self.name, exc)
            await asyncio.sleep(0.5)
            return []

    async def _process(self, batch: list[Msg]) -> None:
        """One transaction for the batch, acks after its commit; on any error one by one."""
        received = time.monotonic()
        messages = [Message(message_topic(m.subject), m.data) for m in batch]
        try:
            results = await asyncio.to_thread(self._ingest, messages)
        except Exception as exc:  # OSError: the evidence folder
            log.warning("consumer %s: batch of %d failed (%r); retrying one by one", self.name, len(batch), exc)
            for msg, message in zip(batch, messages, strict=True):
                await self._process_one(msg, message, received)
            return
        committed = time.monotonic()
        for msg, result in zip(batch, results, strict=True):
            self._count(result, received, committed)
            await self._ack(msg)

    def _ingest(self, messages: list[Message]) -> list[IngestResult]:
        with session_scope(self.session_factory, write_lock=True) as session:
            return ingest_many(session, messages, settings=self.settings, index=self.index_cache.get(session))

    async def _process_one(self, msg: Msg, message: Message, received: float) -> None:
        assert message.topic is not None
        result = await asyncio.to_thread(self._store.store_with_retries, message.topic, message.payload)
        if result is None:  # the database failed: JetStream delivers it again (to any worker)
            self.summary.db_errors += 1
            await self._nak(msg)
            return
        self._count(result, received, time.monotonic())
        await self._ack(msg)

    async def _process_media(self, batch: list[Msg]) -> None:
        """Each piece in its own transaction, acknowledged after its commit (media_ingest.py)."""
        for msg in batch:
            if self._stopping.is_set():  # the rest go to another worker at once
                await self._release([msg])
                continue
            topic = message_topic(msg.subject)
            try:
                outcome = await asyncio.to_thread(self._store_media, topic, msg.data)
            except (SQLAlchemyError, OSError) as exc:  # transient: the database, or the evidence folder
                if msg.metadata.num_delivered < MEDIA_MAX_DELIVERIES:
                    log.warning("consumer %s: media piece on %s not stored (%r); delivered again in %.0f s",
                                self.name, topic, exc, self.settings.broker.jetstream.retry_after_s)
                    self._count_media("retried")
                    await self._nak(msg)
                    continue
                log.error("consumer %s: media piece on %s (%d bytes) failed %d times (%r); acknowledged and "
                          "dropped", self.name, topic, len(msg.data), msg.metadata.num_delivered, exc)
                outcome = "lost"
            except Exception:  # a bug must not loop on one piece
                log.exception("consumer %s: media piece on %s (%d bytes) not stored; acknowledged and dropped",
                              self.name, topic, len(msg.data))
                outcome = "lost"
            if outcome == "waiting" and msg.metadata.num_delivered < MEDIA_MAX_DELIVERIES:
                # Whole, but its alert was not there yet. The alert's ingest promotes it, unless the
                # two crossed (its transaction looked before this piece was staged, and committed
                # after this one looked: seen on PostgreSQL): delivered again, it finds the alert.
                self._count_media(outcome)
                await self._nak(msg)
                continue
            self._count_media(outcome)
            await self._ack(msg)

    def _store_media(self, topic: str, payload: bytes) -> str:
        with session_scope(self.session_factory, write_lock=True) as session:
            return ingest_media(session, payload, topic=topic, settings=self.settings).outcome

    def _count_media(self, outcome: str) -> None:
        self.summary.media[outcome] = self.summary.media.get(outcome, 0) + 1

    def _count(self, result: IngestResult, received: float, committed: float) -> None:
        self.summary.add(result)
        if self.metrics is not None:
            self.metrics.observe_ingest(outcome=result.outcome, reason=result.reason, received_at=received,
                                        observed_at=result.observed_at, committed_at=committed)

    async def _ack(self, msg: Msg) -> None:
        try:
            await msg.ack()
        except (nats.errors.Error, OSError) as exc:  # lost with the connection: redelivered, seen as a duplicate
            log.warning("consumer %s: ack not sent (%r); the alert comes back as a duplicate", self.name, exc)

    async def _nak(self, msg: Msg) -> None:
        with contextlib.suppress(nats.errors.Error, OSError):  # not sent: it comes back after the ack wait
            await msg.nak(delay=self.settings.broker.jetstream.retry_after_s)

    # -- nats-py callbacks

    async def _on_disconnected(self) -> None:
        self.subscribed.clear()  # readiness: not taking alerts until the client is back
        if not self._stopping.is_set():
            log.warning("consumer %s: disconnected from NATS; reconnecting", self.name)

    async def _on_reconnected(self) -> None:
        log.info("consumer %s: reconnected to NATS", self.name)
        self.subscribed.set()  # the pull subscription lives on the connection, which resubscribes it

    async def _on_error(self, exc: Exception) -> None:
        log.warning("consumer %s: NATS client error: %r", self.name, exc)


__all__ = ["JetStreamConsumer", "alerts_filter", "media_filter", "message_topic", "subject_to_topic",
           "topic_to_subject"]
