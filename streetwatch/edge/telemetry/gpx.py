"""GPX tracks (replays of a patrol drive or walk) to poses, read with the standard library's expat.

Why not gpxpy: it refuses a whole file for one out-of-spec optional value (`<fix>3D</fix>`, an
`<hdop>` of `n/a`) and its errors carry no line. Real exporters (Garmin, Strava, OpenTracks,
CalTopo, phone apps) write such values. Here every point and field is read with its line and
column: a bad optional field is dropped and counted (`invalid_field`), the point kept; a point
without a usable position or time is dropped and counted; a file that is not XML is a
TelemetryError naming file, line and column. The XML declaration's encoding is honoured (UTF-8,
UTF-16, ISO-8859-1, windows-1252, and multi-byte ones such as GBK/GB18030 through Python's codecs).

Poses come from track points (`trkpt`) and timed route points (`rtept`); waypoints are places,
not a path, and are counted (`waypoint`). GPX 1.0 `<speed>`/`<course>` and Garmin
TrackPointExtension `speed`/`course` are read. Heading is the course to the next point when the
vehicle moved at least `MIN_MOVE_M` (else the last heading): for a car driving forward this is
the vehicle heading. Times without a zone are UTC (the GPX schema says so).
"""

from __future__ import annotations

import logging
import math
import re
import xml.parsers.expat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from streetwatch.edge.telemetry.flight_path import bearing_deg, distance_m
from streetwatch.edge.telemetry.pose import ParseStats, Pose, TelemetryError

log = logging.getLogger(__name__)

FIX_VALUES = ("none", "2d", "3d", "dgps", "pps")
MIN_MOVE_M = 1.0  # closer points give no course: GPS jitter, not motion
POINTS = ("trkpt", "rtept")
FLOAT_FIELDS = ("ele", "hdop", "vdop", "pdop", "speed", "course", "geoidheight", "magvar")
_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


@dataclass
class _Point:
    """One trkpt/rtept as read: attributes and child texts, with where it starts."""

    kind: str
    line: int
    column: int
    attrs: dict[str, str]
    texts: dict[str, tuple[str, int]] = field(default_factory=dict)  # local name -> (text, line)


@dataclass
class _Reader:
    """expat callbacks collecting points per segment; expat does the XML, this keeps the structure."""

    parser: xml.parsers.expat.XMLParserType
    stats: ParseStats
    segments: list[list[_Point]] = field(default_factory=list)
    root: str | None = None
    _point: _Point | None = None
    _text: list[str] = field(default_factory=list)
    _text_line: int = 0

    def start(self, name: str, attrs: dict[str, str]) -> None:
        local = name.rsplit(":", 1)[-1]
        if self.root is None:
            self.root = local
        if local in ("trkseg", "rte") or (local in POINTS and not self.segments):
            self.segments.append([])
        if local in POINTS:
            self._point = _Point(local, self.parser.CurrentLineNumber, self.parser.CurrentColumnNumber + 1, attrs)
        elif local == "wpt":
            self.stats.note("waypoint", f"line {self.parser.CurrentLineNumber}: <wpt> is a place, not a track point")
        self._text, self._text_line = [], self.parser.CurrentLineNumber

    def data(self, text: str) -> None:
        self._text.append(text)

    def end(self, name: str) -> None:
        local = name.rsplit(":", 1)[-1]
        point = self._point
        if point is None:
            return
        if local in POINTS:
            self.segments[-1].append(point)
            self._point = None
        elif local in ("time", "fix", "sat", *FLOAT_FIELDS):
            point.texts.setdefault(local, ("".join(self._text).strip(), self._text_line))
        self._text = []


def read_gpx(path: str | Path, *, source: str | None = None, stats: ParseStats | None = None) -> list[Pose]:
    """Poses from a GPX file; TelemetryError naming the file, line and column when it is not GPX."""
    data = Path(path).read_bytes()
    return parse_gpx(data, source=source or str(path), stats=stats, path=path)


def parse_gpx(
    data: str | bytes, *, source: str, stats: ParseStats | None = None, path: str | Path | None = None,
) -> list[Pose]:
    """Poses from GPX text or bytes (see the module docstring)."""
    stats = stats or ParseStats(source)
    name = path if path is not None else source
    reader = _parse_xml(data.encode("utf-8") if isinstance(data, str) else data, stats=stats, name=name,
                        force_utf8=isinstance(data, str))
    if reader.root != "gpx":
        raise TelemetryError(name, f"root element <{reader.root}>, expected <gpx>", where="line 1")
    poses: list[Pose] = []
    for segment in reader.segments:
        poses.extend(_segment_poses(segment, source=source, stats=stats))
    poses.sort(key=lambda p: p.t)
    return poses


def _parse_xml(data: bytes, *, stats: ParseStats, name: str | Path, force_utf8: bool) -> _Reader:
    try:
        return _run_expat(data, stats=stats, name=name, encoding="utf-8" if force_utf8 else None)
    except ValueError as exc:  # expat reads UTF-8/16 and 8-bit code pages only: decode GBK & co. here
        if "multi-byte" not in str(exc):
            raise
    declared = _DECLARED.match(data)
    encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise TelemetryError(name, f"not valid {encoding} as the XML declaration says ({exc.reason})",
                             where=f"byte {exc.start}") from None
    return _run_expat(text.encode("utf-8"), stats=stats, name=name, encoding="utf-8")


def _run_expat(data: bytes, *, stats: ParseStats, name: str | Path, encoding: str | None) -> _Reader:
    parser = xml.parsers.expat.ParserCreate(encoding)
    reader = _Reader(parser, stats)
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.data
    parser.EntityDeclHandler = _refuse_entities
    try:
        parser.Parse(data, True)
    except _EntityRefused as exc:
        raise TelemetryError(name, str(exc), where=f"line {parser.CurrentLineNumber}") from None
    except xml.parsers.expat.ExpatError as exc:
        where = f"line {exc.lineno}, column {exc.offset + 1}"
        raise TelemetryError(name, f"not well-formed XML: {xml.parsers.expat.ErrorString(exc.code)}; "
                                   "expected a GPX document", where=where) from None
    except LookupError as exc:
        raise TelemetryError(name, f"the XML declaration names an unknown encoding ({exc})", where="line 1") from None
    return reader


class _EntityRefused(Exception):
    """A DTD entity declaration: refused, so no file can expand into gigabytes (billion laughs)."""


def _refuse_entities(name: str, *_: object) -> None:
    raise _EntityRefused(f"entity declaration {name!r} refused (a GPX file needs none)")


def _segment_poses(points: list[_Point], *, source: str, stats: ParseStats) -> list[Pose]:
    usable = [p for p in (_usable(point, stats=stats) for point in points) if p is not None]
    out: list[Pose] = []
    heading: float | None = None
    for i, pose in enumerate(usable):
        nxt = usable[i + 1] if i + 1 < len(usable) else None
        prev = out[-1] if out else None
        course = _course(pose, nxt) if nxt is not None else None
        heading = course if course is not None else heading  # standing still: keep the last heading
        speed = pose.speed_mps if pose.speed_mps is not None else _speed(prev, pose)
        stats.check_gap(prev.t if prev else None, pose.t)
        out.append(Pose(t=pose.t, lat=pose.lat, lon=pose.lon, alt_m=pose.alt_m, heading_deg=heading,
                        pitch_deg=None, roll_deg=None, speed_mps=speed, source=source, fix=pose.fix))
        stats.ok()
    return out


def _usable(point: _Point, *, stats: ParseStats) -> Pose | None:
    """The point as a Pose (heading, source filled in later), or None with the reason counted."""
    where = f"line {point.line}, column {point.column}: <{point.kind}>"
    lat, lon = _float(point.attrs.get("lat")), _float(point.attrs.get("lon"))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        stats.fail("invalid", f"{where} lat={point.attrs.get('lat')!r} lon={point.attrs.get('lon')!r}: "
                              "no position on the globe; point dropped")
        return None
    values = _optional_values(point, stats=stats)
    fix = values.get("fix")
    if fix == "none":
        stats.fail("no_fix", f"{where}: <fix>none</fix> (the device had no fix); point dropped")
        return None
    time_text, _ = point.texts.get("time", ("", point.line))
    if not time_text:
        if point.kind == "trkpt":
            stats.fail("no_time", f"{where} at {lat:.6f},{lon:.6f} has no <time>; point dropped")
        else:
            stats.note("route_point", f"{where}: a route point without <time> is a plan, not a track")
        return None
    t = _time(time_text)
    if t is None:
        stats.fail("invalid", f"{where}: <time>{time_text[:40]}</time> is not an ISO 8601 time; point dropped")
        return None
    speed, ele = values.get("speed"), values.get("ele")
    return Pose(t=t, lat=lat, lon=lon, alt_m=ele if isinstance(ele, float) else None, heading_deg=None, pitch_deg=None,
                roll_deg=None, speed_mps=speed if isinstance(speed, float) else None, source="",
                fix=fix if isinstance(fix, str) else None)


def _optional_values(point: _Point, *, stats: ParseStats) -> dict[str, float | str]:
    """The optional fields that hold a valid value; each invalid one is dropped and counted."""
    values: dict[str, float | str] = {}
    for name, (text, line) in point.texts.items():
        if name == "time" or text == "":
            continue
        if name == "fix":
            valid: float | str | None = text if text in FIX_VALUES else None
            expected = "one of " + ", ".join(FIX_VALUES)
        elif name == "sat":
            valid = float(text) if text.isdigit() else None
            expected = "a whole number"
        else:
            valid = _float(text)
            expected = "a number"
        if valid is None:
            stats.fail("invalid_field", f"line {line}: <{name}>{text[:30]}</{name}> is not {expected}; field dropped, "
                                        "point kept")
        else:
            values[name] = valid
    return values


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _time(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _course(a: Pose, b: Pose) -> float | None:
    if distance_m(a.lat, a.lon, b.lat, b.lon) < MIN_MOVE_M:
        return None
    return bearing_deg(a.lat, a.lon, b.lat, b.lon)


def _speed(prev: Pose | None, pose: Pose) -> float | None:
    if prev is None:
        return None
    seconds = (pose.t - prev.t).total_seconds()
    return distance_m(prev.lat, prev.lon, pose.lat, pose.lon) / seconds if seconds > 0 else None
