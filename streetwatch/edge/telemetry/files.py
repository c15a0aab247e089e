"""One entry point for telemetry files: detect the format, read the poses, keep what was skipped.

`read_telemetry` is what the edge (`edge run`, `edge replay`) and `edge telemetry FILE` both use, so
an operator's check of a file before a patrol reads it exactly as the edge will. Formats:
`nmea` (NMEA 0183 log or serial capture), `gpx`, `srt` (DJI sidecar, any dialect), `klv` (a raw
MISB ST 0601 dump, or the KLV data stream of an MPEG-TS/MP4 container). `auto` looks at the
first bytes, then the file name.

Every reader error that stops a file (missing, unreadable, not the format) is a TelemetryError
naming the file and where; everything a reader can skip is counted in the result's `stats`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Literal

from streetwatch.edge.telemetry.flight_path import with_flight_path_attitude
from streetwatch.edge.telemetry.gpx import read_gpx
from streetwatch.edge.telemetry.klv import is_raw_klv, iter_klv_container, read_klv_file
from streetwatch.edge.telemetry.nmea import read_nmea_file
from streetwatch.edge.telemetry.pose import ParseStats, Pose, TelemetryError
from streetwatch.edge.telemetry.srt import detect_dialect, parse_srt, read_srt_text

Format = Literal["nmea", "gpx", "srt", "klv"]
FORMATS: tuple[Format, ...] = ("nmea", "gpx", "srt", "klv")
SNIFF_BYTES = 4096
_SRT_HEAD = re.compile(rb"^\s*\d+\s*\r?\n\s*\d+:\d{2}:\d{2}[,.]\d+\s*-+>", re.MULTILINE)
_SUFFIXES: dict[str, Format] = {".gpx": "gpx", ".srt": "srt", ".klv": "klv", ".nmea": "nmea", ".log": "nmea",
                                ".txt": "nmea", ".ts": "klv", ".m2ts": "klv", ".mpg": "klv"}


@dataclass(frozen=True)
class TelemetryFile:
    """What one file gave: its poses in time order and everything the reader skipped.

    offsets_s: per pose, seconds from the video's first frame where the source states it (SRT
    blocks, KLV in the video itself), else None. self_timed: the poses carry the source's own
    absolute clock next to those offsets, so they can line a video up without --start-time.
    """

    path: Path
    format: Format
    dialect: str
    poses: tuple[Pose, ...]
    stats: ParseStats
    offsets_s: tuple[float | None, ...] = ()
    self_timed: bool = False


def detect_format(path: str | Path) -> Format:
    """The file's format from its first bytes, then its name; TelemetryError if neither tells."""
    path = Path(path)
    head = _head(path)
    text = head.lstrip(b"\xef\xbb\xbf")
    if is_raw_klv(head) or _media_container(head):
        return "klv"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16: GPX or SRT exported on Windows
        decoded = head.decode("utf-16", errors="ignore").encode("utf-8")
        return "gpx" if decoded.lstrip().startswith(b"<") else "srt"
    if text.lstrip().startswith(b"<"):
        return "gpx"
    if _SRT_HEAD.search(text[:512]):
        return "srt"
    if re.search(rb"^\s*[$!][A-Z]{2,}", text, re.MULTILINE):
        return "nmea"
    if path.suffix.lower() in _SUFFIXES:
        return _SUFFIXES[path.suffix.lower()]
    raise TelemetryError(path, "not NMEA, GPX, DJI SRT or KLV by its content or its name; pass --format")


def _media_container(head: bytes) -> bool:
    """MPEG-TS (a 0x47 sync byte every 188 bytes) or ISO BMFF/MP4 (`ftyp`): KLV would be a data stream in it."""
    return (len(head) > 188 and head[0] == 0x47 and head[188] == 0x47) or head[4:8] == b"ftyp"


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(SNIFF_BYTES)
    except FileNotFoundError:
        raise TelemetryError(path, "no such file") from None
    except IsADirectoryError:
        raise TelemetryError(path, "is a folder, not a telemetry file") from None
    except OSError as exc:
        raise TelemetryError(path, f"cannot be read ({exc.strerror})") from None


@dataclass(frozen=True)
class ReadOptions:
    """How a file is read beyond its format.

    clock_tz: the zone of a DJI drone's wall clock; clip_start: the video's first frame, for SRT
    blocks without a wall clock. flight_path=True (drones): poses without attitude get a heading
    from the flight path and, with gimbal_pitch_deg, a gimbal (see telemetry/flight_path.py).
    """

    clock_tz: tzinfo = UTC
    clip_start: datetime | None = None
    flight_path: bool = False
    gimbal_pitch_deg: float | None = None


def read_telemetry(path: str | Path, *, fmt: Format | Literal["auto"] = "auto", source: str | None = None,
                   options: ReadOptions = ReadOptions()) -> TelemetryFile:
    """Read a telemetry file as the edge does (see the module docstring); `source` names its poses."""
    path = Path(path)
    chosen: Format = detect_format(path) if fmt == "auto" else fmt
    _head(path)  # a missing or unreadable file is one clear error whatever the format
    stats = ParseStats(source or str(path))
    result = _READERS[chosen](path, stats=stats, options=options)
    if options.flight_path:
        poses = with_flight_path_attitude(result.poses, gimbal_pitch_deg=options.gimbal_pitch_deg)
        result = TelemetryFile(path, result.format, result.dialect, tuple(poses), stats, result.offsets_s,
                               result.self_timed)
    return result


def _read_nmea(path: Path, *, stats: ParseStats, options: ReadOptions) -> TelemetryFile:
    poses = _sorted(list(read_nmea_file(path, source=stats.source, stats=stats)))
    return TelemetryFile(path, "nmea", "NMEA 0183", tuple(poses), stats)


def _read_gpx(path: Path, *, stats: ParseStats, options: ReadOptions) -> TelemetryFile:
    return TelemetryFile(path, "gpx", "GPX", tuple(read_gpx(path, source=stats.source, stats=stats)), stats)


def _read_srt(path: Path, *, stats: ParseStats, options: ReadOptions) -> TelemetryFile:
    text = read_srt_text(path)
    dialect = detect_dialect(text)
    records = parse_srt(text, clock_tz=options.clock_tz, clip_start=options.clip_start, source=stats.source,
                        stats=stats, dialect=dialect)
    name = f"DJI SRT {dialect.name} ({dialect.models})" + (f"; {dialect.note}" if dialect.note else "")
    return TelemetryFile(path, "srt", name, tuple(r.pose for r in records), stats,
                         tuple(r.start_s for r in records), bool(records) and all(r.wall_clock for r in records))


def _read_klv(path: Path, *, stats: ParseStats, options: ReadOptions) -> TelemetryFile:
    if is_raw_klv(_head(path)):
        return TelemetryFile(path, "klv", "MISB ST 0601 raw KLV", tuple(read_klv_file(path, source=stats.source,
                                                                                       stats=stats)), stats)
    timed = list(iter_klv_container(path, source=stats.source, stats=stats))
    offsets = tuple(offset for offset, _ in timed)
    return TelemetryFile(path, "klv", "MISB ST 0601 KLV data stream", tuple(pose for _, pose in timed), stats,
                         offsets, bool(timed) and all(o is not None for o in offsets))


def _sorted(poses: Sequence[Pose]) -> list[Pose]:
    return sorted(poses, key=lambda p: p.t)


_READERS = {"nmea": _read_nmea, "gpx": _read_gpx, "srt": _read_srt, "klv": _read_klv}
