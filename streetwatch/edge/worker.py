"""The live edge worker: every camera's decode thread feeds one batched detector; alerts go to the
durable outbox first and the publisher drains it to MQTT.

Threads: one decode thread per camera (`CameraSource`), one publisher thread, and this loop,
which owns the detector and all per-camera analysis state (so that state needs no locks).
"""

from __future__ import annotations

import logging
import threading
import time

from streetwatch.edge.alerts import Alert
from streetwatch.edge.config import EdgeConfig
from streetwatch.edge.detector import Detector
from streetwatch.edge.metrics import EdgeMetrics, start_metrics_server
from streetwatch.edge.moving import live_feeds
from streetwatch.edge.outbox import Outbox, OutboxFull
from streetwatch.edge.pipeline import Analyzer, build_analyzers
from streetwatch.edge.publisher import Publisher
from streetwatch.edge.sources import CameraSource, SourceOptions
from streetwatch.edge.types import Frame

log = logging.getLogger(__name__)


class EdgeWorker:
    """Runs all cameras of one edge box until `stop()`."""

    def __init__(self, config: EdgeConfig, *, detector: Detector | None = None) -> None:
        self.config = config
        self.detector = detector or Detector.from_config(config.model)
        self.metrics = EdgeMetrics()
        self.outbox = Outbox(config.outbox, max_rows=config.outbox_max_rows, max_bytes=config.outbox_max_bytes)
        self.publisher = Publisher(config, self.outbox, metrics=self.metrics)
        self.analyzers: dict[str, Analyzer] = build_analyzers(
            config, self.detector.model_ref, config.cameras
        )
        self.sources = [
            CameraSource(camera, options=SourceOptions(loop=camera.loop, render_view=self.detector.view))
            for camera in config.cameras
        ]
        self.telemetry = live_feeds(config, self.analyzers.values())  # moving cameras' live poses
        self._stop = threading.Event()

    def start(self) -> None:
        start_metrics_server(self.config.metrics_port, self.metrics)
        self.publisher.start()
        for feed in self.telemetry:
            feed.start()
        for source in self.sources:
            source.start()
        log.info("edge %s started with %d camera(s)", self.config.edge_id, len(self.sources))

    def stop(self) -> None:
        self._stop.set()
        for source in self.sources:
            source.stop()
        for feed in self.telemetry:
            feed.stop()
        self.publisher.stop()
        log.info("edge %s stopped", self.config.edge_id)

    def run(self, *, drain_timeout_s: float = 30.0) -> None:
        """Process frames until stop(), or until every source is a finished file; call start() first.

        When the files are done, wait (bounded) for the outbox to drain so a replay's alerts reach
        the broker before the process exits; whatever is left stays in the outbox for next time.
        """
        while not self._stop.is_set():
            if self.step() == 0:
                if all(source.finished for source in self.sources):
                    self._wait_drained(drain_timeout_s)
                    return
                time.sleep(0.02)

    def _wait_drained(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.outbox.depth() and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.05)
        log.info("edge %s: all files done, %d alert(s) left in the outbox",
                 self.config.edge_id, self.outbox.depth())

    def step(self) -> int:
        """Take up to one fresh frame per camera (round robin), detect as a batch, analyse each."""
        frames = self._collect_batch()
        if not frames:
            self._update_gauges()
            return 0
        started = time.perf_counter()
        all_detections = self.detector.detect_batch([frame.picture for frame in frames])
        self.metrics.observe_inference(time.perf_counter() - started, len(frames))
        for frame, detections in zip(frames, all_detections, strict=True):
            for alert in self.analyzers[frame.camera_id].analyze(frame, detections):
                self._emit(alert)
        self._update_gauges()
        return len(frames)

    def _collect_batch(self) -> list[Frame]:
        frames: list[Frame] = []
        for source in self.sources:
            if len(frames) >= self.config.model.batch_size:
                break
            frame = source.get(timeout=0)
            if frame is not None:
                frames.append(frame)
        return frames

    def _emit(self, alert: Alert) -> None:
        try:
            self.outbox.put(alert)
        except OutboxFull:
            self.metrics.outbox_full.labels(camera=alert.camera_id).inc()
            log.error("camera %s episode %s: outbox full, alert %s not stored",
                      alert.camera_id, alert.episode_id, alert.alert_id)
            return
        self.publisher.notify()

    def _update_gauges(self) -> None:
        self.metrics.observe_sources(self.sources)
