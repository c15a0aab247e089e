"""Alert ingest: validate, store idempotently, keep the evidence, decide the case; MQTT or offline.

One path for every source: `ingest_payload` (bytes off the wire) -> `ingest_alert` (a parsed alert).
The MQTT consumer, `central ingest-jsonl` and the tests all go through it.

Delivery guarantee: the consumer subscribes with QoS 1 on a persistent session (fixed client id,
clean_session=False / clean_start=False) and acknowledges a message only after its transaction
committed (paho's manual ack). A message that cannot be stored because the database failed is
retried in place, and if it still fails it is left unacknowledged and the consumer reconnects, so the
broker delivers it again. A message that can never be stored (not JSON, schema, size, wrong topic,
broken evidence) goes to the dead-letter table with the reason and is acknowledged: ingest goes on.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt
from sqlalchemy import select
from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.attribution import MerchantIndex, MerchantIndexCache, load_merchant_index
from streetwatch.central.cases import (
    KnownRows,
    alert_lock_keys,
    decide_case,
    lock_for_alert,
    take_case_locks,
)
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.evidence_store import EvidenceError, decode_jpeg_b64, evidence_store
from streetwatch.central.models import DEAD_LETTER_PAYLOAD_MAX_CHARS, Alert, Case, DeadLetter, Episode, utcnow
from streetwatch.central.sightings import adopt_sightings, decide_sighting
from streetwatch.edge.alerts import Alert as WireAlert
from streetwatch.edge.alerts import AlertRejected, edge_id_from_topic, parse_alert
from streetwatch.mqtt_common import connect_async, describe_reason, make_client, parse_broker_url

log = logging.getLogger(__name__)

Outcome = Literal["created", "joined", "pending", "duplicate", "dead_letter"]


@dataclass(frozen=True)
class IngestResult:
    """What happened to one message: a new case, a joined case, a pending sighting (stored, no case
    yet), a duplicate, or a dead letter."""

    outcome: Outcome
    alert_id: str | None = None
    case_id: int | None = None
    reason: str | None = None


def scrub(value: object) -> object:
    """Replace NUL characters in every string (PostgreSQL text and JSONB cannot hold them)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {str(scrub(k)): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def _text(value: str) -> str:
    return value.replace("\x00", "\ufffd")


def dead_letter(session: Session, *, topic: str, reason: str, payload: bytes | str) -> IngestResult:
    """Store an unusable message with its reason (payload truncated to a bound, NULs replaced)."""
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    session.add(
        DeadLetter(
            topic=_text(topic[:512]),
            reason=_text(reason),
            payload=_text(text[:DEAD_LETTER_PAYLOAD_MAX_CHARS]),
        )
    )
    session.flush()
    log.warning("dead letter from %s: %s", topic, reason)
    return IngestResult("dead_letter", reason=reason)


def topic_mismatch(alert: WireAlert, topic: str | None) -> str | None:
    """Why the alert may not arrive on `topic` (None = fine; no topic = offline, nothing to check)."""
    if topic is None:
        return None
    topic_edge = edge_id_from_topic(topic)
    if topic_edge is None:
        return f"topic {topic!r} is not an alert topic (streetwatch/v1/alerts/{{edge_id}}/{{camera_id}})"
    if topic_edge != alert.edge_id:
        return f"edge_id mismatch: topic names {topic_edge!r}, payload has {alert.edge_id!r}"
    return None


def stored_payload(alert: WireAlert, *, evidence_sha256: str | None, may_hold_nul: bool = True) -> dict[str, object]:
    """The alert as JSON for the row: every field (unknown ones too) except the evidence bytes.

    `may_hold_nul=False` skips the NUL scrub (the caller saw no escaped NUL in the raw payload).
    """
    data = alert.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"evidence"})
    if alert.evidence is not None:
        data["evidence"] = {
            "width": alert.evidence.width,
            "height": alert.evidence.height,
            "sha256": evidence_sha256,
        }
    if not may_hold_nul:
        return data
    scrubbed = scrub(data)
    assert isinstance(scrubbed, dict)
    return scrubbed


def may_hold_nul(payload: bytes | str | None) -> bool:
    """Whether a parsed alert may contain a NUL: JSON can only carry one escaped (a raw control
    character is invalid JSON), so a payload without `\\u0000` has none. None = unknown: maybe."""
    if isinstance(payload, bytes):
        # Most payloads hold no backslash at all (base64 evidence has none): one memchr (0.5 us on
        # a 27 KB alert) instead of a substring search (15 us).
        return b"\\" in payload and b"\\u0000" in payload
    return payload is None or "\\u0000" in payload


def _alert_values(
    alert: WireAlert, *, case_id: int | None, evidence_sha256: str | None, scrub_payload: bool = True
) -> dict[str, object]:
    """The alert's row as column values (for a bulk insert, or an ORM row)."""
    loc = alert.location
    return {
        "alert_id": alert.alert_id,
        "episode_id": alert.episode_id,
        "case_id": case_id,
        "edge_id": alert.edge_id,
        "camera_id": alert.camera_id,
        "source_kind": alert.source_kind,
        "violation": alert.violation,
        "state": alert.state,
        "started_at": alert.started_at,
        "observed_at": alert.observed_at,
        "lat": loc.lat if loc else None,
        "lon": loc.lon if loc else None,
        "accuracy_m": loc.accuracy_m if loc else None,
        "confidence": alert.confidence,
        "zone_id": alert.zone_id,
        "track_id": _text(str(alert.track_id))[:64],
        "evidence_sha256": evidence_sha256,
        "payload": stored_payload(alert, evidence_sha256=evidence_sha256, may_hold_nul=scrub_payload),
        "model_name": _text(alert.model.name),
        "model_sha256": alert.model.sha256,
        "received_at": utcnow(),
    }


_ALERTS = Alert.metadata.tables[Alert.__tablename__]


@dataclass(frozen=True)
class _Inserted:
    """An alert row this batch inserts in bulk (its case cannot change within the batch)."""

    case_id: int


@dataclass
class _Known(KnownRows):
    """What the transaction holds about a batch: its stored alerts (duplicates), episodes and
    cases, read once per batch after its case locks, and what the batch added since."""

    alerts: dict[str, Alert | _Inserted] = field(default_factory=dict)


def _prefetch(session: Session, alerts: Sequence[WireAlert]) -> _Known:
    """One query each for the alerts already stored (duplicates), their episodes and those cases."""
    known = _Known(episodes_exact=True)
    alert_ids = {alert.alert_id for alert in alerts}
    if alert_ids:
        rows = session.scalars(select(Alert).where(Alert.alert_id.in_(alert_ids)))
        known.alerts = {row.alert_id: row for row in rows}
    episode_ids = {alert.episode_id for alert in alerts}
    if episode_ids:
        known.episodes = {e.id: e for e in session.scalars(select(Episode).where(Episode.id.in_(episode_ids)))}
    case_ids = {episode.case_id for episode in known.episodes.values()}
    if case_ids:
        known.cases = {case.id: case for case in session.scalars(select(Case).where(Case.id.in_(case_ids)))}
    return known


def _prefetch_open_episodes(session: Session, known: _Known) -> None:
    """The open episodes of the batch's stored cases, one query: an `ended` alert then needs none
    to tell whether its case stays active (a round trip each on PostgreSQL)."""
    known.open_episodes = {case_id: [] for case_id in known.cases}
    if known.cases:
        query = select(Episode).where(Episode.case_id.in_(list(known.cases)), Episode.ended_at.is_(None))
        for episode in session.scalars(query):
            known.open_episodes[episode.case_id].append(episode)


@dataclass
class _Batch:
    """One transaction's ingest context: settings, the attribution index (loaded when first needed),
    what is known about the batch's rows (prefetched with the first alert when not up front) and
    the alert rows waiting for their bulk insert."""

    settings: CentralSettings
    index: MerchantIndex | None = None
    known: _Known | None = None
    locked: bool = False  # every case lock of the batch is taken (ingest_many takes them up front)
    new_alerts: list[dict[str, object]] = field(default_factory=list)

    def index_for(self, session: Session) -> MerchantIndex:
        if self.index is None:
            self.index = load_merchant_index(session, max_distance_m=self.settings.attribution.max_distance_m)
        return self.index

    def known_for(self, session: Session, alert: WireAlert) -> _Known:
        if self.known is None:
            self.known = _prefetch(session, [alert])
        return self.known

    def store_alerts(self, session: Session) -> None:
        """Flush the session (cases first: the rows point at them), then insert the waiting alert
        rows with one statement: the ORM's per-object bookkeeping was a large share of ingest."""
        session.flush()
        if self.new_alerts:
            session.execute(_ALERTS.insert(), self.new_alerts)  # Core: the ORM's bulk path adds nothing here
            self.new_alerts = []


def ingest_alert(
    session: Session,
    alert: WireAlert,
    *,
    topic: str | None,
    settings: CentralSettings,
    index: MerchantIndex | None = None,
    origin: str | None = None,
) -> IngestResult:
    """Store one parsed alert and fold it into its case, inside the caller's transaction.

    `topic` is the MQTT topic it came on (None offline); `origin` labels dead letters (default: the
    topic; e.g. `file:alerts.jsonl:12` offline). `index` is the attribution index (built from
    the database when None: fine for one-off calls, slow per alert at scale). The caller commits;
    open the transaction with `session_scope(factory, write_lock=True)`.
    """
    batch = _Batch(settings=settings, index=index)
    result = _ingest_one(session, alert, topic=topic, origin=origin, batch=batch)
    batch.store_alerts(session)
    return result


def _ingest_one(
    session: Session,
    alert: WireAlert,
    *,
    topic: str | None,
    origin: str | None,
    batch: _Batch,
    payload: bytes | str | None = None,
) -> IngestResult:
    """`ingest_alert` within a batch: rows are written when a later step needs them, not per alert.
    `payload` is the raw message if at hand (it tells whether the row needs a NUL scrub)."""
    settings = batch.settings
    label = origin or topic or ""
    mismatch = topic_mismatch(alert, topic)
    if mismatch is not None:
        return dead_letter(session, topic=label, reason=mismatch, payload=alert.to_json())
    try:
        jpeg = decode_jpeg_b64(alert.evidence.jpeg_b64) if alert.evidence is not None else None
    except EvidenceError as exc:
        return dead_letter(session, topic=label, reason=str(exc), payload=alert.to_json())
    if not batch.locked:
        lock_for_alert(session, alert, settings=settings.cases)
    known = batch.known_for(session, alert)  # read only after the locks: no other worker changes it now
    existing = known.alerts.get(alert.alert_id)
    if existing is not None:
        log.info("alert %s: duplicate delivery, case %s unchanged", alert.alert_id, existing.case_id)
        return IngestResult("duplicate", alert_id=alert.alert_id, case_id=existing.case_id)
    sha256 = evidence_store(settings.evidence_dir).put(jpeg) if jpeg is not None else None
    index = batch.index_for(session)
    if alert.state == "sighting":
        return _ingest_sighting(session, alert, batch=batch, index=index, evidence_sha256=sha256)
    decision = decide_case(session, alert, settings=settings.cases, index=index, evidence_sha256=sha256, known=known)
    case_id = decision.case.id
    batch.new_alerts.append(
        _alert_values(alert, case_id=case_id, evidence_sha256=sha256, scrub_payload=may_hold_nul(payload))
    )
    known.alerts[alert.alert_id] = _Inserted(case_id)
    log.info(
        "alert %s (camera %s, track %s): %s case %d",
        alert.alert_id,
        alert.camera_id,
        alert.track_id,
        "opened" if decision.created else "joined",
        case_id,
    )
    return IngestResult("created" if decision.created else "joined", alert_id=alert.alert_id, case_id=case_id)


def _ingest_sighting(
    session: Session, alert: WireAlert, *, batch: _Batch, index: MerchantIndex, evidence_sha256: str | None
) -> IngestResult:
    """A moving camera's sighting: joins a case, confirms a new one with earlier passes, or waits."""
    assert batch.known is not None
    settings = batch.settings
    batch.known.attribute_pending(index)  # the sighting rules read cases as they stand
    batch.store_alerts(session)  # the sighting rules look rows up by key: the batch's so far must be stored
    batch.known.episodes_exact = False
    batch.known.spare_case_ids.clear()  # a case the sighting rules open takes the next id itself (SQLite)
    decision = decide_sighting(session, alert, settings=settings.cases, index=index, evidence_sha256=evidence_sha256)
    case_id = decision.case.id if decision.case is not None else None
    row = Alert(**_alert_values(alert, case_id=case_id, evidence_sha256=evidence_sha256))
    session.add(row)
    batch.known.alerts[alert.alert_id] = row
    session.flush()
    if decision.case is None:
        return IngestResult("pending", alert_id=alert.alert_id)
    if decision.confirmed:
        adopt_sightings(session, decision.case, decision.confirmed, settings=settings.cases, index=index)
    log.info("alert %s (camera %s, track %s): sighting %s case %d", alert.alert_id, alert.camera_id,
             alert.track_id, "confirmed" if decision.created else "joined", decision.case.id)
    return IngestResult("created" if decision.created else "joined", alert_id=alert.alert_id, case_id=case_id)


def ingest_payload(
    session: Session,
    payload: bytes | str,
    *,
    topic: str | None,
    settings: CentralSettings,
    index: MerchantIndex | None = None,
    origin: str | None = None,
) -> IngestResult:
    """Validate raw bytes off the wire and ingest them; unusable payloads become dead letters."""
    try:
        alert = parse_alert(payload)
    except AlertRejected as exc:
        return dead_letter(session, topic=origin or topic or "", reason=exc.reason, payload=payload)
    return ingest_alert(session, alert, topic=topic, settings=settings, index=index, origin=origin)


@dataclass(frozen=True)
class Message:
    """One payload to ingest: its MQTT topic (None offline), bytes, and a dead-letter label."""

    topic: str | None
    payload: bytes
    origin: str | None = None


def ingest_many(
    session: Session,
    messages: Sequence[Message],
    *,
    settings: CentralSettings,
    index: MerchantIndex | None = None,
) -> list[IngestResult]:
    """Ingest several messages in the caller's one transaction (one commit for the batch).

    Every case lock the batch needs is taken first, in one sorted order, so two workers' batches
    cannot deadlock. Then the stored duplicates, episodes and their cases of the whole batch are
    read with one query each, and the messages go through the same steps as `ingest_alert`, with
    the same results as alone; rows are flushed when a query needs them and once at the end.
    """
    parsed: list[WireAlert | AlertRejected] = []
    for message in messages:
        try:
            parsed.append(parse_alert(message.payload))
        except AlertRejected as exc:
            parsed.append(exc)
    keys = [
        key
        for alert in parsed
        if isinstance(alert, WireAlert)
        for key in alert_lock_keys(alert, settings=settings.cases)
    ]
    take_case_locks(session, sorted(set(keys)))
    batch = _Batch(settings=settings, index=index, locked=True)
    batch.index_for(session)
    alerts = [alert for alert in parsed if isinstance(alert, WireAlert)]
    batch.known = _prefetch(session, alerts)
    if any(alert.state == "ended" for alert in alerts):
        _prefetch_open_episodes(session, batch.known)
    # At most one new case per episode not stored yet: their ids come with one statement.
    batch.known.case_id_batch = len({a.episode_id for a in alerts} - batch.known.episodes.keys())
    batch.known.unattributed = {}  # each case is attributed once, at its place after the batch
    results = []
    for message, alert in zip(messages, parsed, strict=True):
        label = message.origin or message.topic or ""
        if isinstance(alert, AlertRejected):
            results.append(dead_letter(session, topic=label, reason=alert.reason, payload=message.payload))
        else:
            results.append(
                _ingest_one(
                    session, alert, topic=message.topic, origin=message.origin, batch=batch, payload=message.payload
                )
            )
    batch.known.attribute_pending(batch.index_for(session))
    batch.store_alerts(session)
    return results


# ---------------------------------------------------------------- offline: JSON lines


@dataclass
class IngestSummary:
    """Counts per outcome of a batch (a JSON-lines file or a consumer's lifetime)."""

    created: int = 0
    joined: int = 0
    pending: int = 0
    duplicate: int = 0
    dead_letter: int = 0
    db_errors: int = 0
    reasons: list[str] = field(default_factory=list)

    def add(self, result: IngestResult) -> None:
        setattr(self, result.outcome, getattr(self, result.outcome) + 1)
        if result.reason and len(self.reasons) < 20:
            self.reasons.append(result.reason)

    @property
    def total(self) -> int:
        return self.created + self.joined + self.pending + self.duplicate + self.dead_letter


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.rstrip(b"\r\n")


def ingest_jsonl(
    path: Path,
    *,
    session_factory: sessionmaker[Session],
    settings: CentralSettings,
    batch_size: int = 200,
) -> IngestSummary:
    """Ingest a file of one alert JSON per line, `batch_size` lines per transaction."""
    summary = IngestSummary()
    cache = MerchantIndexCache(max_distance_m=settings.attribution.max_distance_m)
    batch: list[Message] = []
    for number, line in _lines(path):
        batch.append(Message(topic=None, payload=line, origin=f"file:{path}:{number}"))
        if len(batch) >= batch_size:
            _ingest_file_batch(batch, session_factory=session_factory, settings=settings, cache=cache, summary=summary)
            batch = []
    if batch:
        _ingest_file_batch(batch, session_factory=session_factory, settings=settings, cache=cache, summary=summary)
    return summary


def _ingest_file_batch(
    batch: Sequence[Message],
    *,
    session_factory: sessionmaker[Session],
    settings: CentralSettings,
    cache: MerchantIndexCache,
    summary: IngestSummary,
) -> None:
    with session_scope(session_factory, write_lock=True) as session:
        results = ingest_many(session, batch, settings=settings, index=cache.get(session))
    for result in results:
        summary.add(result)


# ---------------------------------------------------------------- MQTT consumer


@dataclass(frozen=True)
class _Received:
    """A message taken off the wire, with the connection it came on (acks are per connection)."""

    message: mqtt.MQTTMessage
    connection: int


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
    ) -> None:
        self.settings = settings
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
        client.subscribe(self.settings.broker.subscription, qos=1)

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
        self._queue.put(_Received(message, self._connection))

    # -- the ingest thread

    def _run(self) -> None:
        while not self._stopping.is_set() or not self._queue.empty():
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
            self._process(batch)

    def _process(self, batch: list[_Received]) -> None:
        """Ingest the batch in one transaction; on a database or storage error fall back to one by one."""
        try:
            with session_scope(self.session_factory, write_lock=True) as session:
                messages = [Message(r.message.topic, bytes(r.message.payload)) for r in batch]
                results = ingest_many(session, messages, settings=self.settings, index=self.index_cache.get(session))
        except (SQLAlchemyError, OSError) as exc:  # OSError: the evidence folder (disk full, mount gone)
            log.warning("consumer %s: batch of %d failed (%s); retrying one by one", self.name, len(batch), exc)
            for received in batch:
                if not self._process_one(received):
                    self._drop_unacked()
                    return
            return
        for received, result in zip(batch, results, strict=True):
            self.summary.add(result)
            self._ack(received)

    def _process_one(self, received: _Received) -> bool:
        """Ingest one message alone; False if the database failed (the message stays unacked)."""
        result = self._store_with_retries(received.message)
        if result is None:
            self.summary.db_errors += 1
            self._bounce()  # not acked: reconnect so the broker delivers it again
            return False
        self.summary.add(result)
        self._ack(received)
        return True

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
        """Ingest in one transaction; on database errors retry, then give up (None = do not ack)."""
        for attempt in range(self.db_retries + 1):
            try:
                return self._store(message)
            except DataError as exc:  # the database refuses this content: retrying cannot help
                log.warning("consumer %s: database refused the message on %s: %s", self.name, message.topic, exc.orig)
                return self._dead_letter_message(message, f"database refused the message: {exc.orig}")
            except (SQLAlchemyError, OSError) as exc:  # transient: the database, or the evidence folder
                log.warning(
                    "consumer %s: database or storage error on %s (attempt %d): %s",
                    self.name, message.topic, attempt + 1, exc,
                )
                if self._stopping.wait(self.retry_delay_s * (2**attempt)):
                    return None
            except Exception as exc:  # a bug must not stop ingest nor loop forever on one message
                log.exception("consumer %s: unexpected error on %s", self.name, message.topic)
                return self._dead_letter_message(message, f"internal error: {exc!r}")
        return None

    def _store(self, message: mqtt.MQTTMessage) -> IngestResult:
        with session_scope(self.session_factory, write_lock=True) as session:
            return ingest_payload(
                session,
                bytes(message.payload),
                topic=message.topic,
                settings=self.settings,
                index=self.index_cache.get(session),
            )

    def _dead_letter_message(self, message: mqtt.MQTTMessage, reason: str) -> IngestResult | None:
        try:
            with session_scope(self.session_factory, write_lock=True) as session:
                return dead_letter(session, topic=message.topic, reason=reason, payload=bytes(message.payload))
        except SQLAlchemyError:
            return None

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


def run_consumer(settings: CentralSettings, session_factory: sessionmaker[Session], stop: threading.Event) -> None:
    """Run one consumer until `stop` is set (the body of `central serve` for ingest)."""
    consumer = AlertConsumer(settings=settings, session_factory=session_factory)
    consumer.start()
    freeze_startup_objects()
    try:
        while not stop.wait(60):
            log.info("consumer %s: %s", settings.broker.client_id, consumer.summary)
    finally:
        consumer.stop()


__all__ = [
    "AlertConsumer",
    "Message",
    "ingest_many",
    "IngestResult",
    "IngestSummary",
    "dead_letter",
    "freeze_startup_objects",
    "ingest_alert",
    "ingest_jsonl",
    "ingest_payload",
    "run_consumer",
]
