"""Looking at a camera stream and the broker the way `edge run` will, for `edge check`.

`probe_camera` opens the stream with the worker's own options (RTSP over TCP, socket timeout),
reads its first video stream's size and frame rate, decodes a frame and measures the key-frame
interval from the packets (a long interval delays a keyframes_only camera and a reconnect).
`probe_broker` logs in with the box's credentials under a client id of its own, so a check never
takes the running worker's session.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import av
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from streetwatch.broker_config import BrokerConfig
from streetwatch.edge.sources import first_video_stream, is_live, open_container
from streetwatch.mqtt_common import connect_async, describe_reason, make_client, parse_broker_url
from streetwatch.redaction import redact

MAX_PROBE_PACKETS = 2000  # a 10 s GOP at 60 fps fits, and a file probe stays quick
MAX_PLAUSIBLE_FPS = 240.0


class ProbeError(RuntimeError):
    """The camera or broker is not usable; the message (redacted) says why."""


@dataclass(frozen=True)
class StreamFacts:
    width: int
    height: int
    fps: float | None
    codec: str
    keyframe_interval_s: float | None  # None: fewer than two key frames within the probe

    def describe(self) -> str:
        fps = f"{self.fps:.2f} fps" if self.fps else "fps unknown"
        gop = f"key frame every {self.keyframe_interval_s:.2f} s" if self.keyframe_interval_s else "one key frame seen"
        return f"{self.width}x{self.height}, {fps}, {gop}, {self.codec}"


def probe_camera(url: str, *, camera_id: str, timeout_s: float, probe_s: float) -> StreamFacts:
    """Open `url`, decode one frame and time two key frames (reading at most `probe_s` seconds)."""
    try:
        with open_container(url, timeout_s=timeout_s) as container:
            stream = first_video_stream(container, camera_id=camera_id)
            return _read_stream(container, stream, probe_s=probe_s if is_live(url) else 3600.0)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ProbeError(f"cannot read the stream: {redact(f'{type(exc).__name__}: {exc}')}") from None


def _read_stream(container: av.container.InputContainer, stream: av.VideoStream, *, probe_s: float) -> StreamFacts:
    deadline = time.monotonic() + probe_s
    keyframes: list[float] = []
    times: list[float] = []  # every packet's time: the frame rate as the stream delivers it
    decoded = None
    for count, packet in enumerate(container.demux(stream)):
        if packet.pts is not None and packet.time_base is not None:
            times.append(float(packet.pts * packet.time_base))
            if packet.is_keyframe:
                keyframes.append(times[-1])
        if decoded is None and (keyframes or not packet.is_keyframe):
            frames = packet.decode()
            decoded = frames[0] if frames else None
        if (decoded is not None and len(keyframes) >= 2) or count >= MAX_PROBE_PACKETS or time.monotonic() > deadline:
            break
    if decoded is None:
        raise ProbeError("no frame could be decoded from the stream")
    interval = keyframes[1] - keyframes[0] if len(keyframes) >= 2 else None
    return StreamFacts(width=decoded.width, height=decoded.height, fps=_frame_rate(stream, times),
                       codec=stream.codec_context.name, keyframe_interval_s=interval)


def _frame_rate(stream: av.VideoStream, times: list[float]) -> float | None:
    """Frames per second measured over the packets read; the stream's declared rate if too few were
    (over RTSP that is often the 90 kHz clock, not a frame rate)."""
    span = max(times) - min(times) if len(times) >= 5 else 0.0
    if span > 0:
        return (len(times) - 1) / span
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate and float(rate) <= MAX_PLAUSIBLE_FPS else None


def probe_broker(broker: BrokerConfig, *, client_id: str, timeout_s: float, url: str | None = None) -> str:
    """Log in to the broker (the node `url`, default its first) with `broker`'s credentials; the
    server's answer, or ProbeError."""
    host, port, url_tls = parse_broker_url(url or broker.endpoints()[0])
    client = make_client(client_id=client_id, protocol=broker.protocol, username=broker.username,
                         password=broker.password(), tls=broker.tls if broker.tls is not None else url_tls)
    answered = threading.Event()
    outcome: list[str] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: mqtt.ConnectFlags, code: ReasonCode, _p: Properties | None) -> None:
        outcome.append(("refused: " if code.is_failure else "") + describe_reason(code))
        answered.set()

    def on_connect_fail(_c: mqtt.Client, _u: object) -> None:
        cause = sys.exc_info()[1]  # paho calls this inside its `except OSError`
        outcome.append(f"unreachable: {cause}" if cause is not None else "unreachable")
        answered.set()

    client.on_connect, client.on_connect_fail = on_connect, on_connect_fail
    try:
        connect_async(client, host=host, port=port, keepalive_s=broker.keepalive_s)
        client.loop_start()
        if not answered.wait(timeout_s):
            raise ProbeError(f"{host}:{port}: no answer within {timeout_s:.0f} s")
    finally:
        client.disconnect()
        client.loop_stop()
    if outcome[0].startswith("unreachable"):
        raise ProbeError(f"cannot reach {host}:{port} ({outcome[0].removeprefix('unreachable: ')})")
    if outcome[0].startswith("refused"):
        raise ProbeError(f"{host}:{port} {outcome[0]} (user {broker.username or '(none)'})")
    return f"{host}:{port} accepted user {broker.username or '(none)'} (MQTT {broker.protocol})"
