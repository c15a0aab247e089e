"""Match a frame's capture time to the platform pose at that instant.

`PoseTrack` holds poses sorted by time. Lookups bisect (O(log n)); live use appends as poses
arrive and, with `maxlen`, drops the oldest in chunks (amortised O(1), memory bounded: a plain
deque would make every bisect step O(n)). A frame is matched by linear interpolation between
the poses either side when they are at most `max_gap_s` apart; angles are interpolated on the
circle (359° -> 1° passes through 0°). Where the neighbours are further apart, or the frame lies
outside the track (a live frame newer than the last fix), the nearest pose is held if it is
within `max_gap_s` of the frame (no extrapolation). Otherwise there is no pose, and the
match says why, so the caller can log it and leave the frame un-geo-matched.

Clock offset: `clock_offset_s` is added to the frame time to get telemetry time
(t_telemetry = t_frame + clock_offset_s): a camera clock 2 s behind the GPS has offset +2.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from streetwatch.edge.telemetry.pose import Gimbal, Pose

log = logging.getLogger(__name__)

MatchMethod = Literal["exact", "interpolated", "held", "none"]


@dataclass(frozen=True, slots=True)
class PoseMatch:
    """The answer to 'where was the camera at t': a pose (or None) and how it was found."""

    pose: Pose | None
    method: MatchMethod
    reason: str


class PoseTrack:
    """Poses of one platform, sorted by time; see the module docstring for the rules."""

    def __init__(self, poses: Iterable[Pose] = (), *, maxlen: int | None = None, name: str = "track"):
        if maxlen is not None and maxlen < 2:
            raise ValueError(f"PoseTrack {name}: maxlen must be >= 2 (two poses to interpolate), "
                             f"got {maxlen}")
        self.name = name
        self.maxlen = maxlen
        self._times: list[float] = []
        self._poses: list[Pose] = []
        for pose in sorted(poses, key=lambda p: p.t):
            self.append(pose)

    def __len__(self) -> int:
        return len(self._poses)

    @property
    def poses(self) -> tuple[Pose, ...]:
        return tuple(self._poses)

    def append(self, pose: Pose) -> None:
        """Add a pose; in order is O(1), a late one is inserted in place, a same-time one replaces."""
        ts = pose.t.timestamp()
        if not self._times or ts > self._times[-1]:
            self._times.append(ts)
            self._poses.append(pose)
        else:
            i = bisect.bisect_left(self._times, ts)
            if i < len(self._times) and self._times[i] == ts:
                self._poses[i] = pose
            else:
                self._times.insert(i, ts)
                self._poses.insert(i, pose)
        self._trim()

    def _trim(self) -> None:
        if self.maxlen is None or len(self._poses) <= self.maxlen + max(16, self.maxlen // 4):
            return
        drop = len(self._poses) - self.maxlen
        del self._times[:drop]
        del self._poses[:drop]

    def pose_at(self, t: datetime, *, max_gap_s: float, clock_offset_s: float = 0.0) -> Pose | None:
        """The pose at frame time `t`, or None (use `match` to learn why)."""
        return self.match(t, max_gap_s=max_gap_s, clock_offset_s=clock_offset_s).pose

    def match(self, t: datetime, *, max_gap_s: float, clock_offset_s: float = 0.0) -> PoseMatch:
        """Find the pose at frame time `t` (aware datetime) under the gap rule."""
        if t.tzinfo is None:
            raise ValueError(f"PoseTrack {self.name}: frame time must be timezone-aware, got naive {t}")
        target = t + timedelta(seconds=clock_offset_s)
        if not self._poses:
            return PoseMatch(None, "none", f"{self.name}: no poses yet")
        ts = target.timestamp()
        i = bisect.bisect_left(self._times, ts)
        if i < len(self._times) and self._times[i] == ts:
            return PoseMatch(self._poses[i], "exact", "")
        before = i - 1 if i > 0 else None
        after = i if i < len(self._times) else None
        if before is not None and after is not None:
            span = self._times[after] - self._times[before]
            if span <= max_gap_s:
                f = (ts - self._times[before]) / span
                return PoseMatch(interpolate(self._poses[before], self._poses[after], f, t=target),
                                 "interpolated", "")
        return self._hold(target, ts, before, after, max_gap_s)

    def _hold(self, target: datetime, ts: float, before: int | None, after: int | None,
              max_gap_s: float) -> PoseMatch:
        candidates = [j for j in (before, after) if j is not None]
        nearest = min(candidates, key=lambda j: abs(self._times[j] - ts))
        distance = abs(self._times[nearest] - ts)
        if distance <= max_gap_s:
            return PoseMatch(dataclasses.replace(self._poses[nearest], t=target), "held", "")
        if before is not None and after is not None:
            reason = (f"{self.name}: telemetry gap of {self._times[after] - self._times[before]:.3f} s "
                      f"around {target.isoformat()} exceeds max_gap_s={max_gap_s}")
        else:
            side = "after the last" if after is None else "before the first"
            reason = (f"{self.name}: {target.isoformat()} is {distance:.3f} s {side} pose "
                      f"(max_gap_s={max_gap_s})")
        return PoseMatch(None, "none", reason)


def lerp_angle(a: float, b: float, f: float) -> float:
    """Interpolate degrees along the shorter arc; result in [0, 360)."""
    delta = (b - a + 180.0) % 360.0 - 180.0
    return (a + f * delta) % 360.0


def _signed_angle(a: float, b: float, f: float) -> float:
    """As lerp_angle, but in (-180, 180] for roll-like angles."""
    value = lerp_angle(a, b, f)
    return value - 360.0 if value > 180.0 else value


def _lerp(a: float | None, b: float | None, f: float) -> float | None:
    if a is None or b is None:
        return None
    return a + f * (b - a)


def _lerp_circ(a: float | None, b: float | None, f: float, *, signed: bool = False) -> float | None:
    if a is None or b is None:
        return None
    return _signed_angle(a, b, f) if signed else lerp_angle(a, b, f)


def _gimbal(a: Gimbal | None, b: Gimbal | None, f: float) -> Gimbal | None:
    if a is None or b is None or a.reference != b.reference:
        return (a if f < 0.5 else b) if a is not None and b is not None else None
    return Gimbal(lerp_angle(a.yaw_deg, b.yaw_deg, f), a.pitch_deg + f * (b.pitch_deg - a.pitch_deg),
                  _signed_angle(a.roll_deg, b.roll_deg, f), a.reference)


def interpolate(a: Pose, b: Pose, f: float, *, t: datetime) -> Pose:
    """The pose a fraction `f` (0..1) of the way from `a` to `b`, stamped `t`.

    Optional values known on one side only become None: a value is not invented.
    """
    lon = _signed_angle(a.lon, b.lon, f)  # across the antimeridian the short way
    return Pose(
        t=t, lat=a.lat + f * (b.lat - a.lat), lon=lon, alt_m=_lerp(a.alt_m, b.alt_m, f),
        heading_deg=_lerp_circ(a.heading_deg, b.heading_deg, f), pitch_deg=_lerp(a.pitch_deg, b.pitch_deg, f),
        roll_deg=_lerp_circ(a.roll_deg, b.roll_deg, f, signed=True),
        speed_mps=_lerp(a.speed_mps, b.speed_mps, f),
        source=a.source, rel_alt_m=_lerp(a.rel_alt_m, b.rel_alt_m, f), gimbal=_gimbal(a.gimbal, b.gimbal, f),
        focal_length_mm=_lerp(a.focal_length_mm, b.focal_length_mm, f),
        frame_center_lat=_lerp(a.frame_center_lat, b.frame_center_lat, f),
        frame_center_lon=_lerp_circ(a.frame_center_lon, b.frame_center_lon, f, signed=True),
        slant_range_m=_lerp(a.slant_range_m, b.slant_range_m, f), hfov_deg=_lerp(a.hfov_deg, b.hfov_deg, f),
        vfov_deg=_lerp(a.vfov_deg, b.vfov_deg, f),
    )
