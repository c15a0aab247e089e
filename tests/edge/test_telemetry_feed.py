"""Live telemetry feeders of moving cameras: real sockets and the real broker fill the camera's pose track.

NMEA sentences are written here with their XOR checksum; MQTT goes through the session's broker
(Mosquitto where STREETWATCH_TEST_MQTT_URL names one, else the embedded broker).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import reduce

import paho.mqtt.client as mqtt
import pytest
from support import BrokerEndpoint

from streetwatch.edge.config import EdgeConfig
from streetwatch.edge.telemetry import PoseTrack, TelemetryMessage, telemetry_topic
from streetwatch.edge.telemetry_feed import LiveTelemetry, SharedPoseTrack

DAY = datetime(2026, 1, 1, tzinfo=UTC)


def sentence(body: str) -> str:
    checksum = reduce(lambda acc, ch: acc ^ ord(ch), body, 0)
    return f"${body}*{checksum:02X}"


def rmc(second: int) -> str:
    return sentence(f"GPRMC,0800{second:02d}.00,A,3118.000,N,12035.000,E,10.0,45.0,010126,,,A")


def config(source: dict[str, object], broker_url: str = "mqtt://127.0.0.1:1883", protocol: str = "3.1.1") -> EdgeConfig:
    return EdgeConfig.model_validate({
        "edge_id": "box-1", "broker": {"url": broker_url, "protocol": protocol},
        "cameras": [{"id": "patrol-1", "kind": "vehicle", "url": "rtsp://x/1",
                     "camera_model": {"hfov_deg": 60, "mount_height_m": 1.5}, "telemetry": source}],
    })


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def feeder(cfg: EdgeConfig) -> tuple[LiveTelemetry, SharedPoseTrack]:
    track = SharedPoseTrack(PoseTrack(name="patrol-1"))
    return LiveTelemetry(cfg, cfg.cameras[0], track), track


def test_udp_nmea_fills_the_track_and_frames_match_it() -> None:
    feed, track = feeder(config({"source": "nmea_udp", "host": "127.0.0.1", "port": 1}))
    feed.telemetry = feed.telemetry.model_copy(update={"port": 0})  # bind a free port instead of 1
    feed.start()
    try:
        assert feed.udp_port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for second in range(3):
                sender.sendto((rmc(second) + "\r\n").encode(), ("127.0.0.1", feed.udp_port))
        assert wait_for(lambda: len(track) >= 2)
        match = track.match(DAY.replace(hour=8) + timedelta(seconds=0.5), max_gap_s=2.0)
        assert match.method == "interpolated" and match.pose is not None
    finally:
        feed.stop()


def test_tcp_nmea_reconnects_after_the_server_closes() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        for batch in ((0, 1), (5, 6)):  # two connections: the feeder must come back for the second
            conn, _ = server.accept()
            with conn:
                conn.sendall("".join(rmc(s) + "\r\n" for s in batch).encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    feed, track = feeder(config({"source": "nmea_tcp", "host": "127.0.0.1", "port": port}))
    feed.start()
    try:
        assert wait_for(lambda: len(track) >= 4, timeout_s=15.0)
    finally:
        feed.stop()
        server.close()


def test_mqtt_telemetry_fills_the_track(mqtt_broker: BrokerEndpoint) -> None:
    cfg = config({"source": "mqtt"}, broker_url=mqtt_broker.url, protocol=mqtt_broker.protocol)
    feed, track = feeder(cfg)
    feed.start()
    version = mqtt.MQTTv5 if mqtt_broker.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=version)
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.loop_start()
    try:
        topic = telemetry_topic("box-1", "patrol-1")
        other = telemetry_topic("box-1", "patrol-2")

        def publish_until_seen() -> bool:
            message = TelemetryMessage.model_validate({"schema": "streetwatch.telemetry/1", "edge_id": "box-1",
                                                       "camera_id": "patrol-1", "t": DAY.isoformat(),
                                                       "lat": 31.3, "lon": 120.58, "heading_deg": 90.0})
            client.publish(topic, message.to_json(), qos=1).wait_for_publish(5)
            client.publish(other, b'{"schema": "nope"}', qos=1).wait_for_publish(5)
            return wait_for(lambda: len(track) >= 1, timeout_s=1.0)

        # the subscription is made on connect, asynchronously: publish until the feeder has it
        assert wait_for(publish_until_seen, timeout_s=15.0)
        pose = track.match(DAY, max_gap_s=1.0).pose
        assert pose is not None and pose.heading_deg == pytest.approx(90.0)
    finally:
        client.loop_stop()
        client.disconnect()
        feed.stop()


# --- live streams from real receivers: proprietary sentences and garbage mid-stream --------------------

MIXED = [
    sentence("PUBX,00,080000.00,3118.000000,N,12035.000000,E,12.5,G3,2.1,2.0,0.007,77.52,0.007,,0.92,1.19,0.77,9,0,0"),
    sentence("PMTK011,MTKGPS"), "$POLYN,TIME,RESTART_OCCURRED", sentence("PQTMVERNO,LC29H"), sentence("PCAS03,1,1"),
    "!AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0*26", "garbage \x00\x01", "$GPRMC,0800", "$$$", "*FF",
    sentence("GPXYZ,1"), sentence("PASHR,080000.000,77.52,T,-0.12,0.50,0.00,0.032,0.029,0.051,1,0"),
]


def test_tcp_stream_with_proprietary_sentences_and_garbage_keeps_giving_poses() -> None:
    """One long TCP session, a real receiver's mix between the fixes: the thread never dies, every fix arrives."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            for second in range(20):
                conn.sendall((rmc(second) + "\r\n").encode())
                conn.sendall(("\r\n".join(MIXED) + "\r\n").encode() + bytes(range(256)) + b"\r\n")
                time.sleep(0.02)
            done.wait(10)  # keep the connection open: the feeder must not need a reconnect

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    feed, track = feeder(config({"source": "nmea_tcp", "host": "127.0.0.1", "port": port}))
    feed.start()
    try:
        assert wait_for(lambda: len(track) >= 20, timeout_s=15.0)
        assert feed.alive and feed.errors == 0
        stats = feed.assembler.stats
        assert stats["parsed"] == 20
        assert stats["proprietary"] == 20 * 6 and stats["ais"] == 20 and stats["unknown_sentence"] == 20
        assert stats["malformed"] + stats["checksum"] >= 20 * 4
    finally:
        done.set()
        feed.stop()
        server.close()


class FlakyTrack(SharedPoseTrack):
    """A track whose third append raises, as a bug in the consumer would."""

    def __init__(self) -> None:
        super().__init__(PoseTrack(name="patrol-1"))
        self.appends = 0

    def append(self, pose: object) -> None:
        self.appends += 1
        if self.appends == 3:
            raise RuntimeError("consumer bug")
        super().append(pose)  # type: ignore[arg-type]


def test_an_error_in_the_feeder_thread_is_logged_with_the_camera_and_the_feed_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        for batch in (range(0, 5), range(5, 10)):
            conn, _ = server.accept()
            with conn:
                conn.sendall("".join(rmc(s) + "\r\n" for s in batch).encode())
                time.sleep(0.5)

    threading.Thread(target=serve, daemon=True).start()
    cfg = config({"source": "nmea_tcp", "host": "127.0.0.1", "port": port})
    track = FlakyTrack()
    feed = LiveTelemetry(cfg, cfg.cameras[0], track)
    with caplog.at_level(logging.WARNING, logger="streetwatch.edge.telemetry_feed"):
        feed.start()
        try:
            assert wait_for(lambda: len(track) >= 5, timeout_s=15.0)  # the second connection delivered
            assert feed.alive and feed.errors == 1
        finally:
            feed.stop()
            server.close()
    failure = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failure and "camera patrol-1" in failure[0].getMessage() and failure[0].exc_info is not None
    assert any("RuntimeError: consumer bug" in r.getMessage() and "reconnecting" in r.getMessage()
               for r in caplog.records)


def test_serial_receiver_feeds_the_track_and_a_hang_up_is_survived() -> None:
    """A pseudo-terminal is the receiver on /dev/ttyUSB0: lines, proprietary noise, then it goes away."""
    master, slave = os.openpty()  # this end's slave fd keeps the device until the test unplugs it
    cfg = config({"source": "nmea_serial", "path": os.ttyname(slave), "baud": 9600})
    feed, track = feeder(cfg)
    feed.start()
    try:
        os.write(master, ("\r\n".join([rmc(0), *MIXED, rmc(1), rmc(2)]) + "\r\n").encode())
        assert wait_for(lambda: len(track) >= 3)
        assert feed.assembler.stats["proprietary"] == 6
        os.close(master)  # unplugged: the device goes away; the feeder logs it and keeps trying
        os.close(slave)
        master = slave = -1
        assert wait_for(lambda: feed.errors >= 1, timeout_s=10.0)  # reopening failed: logged, counted
        assert feed.alive  # and still trying
    finally:
        feed.stop()
        for fd in (master, slave):
            if fd >= 0:
                os.close(fd)


def test_serial_source_needs_a_device_path() -> None:
    with pytest.raises(ValueError, match="nmea_serial needs path"):
        config({"source": "nmea_serial"})


def test_an_error_handling_an_mqtt_message_does_not_end_the_feed(mqtt_broker: BrokerEndpoint) -> None:
    """paho ends its network loop on an exception in a callback: the feeder must catch it."""
    cfg = config({"source": "mqtt"}, broker_url=mqtt_broker.url, protocol=mqtt_broker.protocol)
    track = FlakyTrack()
    feed = LiveTelemetry(cfg, cfg.cameras[0], track)
    feed.start()
    version = mqtt.MQTTv5 if mqtt_broker.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=version)
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.loop_start()
    sent = 0
    try:
        def publish_until(count: int) -> bool:
            nonlocal sent
            message = TelemetryMessage.model_validate({
                "schema": "streetwatch.telemetry/1", "edge_id": "box-1", "camera_id": "patrol-1",
                "t": (DAY + timedelta(seconds=sent)).isoformat(), "lat": 31.3, "lon": 120.58})
            client.publish(telemetry_topic("box-1", "patrol-1"), message.to_json(), qos=1).wait_for_publish(5)
            sent += 1
            return wait_for(lambda: len(track) >= count, timeout_s=0.5)

        assert wait_for(lambda: publish_until(4), timeout_s=20.0)  # the third append raised on the way
        assert feed.errors == 1 and track.appends >= 5
    finally:
        client.loop_stop()
        client.disconnect()
        feed.stop()
