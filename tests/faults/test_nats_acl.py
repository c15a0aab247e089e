"""The committed NATS permissions (configs/nats/permissions.yaml, rendered by scripts/nats_accounts.py)
on a real three-node cluster: each box publishes only under its own edge_id (alerts and evidence-set
pieces), central cannot publish alerts (over MQTT nor NATS), only central commands a box, strangers
cannot log in.

The alerts and pieces are read the way central reads them: from the shared durable JetStream
consumers on the MQTT stream (`central`, `central-media`, with central's login). MQTT 3.1.1 has no
negative PUBACK: NATS acknowledges a forbidden publish, drops it and logs a "Publish Violation"
naming user and subject. "Never reaches central" is shown without a
clock: after the forbidden publish, another box publishes a marker on its own topic; the stream
stores in order, so once the consumer hands out the marker, the forgery would have come first.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import paho.mqtt.client as mqtt
import pytest
from fault_harness import wait_for
from nats.js.api import AckPolicy, ConsumerConfig
from nats_cluster import MQTT_STREAM, NatsCluster

from streetwatch.central.consumer_jetstream import alerts_filter, media_filter
from streetwatch.edge import publisher as publisher_module
from streetwatch.edge.alerts import alert_topic, command_topic, media_topic, reply_topic, status_topic
from streetwatch.edge.config import BrokerConfig, CameraConfig, EdgeConfig
from streetwatch.edge.outbox import Outbox

if shutil.which("nats-server") is None:
    pytest.fail("the cluster tests run their own nats-server nodes: install it (scripts/setup.sh does)",
                pytrace=False)

USERS = ["central", "box-01", "box-02"]


class MqttClient:
    """A logged-in MQTT 3.1.1 client (the NATS gateway's version) recording what it receives."""

    def __init__(self, port: int, user: str | None, password: str | None, *, name: str) -> None:
        self.user = user or ""
        self.messages: list[tuple[str, bytes]] = []
        self.connect_reason: mqtt.ReasonCode | None = None
        self.granted: list[mqtt.ReasonCode] = []
        self.acks: set[int] = set()
        self._connected, self._subscribed = threading.Event(), threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, msg: self.messages.append((msg.topic, bytes(msg.payload)))
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = lambda _c, _u, mid, _r, _p: self.acks.add(mid)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._connected.wait(10), "no CONNACK"

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        self.connect_reason = reason
        self._connected.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _m: int, codes: list[mqtt.ReasonCode], _p: object) -> None:
        self.granted = codes
        self._subscribed.set()

    def subscribe(self, topic: str) -> list[mqtt.ReasonCode]:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(10), "no SUBACK"
        return self.granted

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        wait_for(lambda: info.mid in self.acks, 10, f"PUBACK for {topic}")

    def payloads(self) -> list[bytes]:
        return [payload for _topic, payload in self.messages]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class AlertReader:
    """Central's view: the shared durable consumer (`central`, or `central-media` for the pieces) on
    the MQTT stream, over NATS."""

    def __init__(self, cluster: NatsCluster, *, durable: str = "central", subject: str | None = None) -> None:
        self.cluster = cluster
        self.durable = durable
        self.subject = subject or alerts_filter()
        self.seen: list[bytes] = []

    async def _session(self, *, create: bool) -> list[bytes]:
        nc = await nats.connect(self.cluster.nats_urls, user="central", password=self.cluster.credentials["central"])
        try:
            js = nc.jetstream(timeout=5)
            if create:
                await js.add_consumer(MQTT_STREAM, ConsumerConfig(
                    durable_name=self.durable, filter_subject=self.subject, ack_policy=AckPolicy.EXPLICIT, ack_wait=5))
            sub = await js.pull_subscribe_bind(durable=self.durable, stream=MQTT_STREAM)
            try:
                messages = await sub.fetch(100, timeout=0.5)
            except (nats.errors.TimeoutError, TimeoutError):  # nothing there (nats-py raises either)
                return []
            for message in messages:
                await message.ack()
            return [message.data for message in messages]
        finally:
            await nc.close()

    def create(self) -> None:
        asyncio.run(self._session(create=True))

    def payloads(self) -> list[bytes]:
        self.seen.extend(asyncio.run(self._session(create=False)))
        return self.seen


@pytest.fixture(scope="module")
def acl_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path_factory.mktemp("nats-acl"), USERS)
    cluster.start()
    try:
        first = MqttClient(cluster.nodes[0].ports.mqtt, "central", cluster.credentials["central"], name="first")
        first.close()  # the gateway makes its streams on the first MQTT login
        AlertReader(cluster).create()
        media_reader(cluster).create()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture()
def clients(acl_cluster: NatsCluster, request: pytest.FixtureRequest) -> Iterator[dict[str, MqttClient]]:
    made = {}
    for i, user in enumerate(USERS):  # one per node: the permissions hold on every node
        node = acl_cluster.nodes[i % 3]
        made[user] = MqttClient(node.ports.mqtt, user, acl_cluster.credentials[user],
                                name=f"{user}-{request.node.name}"[:60])
        assert made[user].connect_reason is not None and not made[user].connect_reason.is_failure
    yield made
    for client in made.values():
        client.close()


@pytest.fixture()
def alerts(acl_cluster: NatsCluster) -> AlertReader:
    reader = AlertReader(acl_cluster)
    reader.payloads()  # what earlier tests left
    return reader


def media_reader(cluster: NatsCluster) -> AlertReader:
    return AlertReader(cluster, durable="central-media", subject=media_filter())


@pytest.fixture()
def pieces(acl_cluster: NatsCluster) -> AlertReader:
    reader = media_reader(acl_cluster)
    reader.payloads()  # what earlier tests left
    return reader


def violation_logged(cluster: NatsCluster, user: str, subject: str) -> bool:
    line = f'Publish Violation - User "{user}", Subject "{subject}"'
    return any(line in node.log() for node in cluster.nodes)


def forged_alert_not_stored(cluster: NatsCluster, alerts: AlertReader, sender: MqttClient, topic: str,
                            marker_from: MqttClient, *, marker_topic: str | None = None) -> bool:
    payload = f"forged-{sender.user}-{topic}-{time.monotonic()}".encode()
    sender.publish(topic, payload)
    marker = b"marker-" + payload
    marker_from.publish(marker_topic or alert_topic(marker_from.user, "cam-marker"), marker)
    wait_for(lambda: marker in alerts.payloads(), 15, "the marker from a box's own topic")
    subject = topic.replace("/", ".")
    return payload not in alerts.seen and violation_logged(cluster, sender.user, subject)


def test_a_box_publishes_its_own_alerts_and_central_receives_them(
    clients: dict[str, MqttClient], alerts: AlertReader
) -> None:
    clients["box-01"].publish(alert_topic("box-01", "cam-1"), b"own-alert")
    wait_for(lambda: b"own-alert" in alerts.payloads(), 15, "box-01's alert at central's consumer")


@pytest.mark.parametrize("topic", [
    alert_topic("box-02", "cam-1"),  # posing as another box (box-02 sends the marker)
    "streetwatch/v1/alerts/box-010/cam-1",  # a longer id that starts with its own
    "streetwatch/v1/alerts/cam-1",  # outside any box's tree
])
def test_a_box_cannot_publish_as_another(
    acl_cluster: NatsCluster, clients: dict[str, MqttClient], alerts: AlertReader, topic: str
) -> None:
    assert forged_alert_not_stored(acl_cluster, alerts, clients["box-01"], topic, clients["box-02"])


def test_a_box_sends_its_own_evidence_set_pieces_and_central_receives_them(
    clients: dict[str, MqttClient], pieces: AlertReader
) -> None:
    clients["box-01"].publish(media_topic("box-01", "cam-1"), b"own-piece")
    wait_for(lambda: b"own-piece" in pieces.payloads(), 15, "box-01's piece at central's media consumer")


@pytest.mark.parametrize(("sender", "topic"), [
    ("box-01", media_topic("box-02", "cam-1")),  # posing as another box
    ("box-01", "streetwatch/v1/media/box-01/cam-1/extra"),  # deeper than {edge_id}/{camera_id}
    ("central", media_topic("box-01", "cam-1")),  # central sends no media
])
def test_no_one_sends_pieces_as_another_box(
    acl_cluster: NatsCluster, clients: dict[str, MqttClient], pieces: AlertReader, sender: str, topic: str
) -> None:
    marker_from = clients["box-02"] if sender == "box-01" else clients["box-01"]
    assert forged_alert_not_stored(acl_cluster, pieces, clients[sender], topic, marker_from,
                                   marker_topic=media_topic(marker_from.user, "cam-marker"))


def test_central_cannot_publish_alerts_over_mqtt(
    acl_cluster: NatsCluster, clients: dict[str, MqttClient], alerts: AlertReader
) -> None:
    assert forged_alert_not_stored(acl_cluster, alerts, clients["central"], alert_topic("box-01", "cam-1"),
                                   clients["box-01"])


@pytest.mark.parametrize("subject", [
    "streetwatch.v1.alerts.box-01.cam-1",  # what the MQTT gateway would pass on
    "$MQTT.msgs.streetwatch.v1.alerts.box-01.cam-1",  # straight into the stream central reads
])
def test_central_cannot_publish_alerts_over_nats(acl_cluster: NatsCluster, subject: str) -> None:
    """Central's NATS login may pull and acknowledge, not store: a publish is a permissions violation."""

    async def publish() -> list[Exception]:
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        nc = await nats.connect(acl_cluster.nats_urls, user="central", password=acl_cluster.credentials["central"],
                                error_cb=on_error)
        try:
            await nc.publish(subject, b"forged-by-central")
            await nc.flush()
            await asyncio.sleep(0.5)
        finally:
            await nc.close()
        return errors

    errors = asyncio.run(publish())
    assert any("permissions violation" in str(e).lower() for e in errors), errors


def test_a_box_cannot_set_another_box_status(acl_cluster: NatsCluster, clients: dict[str, MqttClient]) -> None:
    central, box1, box2 = clients["central"], clients["box-01"], clients["box-02"]
    central.subscribe("streetwatch/v1/status/+")
    box1.publish(status_topic("box-02"), b"forged-status")
    box2.publish(status_topic("box-02"), b"box-02-own-status")
    wait_for(lambda: b"box-02-own-status" in central.payloads(), 10, "box-02's own status")
    assert b"forged-status" not in central.payloads()
    assert violation_logged(acl_cluster, "box-01", "streetwatch.v1.status.box-02")


def test_boxes_cannot_read_alerts_nor_log_in_over_nats(
    acl_cluster: NatsCluster, clients: dict[str, MqttClient]
) -> None:
    codes = clients["box-02"].subscribe("streetwatch/v1/alerts/#")
    assert codes[0].is_failure
    with pytest.raises(nats.errors.Error):  # MQTT-only logins: no NATS session to subscribe from
        asyncio.run(nats.connect(acl_cluster.nats_urls, user="box-02", password=acl_cluster.credentials["box-02"],
                                 allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2))


def test_only_central_commands_a_box_and_each_box_reads_only_its_own(
    acl_cluster: NatsCluster, clients: dict[str, MqttClient]
) -> None:
    central, box1, box2 = clients["central"], clients["box-01"], clients["box-02"]
    assert not box1.subscribe(command_topic("box-01"))[0].is_failure
    assert box2.subscribe(command_topic("box-01"))[0].is_failure
    central.publish(command_topic("box-01"), b"resend-for-box-01")
    wait_for(lambda: b"resend-for-box-01" in box1.payloads(), 10, "box-01's command")
    box2.publish(command_topic("box-01"), b"forged-command")  # a box posing as central
    central.publish(command_topic("box-01"), b"marker-command")
    wait_for(lambda: b"marker-command" in box1.payloads(), 10, "the marker command")
    assert b"forged-command" not in box1.payloads()
    assert violation_logged(acl_cluster, "box-02", "streetwatch.v1.commands.box-01")


def test_a_box_answers_only_as_itself(acl_cluster: NatsCluster, clients: dict[str, MqttClient]) -> None:
    central = clients["central"]
    central.subscribe("streetwatch/v1/replies/+")
    clients["box-01"].publish(reply_topic("box-02"), b"forged-reply")
    clients["box-02"].publish(reply_topic("box-02"), b"box-02-reply")
    wait_for(lambda: b"box-02-reply" in central.payloads(), 10, "box-02's reply")
    assert b"forged-reply" not in central.payloads()
    assert violation_logged(acl_cluster, "box-01", "streetwatch.v1.replies.box-02")


@pytest.mark.parametrize(("user", "password"), [(None, None), ("box-01", "wrong password"), ("nobody", "x")])
def test_strangers_and_wrong_passwords_are_refused(
    acl_cluster: NatsCluster, user: str | None, password: str | None
) -> None:
    client = MqttClient(acl_cluster.nodes[0].ports.mqtt, user, password, name=f"stranger-{user}")
    try:
        assert client.connect_reason is not None and client.connect_reason.is_failure
    finally:
        client.close()
    with pytest.raises(nats.errors.Error):
        asyncio.run(nats.connect(acl_cluster.nats_urls, user=user, password=password, allow_reconnect=False,
                                 max_reconnect_attempts=0, connect_timeout=2))


def test_a_box_asks_again_for_a_refused_command_subscription(
    acl_cluster: NatsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The edge publisher notices a refused SUBACK and subscribes again (a NATS node refuses QoS 1
    subscriptions while its JetStream elects a leader). Refused here for good: box-02's login
    configured as box-01 may not read box-01's commands, so every attempt is logged."""
    monkeypatch.setattr(publisher_module, "RESUBSCRIBE_S", 0.2)
    monkeypatch.setenv("SW_TEST_BOX02_PASSWORD", acl_cluster.credentials["box-02"])
    config = EdgeConfig(edge_id="box-01", cameras=[CameraConfig(id="cam-1", url="street.mp4")],
                        broker=BrokerConfig(url=acl_cluster.nodes[0].mqtt_url, protocol="3.1.1", username="box-02",
                                            password_env="SW_TEST_BOX02_PASSWORD"))
    outbox = Outbox(tmp_path / "outbox.sqlite")
    publisher = publisher_module.Publisher(config, outbox)
    caplog.set_level(logging.WARNING, logger=publisher_module.__name__)
    publisher.start()
    try:
        wait_for(lambda: caplog.text.count("refused the subscription to streetwatch/v1/commands/box-01") >= 3, 15,
                 "three refusals, each followed by another attempt", lambda: caplog.text[-1500:])
    finally:
        publisher.stop()
        outbox.close()
