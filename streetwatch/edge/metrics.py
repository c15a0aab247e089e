"""Prometheus metrics of one edge box, served on `metrics_port` at /metrics.

Every metric lives in the `EdgeMetrics` object's own CollectorRegistry, not prometheus_client's
global default: tests and several pipelines in one process each get fresh, independent values,
and creating a second EdgeMetrics never fails with "Duplicated timeseries". The price is that the
default process/platform collectors are not exported; `EdgeMetrics` registers them explicitly.

Names carry the `streetwatch_` prefix (Prometheus convention: one namespace per application), so
`frames_decoded` is exported as `streetwatch_frames_decoded_total`.

Every per-camera series exists from the start (`register_cameras`, at 0): a rate or an alert rule
over a camera that never dropped a frame or never alerted sees 0, not a missing series.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

log = logging.getLogger(__name__)

NAMESPACE = "streetwatch"
# YOLOX-Nano takes ~11-16 ms per frame on a 2-core CPU; a batch of 4 up to ~60 ms.
INFERENCE_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
# Decoding a 1080p GOP up to the alert's frame and encoding the JPEG: tens to hundreds of ms.
EVIDENCE_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0)


class SourceHealth(Protocol):
    """What `observe_sources` reads from a camera source (edge.sources.CameraSource fits)."""

    @property
    def camera_id(self) -> str: ...

    @property
    def frames_decoded(self) -> int: ...

    @property
    def frames_dropped(self) -> int: ...

    @property
    def connected(self) -> bool: ...


class MainStreamHealth(Protocol):
    """What `observe_main_streams` reads (edge.main_stream.MainStream fits)."""

    @property
    def camera_id(self) -> str: ...

    @property
    def connected(self) -> bool: ...


class EdgeMetrics:
    """The edge's metrics. Label `camera` = camera id from the edge config.

    frames_decoded{camera}     frames decoded from the stream (before sampling)
    frames_dropped{camera}     frames skipped because the detector could not keep up
    inference_seconds          one detector call (a batch may span cameras, so no camera label)
    frames_inferred            frames run through the detector (throughput = rate of this)
    alerts_published{camera}   alerts the broker acknowledged (PUBACK)
    outbox_full{camera}        alerts refused because the outbox was full (not stored!)
    outbox_depth               alerts waiting in the outbox
    stream_connected{camera}   1 while the camera stream is open
    seconds_since_frame{camera} seconds since the camera's last decoded frame (since start if none):
                               a stalled stream grows here while stream_connected may still say 1
    frames_skipped{camera}     sampled frames the change test let skip the detector (tracks carried forward)
    evidence_full_resolution{camera}  alerts whose evidence came from the main stream (cameras with detect_url)
    evidence_fallback{camera, reason} alerts whose evidence fell back to the sub-stream picture, and why
    evidence_seconds           alert -> evidence JPEG, main stream decode included (cameras with detect_url)
    main_stream_connected{camera} 1 while a camera's main stream (kept for evidence) is open
    mqtt_connected             1 while the broker connection is up
    build_info{version, model, model_sha256}  1: what this box runs
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """`clock`: monotonic seconds, for the stall gauge."""
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.frames_decoded = Counter("frames_decoded", "Frames decoded from the stream", ["camera"],
                                      namespace=NAMESPACE, registry=reg)
        self.frames_dropped = Counter("frames_dropped", "Frames skipped because the detector was busy",
                                      ["camera"], namespace=NAMESPACE, registry=reg)
        self.inference_seconds = Histogram("inference_seconds", "Seconds per detector call",
                                           namespace=NAMESPACE, buckets=INFERENCE_BUCKETS, registry=reg)
        self.frames_inferred = Counter("frames_inferred", "Frames run through the detector",
                                       namespace=NAMESPACE, registry=reg)
        self.alerts_published = Counter("alerts_published", "Alerts acknowledged by the broker",
                                        ["camera"], namespace=NAMESPACE, registry=reg)
        self.outbox_full = Counter("outbox_full", "Alerts refused because the outbox was full",
                                   ["camera"], namespace=NAMESPACE, registry=reg)
        self.outbox_depth = Gauge("outbox_depth", "Alerts waiting in the outbox",
                                  namespace=NAMESPACE, registry=reg)
        self.stream_connected = Gauge("stream_connected", "1 while the camera stream is open",
                                      ["camera"], namespace=NAMESPACE, registry=reg)
        self.mqtt_connected = Gauge("mqtt_connected", "1 while connected to the MQTT broker",
                                    namespace=NAMESPACE, registry=reg)
        self.seconds_since_frame = Gauge("seconds_since_frame", "Seconds since the camera's last decoded frame",
                                         ["camera"], namespace=NAMESPACE, registry=reg)
        self.frames_skipped = Counter("frames_skipped", "Sampled frames not detected: nothing changed in the zones",
                                      ["camera"], namespace=NAMESPACE, registry=reg)
        self.evidence_full_resolution = Counter(
            "evidence_full_resolution", "Alerts with evidence from the main stream", ["camera"],
            namespace=NAMESPACE, registry=reg)
        self.evidence_fallback = Counter(
            "evidence_fallback", "Alerts whose evidence fell back to the sub-stream picture", ["camera", "reason"],
            namespace=NAMESPACE, registry=reg)
        self.evidence_seconds = Histogram("evidence_seconds", "Seconds from the alert to its full-resolution JPEG",
                                          namespace=NAMESPACE, buckets=EVIDENCE_BUCKETS, registry=reg)
        self.main_stream_connected = Gauge("main_stream_connected", "1 while the camera's main stream is open",
                                           ["camera"], namespace=NAMESPACE, registry=reg)
        self.build_info = Gauge("build_info", "1, labelled with the version and the model this box runs",
                                ["version", "model", "model_sha256"], namespace=NAMESPACE, registry=reg)
        if registry is None:
            # Process CPU/memory/fds, as the default registry would export them.
            ProcessCollector(registry=reg)
        self._seen: dict[tuple[str, str], int] = {}  # (camera, counter) -> last cumulative value
        self._seen_lock = threading.Lock()
        self._last_frame: dict[str, float] = {}  # camera -> monotonic time its frame count last rose
        self._clock = clock

    def register_cameras(self, camera_ids: Iterable[str]) -> None:
        """Create every per-camera series at 0 (and start each camera's stall clock)."""
        now = self._clock()
        for camera in camera_ids:
            for counter in (self.frames_decoded, self.frames_dropped, self.alerts_published, self.outbox_full,
                            self.frames_skipped):
                counter.labels(camera=camera)
            self.stream_connected.labels(camera=camera).set(0)
            with self._seen_lock:
                self._last_frame.setdefault(camera, now)
            self.seconds_since_frame.labels(camera=camera).set_function(self._stall_reader(camera))

    def _stall_reader(self, camera: str) -> Callable[[], float]:
        def seconds_since_frame() -> float:
            with self._seen_lock:
                last = self._last_frame.get(camera)
            return 0.0 if last is None else max(0.0, self._clock() - last)

        return seconds_since_frame

    def set_build(self, *, version: str, model: str, model_sha256: str) -> None:
        self.build_info.labels(version=version, model=model, model_sha256=model_sha256).set(1)

    def observe_sources(self, sources: Iterable[SourceHealth]) -> None:
        """Copy the sources' own cumulative counters into the Prometheus counters (by delta) and
        set stream_connected; call it as often as convenient (e.g. once per pipeline step)."""
        with self._seen_lock:
            for source in sources:
                camera = source.camera_id
                if self._advance(self.frames_decoded, camera, "decoded", source.frames_decoded):
                    self._last_frame[camera] = self._clock()
                self._advance(self.frames_dropped, camera, "dropped", source.frames_dropped)
                self.stream_connected.labels(camera=camera).set(1 if source.connected else 0)

    def _advance(self, counter: Counter, camera: str, key: str, total: int) -> bool:
        """Add the new part of a cumulative count; True if it rose."""
        last = self._seen.get((camera, key), 0)
        # A smaller total means the source object was replaced: its count restarted from 0.
        delta = total - last if total >= last else total
        if delta > 0:
            counter.labels(camera=camera).inc(delta)
        self._seen[(camera, key)] = total
        return delta > 0

    def observe_skipped(self, camera: str) -> None:
        self.frames_skipped.labels(camera=camera).inc()

    def observe_evidence(self, camera: str, *, full_resolution: bool, reason: str, seconds: float) -> None:
        """One alert's evidence of a camera with a sub-stream: from the main stream or not (why)."""
        if full_resolution:
            self.evidence_full_resolution.labels(camera=camera).inc()
        else:
            self.evidence_fallback.labels(camera=camera, reason=reason).inc()
        self.evidence_seconds.observe(seconds)

    def observe_main_streams(self, streams: Iterable[MainStreamHealth]) -> None:
        for stream in streams:
            self.main_stream_connected.labels(camera=stream.camera_id).set(1 if stream.connected else 0)

    def observe_inference(self, seconds: float, frames: int) -> None:
        """Record one detector call that processed `frames` frames in `seconds`."""
        self.inference_seconds.observe(seconds)
        self.frames_inferred.inc(frames)

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """The current value of one exported sample (e.g. 'streetwatch_outbox_depth'), or None."""
        return self.registry.get_sample_value(name, labels or {})


@dataclass
class MetricsServer:
    """A running /metrics endpoint; `close()` releases the port."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(port: int, metrics: EdgeMetrics, *, addr: str = "0.0.0.0") -> MetricsServer | None:
    """Serve `metrics` on http://addr:port/metrics in a daemon thread; port 0 means off (None)."""
    if port == 0:
        return None
    try:
        server, thread = start_http_server(port, addr=addr, registry=metrics.registry)
    except OSError as exc:
        message = f"metrics_port: cannot serve /metrics on {addr}:{port}: {exc.strerror}"
        raise OSError(exc.errno, message) from None
    log.info("serving Prometheus metrics on http://%s:%d/metrics", addr, port)
    return MetricsServer(server, thread)


__all__ = ["EdgeMetrics", "MetricsServer", "SourceHealth", "start_metrics_server"]
