"""Zones of one camera: which ground points fall inside, and allowed time windows.

A `Zone` is in the coordinates its camera's rules work in: frame pixels for a fixed camera (rules.py),
east/north metres of the rules' tangent plane for a moving one (moving_rules.py); `make_zone` builds
and checks both. A box stands on the ground at its bottom centre (as in supervision's PolygonZone),
so membership is tested on that point. `CameraZones` holds a fixed camera's zones in pixels: zones
written as `polygon_px` are used as they are; zones written as `polygon_geo` are projected by the
geo module and passed in `polygons_px`. Allowed windows are local times of the camera's time zone
("18:00-22:00"); a window whose end is not after its start crosses midnight ("22:00-02:00").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import shapely

from streetwatch.edge.alerts import Violation
from streetwatch.edge.config import CameraConfig, ZoneConfig

logger = logging.getLogger(__name__)

MINUTES_PER_DAY = 24 * 60
Polygon = Sequence[tuple[float, float]]


def ground_points(xyxy: np.ndarray) -> np.ndarray:
    """Bottom-centre (x, y) of each (N, 4) xyxy box: where the object touches the ground, (N, 2)."""
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return np.stack(((boxes[:, 0] + boxes[:, 2]) / 2.0, boxes[:, 3]), axis=1)


def parse_window(window: str) -> tuple[int, int]:
    """'HH:MM-HH:MM' -> (start, end) in minutes after local midnight; end may be 24:00 (= 1440).

    Raises ValueError for a malformed or empty (start == end) window.
    """
    try:
        start_text, end_text = window.split("-")
        start, end = _minutes(start_text), _minutes(end_text)
    except ValueError:
        raise ValueError(f"expected an allowed window 'HH:MM-HH:MM', got {window!r}") from None
    if start >= MINUTES_PER_DAY or end > MINUTES_PER_DAY or start == end:
        raise ValueError(
            f"allowed window {window!r} is empty or out of range; use e.g. '18:00-22:00', "
            "'22:00-02:00' (crosses midnight) or '00:00-24:00' (all day)"
        )
    return start, end


def _minutes(text: str) -> int:
    hours, minutes = text.strip().split(":")
    if len(hours) != 2 or len(minutes) != 2 or not (0 <= int(minutes) < 60):
        raise ValueError(text)
    return int(hours) * 60 + int(minutes)


def in_window(minute_of_day: float, window: tuple[int, int]) -> bool:
    """Whether a local time (minutes after midnight) lies in [start, end), crossing midnight if needed."""
    start, end = window
    if start < end:
        return start <= minute_of_day < end
    return minute_of_day >= start or minute_of_day < end


def resolve_timezone(name: str, *, camera_id: str = "?") -> tzinfo:
    """The IANA time zone a camera's allowed windows are written in."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"camera {camera_id!r} timezone: unknown IANA time zone {name!r}; expected e.g. 'Asia/Shanghai'"
        ) from None


def local_minute(captured_at: datetime, tz: tzinfo | str) -> float:
    """Minutes after local midnight in `tz` for an aware UTC (or any aware) datetime."""
    if captured_at.tzinfo is None:
        raise ValueError(f"captured_at must carry a time zone (UTC), got naive {captured_at.isoformat()}")
    zone = resolve_timezone(tz) if isinstance(tz, str) else tz
    local = captured_at.astimezone(zone)
    return local.hour * 60 + local.minute + local.second / 60.0


def is_allowed(zone: ZoneConfig, captured_at: datetime, tz: tzinfo | str) -> bool:
    """Whether `captured_at` falls in one of the zone's allowed windows (local time of `tz`)."""
    if not zone.allowed_windows:
        return False
    minute = local_minute(captured_at, tz)
    return any(in_window(minute, parse_window(w)) for w in zone.allowed_windows)


@dataclass(frozen=True)
class Zone:
    """One zone of one camera, ready for vectorised tests. `polygon`: a prepared shapely Polygon in
    the rules' coordinates (frame pixels, or east/north metres for a moving camera)."""

    config: ZoneConfig
    polygon: shapely.Polygon
    windows: tuple[tuple[int, int], ...]

    @property
    def id(self) -> str:
        return self.config.id

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(N,) bool: which (N, 2) points lie inside or on the border of the zone."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return np.asarray(shapely.intersects_xy(self.polygon, pts[:, 0], pts[:, 1]), dtype=bool)

    def covers(self, x: float, y: float) -> bool:
        """One point inside or on the border."""
        return bool(shapely.intersects_xy(self.polygon, x, y))

    def allowed_at(self, minute_of_day: float) -> bool:
        return any(in_window(minute_of_day, w) for w in self.windows)

    def dwell_for(self, violation: Violation) -> float:
        return self.config.dwell_for(violation)


def make_zone(camera_id: str, config: ZoneConfig, points: Polygon | np.ndarray) -> Zone:
    """The zone with `points` as its polygon (in the rules' coordinates), checked and prepared.

    Raises ValueError naming the camera, the zone and the polygon as the config gives it.
    """
    where = f"camera {camera_id!r} zone {config.id!r}"
    if len(points) < 3:
        raise ValueError(f"{where}: a polygon needs at least 3 points, got {len(points)}")
    polygon = shapely.Polygon(points)
    if not polygon.is_valid or polygon.area <= 0:
        written = "polygon_px" if config.polygon_px is not None else "polygon_geo"
        raise ValueError(f"{where}: {written} is self-intersecting or has no area: {getattr(config, written)}")
    shapely.prepare(polygon)
    try:
        windows = tuple(parse_window(w) for w in config.allowed_windows)
    except ValueError as exc:
        raise ValueError(f"{where} allowed_windows: {exc}") from None
    return Zone(config=config, polygon=polygon, windows=windows)


class CameraZones:
    """All zones of one camera in pixels, with the camera's time zone for allowed windows."""

    def __init__(self, camera: CameraConfig, polygons_px: Mapping[str, Polygon] | None = None) -> None:
        self.camera_id = camera.id
        self.tz = resolve_timezone(camera.timezone, camera_id=camera.id)
        polygons_px = dict(polygons_px or {})
        unknown = set(polygons_px) - {z.id for z in camera.zones}
        if unknown:
            raise ValueError(f"camera {camera.id!r} polygons_px: no zone with id(s) {sorted(unknown)}")
        self.zones: tuple[Zone, ...] = tuple(
            _pixel_zone(camera.id, zone, polygons_px.get(zone.id))
            for zone in camera.zones
            if _has_pixels(camera, zone, polygons_px)
        )
        logger.debug("camera %s: %d zone(s) ready", camera.id, len(self.zones))

    def for_violation(self, violation: Violation) -> tuple[Zone, ...]:
        return tuple(z for z in self.zones if violation in z.config.violations)

    def membership(self, violation: Violation, points: np.ndarray) -> dict[str, np.ndarray]:
        """zone id -> (N,) bool inside mask, for each zone that forbids `violation`."""
        return {z.id: z.contains(points) for z in self.for_violation(violation)}

    def minute_of_day(self, captured_at: datetime) -> float:
        return local_minute(captured_at, self.tz)


def _has_pixels(camera: CameraConfig, zone: ZoneConfig, polygons_px: Mapping[str, Polygon]) -> bool:
    """A moving camera's geo zone has no fixed pixel polygon: skip it here (logged), fail for fixed ones."""
    if zone.polygon_px is not None or zone.id in polygons_px or camera.kind == "fixed":
        return True
    logger.warning(
        "camera %s (%s) zone %s: given in polygon_geo without a pixel polygon; the pixel rules skip it",
        camera.id, camera.kind, zone.id,
    )  # fmt: skip
    return False


def _pixel_zone(camera_id: str, zone: ZoneConfig, given: Polygon | None) -> Zone:
    points = given if given is not None else zone.polygon_px
    if points is None:
        raise ValueError(
            f"camera {camera_id!r} zone {zone.id!r}: polygon_geo has no pixel polygon; "
            "pass it in polygons_px (from the geo module)"
        )
    return make_zone(camera_id, zone, points)
