"""Per-camera analysis: detections → tracks → rules → geo → alerts with evidence (alerting.py).

`CameraAnalyzer` holds one camera's state (tracker, rule engine, static-foreground model, ground
homography). It is fed frames and their detections by the worker (live, batched across cameras)
or by replay (one file, in order), so both paths run the very same code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import supervision as sv

from streetwatch.edge.alerting import AlertContext, build_alert_with_media
from streetwatch.edge.alerts import Alert, Location, ModelRef
from streetwatch.edge.config import CameraConfig, EdgeConfig
from streetwatch.edge.evidence_set import EvidenceSetBuilder, MediaItem, MediaShelf
from streetwatch.edge.foreground import StaticForeground, foreground_params
from streetwatch.edge.geo import (
    BehindHorizonError,
    GroundHomography,
    fit_homography,
    pixel_to_geo,
    polygon_geo_to_px,
)
from streetwatch.edge.main_stream import FullResolution
from streetwatch.edge.moving import MovingCameraAnalyzer, pose_track_for
from streetwatch.edge.rules import ViolationEngine, roles_read
from streetwatch.edge.tracking import CameraTracker, TrackerSettings, signature_size
from streetwatch.edge.types import Frame, ViolationEvent

log = logging.getLogger(__name__)


class CameraAnalyzer:
    """One camera's analysis state; `analyze` turns one frame's detections into alerts."""

    def __init__(self, camera: CameraConfig, context: AlertContext) -> None:
        self.camera = camera
        self.context = context
        self.homography: GroundHomography | None = (
            fit_homography(camera.calibration.points) if camera.calibration else None
        )
        rules = context.config.rules_for(camera)
        violations = {violation for zone in camera.zones for violation in zone.violations}
        self.tracker = CameraTracker(
            camera.id, TrackerSettings.for_camera(camera, rules), roles=roles_read(violations)
        )
        polygons = self._zone_polygons()
        self.engine = ViolationEngine(camera, rules, polygons_px=polygons)
        # Background modelling costs a few ms per frame: only cameras that watch for goods pay it.
        watches_goods = any("stacked_goods" in zone.violations for zone in camera.zones)
        self.foreground = (
            StaticForeground(camera.id, foreground_params(rules), watch=self._goods_box(polygons))
            if watches_goods
            else None
        )
        self._static_checked_t: float | None = None
        # Cameras with a sub-stream: chooses the evidence picture (edge/main_stream.py); set by the worker.
        self.full_resolution: FullResolution | None = None
        self._static_boxes: list[tuple[float, float, float, float]] = []
        self.evidence_set = EvidenceSetBuilder(context.config.evidence, polygons)
        self.media = MediaShelf()

    def _zone_polygons(self) -> dict[str, Sequence[tuple[float, float]]]:
        polygons: dict[str, Sequence[tuple[float, float]]] = {}
        for zone in self.camera.zones:
            if zone.polygon_px is not None:
                polygons[zone.id] = list(zone.polygon_px)
            elif zone.polygon_geo is not None and self.homography is not None:
                polygons[zone.id] = polygon_geo_to_px(self.homography, zone.polygon_geo, zone_id=zone.id)
        return polygons

    def _goods_box(
        self, polygons: dict[str, Sequence[tuple[float, float]]]
    ) -> tuple[float, float, float, float] | None:
        """The box around the goods zones (frame pixels): static regions elsewhere are never used."""
        goods = [zone.id for zone in self.camera.zones if "stacked_goods" in zone.violations]
        points = [point for zone_id in goods for point in polygons.get(zone_id, [])]
        if not points:
            return None
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return (min(xs), min(ys), max(xs), max(ys))

    def analyze(self, frame: Frame, detections: sv.Detections) -> list[Alert]:
        if self.camera.zones:  # a camera without zones never alerts: it keeps no frames
            self.evidence_set.observe(frame)
        # The appearance signatures read one fixed small view: the same pixels whether the detector
        # ran on this frame or its detections were carried (change_gate.py), so skipping a frame
        # can never change which track a car is.
        view = frame.picture.bgr(signature_size(frame.width, frame.height)) if len(detections) else None
        tracks = self.tracker.update(t=frame.pts_s, detections=detections, image=view, frame_width=frame.width)
        events = self.engine.update(
            t=frame.pts_s,
            captured_at=frame.captured_at,
            tracks=tracks,
            static_regions=self._static_regions(frame),
        )
        return [self._to_alert(event, frame) for event in events]

    def _static_regions(self, frame: Frame) -> list[tuple[float, float, float, float]]:
        """Static foreground boxes, refreshed every `static_check_interval_s` of stream time.

        The background model is the costliest stage after inference; goods must stay for minutes,
        so updating it every few seconds (its time constants are in seconds) loses nothing.
        """
        if self.foreground is None:
            return []
        interval = self.context.config.rules.static_check_interval_s
        last = self._static_checked_t
        if last is None or frame.pts_s < last or frame.pts_s - last >= interval:
            view = frame.picture.at_least(self.foreground.params.work_width)  # often the detector's view
            regions = self.foreground.update(view, frame.pts_s, frame_size=(frame.width, frame.height))
            self._static_boxes = [region.box for region in regions]
            self._static_checked_t = frame.pts_s
        return self._static_boxes

    def take_media(self, alert_id: str) -> list[MediaItem]:
        """The evidence-set bytes of an alert `analyze` returned (once; [] when none)."""
        return self.media.take(alert_id)

    def _to_alert(self, event: ViolationEvent, frame: Frame) -> Alert:
        location = self._locate(event.anchor)  # in the camera's pixels, before the evidence picture is chosen
        started = time.perf_counter()
        if self.full_resolution is not None:
            frame, event = self.full_resolution.choose(frame, event)  # the main stream's picture, boxes mapped
        alert, media = build_alert_with_media(event, frame, camera=self.camera, context=self.context,
                                              location=location, evidence_set=self.evidence_set)
        if self.full_resolution is not None:
            self.full_resolution.done(time.perf_counter() - started)
        self.media.keep(alert.alert_id, media)
        return alert

    def _locate(self, anchor_px: tuple[float, float]) -> Location | None:
        """The event's ground point (pixels) on WGS84 through the calibration; None without one."""
        if self.homography is None:
            return None
        try:
            return pixel_to_geo(self.homography, anchor_px[0], anchor_px[1])
        except BehindHorizonError:
            log.warning("camera %s: ground point %s is above the horizon; alert sent without location",
                        self.camera.id, anchor_px)
            return None


Analyzer = CameraAnalyzer | MovingCameraAnalyzer


def build_analyzers(
    config: EdgeConfig,
    model: ModelRef,
    cameras: Sequence[CameraConfig],
    *,
    video: Path | None = None,
    clip_start: datetime | None = None,
) -> dict[str, Analyzer]:
    """One analyzer per camera: fixed cameras by homography, vehicles/drones by their telemetry
    (`video`/`clip_start`: a replay's file, for telemetry sidecars and SRT clocks)."""
    context = AlertContext(edge_id=config.edge_id, model=model, config=config)
    analyzers: dict[str, Analyzer] = {}
    for camera in cameras:
        if camera.kind == "fixed":
            analyzers[camera.id] = CameraAnalyzer(camera, context)
        else:
            track = pose_track_for(camera, video=video, clip_start=clip_start)
            analyzers[camera.id] = MovingCameraAnalyzer(camera, context, track=track)
    return analyzers
