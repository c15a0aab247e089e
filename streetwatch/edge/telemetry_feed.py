"""Live telemetry for moving cameras: a thread per camera feeds its pose track while frames are analysed.

Sources (camera `telemetry.source`): `nmea_tcp` (a receiver or relay serving NMEA over TCP; the
feeder reconnects with back-off 1 s doubling to 30 s), `nmea_udp` (datagrams to a bound port) and
`mqtt` (`streetwatch.telemetry/1` on `streetwatch/v1/telemetry/{edge_id}/{camera_id}`, through
the edge's broker, QoS 1). File sources are read whole at start (edge/moving.py) and need no feeder.

`SharedPoseTrack` wraps `PoseTrack` with a lock: the feeder appends while the analysis loop
matches, and PoseTrack keeps two parallel lists that must change together.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime

import paho.mqtt.client as mqtt

from streetwatch.edge.config import CameraConfig, EdgeConfig
from streetwatch.edge.telemetry import PoseMatch, PoseTrack, TelemetryHandler, read_nmea_tcp, telemetry_topic
from streetwatch.edge.telemetry.nmea import UdpNmeaReader
from streetwatch.edge.telemetry.pose import Pose
from streetwatch.mqtt_common import connect_async, make_client, parse_broker_url

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
LIVE_SOURCES = ("nmea_tcp", "nmea_udp", "mqtt")


class SharedPoseTrack:
    """A PoseTrack that one thread appends to while another matches frames against it."""

    def __init__(self, track: PoseTrack) -> None:
        self._track = track
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._track)

    def append(self, pose: Pose) -> None:
        with self._lock:
            self._track.append(pose)

    def extend(self, poses: Iterable[Pose]) -> int:
        count = 0
        for pose in poses:
            self.append(pose)
            count += 1
        return count

    def match(self, t: datetime, *, max_gap_s: float, clock_offset_s: float = 0.0) -> PoseMatch:
        with self._lock:
            return self._track.match(t, max_gap_s=max_gap_s, clock_offset_s=clock_offset_s)


class LiveTelemetry:
    """Feeds one camera's SharedPoseTrack from its live source until `stop()`."""

    def __init__(self, config: EdgeConfig, camera: CameraConfig, track: SharedPoseTrack) -> None:
        assert camera.telemetry is not None and camera.telemetry.source in LIVE_SOURCES
        self.config = config
        self.camera = camera
        self.telemetry = camera.telemetry
        self.track = track
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self.udp_port: int | None = None  # the bound port (useful with port 0 in tests)

    def start(self) -> None:
        if self.telemetry.source == "mqtt":
            self._start_mqtt()
            return
        if self.telemetry.source == "nmea_udp":
            reader = UdpNmeaReader(self.telemetry.host or "0.0.0.0", self.telemetry.port or 0,
                                   source=f"{self.camera.id}:udp")
            self.udp_port = reader.port
            target = lambda: self._run_udp(reader)  # noqa: E731
        else:
            target = self._run_tcp
        self._thread = threading.Thread(target=target, name=f"telemetry-{self.camera.id}", daemon=True)
        self._thread.start()
        log.info("camera %s: live telemetry %s started", self.camera.id, self.telemetry.source)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run_udp(self, reader: UdpNmeaReader) -> None:
        with reader:
            count = self.track.extend(reader.poses(stop=self._stop))
        log.info("camera %s: UDP telemetry stopped after %d poses", self.camera.id, count)

    def _run_tcp(self) -> None:
        host, port = self.telemetry.host or "", self.telemetry.port or 0
        delay = BACKOFF_MIN_S
        while not self._stop.is_set():
            try:
                count = self.track.extend(read_nmea_tcp(host, port, source=f"{self.camera.id}:tcp", stop=self._stop))
            except OSError as exc:
                log.warning("camera %s: NMEA TCP %s:%d unavailable (%s); retrying in %.0f s",
                            self.camera.id, host, port, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            if count:
                delay = BACKOFF_MIN_S
            if not self._stop.is_set():
                log.warning("camera %s: NMEA TCP %s:%d closed after %d poses; reconnecting in %.0f s",
                            self.camera.id, host, port, count, delay)
                self._stop.wait(delay)

    def _start_mqtt(self) -> None:
        broker = self.config.broker
        host, port, url_tls = parse_broker_url(broker.url)
        client = make_client(client_id=f"sw-telemetry-{self.config.edge_id}-{self.camera.id}",
                             protocol=broker.protocol, username=broker.username, password=broker.password(),
                             tls=broker.tls if broker.tls is not None else url_tls)
        topic = telemetry_topic(self.config.edge_id, self.camera.id)
        handler = TelemetryHandler(edge_id=self.config.edge_id, camera_id=self.camera.id)

        def on_connect(c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
            if not reason.is_failure:
                c.subscribe(topic, qos=1)  # again after every reconnect

        def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
            pose = handler.handle(bytes(message.payload))
            if pose is not None:
                self.track.append(pose)

        client.on_connect = on_connect
        client.on_message = on_message
        client.reconnect_delay_set(int(BACKOFF_MIN_S), int(BACKOFF_MAX_S))
        connect_async(client, host=host, port=port, keepalive_s=broker.keepalive_s)
        client.loop_start()
        self._client = client
        log.info("camera %s: live telemetry from MQTT %s", self.camera.id, topic)
