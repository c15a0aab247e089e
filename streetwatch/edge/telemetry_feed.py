"""Telemetry of moving cameras by their config: file sources read as the camera needs them, and a
thread per live source that feeds the camera's pose track while frames are analysed.

File sources (nmea_file, gpx, srt, klv) are read whole by `read_camera_file` (edge/moving.py finds
the file; `edge replay` also uses the result to line the video up). Live sources (camera
`telemetry.source`): `nmea_serial` (a receiver on /dev/ttyUSB0 and the like), `nmea_tcp` (a
receiver or relay serving NMEA over TCP), `nmea_udp` (datagrams to a bound port) and `mqtt`
(`streetwatch.telemetry/1` on `streetwatch/v1/telemetry/{edge_id}/{camera_id}`, through the edge's
broker, QoS 1).

A live feeder never dies silently: any error in its thread (a socket error, a bug, anything) is
logged with the camera id and the feeder reconnects with back-off 1 s doubling to 30 s; bad
sentences never reach it (the NMEA reader counts and skips them). `errors` counts the restarts.

`SharedPoseTrack` wraps `PoseTrack` with a lock: the feeder appends while the analysis loop
matches, and PoseTrack keeps two parallel lists that must change together.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt

from streetwatch.edge.config import CameraConfig, EdgeConfig
from streetwatch.edge.telemetry import (
    PoseMatch,
    PoseTrack,
    TelemetryError,
    TelemetryFile,
    TelemetryHandler,
    read_nmea_tcp,
    read_telemetry,
    telemetry_topic,
)
from streetwatch.edge.telemetry.files import Format, ReadOptions
from streetwatch.edge.telemetry.nmea import NmeaEpochAssembler, UdpNmeaReader, read_nmea_device
from streetwatch.edge.telemetry.pose import Pose
from streetwatch.edge.telemetry.summary import no_poses_reason
from streetwatch.edge.zones import resolve_timezone
from streetwatch.mqtt_common import BrokerNodes, connect_async, make_client

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
LIVE_SOURCES = ("nmea_serial", "nmea_tcp", "nmea_udp", "mqtt")
FILE_FORMATS: dict[str, Format] = {"nmea_file": "nmea", "gpx": "gpx", "srt": "srt", "klv": "klv"}


def read_camera_file(camera: CameraConfig, path: Path, *, clip_start: datetime | None = None) -> TelemetryFile:
    """The camera's telemetry file read as its config says: format, drone clock zone, and for drones
    the flight-path heading and configured gimbal pitch where the file has no attitude.

    TelemetryError (one line naming the file) if it cannot be read or gives no pose at all: a camera
    whose every frame would go un-geo-matched is stopped at start, not left to run blind.
    """
    telemetry, model = camera.telemetry, camera.camera_model
    assert telemetry is not None and telemetry.source in FILE_FORMATS, f"camera {camera.id}: not a file source"
    options = ReadOptions(
        clock_tz=resolve_timezone(telemetry.clock_tz or "UTC", camera_id=camera.id), clip_start=clip_start,
        flight_path=camera.kind == "drone", gimbal_pitch_deg=model.gimbal_pitch_deg if model is not None else None,
    )
    result = read_telemetry(path, fmt=FILE_FORMATS[telemetry.source], source=f"{camera.id}:{path.name}",
                            options=options)
    if not result.poses:
        raise TelemetryError(path, f"camera {camera.id!r}: {no_poses_reason(result, clip_start=clip_start)}")
    return result


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
        self.errors = 0  # sessions that ended in an error (each logged, each followed by a reconnect)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self.udp_port: int | None = None  # the bound port (useful with port 0 in tests)
        # one assembler for the camera's whole run: the date and the counters survive reconnects
        self.assembler = NmeaEpochAssembler(source=f"{camera.id}:{self.telemetry.source}")

    @property
    def alive(self) -> bool:
        """The feeder thread runs (MQTT: the client loop runs)."""
        return self._client is not None or (self._thread is not None and self._thread.is_alive())

    def start(self) -> None:
        if self.telemetry.source == "mqtt":
            self._start_mqtt()
            return
        if self.telemetry.source == "nmea_udp":
            reader = UdpNmeaReader(self.telemetry.host or "0.0.0.0", self.telemetry.port or 0,
                                   assembler=self.assembler)
            self.udp_port = reader.port
            session: Callable[[], int] = self._udp_session(reader)
        elif self.telemetry.source == "nmea_serial":
            session = self._serial_session
        else:
            session = self._tcp_session
        self._thread = threading.Thread(target=self._supervise, args=(session,), name=f"telemetry-{self.camera.id}",
                                        daemon=True)
        self._thread.start()
        log.info("camera %s: live telemetry %s started", self.camera.id, self.telemetry.source)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _supervise(self, session: Callable[[], int]) -> None:
        """Run sessions until stop; log every end with the camera id, back off, run again."""
        delay = BACKOFF_MIN_S
        while not self._stop.is_set():
            count, problem = self._session(session)
            if self._stop.is_set():
                return
            wait = BACKOFF_MIN_S if count else delay
            log.warning("camera %s: live telemetry %s %s after %d poses; reconnecting in %.0f s",
                        self.camera.id, self._where(), problem, count, wait)
            self._stop.wait(wait)
            delay = BACKOFF_MIN_S if count else min(delay * 2, BACKOFF_MAX_S)

    def _session(self, session: Callable[[], int]) -> tuple[int, str]:
        """(poses, how it ended): the session's errors are logged and counted here, never raised."""
        try:
            return session(), "ended"
        except OSError as exc:
            self.errors += 1
            return 0, f"unavailable ({exc})"
        except Exception as exc:  # a bug must not leave the camera silently without poses
            self.errors += 1
            log.exception("camera %s: live telemetry %s failed", self.camera.id, self._where())
            return 0, f"failed ({type(exc).__name__}: {exc})"

    def _where(self) -> str:
        if self.telemetry.source == "nmea_udp":
            return f"UDP port {self.udp_port}"
        if self.telemetry.source == "nmea_serial":
            return f"serial {self.telemetry.path}"
        return f"NMEA TCP {self.telemetry.host}:{self.telemetry.port}"

    def _serial_session(self) -> int:
        assert self.telemetry.path is not None
        return self.track.extend(read_nmea_device(self.telemetry.path, assembler=self.assembler, stop=self._stop,
                                                  baud=self.telemetry.baud))

    def _tcp_session(self) -> int:
        host, port = self.telemetry.host or "", self.telemetry.port or 0
        return self.track.extend(read_nmea_tcp(host, port, stop=self._stop, assembler=self.assembler))

    def _udp_session(self, first: UdpNmeaReader) -> Callable[[], int]:
        """Sessions on the bound socket; after an error the same port is bound again."""
        readers = [first]

        def session() -> int:
            reader = readers.pop() if readers else UdpNmeaReader(
                self.telemetry.host or "0.0.0.0", self.udp_port or 0, assembler=self.assembler)
            with reader:
                return self.track.extend(reader.poses(stop=self._stop))

        return session

    def _start_mqtt(self) -> None:
        broker = self.config.broker
        nodes = BrokerNodes(broker.endpoints())  # a clustered broker: the next node after a lost connection
        client = make_client(client_id=f"sw-telemetry-{self.config.edge_id}-{self.camera.id}",
                             protocol=broker.protocol, username=broker.username, password=broker.password(),
                             tls=broker.tls if broker.tls is not None else nodes.tls)
        topic = telemetry_topic(self.config.edge_id, self.camera.id)
        handler = TelemetryHandler(edge_id=self.config.edge_id, camera_id=self.camera.id)

        def on_connect(c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
            if not reason.is_failure:
                c.subscribe(topic, qos=1)  # again after every reconnect

        def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
            try:  # an exception here would end paho's network loop: the camera would get no more poses
                pose = handler.handle(bytes(message.payload))
                if pose is not None:
                    self.track.append(pose)
            except Exception:
                self.errors += 1
                log.exception("camera %s: telemetry message on %s could not be used", self.camera.id, topic)

        client.on_connect = on_connect
        client.on_message = on_message

        def on_pre_connect(c: mqtt.Client, _u: object) -> None:
            nodes.before_connect(c)

        client.on_pre_connect = on_pre_connect
        client.on_connect_fail = lambda _c, _u: nodes.lost()
        client.on_disconnect = lambda _c, _u, _f, _r, _p: nodes.lost()
        client.reconnect_delay_set(int(BACKOFF_MIN_S), int(BACKOFF_MAX_S))
        host, port = nodes.current
        connect_async(client, host=host, port=port, keepalive_s=broker.keepalive_s)
        client.loop_start()
        self._client = client
        log.info("camera %s: live telemetry from MQTT %s", self.camera.id, topic)
