"""Drains the durable outbox to the MQTT broker, QoS 1, and keeps the edge's retained status.

Delivery promise: an alert leaves the outbox only when the broker has acknowledged it (PUBACK,
seen in paho's `on_publish`). So nothing is lost to a broker outage or an edge restart:
- a message in flight when the connection drops stays in paho's memory and is resent (DUP) after
  paho reconnects, and it stays in the outbox;
- after an edge restart, everything still in the outbox is published again.
Either way an alert may arrive twice; central is idempotent by alert_id.

Status: `streetwatch/v1/status/{edge_id}`, retained, QoS 1: "online" after each connect, a last
will "offline" (set before connecting) if the connection dies, and "offline" on `stop()`.
MQTT fixes a will's payload when the connection is opened, so the will's `at` is the time that
connection was opened (`reason` says which kind of offline it is); readers use receive time.

The status also says what the box runs (`version`, `model` {name, sha256}, `cameras` [{id, kind,
view}]: ids only, never a camera URL, which may hold a password; `view`, for a calibrated camera,
the ground its calibration spans as a (lon, lat) ring, for the city map) for central's fleet view, and carries
the outbox's numbering (`outbox_id`, `last_seq`); it is published again every STATUS_INTERVAL_S,
so central knows the newest number even when the broker lost the last alerts themselves (a gap
at the tail has nothing after it to show it).

Commands: the box subscribes to `streetwatch/v1/commands/{edge_id}` (only central may publish
there). A `resend` queues the named delivered alerts again (Outbox.resend) and is answered on
`streetwatch/v1/replies/{edge_id}` with what could not be found. A command is validated and
handled on the drain thread; a bad one is logged and dropped, never stops the publisher.

Several nodes (`broker.urls`, a clustered broker): paho connects to one at a time; when the
connection to the current node fails or drops, the next reconnect goes to the next node
(mqtt_common.BrokerNodes), with paho's back-off between attempts. What was in flight is resent
there, and the outbox still holds it.

Only MQTT 3.1.1 features are used (the embedded broker speaks nothing else); on MQTT 5 a PUBACK
with a failure reason code leaves the alert in the outbox to be retried.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import paho.mqtt.client as mqtt
import shapely
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from streetwatch.edge.alerts import (
    MAX_COMMAND_BYTES,
    STATUS_SCHEMA,
    ModelRef,
    ResendCommand,
    ResendReply,
    command_topic,
    reply_topic,
    status_topic,
)
from streetwatch.edge.config import EdgeConfig
from streetwatch.edge.metrics import EdgeMetrics
from streetwatch.edge.outbox import MEDIA_KEY, Outbox, OutboxError, OutboxItem
from streetwatch.mqtt_common import BrokerNodes, connect_async, describe_reason, make_client
from streetwatch.version import package_version

log = logging.getLogger(__name__)

DEFAULT_MAX_INFLIGHT = 100
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
POLL_S = 1.0  # the drain loop also looks at the outbox this often without a notify()
STATUS_INTERVAL_S = 60.0  # the retained status (with the newest delivery number) is refreshed this often
MAX_QUEUED_COMMANDS = 64
RESUBSCRIBE_S = 2.0  # a refused command subscription is asked for again after this

StatusState = Literal["online", "offline"]


@dataclass(frozen=True)
class Numbering:
    """Where the box's delivery numbers stand: which outbox, and the newest number given."""

    outbox_id: str
    last_seq: int


@dataclass(frozen=True)
class BoxIdentity:
    """What the box runs, as its status tells central: version, model, cameras (id and kind)."""

    version: str
    model: ModelRef | None
    cameras: tuple[tuple[str, str], ...]
    # a calibrated camera's ground view: its calibration points' (lon, lat), hull order (the map draws it)
    views: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = ()

    @classmethod
    def of(cls, config: EdgeConfig, model: ModelRef | None) -> BoxIdentity:
        views = tuple(
            (camera.id, view_of(camera.calibration.points)) for camera in config.cameras if camera.calibration
        )
        return cls(package_version(), model, tuple((camera.id, camera.kind) for camera in config.cameras), views)

    def fields(self) -> dict[str, object]:
        model = {"name": self.model.name, "sha256": self.model.sha256} if self.model is not None else None
        views = dict(self.views)
        cameras = []
        for camera_id, kind in self.cameras:
            entry: dict[str, object] = {"id": camera_id, "kind": kind}
            if camera_id in views:
                entry["view"] = [list(p) for p in views[camera_id]]
            cameras.append(entry)
        return {"version": self.version, "model": model, "cameras": cameras}


def view_of(points: Sequence[tuple[tuple[float, float], tuple[float, float]]]) -> tuple[tuple[float, float], ...]:
    """The ground the calibration points span, as a (lon, lat) ring in hull order (6 decimals, ~10 cm)."""
    hull = shapely.MultiPoint([(lon, lat) for _, (lat, lon) in points]).convex_hull
    ring = hull.exterior.coords if isinstance(hull, shapely.Polygon) else hull.coords
    return tuple((round(x, 6), round(y, 6)) for x, y in ring)


def status_payload(
    edge_id: str,
    state: StatusState,
    *,
    reason: str | None = None,
    numbering: Numbering | None = None,
    identity: BoxIdentity | None = None,
) -> bytes:
    """The retained `streetwatch.status/1` message for `status_topic(edge_id)`."""
    body: dict[str, object] = {"schema": STATUS_SCHEMA, "edge_id": edge_id, "state": state,
                               "at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
    if reason is not None:
        body["reason"] = reason
    if identity is not None:
        body.update(identity.fields())
    if numbering is not None:
        body["outbox_id"], body["last_seq"] = numbering.outbox_id, numbering.last_seq
    return json.dumps(body).encode()


@dataclass(frozen=True)
class PublisherStats:
    """Counters since start. `published` counts PUBLISH packets handed to paho (first sends);
    `acked` counts PUBACKs that removed an alert from the outbox."""

    published: int
    acked: int
    rejected: int  # MQTT 5 PUBACKs with a failure reason code (alert kept for retry)
    in_flight: int
    outbox_depth: int
    connected: bool
    connect_refusals: int


@dataclass(frozen=True)
class _InFlight:
    alert_id: str
    camera_id: str


class Publisher:
    """One per edge box: `start()`, `notify()` after each `outbox.put()`, `stop()` at shutdown."""

    def __init__(
        self,
        config: EdgeConfig,
        outbox: Outbox,
        *,
        metrics: EdgeMetrics | None = None,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        status_interval_s: float = STATUS_INTERVAL_S,
        model: ModelRef | None = None,
    ) -> None:
        """`model`: the detector the box runs, named in its status (None: not known to this caller)."""
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, got {max_inflight}")
        self.edge_id = config.edge_id
        self.broker = config.broker
        self.outbox = outbox
        self.metrics = metrics
        self.max_inflight = max_inflight
        self.status_interval_s = status_interval_s
        self.identity = BoxIdentity.of(config, model)
        self.nodes = BrokerNodes(config.broker.endpoints())
        self._tls = config.broker.tls if config.broker.tls is not None else self.nodes.tls
        self._password = config.broker.password()  # fails now, naming the env var, if it is unset
        self._lock = threading.Lock()
        self._inflight: dict[int, _InFlight | None] = {}  # mid -> alert (None: a status message)
        self._inflight_ids: set[str] = set()
        self._early: dict[int, ReasonCode] = {}  # PUBACKs that beat `_register` (see there)
        self._counts = {"published": 0, "acked": 0, "rejected": 0, "refusals": 0}
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._failing = False
        self._commands: queue.Queue[bytes] = queue.Queue(MAX_QUEUED_COMMANDS)
        self._status_due = 0.0  # monotonic time of the next status refresh
        self._client: mqtt.Client | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying with back-off) and start draining the outbox."""
        if self._client is not None:
            raise RuntimeError(f"edge {self.edge_id}: publisher already started")
        client = make_client(client_id=f"sw-edge-{self.edge_id}", protocol=self.broker.protocol,
                             username=self.broker.username, password=self._password, tls=self._tls)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._set_will(client)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.max_inflight_messages_set(self.max_inflight + 2)  # + room for status messages
        connect_async(client, host=self.host, port=self.port, keepalive_s=self.broker.keepalive_s)
        self._client = client
        others = len(self.nodes.nodes) - 1
        log.info("edge %s: connecting to %s:%d (MQTT %s)%s", self.edge_id, self.host, self.port,
                 self.broker.protocol, f", {others} other node(s) to move to" if others else "")
        client.loop_start()
        self._thread = threading.Thread(target=self._drain_loop, name=f"publisher-{self.edge_id}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish retained "offline", disconnect cleanly (so the will is not sent), stop threads.

        Alerts not yet acknowledged stay in the outbox for the next start.
        """
        client = self._client
        if client is None or self._stopping.is_set():
            return
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._connected.is_set():
            info = client.publish(status_topic(self.edge_id), self._status("offline", reason="stopped"),
                                  qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:
                log.warning("edge %s: offline status not delivered at stop: %s", self.edge_id, exc)
        client.disconnect()
        client.loop_stop()
        self._set_connected(False)
        log.info("edge %s: publisher stopped, %d alert(s) left in the outbox", self.edge_id,
                 self._safe_depth())

    @property
    def host(self) -> str:
        """The broker node this publisher is connected or connecting to."""
        return self.nodes.current[0]

    @property
    def port(self) -> int:
        return self.nodes.current[1]

    def notify(self) -> None:
        """Wake the drain loop now (call after `outbox.put`); cheap and safe from any thread."""
        self._wake.set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until the broker accepted the connection (True) or the timeout passed (False)."""
        return self._connected.wait(timeout_s)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stats(self) -> PublisherStats:
        with self._lock:
            counts = dict(self._counts)
            in_flight = len(self._inflight_ids)
        return PublisherStats(published=counts["published"], acked=counts["acked"],
                              rejected=counts["rejected"], in_flight=in_flight,
                              outbox_depth=self._safe_depth(), connected=self.connected,
                              connect_refusals=counts["refusals"])

    # --- paho callbacks (paho's network thread) ------------------------------------------------

    def _set_will(self, client: mqtt.Client) -> None:
        client.will_set(status_topic(self.edge_id), self._status("offline", reason="connection lost"),
                        qos=1, retain=True)

    def _on_pre_connect(self, client: mqtt.Client, userdata: object) -> None:
        if self.nodes.before_connect(client):
            log.info("edge %s: trying the next broker node, %s:%d", self.edge_id, self.host, self.port)
        self._set_will(client)  # refresh the will's `at` for each (re)connect

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            # Not connected: paho drops the link and retries with back-off. (Frigate's bug was
            # to mark itself connected here regardless of the code.)
            with self._lock:
                self._counts["refusals"] += 1
            self.nodes.lost()  # another node may take it (a node still joining its cluster refuses)
            log.warning("edge %s: broker %s:%d refused the connection: %s", self.edge_id, self.host,
                        self.port, describe_reason(reason_code))
            self._set_connected(False)
            return
        self._failing = False
        client.subscribe(command_topic(self.edge_id), qos=1)
        self._publish_status(client)
        self._set_connected(True)
        log.info("edge %s: connected to %s:%d, %d alert(s) in flight will be resent", self.edge_id,
                 self.host, self.port, len(self._inflight_ids))
        self._wake.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reason_codes: list[ReasonCode],
                      properties: Properties | None) -> None:
        """A refused command subscription is asked for again: a clustered broker refuses it while
        it elects a new leader for its storage (NATS: "Unable to add JetStream consumer"), and
        without it the box would never hear a resend request until its next reconnect."""
        if not any(code.is_failure for code in reason_codes):
            return
        log.warning("edge %s: broker refused the subscription to %s (%s); asking again in %.0f s", self.edge_id,
                    command_topic(self.edge_id), ", ".join(describe_reason(c) for c in reason_codes), RESUBSCRIBE_S)

        def again() -> None:
            if self.connected and not self._stopping.is_set():
                client.subscribe(command_topic(self.edge_id), qos=1)

        timer = threading.Timer(RESUBSCRIBE_S, again)
        timer.daemon = True
        timer.start()

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        # Log the first failure of an outage as a warning, the retries (every <= 30 s) at debug.
        # paho calls this inside its `except OSError`, so the cause (refused, DNS, TLS verify) is here.
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        self.nodes.lost()
        cause = sys.exc_info()[1]
        log.log(level, "edge %s: cannot reach broker %s:%d (%s); retrying with back-off", self.edge_id,
                self.host, self.port, cause if cause is not None else "no detail")

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        was_connected = self.connected
        self._set_connected(False)
        if not self._stopping.is_set():
            self.nodes.lost()
            if not was_connected:  # closed before a CONNACK (a NATS node electing a leader does)
                log.info("edge %s: %s:%d closed the connection before accepting it (%s)", self.edge_id, self.host,
                         self.port, describe_reason(reason_code))
        if was_connected and not self._stopping.is_set():
            log.warning("edge %s: lost broker connection (%s); %d alert(s) in flight are kept and resent",
                        self.edge_id, describe_reason(reason_code), len(self._inflight_ids))

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        with self._lock:
            if mid not in self._inflight:
                self._early[mid] = reason_code
                return
            entry = self._inflight.pop(mid)
        self._complete(entry, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        """A command: queued for the drain thread (bounded: a flood is dropped, not buffered)."""
        if len(message.payload) > MAX_COMMAND_BYTES:
            log.warning("edge %s: command of %d bytes on %s dropped (limit %d)", self.edge_id,
                        len(message.payload), message.topic, MAX_COMMAND_BYTES)
            return
        try:
            self._commands.put_nowait(bytes(message.payload))
        except queue.Full:
            log.warning("edge %s: %d commands waiting; one on %s dropped", self.edge_id,
                        MAX_QUEUED_COMMANDS, message.topic)
            return
        self._wake.set()

    # --- drain loop (publisher thread) ---------------------------------------------------------

    def _drain_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(POLL_S)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self._handle_commands()
                if self._connected.is_set():
                    self._refresh_status()
                    self._drain()
                if self.metrics is not None:
                    self.metrics.outbox_depth.set(self.outbox.depth())
            except OutboxError:
                log.exception("edge %s: outbox unusable; retrying in %.0f s", self.edge_id, POLL_S)
                self._stopping.wait(POLL_S)

    def _handle_commands(self) -> None:
        while True:
            try:
                payload = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                command = ResendCommand.model_validate_json(payload)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
                log.warning("edge %s: command refused: %s", self.edge_id, problems[:500])
                continue
            self._resend(command)

    def _resend(self, command: ResendCommand) -> None:
        """Queue the asked-for alerts again and answer with what this outbox no longer holds."""
        result = self.outbox.resend(outbox_id=command.outbox_id, first=command.first_seq, last=command.last_seq)
        log.info("edge %s: resend %s of %s %d..%d: %d queued again, missing %s", self.edge_id,
                 command.request_id, command.outbox_id, command.first_seq, command.last_seq, result.requeued,
                 list(result.missing) or "none")
        reply = ResendReply(request_id=command.request_id, edge_id=self.edge_id, outbox_id=command.outbox_id,
                            first_seq=command.first_seq, last_seq=command.last_seq, requeued=result.requeued,
                            missing=list(result.missing))
        if self._client is not None and self._connected.is_set():
            self._client.publish(reply_topic(self.edge_id), reply.to_json(), qos=1)

    def _refresh_status(self) -> None:
        if time.monotonic() >= self._status_due and self._client is not None:
            self._publish_status(self._client)

    def _publish_status(self, client: mqtt.Client) -> None:
        """Retained "online" with the newest delivery number (from paho's thread or the drain's)."""
        self._status_due = time.monotonic() + self.status_interval_s
        info = client.publish(status_topic(self.edge_id), self._status("online"), qos=1, retain=True)
        self._register(info.mid, None)

    def _drain(self) -> None:
        """Publish waiting alerts, oldest first, keeping at most `max_inflight` unacknowledged."""
        while self._connected.is_set() and not self._stopping.is_set():
            with self._lock:
                busy = set(self._inflight_ids)
            free = self.max_inflight - len(busy)
            if free <= 0:
                return  # an ack wakes us
            items = [i for i in self.outbox.sendable(len(busy) + free) if i.alert_id not in busy][:free]
            if not items:
                return
            for item in items:
                if not self._publish(item):
                    return  # retried at the next wake-up, not in a busy loop

    def _publish(self, item: OutboxItem) -> bool:
        """Hand one alert to paho; False if paho did not take it (it stays in the outbox)."""
        assert self._client is not None
        info = self._client.publish(item.topic, item.payload, qos=1, retain=False)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            # NO_CONN: paho keeps the message and sends it after reconnecting, so it is in flight.
            log.warning("camera %s: alert %s not queued by paho (%s); stays in the outbox",
                        item.camera_id, item.alert_id, mqtt.error_string(info.rc))
            return False
        with self._lock:
            self._counts["published"] += 1
        self._register(info.mid, _InFlight(item.alert_id, item.camera_id))
        self.outbox.record_attempt(item.alert_id)
        log.debug("camera %s: alert %s published (mid %d, attempt %d)", item.camera_id, item.alert_id,
                  info.mid, item.attempts + 1)
        return True

    def _register(self, mid: int, entry: _InFlight | None) -> None:
        """Remember what a mid carries. paho calls on_publish under its own lock, so we cannot
        hold ours across publish(); a PUBACK that arrives before this runs waits in `_early`."""
        with self._lock:
            early = self._early.pop(mid, None)
            if early is None:
                self._inflight[mid] = entry
                if entry is not None:
                    self._inflight_ids.add(entry.alert_id)
                return
        self._complete(entry, early)

    def _complete(self, entry: _InFlight | None, reason_code: ReasonCode) -> None:
        """A PUBACK arrived: delete the alert from the outbox, or keep it if the broker refused."""
        if entry is None:
            return
        if reason_code.is_failure:
            log.warning("camera %s: broker refused alert %s (%s); kept in the outbox for retry",
                        entry.camera_id, entry.alert_id, describe_reason(reason_code))
            with self._lock:
                self._counts["rejected"] += 1
                self._inflight_ids.discard(entry.alert_id)
            return
        try:
            self.outbox.ack(entry.alert_id)
        except OutboxError:
            log.exception("camera %s: alert %s delivered but not removed from the outbox (it will be "
                          "sent again)", entry.camera_id, entry.alert_id)
        with self._lock:
            self._counts["acked"] += 1
            self._inflight_ids.discard(entry.alert_id)
        if self.metrics is not None and not entry.alert_id.startswith(MEDIA_KEY):
            self.metrics.alerts_published.labels(camera=entry.camera_id).inc()
        self._wake.set()

    # --- helpers -----------------------------------------------------------------------------

    def _set_connected(self, up: bool) -> None:
        if up:
            self._connected.set()
        else:
            self._connected.clear()
        if self.metrics is not None:
            self.metrics.mqtt_connected.set(1 if up else 0)

    def _status(self, state: StatusState, *, reason: str | None = None) -> bytes:
        return status_payload(self.edge_id, state, reason=reason, numbering=self._numbering(), identity=self.identity)

    def _numbering(self) -> Numbering | None:
        try:
            return Numbering(self.outbox.outbox_id, self.outbox.last_seq())
        except OutboxError:  # a status without numbers beats no status
            log.warning("edge %s: delivery numbers unreadable for the status", self.edge_id, exc_info=True)
            return None

    def _safe_depth(self) -> int:
        try:
            return self.outbox.depth()
        except OutboxError:
            return -1


__all__ = ["STATUS_SCHEMA", "BoxIdentity", "Numbering", "Publisher", "PublisherStats", "status_payload"]
