"""GPX tracks (replays of a patrol drive) to poses, parsed by `gpxpy`.

GPX carries position, optional elevation and time, rarely speed or course. Heading is the
course to the next point when the vehicle moved at least `min_move_m` (else the last heading):
for a car that drives forward this is the vehicle heading. Points without a time cannot be
aligned with video and are counted and skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gpxpy
import gpxpy.geo
import gpxpy.gpx

from streetwatch.edge.telemetry.pose import ParseStats, Pose, as_utc

log = logging.getLogger(__name__)


def read_gpx(path: str | Path, *, source: str | None = None, stats: ParseStats | None = None,
             min_move_m: float = 1.0) -> list[Pose]:
    """Poses from a GPX file; raise ValueError naming the file when it is not GPX at all."""
    text = Path(path).read_text(encoding="utf-8")
    return parse_gpx(text, source=source or str(path), stats=stats, min_move_m=min_move_m)


def parse_gpx(
    text: str, *, source: str, stats: ParseStats | None = None, min_move_m: float = 1.0
) -> list[Pose]:
    """Poses from GPX text: every track segment's points, then routes' are ignored (no times)."""
    stats = stats or ParseStats(source)
    try:
        gpx = gpxpy.parse(text)
    except gpxpy.gpx.GPXException as exc:
        raise ValueError(
            f"{source}: not a readable GPX document ({exc}); expected <gpx><trk><trkseg><trkpt>"
        ) from None
    poses: list[Pose] = []
    for track in gpx.tracks:
        for segment in track.segments:
            poses.extend(_segment_poses(segment.points, source=source, stats=stats, min_move_m=min_move_m))
    poses.sort(key=lambda p: p.t)
    return poses


def _segment_poses(points: list[gpxpy.gpx.GPXTrackPoint], *, source: str, stats: ParseStats,
                   min_move_m: float) -> list[Pose]:
    timed = []
    for point in points:
        if point.time is None:
            stats.fail("no_time", f"trkpt at {point.latitude:.6f},{point.longitude:.6f} has no <time>")
        else:
            timed.append(point)
    out: list[Pose] = []
    heading: float | None = None
    for i, point in enumerate(timed):
        nxt = timed[i + 1] if i + 1 < len(timed) else None
        prev = timed[i - 1] if i > 0 else None
        course = _course(point, nxt, min_move_m) if nxt is not None else None
        heading = course if course is not None else heading  # standing still: keep the last heading
        t = as_utc(point.time)  # type: ignore[arg-type]  # filtered above
        stats.check_gap(out[-1].t if out else None, t)
        out.append(Pose(
            t=t, lat=point.latitude, lon=point.longitude, alt_m=point.elevation,
            heading_deg=heading, pitch_deg=None, roll_deg=None,
            speed_mps=_speed(point, prev), source=source,
        ))
        stats.ok()
    return out


def _course(a: gpxpy.gpx.GPXTrackPoint, b: gpxpy.gpx.GPXTrackPoint, min_move_m: float) -> float | None:
    moved = a.distance_2d(b)
    if moved is None or moved < min_move_m:
        return None
    return gpxpy.geo.get_course(a.latitude, a.longitude, b.latitude, b.longitude) % 360.0


def _speed(point: gpxpy.gpx.GPXTrackPoint, prev: gpxpy.gpx.GPXTrackPoint | None) -> float | None:
    if point.speed is not None:
        return float(point.speed)
    if prev is None:
        return None
    return point.speed_between(prev)
