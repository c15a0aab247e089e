"""An RTSP password given only in the environment reaches the decoder (a real RTSP server that
demands it lets the edge in) and appears nowhere else: not in the logs (at debug level), the
metrics, the retained status message, `edge check`'s table or an error. A second camera with a
wrong password is refused by the server, and its errors do not show that password either."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from clips import long_clip
from fault_harness import wait_for
from rtsp_server import RtspServer
from support import BrokerEndpoint, free_port

from streetwatch.edge.alerts import status_topic
from streetwatch.mqtt_common import connect_async, make_client

pytestmark = pytest.mark.slow


def metrics_text(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def sample(text: str, name: str, camera: str) -> float:
    prefix = f'{name}{{camera="{camera}"}} '
    return next((float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)), -1.0)


def retained_status(broker: BrokerEndpoint, edge_id: str) -> bytes:
    got: list[bytes] = []
    ready = threading.Event()
    client = make_client(client_id=f"test-status-{uuid.uuid4().hex[:8]}", protocol=broker.protocol)  # type: ignore[arg-type]
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(status_topic(edge_id), qos=1)

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append(bytes(message.payload))
        ready.set()

    client.on_message = on_message
    connect_async(client, host=broker.host, port=broker.port, keepalive_s=30)
    client.loop_start()
    try:
        assert ready.wait(20), "no retained status"
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0]


def test_rtsp_password_only_in_the_environment_reaches_the_decoder_and_nowhere_else(
    tmp_path: Path, assets_dir: Path, model_dir: Path, mqtt_broker: BrokerEndpoint
) -> None:
    password, wrong = f"pw-{secrets.token_hex(8)}", f"wrong-{secrets.token_hex(8)}"
    clip = long_clip(assets_dir / "car-detection.mp4", tmp_path / "long.mp4", loops=4)  # 2 min: the test ends first
    edge_id, metrics_port = f"t-secret-{uuid.uuid4().hex[:8]}", free_port()
    with RtspServer(clip, credentials=("viewer", password)) as server:
        at = server.url.removeprefix("rtsp://")
        config = tmp_path / "edge.yaml"
        config.write_text(yaml.safe_dump({
            "edge_id": edge_id, "broker": {"url": mqtt_broker.url, "protocol": mqtt_broker.protocol},
            "outbox": str(tmp_path / "outbox.sqlite"), "metrics_port": metrics_port,
            "cameras": [{"id": "cam-ok", "url": f"rtsp://viewer:${{CAM_OK_PASSWORD}}@{at}", "sample_fps": 2},
                        {"id": "cam-bad", "url": f"rtsp://viewer:${{CAM_BAD_PASSWORD}}@{at}", "sample_fps": 2}],
        }))
        env = {**os.environ, "CAM_OK_PASSWORD": password, "CAM_BAD_PASSWORD": wrong,
               "STREETWATCH_MODEL_DIR": str(model_dir)}
        log = tmp_path / "edge.log"
        with log.open("wb") as out:
            command = [sys.executable, "-m", "streetwatch.edge.cli", "-v", "run", "--config", str(config)]
            edge = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(lambda: sample(metrics_text(metrics_port), "streetwatch_frames_decoded_total", "cam-ok") > 0, 60,
                     "frames from the camera that needs the password", why=lambda: log.read_text()[-3000:])
            wait_for(lambda: "401 Unauthorized" in log.read_text(), 30, "the server refusing the wrong password")
            metrics = metrics_text(metrics_port)
            status = retained_status(mqtt_broker, edge_id)
            check = subprocess.run([sys.executable, "-m", "streetwatch.edge.cli", "check", "--config", str(config)],
                                   env=env, capture_output=True, text=True, timeout=120)
            server.freeze()  # a hung camera: connected, no frames; the stall gauge grows
            wait_for(lambda: sample(metrics_text(metrics_port), "streetwatch_seconds_since_frame", "cam-ok") > 2, 20,
                     "the stalled-stream gauge")
            server.thaw()
            server.stop()  # the camera goes away: reconnect errors quote its URL
            wait_for(lambda: "cam-ok: reconnecting" in log.read_text(), 30, "a reconnect of cam-ok")
        finally:
            edge.send_signal(signal.SIGTERM)
            assert edge.wait(30) == 0
    text = log.read_text()
    assert sample(metrics, "streetwatch_frames_decoded_total", "cam-bad") == 0  # refused: the password matters
    assert f"viewer:***@{at}" in text  # URLs are logged, redacted
    assert json.loads(status)["cameras"] == [{"id": "cam-ok", "kind": "fixed"}, {"id": "cam-bad", "kind": "fixed"}]
    assert check.returncode == 1 and "cam-ok" in check.stdout and "401 Unauthorized" in check.stdout
    for surface, content in {"log": text, "metrics": metrics, "status": status.decode(),
                             "check": check.stdout + check.stderr}.items():
        assert password not in content and wrong not in content, surface
