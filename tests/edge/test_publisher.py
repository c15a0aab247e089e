"""The publisher against real brokers: alerts reach subscribers, status is retained, nothing is lost.

Brokers: the session broker (`mqtt_broker`: Mosquitto in CI, else the embedded one) and, where a
test must stop the broker, one started by the test itself on a free port (embedded always,
Mosquitto too when its binary is installed). Waits are bounded (`wait_for`), never timed asserts.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from factories import make_alert
from support import BrokerEndpoint, free_port

from streetwatch.edge.alerts import (
    Alert,
    ModelRef,
    ResendCommand,
    ResendReply,
    alert_topic,
    command_topic,
    parse_alert,
    reply_topic,
    status_topic,
)
from streetwatch.edge.config import BrokerConfig, CameraConfig, ConfigError, EdgeConfig, TlsConfig
from streetwatch.edge.metrics import EdgeMetrics, start_metrics_server
from streetwatch.edge.outbox import Outbox
from streetwatch.edge.publisher import STATUS_SCHEMA, Publisher
from streetwatch.mqtt_common import MqttSetupError, connect_async, make_client, parse_broker_url
from streetwatch.version import package_version

WAIT_S = 30.0  # upper bound for any wait; a healthy run needs a fraction of a second
needs_mosquitto = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="no mosquitto binary")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")


def wait_for(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Subscriber:
    """A real MQTT subscriber that resubscribes after every (re)connect."""

    def __init__(self, *, host: str, port: int, protocol: str, topic: str) -> None:
        self.topic = topic
        self.messages: list[Received] = []
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = make_client(client_id=f"test-sub-{uuid.uuid4().hex[:12]}", protocol=protocol)  # type: ignore[arg-type]
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_disconnect = lambda c, u, f, rc, p: self.subscribed.clear()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        connect_async(self.client, host=host, port=port, keepalive_s=30)
        self.client.loop_start()
        assert self.subscribed.wait(WAIT_S), f"subscriber could not subscribe to {topic} on {host}:{port}"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def alert_ids(self) -> set[str]:
        """Distinct alert ids seen: QoS 1 is at-least-once, so the broker may deliver one twice."""
        return {parse_alert(m.payload).alert_id for m in self.received()}

    def statuses(self) -> list[tuple[dict[str, str | int], bool]]:
        return [(json.loads(m.payload), m.retain) for m in self.received() if m.payload]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def edge_config(edge_id: str, *, url: str, protocol: str) -> EdgeConfig:
    return EdgeConfig(
        edge_id=edge_id,
        broker=BrokerConfig(url=url, protocol=protocol),  # type: ignore[arg-type]
        cameras=[CameraConfig(id="cam-1", url="street.mp4")],
    )


@pytest.fixture()
def edge_id(mqtt_broker: BrokerEndpoint) -> Iterator[str]:
    """A fresh edge id per test (the session broker is shared); its retained status is cleared after."""
    value = f"t-{uuid.uuid4().hex[:10]}"
    yield value
    cleaner = make_client(client_id=f"test-clean-{value}", protocol=mqtt_broker.protocol)  # type: ignore[arg-type]
    cleaner.connect(mqtt_broker.host, mqtt_broker.port)
    cleaner.loop_start()
    cleaner.publish(status_topic(value), b"", qos=1, retain=True).wait_for_publish(WAIT_S)
    cleaner.disconnect()
    cleaner.loop_stop()


@pytest.fixture()
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def put_all(outbox: Outbox, alerts: list[Alert], publisher: Publisher | None = None) -> None:
    for alert in alerts:
        outbox.put(alert)
        if publisher is not None:
            publisher.notify()


# --- mqtt_common -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", ("127.0.0.1", 1883, False)),
        ("mqtt://broker.example", ("broker.example", 1883, False)),
        ("mqtts://broker.example", ("broker.example", 8883, True)),
        ("mqtts://broker.example:9883/", ("broker.example", 9883, True)),
    ],
)
def test_parse_broker_url(url: str, expected: tuple[str, int, bool]) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("http://broker:1883", "scheme must be mqtt or mqtts"),
        ("mqtt://:1883", "no host"),
        ("mqtt://broker:99999", "broker.url"),
        ("mqtt://broker:1883/alerts", "no path"),
        ("broker:1883", "scheme must be mqtt or mqtts"),
    ],
)
def test_parse_broker_url_errors_name_the_field(url: str, phrase: str) -> None:
    with pytest.raises(MqttSetupError, match=phrase):
        parse_broker_url(url)


@dataclass(frozen=True)
class _Tls:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"password": "secret"}, "username is not"),
        ({"tls": _Tls(ca_file=Path("/no/such/ca.pem"))}, r"broker.tls.ca_file: file /no/such/ca.pem"),
        ({"protocol": "3.1"}, "expected '3.1.1' or '5'"),
    ],
)
def test_make_client_refuses_settings_that_cannot_work(kwargs: dict[str, object], phrase: str) -> None:
    args: dict[str, object] = {"client_id": "x", "protocol": "3.1.1", **kwargs}
    with pytest.raises(MqttSetupError, match=phrase):
        make_client(**args)  # type: ignore[arg-type]


def test_publisher_refuses_to_start_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SW_TEST_UNSET_PASSWORD", raising=False)
    config = EdgeConfig(edge_id="box-1", cameras=[CameraConfig(id="cam-1", url="street.mp4")],
                        broker=BrokerConfig(username="box-1", password_env="SW_TEST_UNSET_PASSWORD"))
    box = Outbox(tmp_path / "outbox.sqlite")
    with pytest.raises(ConfigError, match="SW_TEST_UNSET_PASSWORD is not set"):
        Publisher(config, box)
    box.close()


# --- delivery and status on the session broker -----------------------------------------------


def test_alerts_arrive_on_their_topic_with_qos1_and_the_outbox_drains(
    mqtt_broker: BrokerEndpoint, edge_id: str, outbox: Outbox
) -> None:
    sub = Subscriber(host=mqtt_broker.host, port=mqtt_broker.port, protocol=mqtt_broker.protocol,
                     topic=f"streetwatch/v1/alerts/{edge_id}/#")
    metrics = EdgeMetrics()
    alerts = [make_alert(edge_id=edge_id, camera_id=cam) for cam in ["cam-1", "cam-2", "cam-1", "cam-1"]]
    put_all(outbox, alerts[:2])  # waiting before the publisher starts
    publisher = Publisher(edge_config(edge_id, url=mqtt_broker.url, protocol=mqtt_broker.protocol),
                          outbox, metrics=metrics)
    publisher.start()
    try:
        put_all(outbox, alerts[2:], publisher)
        assert wait_for(lambda: len(sub.alert_ids()) == 4 and outbox.depth() == 0)
        assert wait_for(lambda: metrics.sample("streetwatch_outbox_depth") == 0)
        stats = publisher.stats()
    finally:
        publisher.stop()
        sub.stop()

    by_id = {parse_alert(m.payload).alert_id: m for m in sub.received()}
    for alert in alerts:
        message = by_id[alert.alert_id]
        assert message.topic == alert_topic(edge_id, alert.camera_id)
        assert message.qos == 1
        assert not message.retain
        received = parse_alert(message.payload)
        assert received.model_copy(update={"seq": None, "outbox_id": None}) == alert
        assert received.outbox_id == outbox.outbox_id
    assert sorted(parse_alert(m.payload).seq or 0 for m in by_id.values()) == [1, 2, 3, 4]
    assert stats.acked == 4 and stats.in_flight == 0 and stats.outbox_depth == 0 and stats.connected
    assert metrics.sample("streetwatch_alerts_published_total", {"camera": "cam-1"}) == 3
    assert metrics.sample("streetwatch_alerts_published_total", {"camera": "cam-2"}) == 1
    assert metrics.sample("streetwatch_mqtt_connected") == 0  # after stop()


def test_a_box_given_several_urls_moves_past_a_node_that_does_not_answer(
    mqtt_broker: BrokerEndpoint, edge_id: str, outbox: Outbox
) -> None:
    """`broker.urls`: the first node refuses the TCP connection (nothing listens there); the
    publisher's next attempt goes to the next node, and the alerts arrive through it."""
    dead = f"mqtt://127.0.0.1:{free_port()}"
    sub = Subscriber(host=mqtt_broker.host, port=mqtt_broker.port, protocol=mqtt_broker.protocol,
                     topic=f"streetwatch/v1/alerts/{edge_id}/#")
    config = EdgeConfig(edge_id=edge_id, cameras=[CameraConfig(id="cam-1", url="street.mp4")],
                        broker=BrokerConfig(urls=[dead, mqtt_broker.url], protocol=mqtt_broker.protocol))  # type: ignore[arg-type]
    alerts = [make_alert(edge_id=edge_id) for _ in range(3)]
    put_all(outbox, alerts)
    publisher = Publisher(config, outbox)
    assert (publisher.host, publisher.port) == (parse_broker_url(dead)[0], parse_broker_url(dead)[1])
    publisher.start()
    try:
        assert wait_for(lambda: len(sub.alert_ids()) == 3 and outbox.depth() == 0)
        assert (publisher.host, publisher.port) == (mqtt_broker.host, mqtt_broker.port)
    finally:
        publisher.stop()
        sub.stop()
    assert sub.alert_ids() == {a.alert_id for a in alerts}


def test_retained_online_status_for_late_subscribers_and_offline_after_stop(
    mqtt_broker: BrokerEndpoint, edge_id: str, outbox: Outbox
) -> None:
    publisher = Publisher(edge_config(edge_id, url=mqtt_broker.url, protocol=mqtt_broker.protocol), outbox)
    publisher.start()
    assert publisher.wait_connected(WAIT_S)
    endpoint = {"host": mqtt_broker.host, "port": mqtt_broker.port, "protocol": mqtt_broker.protocol}
    late = Subscriber(**endpoint, topic=status_topic(edge_id))  # type: ignore[arg-type]
    try:
        assert wait_for(lambda: len(late.statuses()) >= 1)
        status, retained = late.statuses()[0]
        assert retained
        assert status["schema"] == STATUS_SCHEMA
        assert (status["edge_id"], status["state"]) == (edge_id, "online")
        assert status["at"].endswith("Z")

        publisher.stop()
        assert wait_for(lambda: late.statuses()[-1][0]["state"] == "offline")
        assert late.statuses()[-1][0]["reason"] == "stopped"
    finally:
        publisher.stop()
        late.stop()
    later = Subscriber(**endpoint, topic=status_topic(edge_id))  # type: ignore[arg-type]
    try:
        assert wait_for(lambda: len(later.statuses()) >= 1)
        assert later.statuses()[0] == (late.statuses()[-1][0], True)  # offline is retained
    finally:
        later.stop()


def test_status_says_what_the_box_runs_and_never_a_camera_url(
    mqtt_broker: BrokerEndpoint, edge_id: str, outbox: Outbox
) -> None:
    """Central's fleet view reads version, model and cameras from the retained status; a camera URL
    (which may carry a password) is not in it."""
    config = EdgeConfig(
        edge_id=edge_id, broker=BrokerConfig(url=mqtt_broker.url, protocol=mqtt_broker.protocol),  # type: ignore[arg-type]
        cameras=[CameraConfig(id="cam-1", url="rtsp://viewer:pw-never-shown@10.0.0.5/s1"),
                 CameraConfig(id="cam-2", url="lot.mp4")],
    )
    model = ModelRef(name="yolox_nano", sha256="cd" * 32)
    publisher = Publisher(config, outbox, model=model)
    publisher.start()
    assert publisher.wait_connected(WAIT_S)
    endpoint = {"host": mqtt_broker.host, "port": mqtt_broker.port, "protocol": mqtt_broker.protocol}
    subscriber = Subscriber(**endpoint, topic=status_topic(edge_id))  # type: ignore[arg-type]
    try:
        assert wait_for(lambda: len(subscriber.statuses()) >= 1)
        status, _ = subscriber.statuses()[0]
        assert status["version"] == package_version() and status["version"] != "0+unknown"
        assert status["model"] == {"name": "yolox_nano", "sha256": "cd" * 32}
        assert status["cameras"] == [{"id": "cam-1", "kind": "fixed"}, {"id": "cam-2", "kind": "fixed"}]
        assert status["outbox_id"] == outbox.outbox_id and "last_seq" in status
        publisher.stop()
        assert wait_for(lambda: subscriber.statuses()[-1][0]["state"] == "offline")
        assert subscriber.statuses()[-1][0]["model"] == status["model"]  # the offline status says it too
        assert all(b"pw-never-shown" not in m.payload and b"rtsp://" not in m.payload for m in subscriber.received())
    finally:
        publisher.stop()
        subscriber.stop()


def test_resend_command_republishes_delivered_alerts_and_reports_what_is_gone(
    mqtt_broker: BrokerEndpoint, edge_id: str, tmp_path: Path
) -> None:
    """The delivery audit's edge half: central asks for numbers the broker lost; the box sends
    those it still holds again, names the rest, and ignores commands it cannot read."""
    outbox = Outbox(tmp_path / "outbox.sqlite")
    endpoint = {"host": mqtt_broker.host, "port": mqtt_broker.port, "protocol": mqtt_broker.protocol}
    alerts_sub = Subscriber(**endpoint, topic=f"streetwatch/v1/alerts/{edge_id}/#")  # type: ignore[arg-type]
    replies = Subscriber(**endpoint, topic=reply_topic(edge_id))  # type: ignore[arg-type]
    statuses = Subscriber(**endpoint, topic=status_topic(edge_id))  # type: ignore[arg-type]
    central = make_client(client_id=f"test-central-{edge_id}", protocol=mqtt_broker.protocol)  # type: ignore[arg-type]
    central.connect(mqtt_broker.host, mqtt_broker.port)
    central.loop_start()
    publisher = Publisher(edge_config(edge_id, url=mqtt_broker.url, protocol=mqtt_broker.protocol), outbox,
                          status_interval_s=0.5)
    publisher.start()
    try:
        alerts = [make_alert(edge_id=edge_id) for _ in range(3)]
        put_all(outbox, alerts, publisher)
        assert wait_for(lambda: outbox.depth() == 0 and len(alerts_sub.received()) >= 3)
        first_round = len(alerts_sub.received())
        for garbage in (b"not json", b'{"schema": "streetwatch.command/1", "command": "format-disk"}',
                        b"[" * 3000 + b"]" * 3000):
            central.publish(command_topic(edge_id), garbage, qos=1)
        command = ResendCommand(request_id="rq-1", outbox_id=outbox.outbox_id, first_seq=2, last_seq=5)
        central.publish(command_topic(edge_id), command.to_json(), qos=1).wait_for_publish(WAIT_S)

        assert wait_for(lambda: len(replies.received()) >= 1), "the box answers the resend"
        reply = ResendReply.model_validate_json(replies.received()[0].payload)
        assert (reply.request_id, reply.edge_id, reply.requeued, reply.missing) == ("rq-1", edge_id, 2, [(4, 5)])
        assert wait_for(lambda: len(alerts_sub.received()) >= first_round + 2)
        again = [parse_alert(m.payload) for m in alerts_sub.received()[first_round:]]
        assert sorted(a.seq or 0 for a in again) == [2, 3]
        assert {a.alert_id for a in again} == {alerts[1].alert_id, alerts[2].alert_id}
        assert wait_for(lambda: outbox.depth() == 0)
        assert publisher.connected, "bad commands never stop the publisher"
        assert wait_for(lambda: any(s.get("last_seq") == 3 for s, _ in statuses.statuses()))
        assert statuses.statuses()[-1][0]["outbox_id"] == outbox.outbox_id
    finally:
        publisher.stop()
        central.disconnect()
        central.loop_stop()
        for sub in (alerts_sub, replies, statuses):
            sub.stop()
        outbox.close()


# A publisher in its own process, so the test can kill it as a power cut or OOM-kill would.
_PUBLISHER_CHILD = """
import sys, time
from streetwatch.edge.config import EdgeConfig
from streetwatch.edge.outbox import Outbox
from streetwatch.edge.publisher import Publisher
publisher = Publisher(EdgeConfig.model_validate_json(sys.argv[1]), Outbox(sys.argv[2]))
publisher.start()
print("connected" if publisher.wait_connected(30) else "not connected", flush=True)
time.sleep(600)
"""


def test_last_will_says_offline_when_the_edge_process_is_killed(
    mqtt_broker: BrokerEndpoint, edge_id: str, tmp_path: Path
) -> None:
    config = edge_config(edge_id, url=mqtt_broker.url, protocol=mqtt_broker.protocol)
    sub = Subscriber(host=mqtt_broker.host, port=mqtt_broker.port, protocol=mqtt_broker.protocol,
                     topic=status_topic(edge_id))
    child = subprocess.Popen(
        [sys.executable, "-c", _PUBLISHER_CHILD, config.model_dump_json(), str(tmp_path / "outbox.sqlite")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "connected"
        assert wait_for(lambda: any(s["state"] == "online" for s, _ in sub.statuses()))
        child.send_signal(signal.SIGKILL)  # no stop(), no DISCONNECT: the broker sends the will
        child.wait(WAIT_S)
        assert wait_for(lambda: sub.statuses()[-1][0]["state"] == "offline")
        will = sub.statuses()[-1][0]
        assert will["reason"] == "connection lost" and will["edge_id"] == edge_id
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        sub.stop()


@pytest.mark.parametrize("in_flight", [False, True], ids=["no-broker-reachable", "in-flight-at-stop"])
def test_edge_restart_delivers_what_the_previous_run_left_in_the_outbox(
    mqtt_broker: BrokerEndpoint, edge_id: str, tmp_path: Path, in_flight: bool
) -> None:
    """First run: alerts are put while no broker is reachable, or while published ones get no
    PUBACK (a frozen link). Then the process 'restarts': a new Outbox and Publisher on the file."""
    path = tmp_path / "outbox.sqlite"
    alerts = [make_alert(edge_id=edge_id) for _ in range(5)]
    relay = Relay(mqtt_broker.port)
    url = f"mqtt://127.0.0.1:{relay.port if in_flight else free_port()}"  # free_port: nobody listens
    first_box = Outbox(path)
    first = Publisher(edge_config(edge_id, url=url, protocol=mqtt_broker.protocol), first_box)
    first.start()
    if in_flight:
        assert first.wait_connected(WAIT_S)
        relay.freeze()
    put_all(first_box, alerts, first)
    if in_flight:
        assert wait_for(lambda: first.stats().in_flight == 5)
        relay.cut()
        assert wait_for(lambda: not first.connected)
    else:
        assert not first.wait_connected(0.5)
    first.stop()
    first_box.close()
    relay.close()

    sub = Subscriber(host=mqtt_broker.host, port=mqtt_broker.port, protocol=mqtt_broker.protocol,
                     topic=f"streetwatch/v1/alerts/{edge_id}/#")
    with Outbox(path) as box:
        assert box.depth() == 5
        second = Publisher(edge_config(edge_id, url=mqtt_broker.url, protocol=mqtt_broker.protocol), box)
        second.start()
        try:
            assert wait_for(lambda: box.depth() == 0)
            assert wait_for(lambda: sub.alert_ids() == {a.alert_id for a in alerts})
        finally:
            second.stop()
            sub.stop()


@needs_mosquitto
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_refused_connection_is_logged_with_its_reason_and_never_counts_as_connected(
    protocol: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = OwnBroker("mosquitto", free_port(), tmp_path, users={"box-9": "right-secret"})
    broker.start()
    config = EdgeConfig(
        edge_id="box-9",
        broker=BrokerConfig(url=f"mqtt://127.0.0.1:{broker.port}", username="box-9",
                            password_env="SW_TEST_MQTT_PASSWORD", protocol=protocol),  # type: ignore[arg-type]
        cameras=[CameraConfig(id="cam-1", url="street.mp4")],
    )
    metrics = EdgeMetrics()
    alert = make_alert(edge_id="box-9")
    try:
        with Outbox(tmp_path / "outbox.sqlite") as box:
            box.put(alert)
            monkeypatch.setenv("SW_TEST_MQTT_PASSWORD", "wrong-secret")
            refused = Publisher(config, box, metrics=metrics)
            refused.start()
            assert wait_for(lambda: refused.stats().connect_refusals >= 1)
            stats = refused.stats()
            refused.stop()
            assert not stats.connected and stats.published == 0 and box.depth() == 1
            assert metrics.sample("streetwatch_mqtt_connected") == 0
            assert "refused the connection: Not authorized" in caplog.text

            monkeypatch.setenv("SW_TEST_MQTT_PASSWORD", "right-secret")
            accepted = Publisher(config, box, metrics=metrics)
            accepted.start()
            try:
                assert accepted.wait_connected(WAIT_S)
                assert wait_for(lambda: box.depth() == 0)
            finally:
                accepted.stop()
    finally:
        broker.stop()


def test_metrics_endpoint_serves_the_edge_registry() -> None:
    metrics = EdgeMetrics()
    assert start_metrics_server(0, metrics) is None  # 0 = off
    metrics.alerts_published.labels(camera="cam-7").inc(2)
    metrics.outbox_depth.set(3)
    metrics.observe_inference(0.012, frames=4)
    server = start_metrics_server(free_port(), metrics, addr="127.0.0.1")
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.close()
    assert 'streetwatch_alerts_published_total{camera="cam-7"} 2.0' in text
    assert "streetwatch_outbox_depth 3.0" in text
    assert 'streetwatch_inference_seconds_bucket{le="0.02"} 1.0' in text
    assert "streetwatch_frames_inferred_total 4.0" in text
    assert EdgeMetrics().sample("streetwatch_outbox_depth") == 0  # registries are independent


@dataclass
class _Source:
    camera_id: str
    frames_decoded: int = 0
    frames_dropped: int = 0
    connected: bool = True


def test_observe_sources_turns_cumulative_source_counts_into_counters() -> None:
    metrics = EdgeMetrics()
    cam1, cam2 = _Source("cam-1", 10, 1), _Source("cam-2", 5, 0, connected=False)
    metrics.observe_sources([cam1, cam2])
    cam1.frames_decoded, cam1.frames_dropped = 25, 3
    metrics.observe_sources([cam1, cam2])
    metrics.observe_sources([_Source("cam-2", 4, 0)])  # cam-2's source was re-created: 4 new frames

    def value(name: str, camera: str) -> float | None:
        return metrics.sample(f"streetwatch_{name}", {"camera": camera})

    assert value("frames_decoded_total", "cam-1") == 25
    assert value("frames_dropped_total", "cam-1") == 3
    assert value("frames_decoded_total", "cam-2") == 9
    assert value("stream_connected", "cam-1") == 1
    assert value("stream_connected", "cam-2") == 1


# --- broker outage: the test owns the broker --------------------------------------------------


class OwnBroker:
    """A broker this test may stop and restart on the same port (and, for Mosquitto, give users)."""

    def __init__(self, kind: str, port: int, workdir: Path, *, users: dict[str, str] | None = None,
                 listener_conf: tuple[str, ...] = ()) -> None:
        self.kind, self.port, self.workdir, self.users = kind, port, workdir, users
        self.listener_conf = listener_conf  # extra Mosquitto listener lines, e.g. TLS files
        self.protocol = "3.1.1" if kind == "embedded" else "5"  # cover both protocol versions
        self._broker: object = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.kind == "embedded":
            from iotcore import Broker

            # Same payload limit as the session broker in conftest (iotcore's default is 20 KiB).
            self._broker = Broker(port=self.port, listen="127.0.0.1", max_payload_size=1024 * 1024).start()
            return
        self._process = subprocess.Popen(["mosquitto", "-c", str(self._mosquitto_conf())], cwd=self.workdir,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for(lambda: _accepts(self.port)):
            raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def _mosquitto_conf(self) -> Path:
        lines = [f"listener {self.port} 127.0.0.1", *self.listener_conf, "persistence false",
                 f"user {getpass.getuser()}"]
        if self.users:
            passwords = self.workdir / "mosquitto.passwd"
            passwords.write_text("")
            passwords.chmod(0o600)
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def stop(self) -> None:
        if self._broker is not None:
            self._broker.stop()  # type: ignore[attr-defined]
            self._broker = None
        if self._process is not None:
            self._process.terminate()
            self._process.wait(WAIT_S)
            self._process = None


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Relay:
    """A loopback TCP relay between the publisher and the broker that the test controls.

    `freeze()` silently drops bytes both ways, so published alerts stay in flight (no PUBACK);
    `cut()` drops every connection and refuses new ones; `open()` lets connections through again.
    The gate lets the test resubscribe to the restarted broker before the publisher reconnects:
    without it, alerts the broker accepted before the subscriber was back would be (correctly)
    discarded by the broker, and the test would depend on thread timing.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._gate = threading.Event()
        self._gate.set()
        self._frozen = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                if not self._gate.is_set():
                    raise ConnectionRefusedError("gate closed")
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                conn.close()
                continue
            upstream.settimeout(None)
            conn.settimeout(None)
            with self._lock:
                self._sockets += [conn, upstream]
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self._frozen.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            _close(sock)

    def freeze(self) -> None:
        self._frozen.set()

    def cut(self) -> None:
        self._gate.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)

    def open(self) -> None:
        self._frozen.clear()
        self._gate.set()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._listener.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


BROKER_KINDS = ["embedded", pytest.param("mosquitto", marks=needs_mosquitto)]


@pytest.mark.parametrize("kind", BROKER_KINDS)
def test_broker_outage_loses_no_alert(kind: str, tmp_path: Path) -> None:
    """Alerts in flight when the broker dies, and alerts put while it is down, all arrive.

    Alerts are put continuously throughout. The subscriber dedups by alert_id: QoS 1 is
    at-least-once, and in-flight alerts are sent again (DUP) after the reconnect.
    """
    broker = OwnBroker(kind, free_port(), tmp_path)
    broker.start()
    relay = Relay(broker.port)
    edge = f"t-{uuid.uuid4().hex[:10]}"
    endpoint = {"host": "127.0.0.1", "port": broker.port, "protocol": broker.protocol}
    sub = Subscriber(**endpoint, topic=f"streetwatch/v1/alerts/{edge}/#")  # type: ignore[arg-type]
    outbox = Outbox(tmp_path / "outbox.sqlite")
    publisher = Publisher(edge_config(edge, url=f"mqtt://127.0.0.1:{relay.port}", protocol=broker.protocol),
                          outbox)
    put: list[Alert] = []
    stop_putting = threading.Event()

    def pipeline() -> None:  # like the edge pipeline: put, notify, next frame
        while not stop_putting.is_set():
            alert = make_alert(edge_id=edge, camera_id=f"cam-{len(put) % 3}")
            outbox.put(alert)
            put.append(alert)
            publisher.notify()
            stop_putting.wait(0.02)

    putter = threading.Thread(target=pipeline)
    publisher.start()
    putter.start()
    try:
        assert wait_for(lambda: len(sub.alert_ids()) >= 10)  # flowing normally

        frozen_from = len(put)
        relay.freeze()  # from here on, publishes get no PUBACK: they stay in flight
        # Five put after the freeze (on a loaded machine the pipeline may be slower than the wait).
        assert wait_for(lambda: publisher.stats().in_flight >= 5 and len(put) - frozen_from >= 5)
        relay.cut()
        broker.stop()
        assert wait_for(lambda: not publisher.connected)
        n_before_down = len(put)
        # Published after the freeze, so never acknowledged: all must still be in the outbox.
        unacked = {a.alert_id for a in put[frozen_from:n_before_down]}
        assert len(unacked) >= 5
        assert unacked <= {i.alert_id for i in outbox.pending(10_000)}
        assert wait_for(lambda: len(put) >= n_before_down + 30)  # alerts keep coming while it is down

        broker.start()  # same port, empty state: no sessions, no retained messages
        assert sub.subscribed.wait(WAIT_S)
        relay.open()
        assert publisher.wait_connected(WAIT_S)
        assert wait_for(lambda: len(put) >= n_before_down + 60)  # and after it is back
        stop_putting.set()
        putter.join(WAIT_S)

        assert wait_for(lambda: outbox.depth() == 0)
        assert wait_for(lambda: sub.alert_ids() >= {a.alert_id for a in put})
        assert sub.alert_ids() == {a.alert_id for a in put}
        assert publisher.stats().acked >= len(put)
    finally:
        stop_putting.set()
        putter.join(WAIT_S)
        publisher.stop()
        sub.stop()
        relay.close()
        broker.stop()
        outbox.close()


def make_test_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1: (ca.pem, server.pem, server.key)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for args in (
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=sw test CA"],
        ["req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.pem", "-days", "1", "-extfile", "san.ext"],
    ):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


@needs_mosquitto
@needs_openssl
def test_mqtts_url_connects_with_tls_and_verifies_the_broker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca, cert, key = make_test_pki(tmp_path)
    broker = OwnBroker("mosquitto", free_port(), tmp_path,
                       listener_conf=(f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"))
    broker.start()
    url = f"mqtts://127.0.0.1:{broker.port}"
    trusted = EdgeConfig(edge_id="box-tls", cameras=[CameraConfig(id="cam-1", url="street.mp4")],
                         broker=BrokerConfig(url=url, protocol="5", tls=TlsConfig(ca_file=ca)))
    untrusted = trusted.model_copy(update={"broker": BrokerConfig(url=url, protocol="5")})  # system CAs
    try:
        with Outbox(tmp_path / "outbox.sqlite") as box:
            box.put(make_alert(edge_id="box-tls"))
            refused = Publisher(untrusted, box)
            refused.start()
            assert not refused.wait_connected(1.0)  # our CA is not a system CA: verification fails
            refused.stop()
            assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
            assert box.depth() == 1

            publisher = Publisher(trusted, box)
            publisher.start()
            try:
                assert publisher.wait_connected(WAIT_S)
                assert wait_for(lambda: box.depth() == 0)  # PUBACK came back over TLS
            finally:
                publisher.stop()
    finally:
        broker.stop()


def test_a_calibrated_cameras_status_carries_its_ground_view_for_the_city_map() -> None:
    """The view is the hull of the calibration's ground points, as (lon, lat) (GeoJSON order)."""
    from streetwatch.edge.publisher import BoxIdentity

    points = [((0, 480), (31.30000, 120.58000)), ((640, 480), (31.30000, 120.58010)),
              ((640, 200), (31.30020, 120.58020)), ((0, 200), (31.30020, 119.99990 + 0.5801)),
              ((320, 300), (31.30010, 120.58005))]  # an inner point: not on the hull
    config = EdgeConfig(edge_id="box-1", cameras=[
        CameraConfig(id="cam-1", url="a.mp4", calibration={"points": points}),  # type: ignore[arg-type]
        CameraConfig(id="cam-2", url="b.mp4")])
    (first, second) = BoxIdentity.of(config, None).fields()["cameras"]  # type: ignore[misc]
    assert second == {"id": "cam-2", "kind": "fixed"}
    ring = first["view"]
    assert ring[0] == ring[-1] and len(ring) == 5  # closed, the inner point left out
    assert {tuple(p) for p in ring} == {(120.58, 31.3), (120.5801, 31.3), (120.5802, 31.3002), (120.58, 31.3002)}
