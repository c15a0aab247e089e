"""`edge run` as a real process: real H.264 over a real RTSP server on loopback, the real detector,
alerts to a real MQTT broker; the RTSP server is killed and restarted and the worker recovers.

The clip is the kerb street photo held still (sensor noise) as 10 fps H.264: no street video is
among the shared assets (see tests/clips.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt
import pytest
import yaml
from clips import still_scene, write_h264_clip
from rtsp_server import RtspServer
from support import BrokerEndpoint, free_port

from streetwatch.edge.alerts import alert_topic, parse_alert

PARKING_ZONE = [[620, 340], [740, 340], [740, 385], [620, 385]]  # the green car at the right kerb


@pytest.fixture(scope="module")
def kerb_stream_clip(street_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    image = cv2.imread(str(street_dir / "kerb_parked_cars_street.jpg"))
    frames = still_scene(image, seconds=45, fps=10, noise_sigma=2.0, seed=4)
    return write_h264_clip(tmp_path_factory.mktemp("rtsp") / "kerb.mp4", frames, fps=10, gop=20)


class AlertCollector:
    """A plain MQTT subscriber on this edge's alert topics."""

    def __init__(self, broker: BrokerEndpoint, edge_id: str) -> None:
        self.alerts: list[dict] = []
        self._lock = threading.Lock()
        version = mqtt.MQTTv5 if broker.protocol == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=version)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(alert_topic(edge_id, "+"), qos=1)
        assert subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        alert = parse_alert(message.payload)
        with self._lock:
            self.alerts.append(json.loads(alert.to_json()))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def metric(port: int, name: str, camera: str) -> float:
    """One sample from the worker's /metrics endpoint (0 if not exported yet)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    match = re.search(rf'^{name}\{{camera="{camera}"\}} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture()
def edge_process(tmp_path: Path, mqtt_broker: BrokerEndpoint, model_dir: Path) -> Iterator[Callable]:
    processes: list[subprocess.Popen] = []

    def start(config: dict) -> tuple[subprocess.Popen, Path]:
        path = tmp_path / "edge.yaml"
        path.write_text(yaml.safe_dump(config))
        log = tmp_path / "edge.log"
        env = {**os.environ, "STREETWATCH_MODEL_DIR": str(model_dir)}
        process = subprocess.Popen(
            [sys.executable, "-m", "streetwatch.edge.cli", "run", "--config", str(path)],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
        )
        processes.append(process)
        return process, log

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_edge_run_over_rtsp_recovers_from_server_restart_and_publishes(
    tmp_path: Path, kerb_stream_clip: Path, mqtt_broker: BrokerEndpoint, edge_process: Callable
) -> None:
    metrics_port = free_port()
    collector = AlertCollector(mqtt_broker, "box-rtsp")
    with RtspServer(kerb_stream_clip, "/cam-rtsp") as server:
        process, log = edge_process({
            "edge_id": "box-rtsp",
            "broker": {"url": mqtt_broker.url, "protocol": mqtt_broker.protocol},
            "outbox": str(tmp_path / "outbox.sqlite"),
            "metrics_port": metrics_port,
            "rules": {"end_after_s": 60},
            "cameras": [{
                "id": "cam-rtsp", "url": server.url, "sample_fps": 2,
                "zones": [{"id": "z-kerb", "violations": ["illegal_parking"],
                           "polygon_px": PARKING_ZONE, "dwell_s": 5}],
            }],
        })
        try:
            decoded = lambda: metric(metrics_port, "streetwatch_frames_decoded_total", "cam-rtsp")  # noqa: E731
            connected = lambda: metric(metrics_port, "streetwatch_stream_connected", "cam-rtsp")  # noqa: E731
            wait_for(lambda: decoded() > 20, 60, "frames decoded from the RTSP stream")
            wait_for(lambda: len(collector.alerts) >= 1, 60, "an illegal_parking alert over MQTT")

            server.stop()  # the camera's server dies (SIGKILL)
            wait_for(lambda: connected() == 0, 30, "the worker to notice the stream ended")
            before = decoded()
            server.start()  # back on the same port
            wait_for(lambda: decoded() > before + 20, 60, "frames decoded again after the restart")
            assert connected() == 1
            assert process.poll() is None, "the worker must survive a dead stream"
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(30)
            collector.close()
        output = log.read_text()
        assert code == 0, output[-3000:]

    parking = [a for a in collector.alerts if a["violation"] == "illegal_parking"]
    assert parking and all(a["camera_id"] == "cam-rtsp" and a["zone_id"] == "z-kerb" for a in parking)
    assert re.search(r"WARNING.*cam-rtsp", output), "the dropped stream is logged with the camera id"
