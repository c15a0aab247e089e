"""Per-frame analysis of a moving camera: pose at capture time -> ground positions -> ground rules -> alerts.

`MovingCameraAnalyzer` is the vehicle/drone counterpart of `pipeline.CameraAnalyzer` (same
`analyze(frame, detections)` contract, so the worker and replay drive both alike). Each frame is
matched to the platform pose at its `captured_at` (`PoseTrack.match` with the camera's
`max_gap_s` and `clock_offset_s`); a frame without a pose is not geo-matched: its detections are
not used, and the log says so per camera (one warning when a gap starts, one line when it ends).

Telemetry: file sources (nmea_file, gpx, srt, klv) are read whole at start from
`telemetry.path`, or for a replay from the video's sidecar (same stem: .gpx, .nmea, .SRT/.srt;
KLV from the video itself). Live sources (nmea_tcp, nmea_udp, mqtt) start empty: `live_feeds`
gives the threads (edge/telemetry_feed.py) that fill them while the worker runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import supervision as sv

from streetwatch.edge.alerting import AlertContext, build_alert_with_media
from streetwatch.edge.alerts import Alert, Location
from streetwatch.edge.config import FILE_TELEMETRY, CameraConfig, CameraModelConfig, EdgeConfig, TelemetryConfig
from streetwatch.edge.evidence_set import EvidenceSetBuilder, MediaItem, MediaShelf
from streetwatch.edge.geo import (
    MAX_ACCURACY_M,
    CameraPose,
    Intrinsics,
    MountOffsets,
    PoseUnusable,
    TangentPlane,
    Uncertainty,
    drone_camera_pose,
    project_to_ground,
    vehicle_camera_pose,
)
from streetwatch.edge.moving_rules import GroundObservation, GroundRules, rules_plane
from streetwatch.edge.telemetry import Pose, PoseMatch, PoseTrack
from streetwatch.edge.telemetry_feed import LiveTelemetry, SharedPoseTrack, read_camera_file
from streetwatch.edge.types import Frame, ViolationEvent
from streetwatch.edge.zones import ground_points

log = logging.getLogger(__name__)

RULE_ROLES = ("vehicle", "goods", "person", "vending_prop")
EDGE_MARGIN_PX = 2.0
PART_COVER = 0.8
LIVE_TRACK_MAXLEN = 36_000  # ten hours of 1 Hz fixes
_SIDECAR_SUFFIXES = {"gpx": (".gpx", ".GPX"), "nmea_file": (".nmea", ".NMEA", ".log"), "srt": (".SRT", ".srt")}


class TelemetryFileError(ValueError):
    """A configured or sidecar telemetry file that is missing; the message names the camera and path."""


def telemetry_file(camera: CameraConfig, telemetry: TelemetryConfig, *, video: Path | None) -> Path:
    """The file a file-based telemetry source reads: the configured path, else the video's sidecar."""
    if telemetry.path is not None:
        if not telemetry.path.is_file():
            raise TelemetryFileError(f"camera {camera.id!r} telemetry.path: {telemetry.path} is not a file")
        return telemetry.path
    if video is None:
        raise TelemetryFileError(f"camera {camera.id!r} telemetry.path: required for source {telemetry.source} "
                                 "outside a replay (no video to find a sidecar next to)")
    if telemetry.source == "klv":
        return video
    for suffix in _SIDECAR_SUFFIXES[telemetry.source]:
        if video.with_suffix(suffix).is_file():
            return video.with_suffix(suffix)
    wanted = " or ".join(str(video.with_suffix(s)) for s in _SIDECAR_SUFFIXES[telemetry.source])
    raise TelemetryFileError(f"camera {camera.id!r}: no telemetry.path and no sidecar {wanted}")


def read_poses(camera: CameraConfig, *, video: Path | None = None, clip_start: datetime | None = None) -> list[Pose]:
    """All poses of a file-based telemetry source (see the module docstring for where the file is)."""
    telemetry = camera.telemetry
    assert telemetry is not None and telemetry.source in FILE_TELEMETRY
    path = telemetry_file(camera, telemetry, video=video)
    return list(read_camera_file(camera, path, clip_start=clip_start).poses)


class PoseSource(Protocol):
    """What the analyzer needs of a pose track (PoseTrack, or SharedPoseTrack for live feeds)."""

    def match(self, t: datetime, *, max_gap_s: float, clock_offset_s: float = 0.0) -> PoseMatch: ...


def pose_track_for(
    camera: CameraConfig, *, video: Path | None = None, clip_start: datetime | None = None
) -> PoseTrack | SharedPoseTrack:
    """The camera's PoseTrack: read whole for file sources, empty (bounded, fed live) otherwise."""
    telemetry = camera.telemetry
    assert telemetry is not None, f"camera {camera.id} has no telemetry"
    if telemetry.source not in FILE_TELEMETRY:
        log.info("camera %s: telemetry %s is live; poses are fed as they arrive", camera.id, telemetry.source)
        return SharedPoseTrack(PoseTrack(maxlen=LIVE_TRACK_MAXLEN, name=camera.id))
    poses = read_poses(camera, video=video, clip_start=clip_start)
    track = PoseTrack(poses, name=camera.id)
    if poses:
        log.info("camera %s: %d poses from %s to %s", camera.id, len(poses), poses[0].t.isoformat(),
                 poses[-1].t.isoformat())
    else:
        log.warning("camera %s: the telemetry file has no usable pose; nothing will be geo-matched", camera.id)
    return track


def uncertainty_of(model: CameraModelConfig) -> Uncertainty:
    return Uncertainty(position_sigma_m=model.position_sigma_m, attitude_sigma_deg=model.attitude_sigma_deg,
                       assumed_attitude_sigma_deg=model.assumed_attitude_sigma_deg,
                       height_sigma_m=model.height_sigma_m)


def camera_pose(camera: CameraConfig, pose: Pose) -> CameraPose:
    """The camera's pose for one platform pose (raises PoseUnusable)."""
    model = camera.camera_model
    assert model is not None
    offsets = MountOffsets(model.yaw_deg, model.pitch_deg, model.roll_deg)
    if camera.kind == "vehicle":
        assert model.mount_height_m is not None
        return vehicle_camera_pose(pose, mount_height_m=model.mount_height_m, offsets=offsets,
                                   uncertainty=uncertainty_of(model))
    return drone_camera_pose(pose, offsets=offsets, uncertainty=uncertainty_of(model), ground_alt_m=model.ground_alt_m)


def intrinsics_for(model: CameraModelConfig, width: int, height: int) -> Intrinsics:
    if model.matrix is not None:
        assert model.matrix_image_size is not None
        return Intrinsics.from_matrix(model.matrix, calibrated_size=model.matrix_image_size,
                                      image_size=(width, height))
    assert model.hfov_deg is not None
    return Intrinsics.from_hfov(model.hfov_deg, width, height)


def observations_of(
    detections: sv.Detections, cam: CameraPose, intrinsics: Intrinsics, *, plane: TangentPlane,
    uncertainty: Uncertainty, image_width: int | None = None,
) -> list[GroundObservation]:
    """The rule-relevant detections projected onto the ground (vectorised); above-horizon ones dropped."""
    if len(detections) == 0:
        return []
    roles = np.asarray(detections.data.get("role", np.full(len(detections), "ignore")))
    keep = np.isin(roles, RULE_ROLES)
    if not keep.any():
        return []
    boxes = np.asarray(detections.xyxy, dtype=np.float64)
    width = float(image_width) if image_width is not None else np.inf
    # A box cut by the left/right frame edge has a wrong bottom centre: the object is half out of view.
    keep &= (boxes[:, 0] > EDGE_MARGIN_PX) & (boxes[:, 2] < width - EDGE_MARGIN_PX)
    scores_all = np.asarray(detections.confidence if detections.confidence is not None else np.ones(len(roles)))
    keep &= ~part_of_another(boxes, roles, scores_all)
    if not keep.any():
        return []
    boxes = boxes[keep]
    ground = project_to_ground(cam, intrinsics, ground_points(boxes), plane=plane, uncertainty=uncertainty)
    names = np.asarray(detections.data.get("class_name", roles))[keep]
    scores = scores_all[keep]
    return [
        GroundObservation(role=str(roles[keep][i]), class_name=str(names[i]), score=float(scores[i]),  # type: ignore[arg-type]
                          box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])), east=float(ground.east[i]),
                          north=float(ground.north[i]), accuracy_m=float(ground.accuracy_m[i]))
        for i, b in enumerate(boxes)
        if ground.valid[i] and ground.accuracy_m[i] <= MAX_ACCURACY_M
    ]


def part_of_another(boxes: np.ndarray, roles: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(N,) bool: box i lies mostly (>= PART_COVER of its area) inside a higher-scoring box of the same
    role. The detector sometimes boxes a car's rear as a second car; on the ground that part would be
    a second, phantom object a metre away (class-aware NMS keeps it: its IoU with the whole is small)."""
    lo = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = np.maximum(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1), 1e-9)
    covered = inter / area[:, None] >= PART_COVER
    stronger = (scores[None, :] > scores[:, None]) & (roles[None, :] == roles[:, None])
    return np.asarray((covered & stronger).any(axis=1), dtype=bool)


class MovingCameraAnalyzer:
    """One vehicle/drone camera's analysis state; `analyze` turns one frame's detections into alerts."""

    def __init__(self, camera: CameraConfig, context: AlertContext, *, track: PoseSource) -> None:
        assert camera.camera_model is not None and camera.telemetry is not None
        self.camera = camera
        self.context = context
        self.track = track
        self.telemetry = camera.telemetry
        self.uncertainty = uncertainty_of(camera.camera_model)
        self.plane = rules_plane(camera)
        self.rules = GroundRules(camera, context.config.rules_for(camera), plane=self.plane) if self.plane else None
        if self.plane is None:
            log.warning("camera %s (%s): no polygon_geo zones; nothing to report", camera.id, camera.kind)
        self._unmatched = 0
        self._assumed_logged: set[str] = set()
        self.evidence_set = EvidenceSetBuilder(context.config.evidence, {}, still_camera=False)
        self.media = MediaShelf()

    def analyze(self, frame: Frame, detections: sv.Detections) -> list[Alert]:
        cam = self._pose_for(frame)
        if cam is None or self.rules is None or self.plane is None:
            return []
        height, width = frame.height, frame.width
        intrinsics = intrinsics_for(self.camera.camera_model, width, height)  # type: ignore[arg-type]
        observations = observations_of(detections, cam, intrinsics, plane=self.plane, uncertainty=self.uncertainty,
                                       image_width=width)
        events = self.rules.update(t=frame.pts_s, captured_at=frame.captured_at, observations=observations)
        return [self._to_alert(event, frame) for event in events]

    def _pose_for(self, frame: Frame) -> CameraPose | None:
        match = self.track.match(frame.captured_at, max_gap_s=self.telemetry.max_gap_s,
                                 clock_offset_s=self.telemetry.clock_offset_s)
        reason = match.reason
        if match.pose is not None:
            try:
                cam = camera_pose(self.camera, match.pose)
            except PoseUnusable as exc:
                reason = str(exc)
            else:
                self._pose_found(frame, cam)
                return cam
        if self._unmatched == 0:
            log.warning("camera %s: frame %d at %s not geo-matched: %s", self.camera.id, frame.index,
                        frame.captured_at.isoformat(), reason)
        else:
            log.debug("camera %s: frame %d not geo-matched: %s", self.camera.id, frame.index, reason)
        self._unmatched += 1
        return None

    def _pose_found(self, frame: Frame, cam: CameraPose) -> None:
        if self._unmatched:
            log.info("camera %s: pose found again at frame %d after %d frame(s) not geo-matched",
                     self.camera.id, frame.index, self._unmatched)
            self._unmatched = 0
        for note in set(cam.assumed) - self._assumed_logged:
            log.info("camera %s: telemetry lacks attitude, projecting with an assumed %s", self.camera.id, note)
            self._assumed_logged.add(note)

    def take_media(self, alert_id: str) -> list[MediaItem]:
        """The evidence-set bytes of an alert `analyze` returned (once; [] when none)."""
        return self.media.take(alert_id)

    def _to_alert(self, event: ViolationEvent, frame: Frame) -> Alert:
        alert, media = build_alert_with_media(event, frame, camera=self.camera, context=self.context,
                                              location=self._locate(event), evidence_set=self.evidence_set)
        self.media.keep(alert.alert_id, media)
        return alert

    def _locate(self, event: ViolationEvent) -> Location:
        """The event's ground point (east/north metres in the rules' plane) on WGS84, with its accuracy."""
        assert self.plane is not None and event.accuracy_m is not None
        lat, lon = self.plane.to_latlon(np.array([event.anchor[0]]), np.array([event.anchor[1]]))
        return Location(lat=float(lat[0]), lon=float(lon[0]), accuracy_m=round(event.accuracy_m, 2))


def live_feeds(config: EdgeConfig, analyzers: Iterable[object]) -> list[LiveTelemetry]:
    """A (not yet started) live telemetry feeder for each moving camera with a live source."""
    feeds = []
    for analyzer in analyzers:
        if isinstance(analyzer, MovingCameraAnalyzer) and isinstance(analyzer.track, SharedPoseTrack):
            feeds.append(LiveTelemetry(config, analyzer.camera, analyzer.track))
    return feeds
