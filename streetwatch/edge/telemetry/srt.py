"""DJI-style `.SRT` subtitle sidecars to poses, one per subtitle block.

Firmware writes several dialects; the parser reads fields, not layouts:
- bracketed pairs (Mini/Air 2S/Mavic 3): `[latitude: 31.300123] [longitude: 120.585432]
  [rel_alt: 80.100 abs_alt: 120.300] [gb_yaw: -12.3 gb_pitch: -89.9 gb_roll: 0.0] [focal_len: 24.00]`,
  with `FrameCnt: 12` and a wall-clock line `2023-05-12 14:03:22.123`;
- older (Phantom 4, Mavic Pro/Air): `GPS(lon,lat,n)` (the third number means altitude on some
  firmware and satellite count on others, so it is not used), `HOME(lon,lat)`, `BAROMETER:80.1`,
  `D 12.3m, H 80.1m` (H: height above home), a date `2017.08.05 14:11:51`.
DJI clocks are the aircraft's local time: the caller states the zone (`clock_tz`). Blocks without a
wall-clock time are placed at `clip_start` + the subtitle's start offset. DJI `gb_*` angles are
earth-referenced (yaw from north, pitch from the horizon); the aircraft's own heading is not in
these files, so `heading_deg` stays None and the gimbal carries the camera's orientation.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

from streetwatch.edge.telemetry.pose import Gimbal, ParseStats, Pose, as_utc

log = logging.getLogger(__name__)

_TIME_RANGE = re.compile(
    r"(\d+):(\d{2}):(\d{2})[,.](\d{1,3})\s*-->\s*(\d+):(\d{2}):(\d{2})[,.](\d{1,3})"
)
_TAG = re.compile(r"<[^>]*>")
_BRACKET = re.compile(r"\[([^\]]*)\]")
_PAIR = re.compile(r"([A-Za-z_]+)\s*:\s*(-?\d+(?:\.\d+)?)")
_FRAME_CNT = re.compile(r"FrameCnt\s*:?\s*(\d+)", re.IGNORECASE)
_GPS = re.compile(r"GPS\s*\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)")
_BARO = re.compile(r"BAROMETER\s*:\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_HEIGHT = re.compile(r"(?<![\w.])H\s+(-?\d+(?:\.\d+)?)\s*m\b")
_WALL_CLOCK = re.compile(
    r"(\d{4})[-./](\d{2})[-./](\d{2})\s+(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,3}))?(?:[.,](\d{1,3}))?"
)


@dataclass(frozen=True, slots=True)
class SrtRecord:
    """One subtitle block: its video time range (seconds from the clip start) and its pose."""

    index: int
    frame_cnt: int | None
    start_s: float
    end_s: float
    pose: Pose


def read_srt(path: str | Path, *, clock_tz: tzinfo, clip_start: datetime | None = None,
             source: str | None = None, stats: ParseStats | None = None) -> list[SrtRecord]:
    """Records from an .SRT file (UTF-8, a BOM tolerated)."""
    text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    return parse_srt(text, clock_tz=clock_tz, clip_start=clip_start, source=source or str(path), stats=stats)


def parse_srt(text: str, *, clock_tz: tzinfo, clip_start: datetime | None = None, source: str,
              stats: ParseStats | None = None) -> list[SrtRecord]:
    """Records from SRT text; corrupt blocks are counted in `stats` and skipped."""
    stats = stats or ParseStats(source)
    records: list[SrtRecord] = []
    for block in re.split(r"\r?\n\s*\r?\n", text.strip()):
        if not block.strip():
            continue
        record = _parse_block(block, clock_tz=clock_tz, clip_start=clip_start, source=source, stats=stats)
        if record is not None:
            stats.check_gap(records[-1].pose.t if records else None, record.pose.t)
            records.append(record)
            stats.ok()
    return records


def _parse_block(block: str, *, clock_tz: tzinfo, clip_start: datetime | None, source: str,
                 stats: ParseStats) -> SrtRecord | None:
    lines = block.strip().splitlines()
    head = lines[0].strip()
    if len(lines) < 3 or not head.isdigit():
        stats.fail("malformed", f"block {head[:20]!r}: expected an index line, a time range and fields")
        return None
    span = _TIME_RANGE.search(lines[1])
    if span is None:
        stats.fail("malformed", f"block {head}: no 'hh:mm:ss,mmm --> hh:mm:ss,mmm' line")
        return None
    start_s, end_s = _seconds(span.groups()[:4]), _seconds(span.groups()[4:])
    body = _TAG.sub(" ", "\n".join(lines[2:]))
    fields = _fields(body)
    position = _position(fields, body)
    if position is None:
        stats.fail("malformed", f"block {head}: no latitude/longitude")
        return None
    if position == (0.0, 0.0):
        stats.fail("no_fix", f"block {head}: position 0,0 (no GPS lock)")
        return None
    t = _time_of(body, clock_tz=clock_tz, clip_start=clip_start, start_s=start_s)
    if t is None:
        stats.fail("no_time", f"block {head}: no wall-clock time and no clip_start given")
        return None
    frame = _FRAME_CNT.search(body)
    pose = Pose(
        t=t, lat=position[0], lon=position[1], alt_m=fields.get("abs_alt", fields.get("altitude")),
        heading_deg=None, pitch_deg=None, roll_deg=None, speed_mps=None, source=source,
        rel_alt_m=_rel_alt(fields, body), gimbal=_gimbal(fields), focal_length_mm=fields.get("focal_len"),
    )
    return SrtRecord(int(head), int(frame.group(1)) if frame else None, start_s, end_s, pose)


def _seconds(parts: tuple[str | None, ...]) -> float:
    h, m, s, ms = (p or "0" for p in parts)
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000.0


def _fields(body: str) -> dict[str, float]:
    """`name: number` pairs inside [brackets], lower-cased names (one bracket may hold several)."""
    fields: dict[str, float] = {}
    for bracket in _BRACKET.findall(body):
        for name, value in _PAIR.findall(bracket):
            fields[name.lower()] = float(value)
    return fields


def _position(fields: dict[str, float], body: str) -> tuple[float, float] | None:
    lat = fields.get("latitude", fields.get("lat"))
    lon = fields.get("longitude", fields.get("lon", fields.get("long")))
    if lat is None or lon is None:
        gps = _GPS.search(body)
        if gps is None:
            return None
        lon, lat = float(gps.group(1)), float(gps.group(2))  # DJI writes GPS(lon, lat, ...)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


def _rel_alt(fields: dict[str, float], body: str) -> float | None:
    if "rel_alt" in fields:
        return fields["rel_alt"]
    match = _BARO.search(body) or _HEIGHT.search(body)
    return float(match.group(1)) if match else None


def _gimbal(fields: dict[str, float]) -> Gimbal | None:
    if "gb_yaw" not in fields or "gb_pitch" not in fields:
        return None
    return Gimbal(fields["gb_yaw"] % 360.0, fields["gb_pitch"], fields.get("gb_roll", 0.0), "earth")


def _time_of(body: str, *, clock_tz: tzinfo, clip_start: datetime | None, start_s: float) -> datetime | None:
    wall = _WALL_CLOCK.search(body)
    if wall is not None:
        y, mo, d, h, mi, s, ms, us = wall.groups()
        micro = int((ms or "0").ljust(3, "0")) * 1000 + int((us or "0").ljust(3, "0"))
        try:
            local = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro)
        except ValueError:
            return None
        return as_utc(local, assume_tz=clock_tz)
    if clip_start is None:
        return None
    return as_utc(clip_start) + timedelta(seconds=start_s)
