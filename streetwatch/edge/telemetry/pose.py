"""Camera poses from telemetry, and the failure counters every parser shares.

One `Pose` type serves vehicles and drones: the drone-only fields are optional and None for a car.
One type keeps the track, interpolation and the projection on a single path (a drone pose *is* a
vehicle pose plus a gimbal and a lens), and a consumer tests `pose.gimbal is None` instead of an
isinstance ladder. Unknown values are None, never invented zeros: whether a car is level is a
camera-mount assumption that belongs to the camera model in geo, not to the parser.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Literal

log = logging.getLogger(__name__)

GimbalReference = Literal["platform", "earth"]


@dataclass(frozen=True, slots=True)
class Gimbal:
    """Camera (gimbal) attitude in degrees.

    `reference="platform"`: angles relative to the airframe (MISB ST 0601 tags 18/19/20: azimuth
    clockwise from the nose, elevation negative down, roll). `reference="earth"`: yaw from true north,
    pitch from the horizon (negative down, -90 = nadir), roll from level (DJI `gb_yaw/gb_pitch/gb_roll`).
    """

    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    reference: GimbalReference


@dataclass(frozen=True, slots=True)
class Pose:
    """Where a camera platform was at one instant (UTC), from one telemetry source.

    Angles in degrees: heading clockwise from true north in [0, 360); pitch positive nose up;
    roll positive right wing down. `alt_m` is height above mean sea level (or the source's
    ellipsoid/true altitude, see `source`); `rel_alt_m` is a drone's height above its take-off
    point (DJI `rel_alt`), the usual flat-ground stand-in for height above ground. `fix` is the
    receiver's own word on the fix where the format has one (`gps`, `dgps`, `rtk_fixed`, `rtk_float`,
    `dead_reckoning`, `2d`, `3d`...). `assumed` names what a value rests on that the telemetry did
    not measure (e.g. a heading from the flight path): geo then uses the assumed-attitude sigma.
    """

    t: datetime
    lat: float
    lon: float
    alt_m: float | None
    heading_deg: float | None
    pitch_deg: float | None
    roll_deg: float | None
    speed_mps: float | None
    source: str
    rel_alt_m: float | None = None
    gimbal: Gimbal | None = None
    focal_length_mm: float | None = None
    frame_center_lat: float | None = None
    frame_center_lon: float | None = None
    slant_range_m: float | None = None
    hfov_deg: float | None = None
    vfov_deg: float | None = None
    fix: str | None = None
    assumed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.t.tzinfo is None:
            raise ValueError(f"Pose.t from {self.source!r} must be timezone-aware UTC, got naive {self.t}")
        if self.t.utcoffset() != UTC.utcoffset(None):
            object.__setattr__(self, "t", self.t.astimezone(UTC))
        if not -90.0 <= self.lat <= 90.0:
            raise ValueError(f"Pose.lat from {self.source!r} must be in [-90, 90], got {self.lat}")
        if not -180.0 <= self.lon <= 180.0:
            raise ValueError(f"Pose.lon from {self.source!r} must be in [-180, 180], got {self.lon}")
        if self.heading_deg is not None:
            object.__setattr__(self, "heading_deg", self.heading_deg % 360.0)


@dataclass
class ParseStats:
    """Counts what a parser skipped, by kind, keeps the first example of each, and warns once per
    `warn_every` failures.

    Failures (`fail`): `checksum`, `malformed`, `no_fix`, `no_time`, `gap`, `truncated`, `invalid`,
    `invalid_field`, `implausible`. Notes (`note`, by design, not errors): `proprietary`, `ais`,
    `unused`, `unknown_sentence`, `unknown_tag`, `waypoint`. `parsed` counts poses produced. Details
    start with where the item is (`line 12`, `block 7`, `byte 228`). Never raises: bad telemetry is data.
    """

    source: str
    warn_every: int = 100
    gap_s: float = 5.0
    counts: Counter[str] = field(default_factory=Counter)
    failures: int = 0
    examples: dict[str, str] = field(default_factory=dict)
    failure_kinds: set[str] = field(default_factory=set)

    def ok(self, n: int = 1) -> None:
        self.counts["parsed"] += n

    def fail(self, kind: str, detail: str) -> None:
        """Count one skipped item; log the first failure and then one line per `warn_every`."""
        self.counts[kind] += 1
        self.failures += 1
        self.failure_kinds.add(kind)
        self.examples.setdefault(kind, detail)
        if self.failures == 1 or self.failures % self.warn_every == 0:
            log.warning(
                "telemetry %s: %d items skipped so far (%s); latest %s: %s",
                self.source, self.failures, self.summary(), kind, detail,
            )

    def check_gap(self, previous: datetime | None, current: datetime) -> None:
        """Count a gap when consecutive poses are more than `gap_s` apart (or go back in time)."""
        if previous is None:
            return
        delta = (current - previous).total_seconds()
        if delta > self.gap_s or delta < 0:
            self.fail("gap", f"{delta:.3f} s from {previous.isoformat()} to {current.isoformat()}")

    def note(self, kind: str, detail: str = "") -> None:
        """Count an item skipped by design, not a failure (a proprietary sentence, an unknown KLV tag)."""
        self.counts[kind] += 1
        if detail:
            self.examples.setdefault(kind, detail)

    def skipped(self) -> dict[str, int]:
        """Every kind except `parsed`, most frequent first."""
        return dict(sorted(((k, v) for k, v in self.counts.items() if k != "parsed"), key=lambda kv: (-kv[1], kv[0])))

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))

    def __getitem__(self, kind: str) -> int:
        return self.counts[kind]


class TelemetryError(ValueError):
    """A telemetry file that cannot be read at all: the message names the file, where and what is wrong."""

    def __init__(self, path: object, what: str, *, where: str | None = None) -> None:
        self.path = str(path)
        self.where = where
        self.what = what
        super().__init__(f"{self.path}: {where}: {what}" if where else f"{self.path}: {what}")


def as_utc(value: datetime, *, assume_tz: tzinfo = UTC) -> datetime:
    """Aware datetimes are converted to UTC; naive ones are read in `assume_tz` (a tzinfo)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=assume_tz)
    return value.astimezone(UTC)
