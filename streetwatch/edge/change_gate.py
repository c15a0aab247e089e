"""Skip the detector on frames where nothing changed: a cheap per-camera change test.

A street camera's zones are empty or hold the same parked car for most of the day, and its
detections then repeat frame after frame. `ChangeGate` compares the detector's view (the small BGR
picture the decode thread renders anyway) inside the box around the camera's zones with the view
of the last frame the detector ran on: grey, halved, the share of pixels whose brightness moved by
more than `PIXEL_DELTA` (sensor noise and compression stay under it). Under `change_threshold`, the
frame is not detected and the last detections are fed to the tracker again, so tracks, dwell and
episodes carry on as if the same objects had been found. A full detection runs at least every
`max_skip_s` of stream time (stationary objects are re-confirmed, a change too slow for the test
is caught), and whenever the picture size changes.

The reference is the last *detected* frame, not the previous one: a slow change adds up against it
until it crosses the threshold. Frames are only skipped once two detections in a row found the same
objects: where the detector flickers on an unchanged picture (a box near its score threshold), it
keeps being asked, so tracks appear and end as they would with every frame detected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import supervision as sv

from streetwatch.edge.config import CameraConfig
from streetwatch.edge.detector import Detector, above_threshold
from streetwatch.edge.geo import GroundHomography, polygon_geo_to_px
from streetwatch.edge.types import Frame

Box = tuple[float, float, float, float]
PIXEL_DELTA = 24  # grey levels: noise sigma 3 plus H.264 ringing stays below; a person or car does not


@dataclass(frozen=True)
class GateDecision:
    detect: bool
    changed_share: float  # share of the watched pixels that changed (1.0 when there is no reference)


class ChangeGate:
    """One camera's change test. `decide` answers for a frame; `detected` records a detection."""

    def __init__(self, *, max_skip_s: float, change_threshold: float, watch: Box | None) -> None:
        """watch: the box (frame pixels) the test looks at; None = the whole picture."""
        self.max_skip_s = max_skip_s
        self.change_threshold = change_threshold
        self.watch = watch
        self._reference: np.ndarray | None = None
        self._reference_t: float | None = None
        self._detections: sv.Detections | None = None
        self._stable = False  # the last two detections found the same objects

    @property
    def enabled(self) -> bool:
        return self.max_skip_s > 0

    def decide(self, view: np.ndarray, *, t: float, frame_size: tuple[int, int]) -> GateDecision:
        """Whether the frame at stream time `t` (its detector `view`, the frame `frame_size`) needs the
        detector."""
        if not self.enabled or self._reference is None or self._reference_t is None or self._detections is None:
            return GateDecision(True, 1.0)
        if not self._stable:
            return GateDecision(True, 1.0)  # the detector changed its mind on the last frame: ask it again
        if t < self._reference_t or t - self._reference_t >= self.max_skip_s:
            return GateDecision(True, 1.0)
        sample = self._sample(view, frame_size)
        if sample.shape != self._reference.shape:
            return GateDecision(True, 1.0)
        share = changed_share(sample, self._reference)
        return GateDecision(share >= self.change_threshold, share)

    def detected(self, view: np.ndarray, *, t: float, frame_size: tuple[int, int], detections: sv.Detections) -> None:
        """The detector ran on this frame: it becomes the reference, its detections the ones carried."""
        if not self.enabled:
            return
        self._stable = self._detections is not None and same_objects(self._detections, detections)
        self._reference = self._sample(view, frame_size)
        self._reference_t = t
        self._detections = detections

    def carried(self) -> sv.Detections:
        """The last detections, for a skipped frame (the tracker does not modify what it is fed)."""
        assert self._detections is not None, "carried() before any detection"
        return self._detections

    def _sample(self, view: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        crop = view if self.watch is None else view[_view_slice(self.watch, frame_size, view.shape[:2])]
        if crop.size == 0:
            crop = view
        grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_BGR2GRAY)
        return cv2.resize(grey, (max(1, grey.shape[1] // 2), max(1, grey.shape[0] // 2)),
                          interpolation=cv2.INTER_AREA)


def same_objects(a: sv.Detections, b: sv.Detections, *, iou: float = 0.5) -> bool:
    """Whether two frames' detections are the same objects: as many of each class, each box of `b`
    overlapping one of its class in `a` by at least `iou`. A detector that loses or finds an object
    on an unchanged picture (a box near its threshold) is asked again before frames are skipped,
    so its flicker plays out as it would with every frame detected."""
    if len(a) != len(b):
        return False
    if len(a) == 0:
        return True
    names_a, names_b = np.asarray(a.data["class_name"]), np.asarray(b.data["class_name"])
    if sorted(names_a.tolist()) != sorted(names_b.tolist()):
        return False
    overlaps = sv.box_iou_batch(b.xyxy, a.xyxy)
    same_class = names_b[:, None] == names_a[None, :]
    return bool(np.all(np.max(np.where(same_class, overlaps, 0.0), axis=1) >= iou))


def changed_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels of two grey images whose values differ by more than PIXEL_DELTA."""
    return float(np.count_nonzero(cv2.absdiff(a, b) > PIXEL_DELTA)) / a.size


def _view_slice(box: Box, frame_size: tuple[int, int], view_shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The rows and columns of the view covering `box` (frame pixels), one view pixel of margin."""
    sx, sy = view_shape[1] / frame_size[0], view_shape[0] / frame_size[1]
    x1, y1, x2, y2 = box
    c1, c2 = max(0, int(x1 * sx) - 1), min(view_shape[1], int(np.ceil(x2 * sx)) + 1)
    r1, r2 = max(0, int(y1 * sy) - 1), min(view_shape[0], int(np.ceil(y2 * sy)) + 1)
    return slice(r1, r2), slice(c1, c2)


def zones_box(polygons: Sequence[Sequence[tuple[float, float]]]) -> Box | None:
    """The box around every zone polygon (frame pixels); None without zones (watch the whole view)."""
    points = [point for polygon in polygons for point in polygon]
    if not points:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


@dataclass(frozen=True)
class Detected:
    """One frame's detections and whether they were carried from the last detected frame."""

    frame: Frame
    detections: sv.Detections
    skipped: bool


def detect_or_carry(
    detector: Detector,
    frames: Sequence[Frame],
    gates: Mapping[str, ChangeGate],
    thresholds: Mapping[str, float],
) -> tuple[list[Detected], int]:
    """Detect the frames the change test says changed (one batch), carry the last detections into
    the rest; in the frames' order. Returns them and the number of frames run through the detector.
    `thresholds`: camera id -> score threshold (applied before the detections are kept for carrying)."""
    decisions: list[bool] = []
    for frame in frames:
        gate = gates.get(frame.camera_id)
        detect = gate is None or gate.decide(detector.view(frame.picture), t=frame.pts_s,
                                             frame_size=(frame.width, frame.height)).detect
        decisions.append(detect)
    wanted = [frame for frame, detect in zip(frames, decisions, strict=True) if detect]
    found = iter(detector.detect_batch([frame.picture for frame in wanted]) if wanted else [])
    results: list[Detected] = []
    for frame, detect in zip(frames, decisions, strict=True):
        gate = gates.get(frame.camera_id)
        if not detect:
            assert gate is not None
            results.append(Detected(frame, gate.carried(), skipped=True))
            continue
        detections = above_threshold(next(found), thresholds.get(frame.camera_id, detector.score_threshold))
        if gate is not None:
            gate.detected(detector.view(frame.picture), t=frame.pts_s, frame_size=(frame.width, frame.height),
                          detections=detections)
        results.append(Detected(frame, detections, skipped=False))
    return results, len(wanted)


def gate_for(camera: CameraConfig, homography: GroundHomography | None) -> ChangeGate | None:
    """The camera's change test, watching the box around its zones; None for moving cameras (their
    picture changes all the time) and with max_skip_s 0."""
    if camera.kind != "fixed" or camera.max_skip_s <= 0:
        return None
    polygons: list[Sequence[tuple[float, float]]] = []
    for zone in camera.zones:
        if zone.polygon_px is not None:
            polygons.append(zone.polygon_px)
        elif zone.polygon_geo is not None and homography is not None:
            polygons.append(polygon_geo_to_px(homography, zone.polygon_geo, zone_id=zone.id))
    return ChangeGate(max_skip_s=camera.max_skip_s, change_threshold=camera.change_threshold,
                      watch=zones_box(polygons))
