"""DJI-style .SRT sidecars in several firmware dialects, written here, including corrupt blocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from streetwatch.edge.telemetry import ParseStats, parse_srt, read_srt

CST = timezone(timedelta(hours=8))  # the aircraft's clock: China Standard Time

# Mini 3 / Air 2S style: FrameCnt, a millisecond wall clock, bracketed fields in a <font> tag.
BRACKETED = """1
00:00:00,000 --> 00:00:00,033
<font size="28">FrameCnt: 1, DiffTime: 33ms
2026-01-01 16:00:00.000
[iso: 100] [shutter: 1/1000.0] [fnum: 2.8] [ev: 0] [ct: 5500] [color_md: default] [focal_len: 24.00] \
[latitude: 31.300123] [longitude: 120.585432] [rel_alt: 80.100 abs_alt: 120.300] \
[gb_yaw: -12.3 gb_pitch: -89.9 gb_roll: 0.0] </font>

2
00:00:00,033 --> 00:00:00,066
<font size="28">FrameCnt: 2, DiffTime: 33ms
2026-01-01 16:00:00,033,366
[iso: 100] [focal_len: 24.00] [latitude : 31.300125] [longitude : 120.585440] \
[rel_alt: 80.200 abs_alt: 120.400] [gb_yaw: 350.0 gb_pitch: -89.8 gb_roll: 0.1] </font>

3
00:00:00,066 --> 00:00:00,100
<font size="28">FrameCnt: 3, DiffTime: 34ms
2026-01-01 16:00:00.066
[iso: 100] [latitude: 0.000000] [longitude: 0.000000] [rel_alt: 0.000 abs_alt: 0.000] </font>
"""

# Phantom 4 style: HOME(lon,lat) and GPS(lon,lat,n), BAROMETER height, dotted date.
PHANTOM = """1
00:00:00,000 --> 00:00:01,000
HOME(120.5850,31.3000) 2017.08.05 14:11:51
GPS(120.5854,31.3001,19) BAROMETER:80.1
ISO:100 Shutter:60 EV:0 Fnum:F2.2

2
00:00:01,000 --> 00:00:02,000
HOME(120.5850,31.3000) 2017.08.05 14:11:52
GPS(120.5856,31.3003,19) BAROMETER:80.4
ISO:100 Shutter:60 EV:0 Fnum:F2.2
"""

# Mavic Air style: one line of fields, no wall clock at all.
MAVIC_AIR = """1
00:00:00,000 --> 00:00:00,033
F/2.8, SS 1000, ISO 100, EV 0, DZOOM 1.000, GPS (120.5854, 31.3001, 19), \
D 12.3m, H 80.1m, H.S 0.00m/s, V.S 0.00m/s

2
00:00:01,500 --> 00:00:01,533
F/2.8, SS 1000, ISO 100, EV 0, DZOOM 1.000, GPS (120.5858, 31.3004, 19), \
D 14.0m, H 81.0m, H.S 0.00m/s, V.S 0.00m/s
"""

CORRUPT = """7
00:00:07,000 -> 00:00:08,000
[latitude: 31.3] [longitude: 120.5]

8
00:00:08,000 --> 00:00:09,000
[iso: 100] [focal_len: 24.00]

x9
garbage

10
00:00:10,000 --> 00:00:11,000
2026-01-01 16:00:10.000 [latitude: 95.0] [longitude: 120.5]
"""


def test_bracketed_dialect_maps_each_block_to_a_pose_in_utc() -> None:
    stats = ParseStats("dji")
    records = parse_srt(BRACKETED, clock_tz=CST, source="dji", stats=stats)

    assert [r.frame_cnt for r in records] == [1, 2]
    assert stats["no_fix"] == 1  # block 3: 0,0 means no GPS lock
    first, second = records[0], records[1]
    assert (first.start_s, first.end_s) == (0.0, pytest.approx(0.033))
    assert first.pose.t == datetime(2026, 1, 1, 8, 0, 0, tzinfo=UTC)  # 16:00 CST
    assert second.pose.t == datetime(2026, 1, 1, 8, 0, 0, 33366, tzinfo=UTC)  # ms,us groups
    p = first.pose
    assert (p.lat, p.lon) == (31.300123, 120.585432)
    assert (p.rel_alt_m, p.alt_m, p.focal_length_mm) == (80.1, 120.3, 24.0)
    assert p.gimbal is not None and p.gimbal.reference == "earth"
    assert (p.gimbal.yaw_deg, p.gimbal.pitch_deg, p.gimbal.roll_deg) == (pytest.approx(347.7), -89.9, 0.0)
    assert p.heading_deg is None  # the aircraft's own heading is not in the file
    assert second.pose.lat == 31.300125  # "latitude :" with a space is read too


def test_phantom_dialect_reads_lon_lat_order_and_barometer_height() -> None:
    records = parse_srt(PHANTOM, clock_tz=CST, source="p4")
    assert [(r.pose.lat, r.pose.lon, r.pose.rel_alt_m) for r in records] == [
        (31.3001, 120.5854, 80.1), (31.3003, 120.5856, 80.4),
    ]
    assert records[1].pose.t == datetime(2017, 8, 5, 6, 11, 52, tzinfo=UTC)
    assert records[0].pose.gimbal is None


def test_dialect_without_wall_clock_uses_clip_start_and_needs_it() -> None:
    start = datetime(2026, 1, 1, 8, 0, 0, tzinfo=UTC)
    records = parse_srt(MAVIC_AIR, clock_tz=CST, clip_start=start, source="air")
    assert [r.pose.t for r in records] == [start, start + timedelta(seconds=1.5)]
    assert [r.pose.rel_alt_m for r in records] == [80.1, 81.0]  # "H 80.1m", not "H.S"

    stats = ParseStats("air")
    assert parse_srt(MAVIC_AIR, clock_tz=CST, source="air", stats=stats) == []
    assert stats["no_time"] == 2


def test_corrupt_blocks_are_counted_and_skipped() -> None:
    stats = ParseStats("dji")
    records = parse_srt(CORRUPT + "\n\n" + BRACKETED, clock_tz=CST, source="dji", stats=stats)
    assert [r.index for r in records] == [1, 2]
    assert stats["malformed"] == 4  # bad arrow, no position, bad index, latitude out of range


def test_read_srt_from_a_file_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "DJI_0001.SRT"
    path.write_bytes(b"\xef\xbb\xbf" + PHANTOM.replace("\n", "\r\n").encode())
    records = read_srt(path, clock_tz=CST)
    assert len(records) == 2 and records[0].pose.source == str(path)
