"""DJI `.SRT` subtitle sidecars to poses, one per subtitle block, every firmware generation.

The dialect is detected once per file (`detect_dialect`) and decides the coordinate order; fields
are then read by name wherever the block has them:

- `bracketed` (Mavic 3, Mini 3/4/5, Air 2/2S/3/3S, Avata, Neo, Matrice 30/350, Mavic 3E):
  `[latitude: ..] [longitude: ..]`, `[rel_alt: .. abs_alt: ..]` or `[altitude: ..]`, and on some
  models `[gb_yaw: .. gb_pitch: .. gb_roll: ..]`;
- `bracketed-longtitude` (Mavic 2 Pro/Zoom, Mavic 2 Enterprise): `[latitude : ..] [longtitude : ..]`
  (sic), `[altitude: ..]`, on the Enterprise `[Drone: Yaw:.., Pitch:.., Roll:..]`;
- `compact` (Phantom 4 Pro/Adv/RTK, Mavic Air, Mavic Mini, Mini 2/SE): one line,
  `GPS (lon, lat, sats)` or `RTK (lon, lat, ..)`, `HOME (lon, lat, altm)`, `H 80.1m` (height above
  home), on the Phantom 4 RTK `F.PRY (pitch, roll, yaw)` and `G.PRY (pitch, roll, yaw)`;
- `legacy` (Phantom 3/4, Mavic Pro, Inspire, older firmware): `HOME(lon,lat) 2017.8.5 14:11:51`,
  `GPS(lon,lat,sats) BAROMETER:80.1` (or `HB:`);
- `enterprise-legacy` (Matrice 200/210/300 RTK): `GPS(lat,lon,altM) BAROMETER:80.1M`: latitude
  first, the unit suffix `M` tells it apart.

Units: `focal_len : 240` and `fnum : 280` (integers) are tenths of a millimetre and hundredths;
`focal_len: 24.00` (a decimal point) is millimetres. Wall clocks: `2023-05-12 14:03:22.123`,
`2020-04-02 15:19:58,720,764` (ms, µs), `2017.08.05 14:11:51` and `2017.8.5 14:11:51`; they are the
aircraft's local time (the caller states the zone, `clock_tz`). Blocks without one are placed at
`clip_start` + the subtitle's start. DJI gimbal and flight angles are earth-referenced (NED): yaw
from north, pitch from the horizon (-90 = nadir).

A position is refused (counted as `implausible`), not used, when it makes no sense against the
file itself: more than `MAX_FROM_HOME_M` from the block's HOME point (or, without one, from the
file's median position: a wrong coordinate order puts a drone thousands of km away), or further
from the median of its ten neighbours than `MAX_SPEED_MPS` allows over their time span (a glitch).
`0,0` means no GPS lock (`no_fix`).
"""

from __future__ import annotations

import logging
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Literal

from streetwatch.edge.telemetry.flight_path import distance_m
from streetwatch.edge.telemetry.pose import Gimbal, ParseStats, Pose, TelemetryError, as_utc

log = logging.getLogger(__name__)

MAX_FROM_HOME_M = 30_000.0  # beyond any DJI radio range (O4: 20 km)
MAX_SPEED_MPS = 50.0  # DJI FPV tops out at 39 m/s
JUMP_SLACK_M = 30.0  # legacy firmware writes 4 decimals: 11 m steps
_NUM = r"[-+]?\d+(?:\.\d+)?"
_TIME_RANGE = re.compile(r"(\d+):(\d{2}):(\d{2})[,.](\d{1,3})\s*-+>\s*(\d+):(\d{2}):(\d{2})[,.](\d{1,3})")
_TAG = re.compile(r"<[^>]*>")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_PAIR = re.compile(rf"([A-Za-z_]+)\s*:\s*({_NUM})")
_FRAME_CNT = re.compile(r"(?:FrameCnt|SrtCnt)\s*:?\s*(\d+)", re.IGNORECASE)
_FUNC = rf"\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*(?:,\s*({_NUM})\s*([A-Za-z]*)\s*)?\)"
_GPS = re.compile(r"\b(?:GPS|RTK)" + _FUNC)
_HOME = re.compile(r"\bHOME" + _FUNC)
_BARO = re.compile(rf"\b(?:BAROMETER|HB)\s*[:(]\s*({_NUM})", re.IGNORECASE)
_HEIGHT = re.compile(rf"(?<![\w.])H\s+({_NUM})\s*m\b")
_H_SPEED = re.compile(rf"\bH\.S\s+({_NUM})\s*m/s")
_PRY = rf"\.PRY\s*\(\s*({_NUM})[^,]*,\s*({_NUM})[^,]*,\s*({_NUM})"
_F_PRY, _G_PRY = re.compile(r"\bF" + _PRY), re.compile(r"\bG" + _PRY)
_DRONE = re.compile(rf"Drone\s*:\s*Yaw\s*:\s*({_NUM})\s*,\s*Pitch\s*:\s*({_NUM})\s*,\s*Roll\s*:\s*({_NUM})",
                    re.IGNORECASE)
_WALL_CLOCK = re.compile(
    r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})[ T]+(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,6}))?(?:[.,](\d{1,3}))?"
)

Order = Literal["named", "lonlat", "latlon"]


@dataclass(frozen=True, slots=True)
class SrtDialect:
    """One DJI firmware family: how its positions are written and which models write it."""

    name: str
    order: Order
    models: str
    note: str = ""  # set when the values overrode the syntax's coordinate order


DIALECTS = {
    "bracketed": SrtDialect("bracketed", "named", "Mavic 3, Mini 3/4/5, Air 2/2S/3/3S, Avata, Neo, Matrice 30/350"),
    "bracketed-longtitude": SrtDialect("bracketed-longtitude", "named", "Mavic 2 Pro/Zoom, Mavic 2 Enterprise"),
    "compact": SrtDialect("compact", "lonlat", "Phantom 4 Pro/RTK, Mavic Air, Mavic Mini, Mini 2/SE"),
    "legacy": SrtDialect("legacy", "lonlat", "Phantom 3/4, Mavic Pro, Inspire"),
    "enterprise-legacy": SrtDialect("enterprise-legacy", "latlon", "Matrice 200/210/300 RTK"),
    "unknown": SrtDialect("unknown", "named", "no DJI position field found"),
}


@dataclass(frozen=True, slots=True)
class SrtRecord:
    """One subtitle block: its video time range (seconds from the clip start) and its pose."""

    index: int
    frame_cnt: int | None
    start_s: float
    end_s: float
    pose: Pose
    wall_clock: bool = True  # False: the time is clip_start + start_s


@dataclass(frozen=True, slots=True)
class _Reading:
    """What every block of one file is read with."""

    dialect: SrtDialect
    clock_tz: tzinfo
    clip_start: datetime | None
    source: str
    stats: ParseStats


@dataclass(frozen=True, slots=True)
class _Candidate:
    record: SrtRecord
    home: tuple[float, float] | None


def detect_dialect(text: str) -> SrtDialect:
    """The file's dialect, from its first 64 KB (see the module table).

    For `GPS(a, b, ..)` the syntax gives the order; a value beyond +-90 can only be a longitude,
    so values that contradict the syntax's order win (and the dialect's `note` says so).
    """
    head = _TAG.sub(" ", text[:65536])
    if re.search(r"\blongtitude\s*:", head):
        return DIALECTS["bracketed-longtitude"]
    if re.search(r"\[\s*latitude\s*:", head):
        return DIALECTS["bracketed"]
    found = list(_GPS.finditer(head))
    if not found:
        return DIALECTS["unknown"]
    if (found[0].group(4) or "").upper() == "M" and not _HOME.search(head):
        dialect = DIALECTS["enterprise-legacy"]
    elif re.search(r"\b(?:GPS|RTK)\s+\(", head) or _HEIGHT.search(head):
        dialect = DIALECTS["compact"]
    else:
        dialect = DIALECTS["legacy"]
    return _order_from_values(dialect, [(float(m.group(1)), float(m.group(2))) for m in found])


def _order_from_values(dialect: SrtDialect, pairs: Sequence[tuple[float, float]]) -> SrtDialect:
    first_is_lon = any(abs(a) > 90 for a, _ in pairs)
    second_is_lon = any(abs(b) > 90 for _, b in pairs)
    if first_is_lon == second_is_lon:
        return dialect
    order: Order = "lonlat" if first_is_lon else "latlon"
    if order == dialect.order:
        return dialect
    return SrtDialect(dialect.name, order, dialect.models,
                      f"values beyond 90 degrees show GPS({order[:3]},{order[3:]}), not the dialect's usual order")


def read_srt(path: str | Path, *, clock_tz: tzinfo, clip_start: datetime | None = None,
             source: str | None = None, stats: ParseStats | None = None) -> list[SrtRecord]:
    """Records from an .SRT file (UTF-8 with or without a BOM, or UTF-16 with a BOM)."""
    return parse_srt(read_srt_text(path), clock_tz=clock_tz, clip_start=clip_start, source=source or str(path),
                     stats=stats)


def read_srt_text(path: str | Path) -> str:
    """The file's text; TelemetryError naming the file if it is not text at all."""
    raw = Path(path).read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16", errors="replace")
    if b"\x00" in raw[:4096]:
        raise TelemetryError(path, "binary data, not an SRT subtitle file", where=f"byte {raw.index(0)}")
    return raw.decode("utf-8-sig", errors="replace")


def parse_srt(text: str, *, clock_tz: tzinfo, clip_start: datetime | None = None, source: str,
              stats: ParseStats | None = None, dialect: SrtDialect | None = None) -> list[SrtRecord]:
    """Records from SRT text; corrupt and implausible blocks are counted in `stats` and skipped."""
    stats = stats or ParseStats(source)
    reading = _Reading(dialect or detect_dialect(text), clock_tz, clip_start, source, stats)
    candidates = []
    for block in re.split(r"\r?\n[ \t]*\r?\n", text.strip()):
        if block.strip():
            found = _parse_block(block, reading)
            if found is not None:
                candidates.append(found)
    records = _plausible(candidates, stats=stats)
    for previous, record in zip([None, *records], records, strict=False):
        stats.check_gap(previous.pose.t if previous else None, record.pose.t)
    stats.ok(len(records))
    return records


def _parse_block(block: str, reading: _Reading) -> _Candidate | None:
    stats, dialect = reading.stats, reading.dialect
    lines = block.strip().splitlines()
    head = lines[0].strip()
    where = f"block {head}" if head.isascii() and head.isdigit() else f"block {head[:20]!r}"
    if len(lines) < 3 or not (head.isascii() and head.isdigit()):
        stats.fail("malformed", f"{where}: expected an index line, a time range and fields")
        return None
    span = _TIME_RANGE.search(lines[1])
    if span is None:
        stats.fail("malformed", f"{where}: no 'hh:mm:ss,mmm --> hh:mm:ss,mmm' line")
        return None
    start_s, end_s = _seconds(span.groups()[:4]), _seconds(span.groups()[4:])
    body = _TAG.sub(" ", "\n".join(lines[2:]))
    fields = _fields(body)
    position = _position(fields, body, dialect)
    if position is None:
        stats.fail("malformed", f"{where}: no latitude/longitude")
        return None
    if position == (0.0, 0.0):
        stats.fail("no_fix", f"{where}: position 0,0 (no GPS lock)")
        return None
    if not (-90 <= position[0] <= 90 and -180 <= position[1] <= 180):
        stats.fail("malformed", f"{where}: position {position[0]}, {position[1]} is off the globe "
                                f"(read as {dialect.order} for dialect {dialect.name})")
        return None
    t, wall = _time_of(body, clock_tz=reading.clock_tz, clip_start=reading.clip_start, start_s=start_s)
    if t is None:
        stats.fail("no_time", f"{where}: no wall-clock time, and the video's start time is not known")
        return None
    frame = _FRAME_CNT.search(body)
    record = SrtRecord(int(head), int(frame.group(1)) if frame else None, start_s, end_s,
                       _pose(fields, body, position=position, t=t, reading=reading), wall)
    return _Candidate(record, _home(body, dialect))


def _pose(fields: dict[str, str], body: str, *, position: tuple[float, float], t: datetime,
          reading: _Reading) -> Pose:
    flight = _flight_attitude(body)
    speed = _H_SPEED.search(body)
    return Pose(
        t=t, lat=position[0], lon=position[1], alt_m=_abs_alt(fields, body, reading.dialect),
        heading_deg=flight[0] if flight else None, pitch_deg=flight[1] if flight else None,
        roll_deg=flight[2] if flight else None, speed_mps=float(speed.group(1)) if speed else None,
        source=reading.source, rel_alt_m=_rel_alt(fields, body), gimbal=_gimbal(fields, body),
        focal_length_mm=_scaled(fields.get("focal_len"), 10.0), fix="rtk" if re.search(r"\bRTK\s*\(", body) else None,
    )


def _seconds(parts: tuple[str | None, ...]) -> float:
    h, m, s, ms = (p or "0" for p in parts)
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000.0


def _fields(body: str) -> dict[str, str]:
    """`name: number` pairs inside [brackets], lower-cased names, values as written."""
    fields: dict[str, str] = {}
    for bracket in _BRACKET.findall(body):
        for name, value in _PAIR.findall(bracket):
            fields.setdefault(name.lower(), value)
    return fields


def _scaled(raw: str | None, scale: float) -> float | None:
    """DJI's integer encodings (`240` = 24.0) are scaled; a value with a decimal point is literal."""
    if raw is None:
        return None
    value = float(raw)
    return value if "." in raw else value / scale


def _ordered(a: float, b: float, order: Order) -> tuple[float, float]:
    return (a, b) if order == "latlon" else (b, a)


def _position(fields: dict[str, str], body: str, dialect: SrtDialect) -> tuple[float, float] | None:
    lat = fields.get("latitude", fields.get("lat"))
    lon = fields.get("longitude", fields.get("longtitude", fields.get("lon")))
    if lat is not None and lon is not None:
        return float(lat), float(lon)
    gps = _GPS.search(body)
    if gps is None:
        return None
    order: Order = "lonlat" if dialect.order == "named" else dialect.order
    return _ordered(float(gps.group(1)), float(gps.group(2)), order)


def _home(body: str, dialect: SrtDialect) -> tuple[float, float] | None:
    home = _HOME.search(body)
    if home is None:
        return None
    order: Order = "lonlat" if dialect.order == "named" else dialect.order
    point = _ordered(float(home.group(1)), float(home.group(2)), order)
    return None if point == (0.0, 0.0) else point


def _abs_alt(fields: dict[str, str], body: str, dialect: SrtDialect) -> float | None:
    value = fields.get("abs_alt", fields.get("altitude"))
    if value is not None:
        return float(value)
    gps = _GPS.search(body)
    if dialect.name == "enterprise-legacy" and gps is not None and gps.group(3) is not None:
        return float(gps.group(3))  # GPS(lat,lon,altM); consumer firmware writes a satellite count there
    return None


def _rel_alt(fields: dict[str, str], body: str) -> float | None:
    if "rel_alt" in fields:
        return float(fields["rel_alt"])
    match = _BARO.search(body) or _HEIGHT.search(body)
    return float(match.group(1)) if match else None


def _gimbal(fields: dict[str, str], body: str) -> Gimbal | None:
    if "gb_yaw" in fields and "gb_pitch" in fields:
        return Gimbal(float(fields["gb_yaw"]) % 360.0, float(fields["gb_pitch"]), float(fields.get("gb_roll", 0.0)),
                      "earth")
    pry = _G_PRY.search(body)
    if pry is None:
        return None
    pitch, roll, yaw = (float(v) for v in pry.groups())
    return Gimbal(yaw % 360.0, pitch, roll, "earth")


def _flight_attitude(body: str) -> tuple[float, float, float] | None:
    """(heading, pitch, roll) of the aircraft: `F.PRY (pitch, roll, yaw)` or `[Drone: Yaw, Pitch, Roll]`."""
    pry = _F_PRY.search(body)
    if pry is not None:
        pitch, roll, yaw = (float(v) for v in pry.groups())
        return yaw % 360.0, pitch, roll
    drone = _DRONE.search(body)
    if drone is not None:
        yaw, pitch, roll = (float(v) for v in drone.groups())
        return yaw % 360.0, pitch, roll
    return None


def _time_of(body: str, *, clock_tz: tzinfo, clip_start: datetime | None,
             start_s: float) -> tuple[datetime | None, bool]:
    wall = _WALL_CLOCK.search(body)
    if wall is not None:
        y, mo, d, h, mi, s, frac, micro = wall.groups()
        us = int(((frac or "0") + "000000")[:6]) + (int(micro.ljust(3, "0")) if micro else 0)
        try:
            local = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), min(us, 999_999))
        except ValueError:
            return None, True
        return as_utc(local, assume_tz=clock_tz), True
    if clip_start is None:
        return None, False
    return as_utc(clip_start) + timedelta(seconds=start_s), False


def _plausible(candidates: Sequence[_Candidate], *, stats: ParseStats) -> list[SrtRecord]:
    """Drop positions that contradict the file's HOME point (or its median) or their neighbours."""
    if not candidates:
        return []
    median = (statistics.median(c.record.pose.lat for c in candidates),
              statistics.median(c.record.pose.lon for c in candidates))
    kept: list[SrtRecord] = []
    for i, candidate in enumerate(candidates):
        record, pose = candidate.record, candidate.record.pose
        ref, what = (candidate.home, "its HOME point") if candidate.home else (median, "the file's median position")
        away = distance_m(pose.lat, pose.lon, *ref)
        if away > MAX_FROM_HOME_M:
            stats.fail("implausible", f"block {record.index}: {pose.lat}, {pose.lon} is {away / 1000:,.1f} km from "
                                      f"{what} {ref[0]}, {ref[1]} (wrong coordinate order or a corrupt fix); not used")
            continue
        jump = _jump(candidates, i)
        if jump is not None:
            stats.fail("implausible", f"block {record.index}: {jump}; not used")
            continue
        kept.append(record)
    return kept


def _jump(candidates: Sequence[_Candidate], i: int, half: int = 5) -> str | None:
    """Why block i is too far from the median of its neighbours (an isolated glitch), or None.

    The median of the 2*half+1 blocks around it cannot be moved by one or two bad fixes; a drone
    flying at up to MAX_SPEED_MPS stays within that speed times the window's span of it.
    """
    window = [c.record for c in candidates[max(0, i - half) : i + half + 1]]
    if len(window) < 3:
        return None
    lat = statistics.median(r.pose.lat for r in window)
    lon = statistics.median(r.pose.lon for r in window)
    span = abs(window[-1].start_s - window[0].start_s) or abs((window[-1].pose.t - window[0].pose.t).total_seconds())
    pose = candidates[i].record.pose
    away = distance_m(pose.lat, pose.lon, lat, lon)
    if away <= MAX_SPEED_MPS * span + JUMP_SLACK_M:
        return None
    return (f"{pose.lat}, {pose.lon} is {away:,.0f} m from the median of blocks {window[0].index}-"
            f"{window[-1].index} ({span:.1f} s: faster than {MAX_SPEED_MPS:.0f} m/s)")
