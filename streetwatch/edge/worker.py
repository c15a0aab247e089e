"""The live edge worker: every camera's decode thread feeds a batched detector; alerts go to the
durable outbox first and the publisher drains it to MQTT.

Threads: one decode thread per camera (`CameraSource`), one publisher thread, and one or more
detection loops; each loop owns a detector session and the analysis state of its cameras (so that
state needs no locks).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import onnxruntime as ort

from streetwatch.edge.alerts import Alert
from streetwatch.edge.change_gate import ChangeGate, detect_or_carry, gate_for
from streetwatch.edge.config import EdgeConfig, ModelConfig
from streetwatch.edge.detector import FALLBACK_PROVIDER, Detector, select_providers
from streetwatch.edge.evidence_set import MediaItem
from streetwatch.edge.main_stream import FullResolution, MainStream, MainStreamOptions
from streetwatch.edge.metrics import EdgeMetrics, start_metrics_server
from streetwatch.edge.moving import live_feeds
from streetwatch.edge.outbox import Outbox, OutboxError, OutboxFull
from streetwatch.edge.pipeline import Analyzer, CameraAnalyzer, build_analyzers
from streetwatch.edge.publisher import Publisher
from streetwatch.edge.sources import CameraSource, SourceOptions
from streetwatch.edge.types import Frame
from streetwatch.version import package_version

log = logging.getLogger(__name__)


class DetectionLoop:
    """One onnxruntime session and the cameras it serves. Only its own thread calls `step`, so the
    cameras' analysis state needs no locks."""

    def __init__(
        self,
        detector: Detector,
        sources: list[CameraSource],
        analyzers: dict[str, Analyzer],
        *,
        batch_size: int,
        metrics: EdgeMetrics,
        emit: Callable[[Alert, list[MediaItem]], None],
        thresholds: dict[str, float] | None = None,
        gates: dict[str, ChangeGate] | None = None,
        main_streams: dict[str, FullResolution] | None = None,
    ) -> None:
        """`thresholds`: camera id -> its score threshold, applied when above the detector's own.
        `gates`: camera id -> its change test (cameras without one are detected on every frame).
        `main_streams`: camera id -> its main stream's evidence chooser (cameras with detect_url)."""
        self.detector = detector
        self.gates = gates or {}
        self.main_streams = main_streams or {}
        self.sources = sources
        self.analyzers = analyzers
        self.batch_size = batch_size
        self.metrics = metrics
        self._emit = emit
        self.thresholds = thresholds or {}
        self._next = 0  # the source the next batch starts with

    @property
    def finished(self) -> bool:
        return all(source.finished for source in self.sources)

    def step(self) -> int:
        """Take up to one fresh frame per camera (round robin), detect as a batch, analyse each."""
        frames = self._collect_batch()
        if frames:
            started = time.perf_counter()
            results, detected = detect_or_carry(self.detector, frames, self.gates, self.thresholds)
            if detected:
                self.metrics.observe_inference(time.perf_counter() - started, detected)
            for result in results:
                frame = result.frame
                if result.skipped:
                    self.metrics.observe_skipped(frame.camera_id)
                main = self.main_streams.get(frame.camera_id)
                if main is not None:
                    main.follow(frame)  # a file main stream is demuxed alongside
                analyzer = self.analyzers[frame.camera_id]
                for alert in analyzer.analyze(frame, result.detections):
                    self._emit(alert, analyzer.take_media(alert.alert_id))
        self.metrics.observe_sources(self.sources)
        self.metrics.observe_main_streams(chooser.main for chooser in self.main_streams.values())
        return len(frames)

    def _collect_batch(self) -> list[Frame]:
        """Frames from different cameras, starting after the last camera served: with more cameras
        than a batch holds, the ones late in the list are not starved by the first ones."""
        frames: list[Frame] = []
        count = len(self.sources)
        for offset in range(count):
            if len(frames) >= self.batch_size:
                break
            index = (self._next + offset) % count
            frame = self.sources[index].get(timeout=0)
            if frame is not None:
                frames.append(frame)
                self._next = (index + 1) % count
        return frames


class EdgeWorker:
    """Runs all cameras of one edge box until `stop()`.

    Detection loops (threads), each with its own onnxruntime session, split the cameras between
    them (`detection_loops_for`); with more than one, a session gets an equal share of the cores
    unless `model.threads` says otherwise.
    """

    def __init__(self, config: EdgeConfig, *, detector: Detector | None = None) -> None:
        self.config = config
        loops = detection_loops_for(config)
        model = _per_loop_threads(config.model_for(config.cameras), loops)
        detectors = [detector or Detector.from_config(model)]
        detectors += [Detector.from_config(model) for _ in range(loops - 1)]
        self.detector = detectors[0]
        self.metrics = EdgeMetrics()
        model_ref = self.detector.model_ref
        self.metrics.set_build(version=package_version(), model=model_ref.name, model_sha256=model_ref.sha256)
        self.metrics.register_cameras(camera.id for camera in config.cameras)
        self.outbox = Outbox(config.outbox, max_rows=config.outbox_max_rows, max_bytes=config.outbox_max_bytes,
                             retention_s=config.outbox_retention_h * 3600,
                             media_max_bytes=config.evidence.media.outbox_max_bytes)
        self.publisher = Publisher(config, self.outbox, metrics=self.metrics, model=model_ref)
        self.analyzers: dict[str, Analyzer] = build_analyzers(
            config, self.detector.model_ref, config.cameras
        )
        self.sources = [
            CameraSource(camera, options=SourceOptions(loop=camera.loop, render_view=self.detector.view))
            for camera in config.cameras
        ]
        # Cameras with a sub-stream keep their main stream demuxed, for full-resolution evidence.
        media = config.evidence.media
        self.main_streams = {
            camera.id: MainStream(camera.id, camera.url, options=MainStreamOptions(
                loop=camera.loop, keyframe_every_s=media.first_seen_every_s, keyframe_keep_s=media.first_seen_keep_s))
            for camera in config.cameras
            if camera.detect_url is not None
        }
        choosers = {camera_id: FullResolution(camera_id, main, self.metrics)
                    for camera_id, main in self.main_streams.items()}
        for camera_id, chooser in choosers.items():
            analyzer = self.analyzers[camera_id]
            if isinstance(analyzer, CameraAnalyzer):
                analyzer.full_resolution = chooser
                analyzer.evidence_set.first_seen_source = chooser.first_seen
        gates = {
            camera.id: gate
            for camera in config.cameras
            if (gate := gate_for(camera, getattr(self.analyzers[camera.id], "homography", None))) is not None
        }
        self.loops = [
            DetectionLoop(
                detector,
                self.sources[k::loops],
                self.analyzers,
                batch_size=config.model.batch_size,
                metrics=self.metrics,
                emit=self._emit,
                thresholds={camera.id: config.score_threshold_for(camera) for camera in config.cameras},
                gates=gates,
                main_streams=choosers,
            )
            for k, detector in enumerate(detectors)
        ]
        self.telemetry = live_feeds(config, self.analyzers.values())  # moving cameras' live poses
        self._stop = threading.Event()
        self._failure: BaseException | None = None

    def start(self) -> None:
        start_metrics_server(self.config.metrics_port, self.metrics)
        self.publisher.start()
        for feed in self.telemetry:
            feed.start()
        for source in self.sources:
            source.start()
        for main in self.main_streams.values():
            main.start()
        log.info("edge %s started with %d camera(s) on %d detection loop(s)",
                 self.config.edge_id, len(self.sources), len(self.loops))

    def request_stop(self) -> None:
        """Make `run()` return soon; safe from a signal handler (sets a flag, joins nothing)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        for source in self.sources:
            source.stop()
        for main in self.main_streams.values():
            main.stop()
        for feed in self.telemetry:
            feed.stop()
        self.publisher.stop()
        log.info("edge %s stopped", self.config.edge_id)

    def run(self, *, drain_timeout_s: float = 30.0) -> None:
        """Process frames until stop(), or until every source is a finished file; call start() first.

        When the files are done, wait (bounded) for the outbox to drain so a replay's alerts reach
        the broker before the process exits; whatever is left stays in the outbox for next time.
        An error in any detection loop stops them all and is raised here.
        """
        others = [
            threading.Thread(target=self._run_loop, args=(loop,), name=f"detect-{k}", daemon=True)
            for k, loop in enumerate(self.loops[1:], start=1)
        ]
        for thread in others:
            thread.start()
        self._run_loop(self.loops[0])
        for thread in others:
            thread.join()
        if self._failure is not None:
            raise self._failure
        if not self._stop.is_set():
            self._wait_drained(drain_timeout_s)

    def _run_loop(self, loop: DetectionLoop) -> None:
        try:
            while not self._stop.is_set():
                if loop.step() == 0:
                    if loop.finished:
                        return
                    time.sleep(0.02)
        except BaseException as exc:
            self._failure = self._failure or exc
            self._stop.set()
            if threading.current_thread() is threading.main_thread():
                raise

    def _wait_drained(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while ((self.outbox.depth() or self.outbox.media_depth()) and time.monotonic() < deadline
               and not self._stop.is_set()):
            time.sleep(0.05)
        log.info("edge %s: all files done, %d alert(s) left in the outbox",
                 self.config.edge_id, self.outbox.depth())

    def _emit(self, alert: Alert, media: list[MediaItem]) -> None:
        try:
            self.outbox.put(alert)
        except OutboxFull:
            self.metrics.outbox_full.labels(camera=alert.camera_id).inc()
            log.error("camera %s episode %s: outbox full, alert %s not stored",
                      alert.camera_id, alert.episode_id, alert.alert_id)
            return
        try:  # after the alert: its evidence set may be dropped (bounded), the alert never
            self.outbox.put_media(alert, [(item.ref, item.data) for item in media if item.data is not None])
        except OutboxError:
            log.exception("camera %s: evidence set of alert %s not stored; the alert goes without it",
                          alert.camera_id, alert.alert_id)
        self.publisher.notify()


def detection_loops_for(config: EdgeConfig) -> int:
    """`model.detection_loops`, or if 0 (automatic): on a CPU-only box one per core (at most one per
    camera), since a 1-thread session per core does more frames per CPU-second than one session
    spread over all cores (scripts/bench_edge.py, table 2); with a GPU provider usable, one."""
    if config.model.detection_loops:
        return config.model.detection_loops
    usable = select_providers(config.model.providers, ort.get_available_providers())
    if usable != [FALLBACK_PROVIDER]:
        return 1
    return max(1, min(_cores(), len(config.cameras)))


def _per_loop_threads(model: ModelConfig, loops: int) -> ModelConfig:
    """With several loops and threads unset, each session gets cores / loops intra-op threads
    (onnxruntime's default, all cores per session, would oversubscribe them)."""
    if loops == 1 or model.threads:
        return model
    return model.model_copy(update={"threads": max(1, _cores() // loops)})


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
