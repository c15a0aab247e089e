"""The committed broker configuration (configs/mosquitto/) run by a real Mosquitto: each edge box
publishes only under its own edge_id, central only subscribes, strangers cannot log in.

The conf is the committed file with only the machine-specific lines moved to the test's folder
(port, password file, persistence folder); the ACL is the committed file as it is, and the
password file is made by the committed script.

Mosquitto 2.0 answers a refused QoS 1 publish with PUBACK "Not authorized" (MQTT 5) and then
drops the connection. "Never reaches a subscriber" is shown without waiting on a clock: only after
the refusal has come back does another box publish a marker on its own topic; the broker routes
messages in the order it handles them, so once central holds the marker, the refused message
would have reached it before, had it been routed at all.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fault_harness import Mosquitto, wait_for
from support import free_port

from streetwatch.edge.alerts import (
    ALERTS_SHARED_SUBSCRIPTION,
    MEDIA_SHARED_SUBSCRIPTION,
    alert_topic,
    command_topic,
    media_topic,
    reply_topic,
    status_topic,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "mosquitto"


def broker_conf(workdir: Path, port: int) -> str:
    conf = (CONFIGS / "mosquitto.conf").read_text()
    conf = re.sub(r"^listener 1883 127\.0\.0\.1$", f"listener {port} 127.0.0.1", conf, flags=re.MULTILINE)
    conf = re.sub(r"^password_file .*$", f"password_file {workdir / 'passwd'}", conf, flags=re.MULTILINE)
    conf = re.sub(r"^acl_file .*$", f"acl_file {CONFIGS / 'streetwatch.acl'}", conf, flags=re.MULTILINE)
    conf = re.sub(r"^persistence_location .*$", f"persistence_location {workdir}/", conf, flags=re.MULTILINE)
    return conf + "user root\n"  # as root, stay root so the test's folder is writable


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mosquitto, dict[str, str]]]:
    workdir = tmp_path_factory.mktemp("acl-broker")
    subprocess.run([str(CONFIGS / "make_passwd.sh"), str(workdir / "passwd"), "central", "box-01", "box-02"],
                   check=True, capture_output=True)
    credentials = dict(line.split(":", 1) for line in (workdir / "passwd.credentials").read_text().split())
    port = free_port()
    broker = Mosquitto(workdir, port, conf=broker_conf(workdir, port))
    broker.start()
    try:
        yield broker, credentials
    finally:
        broker.kill()


class Client:
    """A logged-in MQTT 5 client that records what it receives and the reason codes it gets."""

    def __init__(self, broker: Mosquitto, user: str | None, password: str | None) -> None:
        self.user = user or ""
        self.messages: list[tuple[str, bytes]] = []
        self.connect_reason: mqtt.ReasonCode | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.granted: list[mqtt.ReasonCode] = []
        self.acks: dict[int, mqtt.ReasonCode] = {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, msg: self.messages.append((msg.topic, bytes(msg.payload)))
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = lambda _c, _u, mid, reason, _p: self.acks.__setitem__(mid, reason)
        self.client.connect(broker.url.split("//")[1].split(":")[0], broker.port)
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

    def publish(self, topic: str, payload: bytes) -> mqtt.ReasonCode:
        """Publish with QoS 1; the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        wait_for(lambda: info.mid in self.acks, 10, f"PUBACK for {topic}")
        return self.acks[info.mid]

    def payloads(self) -> list[bytes]:
        return [payload for _topic, payload in self.messages]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture()
def clients(acl_broker: tuple[Mosquitto, dict[str, str]]) -> Iterator[dict[str, Client]]:
    broker, credentials = acl_broker
    made = {user: Client(broker, user, credentials[user]) for user in ("central", "box-01", "box-02")}
    for client in made.values():
        assert client.connect_reason is not None and not client.connect_reason.is_failure
    yield made
    for client in made.values():
        client.close()


def refused_and_not_delivered(central: Client, sender: Client, topic: str, marker_from: Client) -> bool:
    """Publish on `topic` as `sender`: was it refused, and had central not received it by the time
    a marker published afterwards by `marker_from` (on its own topic) arrived?"""
    payload = f"forged-{sender.user}-{topic}".encode()
    reason = sender.publish(topic, payload)
    assert reason.is_failure and "authori" in str(reason).lower(), f"PUBACK reason {reason}"
    marker = f"marker-{payload.decode()}".encode()
    assert not marker_from.publish(alert_topic(marker_from.user, "cam-marker"), marker).is_failure
    wait_for(lambda: marker in central.payloads(), 10, "the marker from a box's own topic")
    return payload not in central.payloads()


def test_a_box_publishes_its_own_alerts_and_central_receives_them(clients: dict[str, Client]) -> None:
    central = clients["central"]
    assert not central.subscribe(ALERTS_SHARED_SUBSCRIPTION)[0].is_failure
    clients["box-01"].publish(alert_topic("box-01", "cam-1"), b"own-alert")
    wait_for(lambda: b"own-alert" in central.payloads(), 10, "box-01's alert at central")


@pytest.mark.parametrize(("sender", "topic"), [
    ("box-01", alert_topic("box-02", "cam-1")),  # posing as another box (box-02 sends the marker)
    ("box-01", "streetwatch/v1/alerts/box-010/cam-1"),  # a longer id that starts with its own
    ("box-01", "streetwatch/v1/alerts/cam-1"),  # outside any box's tree
])
def test_a_box_cannot_publish_as_another(clients: dict[str, Client], sender: str, topic: str) -> None:
    central = clients["central"]
    central.subscribe(ALERTS_SHARED_SUBSCRIPTION)
    assert refused_and_not_delivered(central, clients[sender], topic, clients["box-02"])


def test_a_box_cannot_set_another_box_status(clients: dict[str, Client]) -> None:
    central = clients["central"]
    central.subscribe("streetwatch/v1/status/#")
    central.subscribe(ALERTS_SHARED_SUBSCRIPTION)
    clients["box-01"].publish(status_topic("box-01"), b"box-01-online")
    wait_for(lambda: b"box-01-online" in central.payloads(), 10, "box-01's own status")
    assert refused_and_not_delivered(central, clients["box-01"], status_topic("box-02"), clients["box-02"])


def test_central_can_subscribe_but_not_publish(
    acl_broker: tuple[Mosquitto, dict[str, str]], clients: dict[str, Client]
) -> None:
    central, box = clients["central"], clients["box-01"]
    central.subscribe(ALERTS_SHARED_SUBSCRIPTION)
    forger = Client(acl_broker[0], "central", acl_broker[1]["central"])  # a second central connection
    try:
        assert refused_and_not_delivered(central, forger, alert_topic("box-01", "cam-1"), box)
    finally:
        forger.close()


def test_boxes_cannot_read_alerts(clients: dict[str, Client]) -> None:
    spy, central = clients["box-02"], clients["central"]
    codes = spy.subscribe("streetwatch/v1/alerts/#")
    central.subscribe(ALERTS_SHARED_SUBSCRIPTION)
    clients["box-01"].publish(alert_topic("box-01", "cam-1"), b"not-for-box-02")
    wait_for(lambda: b"not-for-box-02" in central.payloads(), 10, "the alert at central")
    assert codes[0].is_failure or b"not-for-box-02" not in spy.payloads()


def test_only_central_commands_a_box_and_each_box_reads_only_its_own(clients: dict[str, Client]) -> None:
    """Resend requests: central writes them, the addressed box reads them, nobody else does."""
    central, box1, box2 = clients["central"], clients["box-01"], clients["box-02"]
    box1.subscribe(command_topic("box-01"))
    spy_codes = box2.subscribe(command_topic("box-01"))
    assert not central.publish(command_topic("box-01"), b"resend-for-box-01").is_failure
    wait_for(lambda: b"resend-for-box-01" in box1.payloads(), 10, "box-01's command")
    forged = box2.publish(command_topic("box-01"), b"forged-command")  # a box posing as central
    assert forged.is_failure and "authori" in str(forged).lower()
    # a marker sent after the refusal came back: had the forgery been routed, it would be there first
    central.publish(command_topic("box-01"), b"marker-command")
    wait_for(lambda: b"marker-command" in box1.payloads(), 10, "the marker command")
    assert b"forged-command" not in box1.payloads()
    assert spy_codes[0].is_failure or b"resend-for-box-01" not in box2.payloads()


def test_a_box_answers_only_as_itself(clients: dict[str, Client]) -> None:
    central = clients["central"]
    central.subscribe("streetwatch/v1/replies/#")
    central.subscribe(ALERTS_SHARED_SUBSCRIPTION)
    assert not clients["box-01"].publish(reply_topic("box-01"), b"box-01-reply").is_failure
    wait_for(lambda: b"box-01-reply" in central.payloads(), 10, "box-01's reply")
    assert refused_and_not_delivered(central, clients["box-01"], reply_topic("box-02"), clients["box-02"])


def test_a_box_sends_evidence_sets_only_as_itself_and_no_box_reads_them(clients: dict[str, Client]) -> None:
    """Media (wire 1.2): a box publishes its own evidence-set pieces, central reads them, another box
    can neither post pieces under its id nor read anyone's."""
    central, box1, box2 = clients["central"], clients["box-01"], clients["box-02"]
    assert not central.subscribe(MEDIA_SHARED_SUBSCRIPTION)[0].is_failure
    central.subscribe(ALERTS_SHARED_SUBSCRIPTION)
    spy_codes = box2.subscribe("streetwatch/v1/media/#")
    assert not box1.publish(media_topic("box-01", "cam-1"), b"box-01-piece").is_failure
    wait_for(lambda: b"box-01-piece" in central.payloads(), 10, "box-01's media piece at central")
    assert refused_and_not_delivered(central, box1, media_topic("box-02", "cam-1"), box2)
    assert spy_codes[0].is_failure or b"box-01-piece" not in box2.payloads()


@pytest.mark.parametrize(("user", "password"), [(None, None), ("box-01", "wrong password"), ("nobody", "x")])
def test_strangers_and_wrong_passwords_are_refused(
    acl_broker: tuple[Mosquitto, dict[str, str]], user: str | None, password: str | None
) -> None:
    client = Client(acl_broker[0], user, password)
    try:
        assert client.connect_reason is not None and client.connect_reason.is_failure
    finally:
        client.close()
