"""Central's side of the boxes on MQTT: their retained status, the resend commands the delivery
audit decides (delivery.py), and the boxes' answers.

One `FleetWorker` runs per central process beside its alert consumer, with an MQTT client of its
own (`{client_id}-fleet`, a clean session: the statuses are retained, and an answer that is lost
is asked for again). Every worker reads every status (a plain subscription: retained messages are
not sent on shared ones) and upserts the box's row; the answers come on a shared subscription, so
one worker records each. Messages are queued by paho's thread and handled on the worker's own,
bounded and validated; a bad one is logged and dropped, never stops the worker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TypeVar

import paho.mqtt.client as mqtt
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.config import CentralSettings
from streetwatch.central.delivery import AuditTimes, DeliveryAuditor, TickReport
from streetwatch.central.metrics import CentralMetrics
from streetwatch.edge.alerts import (
    MAX_COMMAND_BYTES,
    MAX_STATUS_BYTES,
    TOPIC_PREFIX,
    EdgeStatus,
    ResendReply,
    command_topic,
)
from streetwatch.mqtt_common import connect_async, describe_reason, make_client, parse_broker_url

log = logging.getLogger(__name__)

Wire = TypeVar("Wire", EdgeStatus, ResendReply)
MAX_QUEUED = 10_000  # statuses and answers waiting for the worker; beyond, dropped (logged)


@dataclass(frozen=True)
class _Incoming:
    topic: str
    payload: bytes


def box_of(topic: str, kind: str) -> str | None:
    """The edge id in `streetwatch/v1/{kind}/{edge_id}`, else None."""
    parts = topic.split("/")
    if len(parts) != 4 or "/".join(parts[:3]) != f"{TOPIC_PREFIX}/{kind}":
        return None
    return parts[3]


def replies_subscription(settings: CentralSettings) -> str:
    """The answers' subscription. NATS's MQTT gateway has no shared subscriptions (`$share/` is a
    plain topic there), so on JetStream every worker reads every answer; a lost range already
    recorded is skipped (delivery.DeliveryAuditor.record_reply)."""
    topic = settings.delivery.replies_subscription
    if settings.broker.kind == "jetstream" and topic.startswith("$share/"):
        return topic.split("/", 2)[2]
    return topic


class FleetWorker:
    """`run(stop)` until stop: handle what the boxes say, audit every `audit_interval_s`."""

    def __init__(
        self,
        settings: CentralSettings,
        session_factory: sessionmaker[Session],
        *,
        metrics: CentralMetrics | None = None,
    ) -> None:
        self.settings = settings
        delivery = settings.delivery
        self.auditor = DeliveryAuditor(session_factory, times=AuditTimes.of(delivery),
                                       max_scan_rows=delivery.max_scan_rows)
        self.metrics = metrics
        self.connected = threading.Event()
        self.last_tick: float | None = None  # monotonic time of the last finished audit (readiness)
        self._stopping = threading.Event()
        self._incoming: queue.Queue[_Incoming] = queue.Queue(MAX_QUEUED)
        broker = settings.broker
        self._host, self._port, tls = parse_broker_url(broker.url)
        self.client = make_client(
            client_id=f"{broker.client_id}-fleet",
            protocol=broker.protocol,
            username=broker.username,
            password=settings.broker_password_value(),
            tls=broker.tls if broker.tls is not None else tls,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- paho's thread

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object = None
    ) -> None:
        if reason.is_failure:
            log.error("fleet: broker refused %s: %s", self._host, describe_reason(reason))
            return
        client.subscribe(self.settings.delivery.status_subscription, qos=1)
        client.subscribe(replies_subscription(self.settings), qos=1)
        self.connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object = None
    ) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning("fleet: disconnected from the broker (%s); reconnecting", describe_reason(reason))

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            self._incoming.put_nowait(_Incoming(message.topic, bytes(message.payload)))
        except queue.Full:
            log.warning("fleet: %d messages waiting; one on %s dropped", MAX_QUEUED, message.topic)

    # -- the worker's thread

    def run(self, stop: threading.Event) -> None:
        connect_async(self.client, host=self._host, port=self._port, keepalive_s=self.settings.broker.keepalive_s)
        self.client.loop_start()
        interval = self.settings.delivery.audit_interval_s
        next_tick = time.monotonic() + interval
        try:
            while not stop.is_set():
                self._handle_waiting(timeout_s=max(0.0, min(next_tick - time.monotonic(), 0.5)))
                if time.monotonic() >= next_tick:
                    self._tick()
                    next_tick = time.monotonic() + interval
        finally:
            self._stopping.set()
            self.client.disconnect()
            self.client.loop_stop()

    def _handle_waiting(self, *, timeout_s: float) -> None:
        try:
            item = self._incoming.get(timeout=timeout_s)
        except queue.Empty:
            return
        while True:
            try:
                self.handle(item.topic, item.payload)
            except SQLAlchemyError as exc:
                log.warning("fleet: database error on %s (%s); the box says it again later", item.topic, exc)
            except Exception:  # a bug must not stop the fleet worker; the message is dropped
                log.exception("fleet: message on %s not handled", item.topic)
            try:
                item = self._incoming.get_nowait()
            except queue.Empty:
                return

    def handle(self, topic: str, payload: bytes) -> None:
        """One status or answer, validated; anything else is logged and dropped."""
        status_box, reply_box = box_of(topic, "status"), box_of(topic, "replies")
        if status_box is not None:
            if not payload:  # a cleared retained status
                return
            status = _parse(EdgeStatus, payload, topic=topic, limit=MAX_STATUS_BYTES)
            if status is not None and _same_box(status.edge_id, status_box, topic):
                self.auditor.record_status(status)
                if self.metrics is not None:
                    self.metrics.edge_online.labels(edge_id=status.edge_id).set(1 if status.state == "online" else 0)
        elif reply_box is not None:
            reply = _parse(ResendReply, payload, topic=topic, limit=MAX_COMMAND_BYTES)
            if reply is not None and _same_box(reply.edge_id, reply_box, topic):
                lost = self.auditor.record_reply(reply)
                if self.metrics is not None and lost:
                    count = sum(last - first + 1 for first, last in lost)
                    self.metrics.alerts_unrecoverable.labels(edge_id=reply.edge_id).inc(count)
        else:
            log.warning("fleet: unexpected topic %s; dropped", topic)

    def _tick(self) -> None:
        try:
            report = self.auditor.tick()
        except SQLAlchemyError as exc:
            log.warning("fleet: delivery audit skipped (database: %s); next time", exc)
            return
        except Exception:  # a bug must not stop the fleet worker
            log.exception("fleet: delivery audit failed")
            return
        self._send(report)
        self.last_tick = time.monotonic()
        if self.metrics is not None:
            self.metrics.observe_audit(report)

    def _send(self, report: TickReport) -> None:
        for edge_id, command in report.commands:
            log.info("fleet: asking edge %s to resend %s %d..%d (%s)", edge_id, command.outbox_id,
                     command.first_seq, command.last_seq, command.request_id)
            self.client.publish(command_topic(edge_id), command.to_json(), qos=1)


def _parse(model: type[Wire], payload: bytes, *, topic: str, limit: int) -> Wire | None:
    if len(payload) > limit:
        log.warning("fleet: %d bytes on %s (limit %d); dropped", len(payload), topic, limit)
        return None
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])
        log.warning("fleet: message on %s refused: %s", topic, problems)
        return None


def _same_box(payload_box: str, topic_box: str, topic: str) -> bool:
    if payload_box != topic_box:
        log.warning("fleet: %s carries edge_id %r; dropped", topic, payload_box)
        return False
    return True


__all__ = ["FleetWorker", "box_of"]
