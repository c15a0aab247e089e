"""`streetwatch.telemetry/1` over MQTT: validation table, topic, and a round trip on a real broker."""

from __future__ import annotations

import json
import queue
import uuid
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from support import BrokerEndpoint

from streetwatch.edge.telemetry import (
    TelemetryHandler,
    TelemetryMessage,
    TelemetryRejected,
    parse_telemetry,
    telemetry_topic,
)

GOOD = {
    "schema": "streetwatch.telemetry/1", "edge_id": "edge-1", "camera_id": "van-7",
    "t": "2026-01-01T16:00:00+08:00",
    "lat": 31.3, "lon": 120.58, "alt_m": 12.5, "heading_deg": 271.5, "pitch_deg": -1.0, "roll_deg": 0.5,
    "speed_mps": 8.3,
}


def test_topic_is_built_from_the_shared_prefix() -> None:
    assert telemetry_topic("edge-1", "van-7") == "streetwatch/v1/telemetry/edge-1/van-7"


def test_valid_message_becomes_a_utc_pose() -> None:
    pose = parse_telemetry(json.dumps(GOOD)).to_pose()
    assert pose.t == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    assert (pose.lat, pose.lon, pose.alt_m) == (31.3, 120.58, 12.5)
    assert (pose.heading_deg, pose.speed_mps) == (271.5, 8.3)
    assert pose.source == "streetwatch/v1/telemetry/edge-1/van-7"


def test_optional_fields_may_be_absent() -> None:
    minimal = {k: GOOD[k] for k in ("schema", "edge_id", "camera_id", "t", "lat", "lon")}
    pose = parse_telemetry(json.dumps(minimal)).to_pose()
    assert (pose.alt_m, pose.heading_deg, pose.pitch_deg, pose.roll_deg, pose.speed_mps) == (None,) * 5


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"schema": "streetwatch.telemetry/2"}, "schema: expected 'streetwatch.telemetry/1'"),
        ({"lat": 91.0}, "lat: Input should be less than or equal to 90"),
        ({"heading_deg": 360.0}, "heading_deg: Input should be less than 360"),
        ({"t": "2026-01-01T08:00:00"}, "t: Value error, timestamp must carry a time zone"),
        ({"camera_id": "van/7"}, "camera_id: String should match pattern"),
        ({"speed_mps": -1}, "speed_mps: Input should be greater than or equal to 0"),
        ({"headng_deg": 10.0}, "headng_deg: Extra inputs are not permitted"),
    ],
)
def test_invalid_messages_are_rejected_naming_the_field(change: dict[str, object], reason: str) -> None:
    with pytest.raises(TelemetryRejected) as err:
        parse_telemetry(json.dumps({**GOOD, **change}))
    assert reason in err.value.reason


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b"x" * 5000])
def test_non_messages_are_rejected(payload: bytes) -> None:
    with pytest.raises(TelemetryRejected):
        parse_telemetry(payload)


def test_handler_counts_rejects_and_misrouted_messages() -> None:
    handler = TelemetryHandler(edge_id="edge-1", camera_id="van-7")
    assert handler.handle(json.dumps(GOOD)) is not None
    assert handler.handle(json.dumps({**GOOD, "lat": 200})) is None
    assert handler.handle(json.dumps({**GOOD, "camera_id": "van-8"})) is None
    assert handler.stats["invalid"] == 2 and handler.stats["parsed"] == 1


def _client(broker: BrokerEndpoint, name: str) -> mqtt.Client:
    protocol = mqtt.MQTTv5 if broker.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:8]}",
                         protocol=protocol)
    client.connect(broker.host, broker.port)
    return client


def test_round_trip_through_a_real_broker(mqtt_broker: BrokerEndpoint) -> None:
    edge_id, camera_id = f"edge-{uuid.uuid4().hex[:8]}", "van-7"
    topic = telemetry_topic(edge_id, camera_id)
    handler = TelemetryHandler(edge_id=edge_id, camera_id=camera_id)
    received: queue.Queue[bytes] = queue.Queue()
    subscribed: queue.Queue[bool] = queue.Queue()

    sub = _client(mqtt_broker, "tele-sub")
    sub.on_message = lambda client, userdata, msg: received.put(bytes(msg.payload))
    sub.on_subscribe = lambda *args: subscribed.put(True)
    sub.loop_start()
    pub = _client(mqtt_broker, "tele-pub")
    pub.loop_start()
    try:
        sub.subscribe(topic, qos=1)
        subscribed.get(timeout=10)
        message = TelemetryMessage.model_validate({**GOOD, "edge_id": edge_id, "camera_id": camera_id})
        pub.publish(topic, message.to_json(), qos=1).wait_for_publish(timeout=10)
        pub.publish(topic, b'{"schema": "streetwatch.telemetry/1"}', qos=1).wait_for_publish(timeout=10)
        poses = [handler.handle(received.get(timeout=10)) for _ in range(2)]
    finally:
        for client in (pub, sub):
            client.loop_stop()
            client.disconnect()

    assert poses[0] is not None and poses[0].heading_deg == 271.5 and poses[0].source == topic
    assert poses[1] is None and handler.stats["invalid"] == 1
