"""Per-camera tracking at ~1 fps: ByteTrack for each role, plus stable ids re-associated by position.

One ByteTrack instance serves all the roles a camera tracks, each role's boxes shifted into a band
of their own (see `CameraTracker._track`), so a box of one role never continues another's track.

ByteTrack (trackers.ByteTrackTracker) links detections frame to frame. At one sample per second a
parked car loses its ByteTrack id whenever it is missed for longer than the lost-track buffer (a
bus passing in front, dusk, a detector dip), and rules that count dwell over minutes would restart.
So each ByteTrack id is bound to a *stable track*; a new ByteTrack id (or an untracked detection)
is re-associated to a recently lost stable track of the same role at the same place (IoU, or a
small ground-point distance relative to box height). Still objects may be re-associated for
`reassociate_within_s` (default 5 min); moving ones only for `reassociate_moving_s`.

Stillness means one object present. When the caller passes the frame, each detection gets an
appearance signature (an HSV hue-saturation histogram of its box and the box's size, see
`signature`), and a stable track keeps a running one: a detection that does not look like the
track (a different car stopping where the last one stood, the next car in a queue at a stop line)
neither continues it through ByteTrack's id nor is re-associated to it, and starts a track of its
own. `presence` is the share of sampled frames since the track became still in which it was seen:
the rules count a dwell only while the same object was seen in most of them.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from streetwatch.edge.config import CameraConfig, RulesConfig
from streetwatch.edge.picture import scaled_size
from streetwatch.edge.types import Role

logger = logging.getLogger(__name__)

TRACKED_ROLES: tuple[Role, ...] = ("vehicle", "person", "vending_prop", "goods")
Box = tuple[float, float, float, float]
# Each role's boxes go to ByteTrack shifted by its slot times this (wider than any frame).
_ROLE_BAND_PX = 100_000.0


@dataclass(frozen=True)
class TrackState:
    """One stable track as of a frame. Times are stream seconds; box is xyxy in frame pixels.

    still_since_t: since when the ground point (bottom centre) has stayed within the still
    tolerance of where it stopped. last_seen_t < the frame's t means the track was missed on this
    frame and is reported with its last box.
    """

    stable_id: int
    role: Role
    class_name: str
    box: Box
    score: float
    median_score: float
    first_seen_t: float
    last_seen_t: float
    still_since_t: float
    presence: float = 1.0  # share of the sampled frames since still_since_t it was seen in

    @property
    def ground_point(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2.0, self.box[3])

    @property
    def still_for_s(self) -> float:
        return self.last_seen_t - self.still_since_t


@dataclass(frozen=True)
class TrackerSettings:
    """Tracker tuning for ~1 fps sampling and YOLOX-Nano scores (0.3-0.8 on street scenes)."""

    sample_fps: float = 1.0
    lost_track_s: float = 10.0  # ByteTrack keeps a lost track this long (brief occlusion)
    # ByteTrack spawns tracks only from first-stage detections, so a new track needs a score of at
    # least max(track_activation_threshold, high_conf_det_threshold); lower scores only continue one.
    # Nano scores parked cars 0.35-0.8 on real street photos; 0.4 misses few and skips most noise.
    track_activation_threshold: float = 0.4
    high_conf_det_threshold: float = 0.4
    minimum_iou_threshold: float = 0.2  # loose: objects move far between 1 fps samples
    minimum_consecutive_frames: int = 2  # a one-frame blip never gets an id
    reassociate_within_s: float = 300.0  # still tracks: re-associate by position within this time
    reassociate_moving_s: float = 10.0  # moving tracks: only this long
    reassociate_iou: float = 0.5
    reassociate_distance: float = 0.3  # ground-point distance, in box heights
    still_tolerance: float = 0.25  # ground-point drift, in box heights, that still counts as still
    # A move must hold for this many observations in a row before stillness restarts: a pedestrian
    # cutting a parked car's box for a frame or two must not restart its dwell.
    move_confirm_frames: int = 3
    score_history: int = 31  # scores kept per track for the median
    report_lost_s: float = 10.0  # report a missed track (with its last box) this long
    # Appearance: a detection whose signature is further than this from its track's (Hellinger
    # distance of the hue-saturation histograms, 0 = same, 1 = disjoint), or whose box area differs
    # by more than appearance_area_ratio, is another object.
    appearance_distance: float = 0.45
    appearance_area_ratio: float = 2.0

    @classmethod
    def for_camera(cls, camera: CameraConfig, rules: RulesConfig, **overrides: float) -> TrackerSettings:
        """Settings from the edge config: the camera's sample rate and the rules' still tolerance."""
        values: dict[str, float] = {"sample_fps": camera.sample_fps, "still_tolerance": rules.still_tolerance}
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class _Stable:
    """Mutable state of one stable track (internal)."""

    sid: int
    role: Role
    class_name: str
    box: np.ndarray
    score: float
    scores: deque[float]
    first_seen_t: float
    last_seen_t: float
    still_since_t: float
    still_anchor: np.ndarray
    bt_id: int | None = None
    moved_at: list[float] = field(default_factory=list)  # times of consecutive off-anchor sightings
    frame_no: int = -1  # the last frame that updated this track
    median_score: float = 0.0  # of `scores`, kept current by `_observe` (read every frame)
    signature: np.ndarray | None = None  # running hue-saturation histogram (unit L2 of sqrt)
    still_frame_no: int = 0  # the tracker's frame number when the stillness began
    seen_still: int = 0  # frames it was seen in since then

    def presence(self, frame_no: int) -> float:
        return min(1.0, self.seen_still / max(1, frame_no - self.still_frame_no + 1))

    def state(self, frame_no: int) -> TrackState:
        x1, y1, x2, y2 = self.box.tolist()  # one call for the four floats (this runs per track per frame)
        return TrackState(
            stable_id=self.sid,
            role=self.role,
            class_name=self.class_name,
            box=(x1, y1, x2, y2),
            score=self.score,
            median_score=self.median_score,
            first_seen_t=self.first_seen_t,
            last_seen_t=self.last_seen_t,
            still_since_t=self.still_since_t,
            presence=self.presence(frame_no),
        )


@dataclass(frozen=True)
class _RoleFrame:
    """ByteTrack's output for one role on one frame (copies, never the caller's arrays);
    signatures: one per box (signature()), or None without a frame."""

    xyxy: np.ndarray
    scores: np.ndarray
    tracker_ids: np.ndarray
    class_names: np.ndarray
    signatures: list[np.ndarray | None] | None = None
    matched: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "matched", np.zeros(len(self.xyxy), dtype=bool))


@dataclass(frozen=True)
class _Tracked:
    """ByteTrack's output for one frame, all roles: the detection row of each output box, its
    ByteTrack id (-1 = not confirmed yet) and its role's slot (index into the tracker's roles)."""

    source: np.ndarray
    tracker_ids: np.ndarray
    slot: np.ndarray

    def for_slot(
        self, slot: int, detections: sv.Detections, image: np.ndarray | None, scale: float
    ) -> _RoleFrame | None:
        """One role's rows, with the caller's own boxes and scores (ByteTrack saw them shifted);
        None if the role has none. image: a view of the frame `scale` times the frame's width."""
        pick = self.slot == slot
        if not pick.any():
            return None
        rows = self.source[pick]
        scores = detections.confidence
        assert scores is not None  # checked on entry (_check_detections)
        xyxy = np.array(detections.xyxy[rows], dtype=np.float64).reshape(-1, 4)
        return _RoleFrame(
            xyxy=xyxy,
            scores=np.array(scores[rows], dtype=np.float64),
            tracker_ids=self.tracker_ids[pick],
            class_names=np.asarray(detections.data["class_name"])[rows].astype(object),
            signatures=None if image is None else [signature(image, box * scale) for box in xyxy],
        )


class CameraTracker:
    """Tracks of one camera. Call `update` once per sampled frame with strictly growing stream time.

    roles: the roles to track (the camera's rules read no others; detections of other roles are
    dropped), by default all.
    """

    def __init__(
        self, camera_id: str, settings: TrackerSettings | None = None, *, roles: Sequence[Role] = TRACKED_ROLES
    ) -> None:
        unknown = set(roles) - set(TRACKED_ROLES)
        if unknown:
            raise ValueError(f"roles: expected some of {TRACKED_ROLES}, got {sorted(unknown)}")
        self.camera_id = camera_id
        self.roles: tuple[Role, ...] = tuple(role for role in TRACKED_ROLES if role in roles)
        self.settings = settings or TrackerSettings()
        self._next_sid = 1
        self._stable: dict[int, _Stable] = {}
        self._bt_to_sid: dict[tuple[Role, int], int] = {}
        self._last_t: float | None = None
        self._frame_no = 0
        self._bytetrack = new_bytetrack(self.settings)

    def update(
        self, *, t: float, detections: sv.Detections, image: np.ndarray | None = None, frame_width: int | None = None
    ) -> list[TrackState]:
        """Feed one frame's detections at stream time `t`; return the tracks seen recently.

        Detections need confidence, data["role"] and data["class_name"]; role "ignore" is dropped.
        The caller's arrays are not modified. image: the frame (BGR, any size; frame_width is the
        width the boxes are in, default the image's), for the appearance signatures; without it
        tracks are matched by position alone.
        """
        _check_detections(self.camera_id, detections)
        if self._last_t is not None and t < self._last_t:
            logger.warning(
                "camera %s: stream time went back from %.3f to %.3f s; tracks reset",
                self.camera_id,
                self._last_t,
                t,
            )
            self.reset()
        self._last_t = t
        self._frame_no += 1
        tracked = self._track(t=t, detections=detections, slots=self._slots(detections))
        scale = 1.0 if image is None else image.shape[1] / (frame_width or image.shape[1])
        for slot, role in enumerate(self.roles):
            frame = tracked.for_slot(slot, detections, image, scale) if tracked is not None else None
            if frame is None:
                continue  # no box of this role: nothing to bind, re-associate or spawn
            self._update_bound(role, frame, t=t)
            self._reassociate(role, frame, t=t)
            self._spawn(role, frame, t=t)
        self._prune(t)
        horizon = t - self.settings.report_lost_s
        recent = [s for s in self._stable.values() if s.last_seen_t >= horizon]
        return [s.state(self._frame_no) for s in sorted(recent, key=lambda s: s.sid)]

    def reset(self) -> None:
        """Forget all tracks (stable ids keep counting up, so they are never reused)."""
        self._stable.clear()
        self._bt_to_sid.clear()
        self._bytetrack = new_bytetrack(self.settings)
        self._last_t = None

    def _slots(self, detections: sv.Detections) -> np.ndarray:
        """Each detection's role as an index into `self.roles`; -1 for roles not tracked here."""
        slots = np.full(len(detections), -1, dtype=np.int64)
        if len(detections):
            roles = np.asarray(detections.data["role"])
            for slot, role in enumerate(self.roles):
                slots[roles == role] = slot
        return slots

    def _track(self, *, t: float, detections: sv.Detections, slots: np.ndarray) -> _Tracked | None:
        """One ByteTrack call for every role: each role's boxes are shifted into a band of their own,
        so boxes of two roles never overlap (IoU 0: never matched) and the Kalman filter, linear in
        position with constant noise, behaves exactly as with a tracker per role. Much of ByteTrack's
        work is per call, not per track: one call instead of one per role took 12 % off tracking
        alone on the edge bench's detections."""
        rows = np.flatnonzero(slots >= 0)
        if rows.size == 0 and not self._bytetrack.tracks:
            return None  # nothing to match or to age: ByteTrack would return at once, and so would we
        scores = detections.confidence  # never None when there are rows (_check_detections)
        # ByteTrack reads boxes and scores only, and slices what it is given: handing it those two
        # arrays, with each box's row as class_id, costs a fraction of slicing the full Detections.
        subset = (
            sv.Detections(
                xyxy=detections.xyxy[rows] + (slots[rows] * _ROLE_BAND_PX)[:, None],
                confidence=scores[rows],
                class_id=rows,
            )
            if rows.size and scores is not None
            else sv.Detections.empty()
        )
        out = self._bytetrack.update(subset, timestamp=t)
        source = out.class_id if len(out) and out.class_id is not None else np.zeros(0, dtype=np.int64)
        tracker_ids = np.asarray(out.tracker_id if len(out) else [], dtype=np.int64)
        return _Tracked(source=source, tracker_ids=tracker_ids, slot=slots[source])

    def _update_bound(self, role: Role, frame: _RoleFrame, *, t: float) -> None:
        """Detections whose ByteTrack id is already bound to a stable track keep it."""
        for i, tid in enumerate(frame.tracker_ids):
            sid = self._bt_to_sid.get((role, int(tid))) if tid >= 0 else None
            stable = self._stable.get(sid) if sid is not None else None
            if stable is not None and stable.frame_no != self._frame_no and self._looks_like(stable, frame, i):
                self._observe(stable, frame, row=i, t=t)

    def _reassociate(self, role: Role, frame: _RoleFrame, *, t: float) -> None:
        """Bind unmatched detections to lost stable tracks of the same role at the same place."""
        rows = np.flatnonzero(~frame.matched)
        candidates = [s for s in self._stable.values() if s.role == role and self._may_reassociate(s, t)]
        if rows.size == 0 or not candidates:
            return
        similarity = self._similarity(frame.xyxy[rows], np.stack([c.box for c in candidates]))
        for r, c in np.argwhere(similarity > 0):
            if not self._looks_like(candidates[c], frame, int(rows[r])):
                similarity[r, c] = 0.0  # at the same place, but another object
        for r, c in _greedy_pairs(similarity):
            stable = candidates[c]
            logger.debug(
                "camera %s: %s track %d re-associated after %.1f s (bytetrack id %d)",
                self.camera_id,
                role,
                stable.sid,
                t - stable.last_seen_t,
                frame.tracker_ids[rows[r]],
            )
            self._observe(stable, frame, row=int(rows[r]), t=t)

    def _looks_like(self, stable: _Stable, frame: _RoleFrame, row: int) -> bool:
        """Could detection `row` be this track's object: a similar size, and (with signatures) colours?"""
        s = self.settings
        area = _area(frame.xyxy[row])
        known = _area(stable.box)
        if max(area, known) > s.appearance_area_ratio * max(min(area, known), 1.0):
            return False
        seen = None if frame.signatures is None else frame.signatures[row]
        if seen is None or stable.signature is None:
            return True  # no frame, or the box too small to tell colours apart: position decides
        return signature_distance(stable.signature, seen) <= s.appearance_distance

    def _may_reassociate(self, stable: _Stable, t: float) -> bool:
        return stable.frame_no != self._frame_no and t - stable.last_seen_t <= self._window(stable)

    def _window(self, stable: _Stable) -> float:
        """How long a lost track may be re-associated: long if it was still, short if it was moving."""
        # Still for longer than a move takes to confirm, and not in the middle of one.
        settle_s = self.settings.move_confirm_frames / self.settings.sample_fps
        was_still = not stable.moved_at and stable.last_seen_t - stable.still_since_t >= settle_s
        return self.settings.reassociate_within_s if was_still else self.settings.reassociate_moving_s

    def _similarity(self, boxes: np.ndarray, known: np.ndarray) -> np.ndarray:
        """(D, K) similarity in [0, 1]; 0 where neither the IoU nor the ground distance qualifies."""
        iou = sv.box_iou_batch(boxes, known)
        ground_d, ground_k = _ground(boxes), _ground(known)
        distance = np.linalg.norm(ground_d[:, None, :] - ground_k[None, :, :], axis=2)
        heights = np.maximum((boxes[:, 3] - boxes[:, 1])[:, None], (known[:, 3] - known[:, 1])[None, :])
        relative = distance / np.maximum(heights, 1.0)
        s = self.settings
        ok = (iou >= s.reassociate_iou) | (relative <= s.reassociate_distance)
        return np.where(ok, np.maximum(iou, 1.0 - relative), 0.0)

    def _spawn(self, role: Role, frame: _RoleFrame, *, t: float) -> None:
        """Confirmed ByteTrack ids that matched nothing start a stable track; untracked ones are dropped."""
        for i in np.flatnonzero(~frame.matched):
            if frame.tracker_ids[i] < 0:
                continue
            box = frame.xyxy[i].copy()
            stable = _Stable(
                sid=self._next_sid,
                role=role,
                class_name=str(frame.class_names[i]),
                box=box,
                score=float(frame.scores[i]),
                scores=deque(maxlen=self.settings.score_history),
                first_seen_t=t,
                last_seen_t=t,
                still_since_t=t,
                still_anchor=_ground_point(box),
                still_frame_no=self._frame_no,
            )
            self._next_sid += 1
            self._stable[stable.sid] = stable
            logger.debug(
                "camera %s: new %s track %d (%s)", self.camera_id, role, stable.sid, stable.class_name
            )
            self._observe(stable, frame, row=int(i), t=t)

    def _observe(self, stable: _Stable, frame: _RoleFrame, *, row: int, t: float) -> None:
        """Record detection `row` of this frame on a stable track and rebind its ByteTrack id."""
        frame.matched[row] = True
        box = frame.xyxy[row].copy()
        tid = int(frame.tracker_ids[row])
        if tid >= 0 and stable.bt_id != tid:
            if stable.bt_id is not None:
                self._bt_to_sid.pop((stable.role, stable.bt_id), None)
            self._bt_to_sid[(stable.role, tid)] = stable.sid
            stable.bt_id = tid
        self._update_stillness(stable, box, t=t)
        new = None if frame.signatures is None else frame.signatures[row]
        if new is not None:
            stable.signature = new if stable.signature is None else _blend(stable.signature, new)
        stable.seen_still += 1
        stable.box, stable.score, stable.last_seen_t = box, float(frame.scores[row]), t
        stable.class_name = str(frame.class_names[row]) or stable.class_name
        stable.scores.append(stable.score)
        stable.median_score = float(statistics.median(stable.scores))
        stable.frame_no = self._frame_no

    def _update_stillness(self, stable: _Stable, box: np.ndarray, *, t: float) -> None:
        """Restart stillness once the ground point has left the tolerance for enough sightings in a row."""
        ground = _ground_point(box)
        tolerance = self.settings.still_tolerance * max(float(box[3] - box[1]), 1.0)
        if math.hypot(*(ground - stable.still_anchor)) <= tolerance:
            stable.moved_at.clear()
            return
        stable.moved_at.append(t)
        if len(stable.moved_at) >= self.settings.move_confirm_frames:
            stable.still_anchor, stable.still_since_t = ground, stable.moved_at[-1]
            stable.still_frame_no, stable.seen_still = self._frame_no, 0
            stable.moved_at.clear()

    def _prune(self, t: float) -> None:
        report = self.settings.report_lost_s
        expired = [sid for sid, s in self._stable.items() if t - s.last_seen_t > max(self._window(s), report)]
        for sid in expired:
            stable = self._stable.pop(sid)
            if stable.bt_id is not None:
                self._bt_to_sid.pop((stable.role, stable.bt_id), None)
            logger.debug("camera %s: %s track %d dropped", self.camera_id, stable.role, sid)


def new_bytetrack(settings: TrackerSettings) -> ByteTrackTracker:
    """A ByteTrack configured for the sample rate: its lost-track buffer is counted in 30 fps frames."""
    return ByteTrackTracker(
        lost_track_buffer=max(1, round(settings.lost_track_s * 30.0)),
        frame_rate=settings.sample_fps,
        track_activation_threshold=settings.track_activation_threshold,
        minimum_consecutive_frames=settings.minimum_consecutive_frames,
        minimum_iou_threshold=settings.minimum_iou_threshold,
        high_conf_det_threshold=settings.high_conf_det_threshold,
    )


SIGNATURE_WIDTH = 320  # the width of the view appearance signatures are read from


def signature_size(width: int, height: int) -> tuple[int, int]:
    """The view the signatures read: SIGNATURE_WIDTH wide (never wider than the frame)."""
    return scaled_size(width, height, min(width, SIGNATURE_WIDTH))


_SIGNATURE_BINS = (12, 4, 4)  # hue x saturation x value: colour first, brightness coarsely (white vs silver)
# Fewer pixels than this in a box's middle make a histogram of noise: the same parked car, 12x7
# pixels of the signature view, measured 0.14-0.60 from itself frame to frame (the bar is 0.45), and
# split into tracks that each held a fraction of its frames, so its dwell never counted. Such a box
# has no signature: position alone matches it.
MIN_SIGNATURE_PIXELS = 2 * math.prod(_SIGNATURE_BINS)


def signature(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """An object's colour signature: the hue-saturation-value histogram of the middle of its box
    (the middle 60 %, less of the road around it), as sqrt of the normalised counts (unit L2, so
    the dot product of two is their Bhattacharyya coefficient). Value has 4 bins only: enough to
    tell a white from a silver or a black car, coarse enough for a cloud or dusk. None when the
    middle holds fewer than MIN_SIGNATURE_PIXELS pixels of `image`."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    xa, xb = int(max(0, x1 + 0.2 * w)), int(min(image.shape[1], x2 - 0.2 * w))
    ya, yb = int(max(0, y1 + 0.2 * h)), int(min(image.shape[0], y2 - 0.2 * h))
    if xb <= xa or yb <= ya or (xb - xa) * (yb - ya) < MIN_SIGNATURE_PIXELS:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(image[ya:yb, xa:xb]), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(_SIGNATURE_BINS), [0, 180, 0, 256, 0, 256]).reshape(-1)
    root = np.sqrt(hist / max(float(hist.sum()), 1.0))
    return np.asarray(root / max(float(np.linalg.norm(root)), 1e-9), dtype=np.float32)


def signature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Hellinger distance of two signatures: 0 the same colours, 1 none in common."""
    return math.sqrt(max(0.0, 1.0 - float(np.dot(a, b))))


def _blend(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """A slowly moving signature: lighting drifts over an hour, the object does not change."""
    mixed = 0.9 * old + 0.1 * new
    return np.asarray(mixed / max(float(np.linalg.norm(mixed)), 1e-9), dtype=np.float32)


def _area(box: np.ndarray) -> float:
    return float((box[2] - box[0]) * (box[3] - box[1]))


def _ground_point(box: np.ndarray) -> np.ndarray:
    """The bottom centre of one xyxy box (the per-box path runs for every track on every frame)."""
    return np.array(((box[0] + box[2]) / 2.0, box[3]))


def _ground(xyxy: np.ndarray) -> np.ndarray:
    return np.stack(((xyxy[:, 0] + xyxy[:, 2]) / 2.0, xyxy[:, 3]), axis=1)


def _greedy_pairs(similarity: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one (row, col) pairs, best similarity first; zero similarity never pairs."""
    pairs: list[tuple[int, int]] = []
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    order = np.argsort(-similarity, axis=None)
    for flat in order:
        r, c = divmod(int(flat), similarity.shape[1])
        if similarity[r, c] <= 0.0:
            break
        if r not in used_rows and c not in used_cols:
            pairs.append((r, c))
            used_rows.add(r)
            used_cols.add(c)
    return pairs


def _check_detections(camera_id: str, detections: sv.Detections) -> None:
    if len(detections) == 0:
        return
    if detections.confidence is None:
        raise ValueError(f"camera {camera_id!r}: detections.confidence is required for tracking, got None")
    for key in ("role", "class_name"):
        if key not in detections.data:
            raise ValueError(f"camera {camera_id!r}: detections.data[{key!r}] is required (one per box)")
