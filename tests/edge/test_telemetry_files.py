"""Every real telemetry file in the shared assets, read as the edge reads it, against the file itself.

The expected pose count and first position are not numbers copied from the reader: each file is
scanned here by a few lines of independent code (regular expressions for the text formats, a
struct walk with the test's own checksum for KLV) that counts the records carrying a usable
position and a time. The reader must agree with that scan, never raise, and `edge telemetry` must
report the same count with the right exit code.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from datetime import UTC, datetime
from functools import reduce
from pathlib import Path

import pytest

from streetwatch.edge import cli
from streetwatch.edge.telemetry import ReadOptions, read_telemetry

REPO = Path(__file__).resolve().parents[2]
TELEMETRY = Path(os.environ.get("STREETWATCH_ASSETS_DIR") or REPO.parent / "shared" / "assets") / "telemetry"
FILES = sorted(p for p in TELEMETRY.glob("*/*") if p.is_file()) if TELEMETRY.is_dir() else []
Expected = tuple[int, tuple[float, float] | None]


# --- NMEA: checksummed position sentences grouped by time of fix ---------------------------------------

NMEA = re.compile(r"\$[A-Z]{2}(RMC|GGA|GNS|GLL|ZDA),([^*$]*)\*([0-9A-Fa-f]{2})")
TIME_FIELD = {"RMC": 0, "GGA": 0, "GNS": 0, "GLL": 4, "ZDA": 0}
LATLON_FIELDS = {"RMC": 2, "GGA": 1, "GNS": 1, "GLL": 0}


def degrees(value: str, hemisphere: str) -> float:
    whole = int(float(value) / 100)
    result = whole + (float(value) - whole * 100) / 60
    return -result if hemisphere in "SW" else result


def valid_fix(kind: str, f: list[str]) -> bool:
    at = LATLON_FIELDS[kind]
    if len(f) < at + 4 or not f[at] or not f[at + 2]:
        return False
    return {"RMC": lambda: f[1] == "A", "GGA": lambda: f[5] not in ("", "0"),
            "GNS": lambda: bool(f[5].strip("N")), "GLL": lambda: len(f) > 5 and f[5] == "A"}[kind]()


def scan_nmea(path: Path) -> Expected:
    epochs: dict[str, dict[str, list[str]]] = {}
    dated = False
    for line in path.read_bytes().decode("latin-1").splitlines():
        for kind, body, checksum in NMEA.findall(line):
            text = line[line.index(body) - 7 : line.index(body) - 1]  # "$GPRMC"
            if reduce(lambda acc, ch: acc ^ ord(ch), text[1:] + "," + body, 0) != int(checksum, 16):
                continue
            fields = body.split(",")
            dated |= (kind == "RMC" and len(fields) > 8 and bool(fields[8])) or (kind == "ZDA" and bool(fields[3]))
            if fields[TIME_FIELD[kind]]:
                epochs.setdefault(fields[TIME_FIELD[kind]], {})[kind] = fields
    fixes = []
    for hhmmss, sentences in epochs.items():
        kind = next((k for k in ("RMC", "GGA", "GNS", "GLL") if k in sentences), None)
        if kind is not None and valid_fix(kind, sentences[kind]):
            f, at = sentences[kind], LATLON_FIELDS[kind]
            fixes.append((float(hhmmss), (degrees(f[at], f[at + 1]), degrees(f[at + 2], f[at + 3]))))
    if not dated or not fixes:
        return 0, None
    return len(fixes), min(fixes)[1]


# --- GPX: track and route points with a time ---------------------------------------------------------

POINT = re.compile(r"<(trkpt|rtept)\b([^>]*?)(/>|>(.*?)</\1>)", re.DOTALL)


def scan_gpx(path: Path) -> Expected:
    text = path.read_bytes().decode("utf-8-sig")
    timed = []
    for _kind, attrs, _end, inner in POINT.findall(text):
        when = re.search(r"<time>\s*([^<]+?)\s*</time>", inner or "")
        lat, lon = re.search(r'lat="([^"]+)"', attrs), re.search(r'lon="([^"]+)"', attrs)
        if when and lat and lon:
            t = datetime.fromisoformat(when.group(1))
            timed.append((t if t.tzinfo else t.replace(tzinfo=UTC), (float(lat.group(1)), float(lon.group(1)))))
    return (len(timed), min(timed)[1]) if timed else (0, None)


# --- DJI SRT: blocks with a position that is not 0,0 and a wall clock --------------------------------

NUM = r"(-?\d+(?:\.\d+)?)"


def srt_position(block: str) -> tuple[float, float] | None:
    lat = re.search(rf"latitude\s*:\s*{NUM}", block)
    lon = re.search(rf"long?t?itude\s*:\s*{NUM}", block)
    if lat and lon:
        return float(lat.group(1)), float(lon.group(1))
    gps = re.search(rf"GPS\s*\(\s*{NUM}\s*,\s*{NUM}", block)
    if gps is None:
        return None
    a, b = float(gps.group(1)), float(gps.group(2))
    assert abs(a) > 90 or abs(b) > 90, "the test cannot tell this file's coordinate order on its own"
    return (b, a) if abs(a) > 90 else (a, b)


def srt_blocks(path: Path) -> list[str]:
    return re.split(r"\r?\n\s*\r?\n", path.read_text(encoding="utf-8-sig", errors="replace"))


def scan_srt(path: Path) -> Expected:
    """Without a clip start only blocks with a wall clock can be timed."""
    positions = []
    for block in srt_blocks(path):
        if re.search(r"\d{4}[-.]\d{1,2}[-.]\d{1,2}\s+\d{1,2}:\d{2}:\d{2}", block):
            where = srt_position(block)
            if where is not None and where != (0.0, 0.0):
                positions.append(where)
    return (len(positions), positions[0]) if positions else (0, None)


# --- MISB ST 0601 KLV: packets with a good checksum, a time stamp and a sensor position --------------

KEY = bytes.fromhex("060E2B34020B01010E01030101000000")


def ber(buf: bytes, at: int) -> tuple[int, int]:
    if buf[at] < 0x80:
        return buf[at], at + 1
    n = buf[at] & 0x7F
    return int.from_bytes(buf[at + 1 : at + 1 + n], "big"), at + 1 + n


def tags_of(value: bytes) -> dict[int, bytes]:
    tags, at = {}, 0
    while at < len(value):
        tag = 0
        while value[at] & 0x80:
            tag, at = (tag << 7) | (value[at] & 0x7F), at + 1
        tag, at = (tag << 7) | value[at], at + 1
        length, at = ber(value, at)
        tags[tag], at = value[at : at + length], at + length
    return tags


def scan_klv(path: Path) -> Expected:
    data, found = path.read_bytes(), []
    at = data.find(KEY)
    while at >= 0:
        length, start = ber(data, at + 16)
        packet = data[at : start + length]
        padded = packet[:-2] + b"\x00" * (len(packet[:-2]) % 2)
        words = sum(struct.unpack(f">{len(padded) // 2}H", padded)) & 0xFFFF
        tags = tags_of(packet[start - at : -4]) if len(packet) == start - at + length else {}
        if words == int.from_bytes(packet[-2:], "big") and {2, 13, 14} <= tags.keys():
            lat, lon = (struct.unpack(">i", tags[t])[0] for t in (13, 14))
            if -(2**31) not in (lat, lon):
                found.append((lat * 90 / (2**31 - 1), lon * 180 / (2**31 - 1)))
        at = data.find(KEY, at + 16)
    return (len(found), found[0]) if found else (0, None)


SCANNERS = {"nmea": scan_nmea, "gpx": scan_gpx, "srt": scan_srt, "klv": scan_klv}


def test_the_shared_telemetry_files_are_there() -> None:
    assert FILES, f"no telemetry files under {TELEMETRY}: set STREETWATCH_ASSETS_DIR to the shared assets"
    assert {p.parent.name for p in FILES} == set(SCANNERS)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_each_real_file_reads_without_an_exception_to_the_poses_the_file_holds(path: Path) -> None:
    count, first = SCANNERS[path.parent.name](path)
    result = read_telemetry(path)  # format detected from the content, as `edge telemetry` does

    assert result.format == path.parent.name
    assert len(result.poses) == count
    if first is not None:
        assert (result.poses[0].lat, result.poses[0].lon) == (pytest.approx(first[0], abs=1e-7),
                                                              pytest.approx(first[1], abs=1e-7))
        assert all(math.isfinite(p.lat) and math.isfinite(p.lon) for p in result.poses)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_edge_telemetry_reports_each_file_with_the_right_exit_code(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    count, _ = SCANNERS[path.parent.name](path)
    code = cli.main(["telemetry", str(path)])
    out, err = capsys.readouterr()
    assert code == (0 if count else 2)
    assert re.search(rf"^poses\s+{count}$", out, re.MULTILINE)
    assert re.search(r"^projectable\s+(yes|no): ", out, re.MULTILINE)
    assert "Traceback" not in out + err
    if not count:
        assert err.count("\n") == 1 and f"{path}: no poses: " in err  # one line saying why

    assert cli.main(["telemetry", "--jsonl", str(path)]) == code
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == count
    assert all({"t", "lat", "lon", "alt_m", "heading_deg", "pitch_deg", "roll_deg", "gimbal"} <= json.loads(line).keys()
               for line in lines)


@pytest.mark.parametrize("path", [p for p in FILES if p.parent.name == "srt"], ids=lambda p: p.name)
def test_each_srt_gives_a_pose_per_positioned_block_once_the_clip_start_is_known(path: Path) -> None:
    """Sidecars without a wall clock (Phantom 4 Pro) are timed from the video's start."""
    start = datetime(2026, 1, 1, 8, tzinfo=UTC)
    pairs = [re.search(rf"(?:latitude\s*:|GPS\s*\()\s*{NUM}.*?(?:itude\s*:|,)\s*{NUM}", block, re.DOTALL)
             for block in srt_blocks(path)]
    positioned = sum(1 for pair in pairs if pair and (float(pair.group(1)), float(pair.group(2))) != (0.0, 0.0))
    result = read_telemetry(path, options=ReadOptions(clip_start=start))
    assert len(result.poses) == positioned
    assert cli.main(["telemetry", str(path), "--start-time", start.isoformat()]) == (0 if positioned else 2)
