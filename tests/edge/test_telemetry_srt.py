"""DJI .SRT sidecars: one test per firmware dialect, written here from the formats' public descriptions.

The lines follow what open-source SRT readers document for each model (JuanIrache/DJI_SRT_Parser's
samples, WebODM's and SkyComb's format notes, CallMarcus' format list) and what DJI's own models
write: field names, spacing, units and number formats are theirs; the positions are ours (Suzhou,
and Lisbon where both coordinates are under 90 degrees so only the dialect can tell the order).
The real sidecars in the shared assets are read in test_telemetry_files.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from streetwatch.edge.geo import MountOffsets, Uncertainty, drone_camera_pose
from streetwatch.edge.telemetry import ParseStats, TelemetryError, detect_dialect, parse_srt, read_srt
from streetwatch.edge.telemetry.flight_path import FLIGHT_PATH_HEADING, with_flight_path_attitude

CST = timezone(timedelta(hours=8))  # the aircraft's clock: China Standard Time
LAT, LON = 31.300123, 120.585432  # Suzhou
LIS_LAT, LIS_LON = 38.7223, -9.1393  # Lisbon: |lat| and |lon| < 90, the order is the dialect's alone


def block(index: int, body: str, *, start_s: float | None = None, length_s: float = 1.0) -> str:
    start = float(index - 1) if start_s is None else start_s

    def stamp(seconds: float) -> str:
        ms = round(seconds * 1000)
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    return f"{index}\n{stamp(start)} --> {stamp(start + length_s)}\n{body}\n"


def srt(*bodies: str) -> str:
    return "\n".join(block(i + 1, body) for i, body in enumerate(bodies))


@dataclass(frozen=True)
class Dialect:
    """One model's block and what it must read as."""

    body: str
    dialect: str
    lat: float = LAT
    lon: float = LON
    rel_alt: float | None = None
    alt: float | None = None
    gimbal: tuple[float, float, float] | None = None  # yaw, pitch, roll (earth)
    flight: tuple[float, float, float] | None = None  # heading, pitch, roll
    focal_mm: float | None = None
    local: datetime | None = None  # the wall clock as written (drone local time); None: no wall clock
    speed: float | None = None
    fix: str | None = None


BRACKET = f"[latitude: {LAT}] [longitude: {LON}]"
DIALECTS: dict[str, Dialect] = {
    "phantom-3": Dialect(
        f"HOME({LIS_LON:.4f},{LIS_LAT:.4f}) 2016.06.19 10:12:05\nGPS({LIS_LON:.4f},{LIS_LAT:.4f},14) BAROMETER:25.3\n"
        "ISO:100 Shutter:60 EV:0 Fnum:F2.8", "legacy", LIS_LAT, LIS_LON, rel_alt=25.3,
        local=datetime(2016, 6, 19, 10, 12, 5)),
    "phantom-4": Dialect(
        f"HOME({LIS_LON:.4f},{LIS_LAT:.4f}) 2017.08.05 14:11:51\nGPS({LIS_LON:.4f},{LIS_LAT:.4f},19) BAROMETER:80.1\n"
        "ISO:100 Shutter:60 EV:0 Fnum:F2.2", "legacy", LIS_LAT, LIS_LON, rel_alt=80.1,
        local=datetime(2017, 8, 5, 14, 11, 51)),
    "mavic-pro-old-firmware": Dialect(  # single-digit month and day
        f"HOME({LIS_LON:.4f},{LIS_LAT:.4f}) 2017.8.5 14:11:51\nGPS({LIS_LON:.4f},{LIS_LAT:.4f},16) BAROMETER:1.9\n"
        "ISO:100 Shutter:60 EV: Fnum:2.2", "legacy", LIS_LAT, LIS_LON, rel_alt=1.9,
        local=datetime(2017, 8, 5, 14, 11, 51)),
    "mavic-pro-new-firmware": Dialect(
        f"HOME({LIS_LON:.4f},{LIS_LAT:.4f}) 2018.03.24 13:20:08\nGPS({LIS_LON:.4f},{LIS_LAT:.4f},18) BAROMETER:25.9\n"
        "ISO:100 Shutter:60 EV:0 Fnum:2.2", "legacy", LIS_LAT, LIS_LON, rel_alt=25.9,
        local=datetime(2018, 3, 24, 13, 20, 8)),
    "phantom-4-pro": Dialect(  # no wall clock at all
        f"F/3.2, SS 160, ISO 100, EV 0, GPS ({LIS_LON:.4f}, {LIS_LAT:.4f}, 18), D 49.21m, H 45.60m, "
        "H.S 1.90m/s, V.S 0.00m/s", "compact", LIS_LAT, LIS_LON, rel_alt=45.6, speed=1.9),
    "phantom-4-rtk": Dialect(
        f"F/6.3, SS 60, ISO 100, EV 0, RTK ({LIS_LON:.6f}, {LIS_LAT:.6f}, 28), "
        f"HOME ({LIS_LON + 0.0003:.6f}, {LIS_LAT + 0.0006:.6f}, 103.55m), D 75.36m, H 76.19m, H.S 0.30m/s, "
        "V.S 0.00m/s, F.PRY (-5.3\u00b0, 2.1\u00b0, 28.3\u00b0), G.PRY (-40.0\u00b0, 0.0\u00b0, 28.2\u00b0)",
        "compact", LIS_LAT, LIS_LON, rel_alt=76.19, gimbal=(28.2, -40.0, 0.0), flight=(28.3, -5.3, 2.1),
        speed=0.3, fix="rtk"),
    "phantom-4-rtk-gps": Dialect(
        f"F/5.6, SS 400, ISO 100, EV 0, GPS ({LIS_LON:.6f}, {LIS_LAT:.6f}, 15), "
        f"HOME ({LIS_LON:.6f}, {LIS_LAT:.6f}, -57.98m), D 698.70m, H 85.80m, H.S 0.00m/s, V.S 0.00m/s, "
        "F.PRY (2.7\u00b0, -7.0\u00b0, 110.1\u00b0), G.PRY (-24.4\u00b0, 0.0\u00b0, 110.4\u00b0)",
        "compact", LIS_LAT, LIS_LON, rel_alt=85.8, gimbal=(110.4, -24.4, 0.0), flight=(110.1, 2.7, -7.0), speed=0.0),
    "mavic-air": Dialect(
        f"F/2.8, SS 1000, ISO 100, EV 0, DZOOM 1.000, GPS ({LIS_LON:.4f}, {LIS_LAT:.4f}, 19), D 12.3m, H 80.1m, "
        "H.S 0.00m/s, V.S 0.00m/s", "compact", LIS_LAT, LIS_LON, rel_alt=80.1, speed=0.0),
    "mavic-mini": Dialect(
        f"F/2.8, SS 206.14, ISO 150, EV 0, GPS ({LIS_LON:.4f}, {LIS_LAT:.4f}, 10), D 2.80m, H 0.00m, "
        "H.S 0.00m/s, V.S 0.00m/s", "compact", LIS_LAT, LIS_LON, rel_alt=0.0, speed=0.0),
    "mini-2": Dialect(
        f"F/2.8, SS 1000.10, ISO 100, EV 0, DZOOM 1.000, GPS ({LIS_LON:.4f}, {LIS_LAT:.4f}, 26), D 30m, H 10.00m, "
        "H.S 2m/s, V.S 0.10m/s", "compact", LIS_LAT, LIS_LON, rel_alt=10.0, speed=2.0),
    "mavic-air-2": Dialect(
        '<font size="36">SrtCnt : 1, DiffTime : 16ms\n2023-01-06 18:56:48,380,821\n[iso : 3200] [shutter : 1/60.0] '
        f"[fnum : 280] [ev : 0] [ct : 3925] [color_md : default] [focal_len : 240] {BRACKET} "
        "[altitude: 120.300000] </font>", "bracketed", alt=120.3, focal_mm=24.0,
        local=datetime(2023, 1, 6, 18, 56, 48, 380821)),
    "air-2s": Dialect(
        '<font size="36">SrtCnt : 1, DiffTime : 33ms\n2022-08-07 13:40:40,774,808\n[iso : 100] [shutter : 1/80.0] '
        f"[fnum : 280] [ev : 0] [ct : 5744] [color_md : default] [focal_len : 240] {BRACKET} "
        "[altitude: 117.000000] </font>", "bracketed", alt=117.0, focal_mm=24.0,
        local=datetime(2022, 8, 7, 13, 40, 40, 774808)),
    "mavic-2-pro": Dialect(
        '<font size="36">FrameCnt : 1, DiffTime : 33ms\n2019-11-02 09:12:44,101,202\n[iso : 100] [shutter : 1/400.0] '
        f"[fnum : 280] [ev : 0] [ct : 5818] [color_md : default] [focal_len : 280] [latitude : {LAT}] "
        f"[longtitude : {LON}] [altitude: 120.300000] </font>", "bracketed-longtitude", alt=120.3, focal_mm=28.0,
        local=datetime(2019, 11, 2, 9, 12, 44, 101202)),
    "mavic-2-zoom": Dialect(
        '<font size="36">FrameCnt : 1, DiffTime : 41ms\n2023-07-15 11:55:16,320,933\n[iso : 100] [shutter : 1/400.0] '
        f"[fnum : 280] [ev : 0] [ct : 5818] [color_md : default] [focal_len : 480] [latitude : {LAT}] "
        f"[longtitude : {LON}] [altitude: 213.983002] </font>", "bracketed-longtitude", alt=213.983002,
        focal_mm=48.0, local=datetime(2023, 7, 15, 11, 55, 16, 320933)),
    "mavic-2-enterprise-dual": Dialect(
        '<font size="36">FrameCnt : 1, DiffTime : 33ms\n2022-07-10 19:59:42,210,511\n[iso : 12800] '
        "[shutter : 1/30.0] [fnum : 280] [ev : 1.7] [ct : 5199] [color_md : default] [focal_len : 240] "
        f"[dzoom_ratio: 10000, delta:0],[latitude: {LAT}] [longtitude: {LON}] [altitude: 51.773998] "
        "[Drone: Yaw:-62.1, Pitch:2.7, Roll:1.6] </font>", "bracketed-longtitude", alt=51.773998, focal_mm=24.0,
        flight=(297.9, 2.7, 1.6), local=datetime(2022, 7, 10, 19, 59, 42, 210511)),
    "mavic-3": Dialect(
        '<font size="28">FrameCnt: 1, DiffTime: 20ms\n2021-12-25 12:27:52.373\n[iso: 220] [shutter: 1/8000.0] '
        f"[fnum: 3.2] [ev: 0] [ct: 5115] [color_md : default] [focal_len: 24.00] {BRACKET} "
        "[rel_alt: 80.100 abs_alt: 120.300] </font>", "bracketed", rel_alt=80.1, alt=120.3, focal_mm=24.0,
        local=datetime(2021, 12, 25, 12, 27, 52, 373000)),
    "mavic-3-thermal": Dialect(
        '<font size="28">FrameCnt: 19, DiffTime: 36ms\n2023-05-31 19:04:26.691\n[focal_len: 40.00][dzoom_ratio: 1.00], '
        f"[latitude: {LAT}] [longitude: {LON}] [rel_alt: 62.370 abs_alt: 227.373] "
        "[gb_yaw: -142.5 gb_pitch: -28.7 gb_roll: 0.0] </font>", "bracketed", rel_alt=62.37, alt=227.373,
        gimbal=(217.5, -28.7, 0.0), focal_mm=40.0, local=datetime(2023, 5, 31, 19, 4, 26, 691000)),
    "mini-3-pro": Dialect(
        '<font size="28">SrtCnt : 1, DiffTime : 16ms\n2022-06-27 14:31:29.447\n[iso : 140] [shutter : 1/1250.0] '
        f"[fnum : 170] [ev : 0] [ct : 5358] [color_md : default] [focal_len : 240] {BRACKET} "
        "[rel_alt: 1.100 abs_alt: -70.436] </font>", "bracketed", rel_alt=1.1, alt=-70.436, focal_mm=24.0,
        local=datetime(2022, 6, 27, 14, 31, 29, 447000)),
    "mini-4-pro": Dialect(
        '<font size="28">FrameCnt: 1, DiffTime: 33ms\n2024-03-02 10:11:12.123\n[iso: 100] [shutter: 1/1000.0] '
        "[fnum: 1.7] [ev: 0] [color_md: default] [ae_meter_md: 1] [focal_len: 24.00] [dzoom_ratio: 1.00], "
        f"{BRACKET} [rel_alt: 80.100 abs_alt: 120.300] [ct: 5300] </font>", "bracketed", rel_alt=80.1, alt=120.3,
        focal_mm=24.0, local=datetime(2024, 3, 2, 10, 11, 12, 123000)),
    "air-3": Dialect(
        '<font size="28">FrameCnt: 1, DiffTime: 33ms\n2024-06-01 07:00:00.033\n[iso: 100] [shutter: 1/1600.0] '
        "[fnum: 1.7] [ev: 0] [color_md: default] [ae_meter_md: 1] [focal_len: 70.00] [dzoom_ratio: 1.00], "
        f"{BRACKET} [rel_alt: 95.000 abs_alt: 110.000] [ct: 5600] </font>", "bracketed", rel_alt=95.0, alt=110.0,
        focal_mm=70.0, local=datetime(2024, 6, 1, 7, 0, 0, 33000)),
    "mini-5-pro": Dialect(
        '<font size="28">FrameCnt: 1, DiffTime: 33ms\n2025-10-01 08:00:00.000\n[iso: 100] [shutter: 1/2000.0] '
        "[fnum: 1.8] [ev: 0] [ct: 5600] [color_md: default] [ae_meter_md: 0] [focal_len: 24.00] [dzoom_ratio: 1.00], "
        f"{BRACKET} [rel_alt: 40.000 abs_alt: 52.000] [gb_yaw: 12.3 gb_pitch: -89.9 gb_roll: 0.0] </font>",
        "bracketed", rel_alt=40.0, alt=52.0, gimbal=(12.3, -89.9, 0.0), focal_mm=24.0,
        local=datetime(2025, 10, 1, 8, 0, 0)),
    "air-3s": Dialect(
        '<font size="28">FrameCnt: 1, DiffTime: 33ms\n2025-01-15 15:30:00.000\n[iso: 100] [shutter: 1/1000.0] '
        f"[fnum: 1.8] [ev: 0] [ct: 5400] [color_md: default] [focal_len: 24.00] {BRACKET} "
        "[rel_alt: 60.000 abs_alt: 75.500] [gb_yaw: -90.0 gb_pitch: -45.0 gb_roll: 0.2] </font>", "bracketed",
        rel_alt=60.0, alt=75.5, gimbal=(270.0, -45.0, 0.2), focal_mm=24.0, local=datetime(2025, 1, 15, 15, 30)),
    "avata": Dialect(
        '<font size="28">FrameCnt: 1, DiffTime: 33ms, FrameId: 4787\n2023-04-02 16:20:00.015\n[iso: 200] '
        "[shutter: 1/6400.0] [fnum: 2.8] [ev: 0] [ct: 5845] [color_md: dlog_m] [ae_meter_md: 0] [focal_len: 12.70] "
        f"[dzoom_ratio: 1.00], {BRACKET} [rel_alt: 5.400 abs_alt: 20.744] [gb_yaw: -162.8 gb_pitch: -30.0 "
        "gb_roll: 0.0] [vsync: 0] [eis: close] [shift x: 0.00, y: 0.00] </font>", "bracketed", rel_alt=5.4,
        alt=20.744, gimbal=(197.2, -30.0, 0.0), focal_mm=12.7, local=datetime(2023, 4, 2, 16, 20, 0, 15000)),
    "neo": Dialect(
        '<font size="28">FrameCnt: 1, DiffTime: 33ms\n2024-09-15 08:24:18.623\n[iso: 400] [shutter: 1/640.0] '
        f"[fnum: 2.2] [ev: 0] [ct: 5631] [color_md: default] [ae_meter_md: 0] {BRACKET} "
        "[rel_alt: 12.000 abs_alt: 125.900] [vsync: 1602] [eis: normal] [shift x: 0.00, y: 0.00] </font>",
        "bracketed", rel_alt=12.0, alt=125.9, local=datetime(2024, 9, 15, 8, 24, 18, 623000)),
    "matrice-30": Dialect(  # the wall clock on the FrameCnt line
        '<font size="28">FrameCnt: 0 2026-07-08 16:12:57.018\n[focal_len: 40.00] [dzoom_ratio: 1.00], '
        f"{BRACKET} [rel_alt: 79.969 abs_alt: 96.474] [gb_yaw: -67.6 gb_pitch: -30.0 gb_roll: 0.0]</font>",
        "bracketed", rel_alt=79.969, alt=96.474, gimbal=(292.4, -30.0, 0.0), focal_mm=40.0,
        local=datetime(2026, 7, 8, 16, 12, 57, 18000)),
    "matrice-300-h20": Dialect(
        '<font size="28">SrtCnt : 1, DiffTime : 33ms\n2024-01-18 10:23:26.397\n[iso : 150] [shutter : 1/5000.0] '
        "[fnum : 170] [ev : 0] [ct : 5023] [color_md : default] [focal_len : 240] [dzoom_ratio: 10000, delta:0],"
        f"{BRACKET} [rel_alt: 0.300 abs_alt: 549.679] </font>", "bracketed", rel_alt=0.3, alt=549.679,
        focal_mm=24.0, local=datetime(2024, 1, 18, 10, 23, 26, 397000)),
    "matrice-300-legacy": Dialect(  # GPS(lat,lon,altM): latitude first, the M unit tells it apart
        f"2022.06.21 16:06:17\nGPS({LIS_LAT:.4f},{LIS_LON:.4f},12.5M) BAROMETER:80.3M", "enterprise-legacy",
        LIS_LAT, LIS_LON, rel_alt=80.3, alt=12.5, local=datetime(2022, 6, 21, 16, 6, 17)),
    "matrice-350-rtk-h30": Dialect(
        '<font size="28">FrameCnt: 1, DiffTime: 33ms\n2025-03-03 09:00:00.000\n[iso: 100] [shutter: 1/1000.0] '
        "[fnum: 2.8] [ev: 0] [color_md: default] [focal_len: 24.00] [dzoom_ratio: 1.00], "
        f"{BRACKET} [rel_alt: 120.000 abs_alt: 140.000] [gb_yaw: 45.0 gb_pitch: -90.0 gb_roll: 0.0]</font>",
        "bracketed", rel_alt=120.0, alt=140.0, gimbal=(45.0, -90.0, 0.0), focal_mm=24.0,
        local=datetime(2025, 3, 3, 9)),
}
CLIP_START = datetime(2026, 1, 1, 8, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("model", list(DIALECTS))
def test_each_dialect_reads_position_heights_attitude_lens_and_time(model: str) -> None:
    case = DIALECTS[model]
    text = srt(case.body, case.body)
    stats = ParseStats(model)
    records = parse_srt(text, clock_tz=CST, clip_start=CLIP_START, source=model, stats=stats)

    assert detect_dialect(text).name == case.dialect
    assert len(records) == 2 and stats.failures == 0
    pose = records[0].pose
    assert (pose.lat, pose.lon) == (pytest.approx(case.lat, abs=1e-9), pytest.approx(case.lon, abs=1e-9))
    assert pose.rel_alt_m == (pytest.approx(case.rel_alt) if case.rel_alt is not None else None)
    assert pose.alt_m == (pytest.approx(case.alt) if case.alt is not None else None)
    assert pose.focal_length_mm == (pytest.approx(case.focal_mm) if case.focal_mm is not None else None)
    assert pose.speed_mps == (pytest.approx(case.speed) if case.speed is not None else None)
    assert pose.fix == case.fix
    if case.gimbal is None:
        assert pose.gimbal is None
    else:
        assert pose.gimbal is not None and pose.gimbal.reference == "earth"
        assert (pose.gimbal.yaw_deg, pose.gimbal.pitch_deg, pose.gimbal.roll_deg) == pytest.approx(case.gimbal)
    flight = (pose.heading_deg, pose.pitch_deg, pose.roll_deg)
    assert flight == (pytest.approx(case.flight) if case.flight is not None else (None, None, None))
    if case.local is None:
        assert [r.pose.t for r in records] == [CLIP_START, CLIP_START + timedelta(seconds=1)]
        assert not records[0].wall_clock
    else:
        assert pose.t == case.local.replace(tzinfo=CST).astimezone(UTC)
        assert records[0].wall_clock


@pytest.mark.parametrize("model", [m for m, c in DIALECTS.items() if c.local is None])
def test_dialects_without_wall_clock_need_the_clip_start(model: str) -> None:
    stats = ParseStats(model)
    assert parse_srt(srt(DIALECTS[model].body), clock_tz=CST, source=model, stats=stats) == []
    assert stats["no_time"] == 1 and "block 1" in stats.examples["no_time"]


def legacy_block(lat: float, lon: float, second: int, *, home: tuple[float, float] = (LIS_LAT, LIS_LON)) -> str:
    return (f"HOME({home[1]:.4f},{home[0]:.4f}) 2017.8.5 14:11:{second:02d}\n"
            f"GPS({lon:.4f},{lat:.4f},16) BAROMETER:30.0\nISO:100 Shutter:60 EV: Fnum:2.2")


def test_a_position_far_from_the_files_home_point_is_refused_not_used() -> None:
    """One block written lat,lon in a lon,lat file: read as the dialect says, it lands 4,700 km away."""
    bodies = [legacy_block(LIS_LAT + i * 1e-4, LIS_LON, i) for i in range(6)]
    bodies[3] = (f"HOME({LIS_LON:.4f},{LIS_LAT:.4f}) 2017.8.5 14:11:03\n"
                 f"GPS({LIS_LAT:.4f},{LIS_LON:.4f},16) BAROMETER:30.0")  # swapped by a corrupt firmware write
    stats = ParseStats("p4")
    records = parse_srt(srt(*bodies), clock_tz=CST, source="p4", stats=stats)
    assert [r.index for r in records] == [1, 2, 3, 5, 6]
    assert stats["implausible"] == 1
    assert "block 4" in stats.examples["implausible"] and "HOME point" in stats.examples["implausible"]
    assert all(abs(r.pose.lat - LIS_LAT) < 0.01 for r in records)


def test_matrice_300_order_comes_from_the_dialect_and_a_swapped_block_is_refused() -> None:
    """No HOME in this dialect: the file's median position is the reference."""
    bodies = [f"2022.06.21 16:06:{i:02d}\nGPS({LIS_LAT + i * 1e-4:.4f},{LIS_LON:.4f},12.5M) BAROMETER:80.0M"
              for i in range(7)]
    bodies[2] = f"2022.06.21 16:06:02\nGPS({LIS_LON:.4f},{LIS_LAT:.4f},12.5M) BAROMETER:80.0M"
    stats = ParseStats("m300")
    records = parse_srt(srt(*bodies), clock_tz=CST, source="m300", stats=stats)
    assert len(records) == 6 and stats["implausible"] == 1
    assert "median position" in stats.examples["implausible"]
    assert all(r.pose.lat == pytest.approx(LIS_LAT, abs=0.01) and r.pose.lon == pytest.approx(LIS_LON) for r in records)


def test_values_beyond_90_degrees_override_a_contradicting_syntax() -> None:
    """`M` says latitude first, but 120.58 cannot be a latitude: the values win and the dialect says so."""
    text = srt(f"2022.06.21 16:06:17\nGPS({LON:.4f},{LAT:.4f},12.5M) BAROMETER:80.3M")
    dialect = detect_dialect(text)
    assert dialect.order == "lonlat" and dialect.note
    records = parse_srt(text, clock_tz=CST, source="m300")
    assert (records[0].pose.lat, records[0].pose.lon) == (pytest.approx(LAT, abs=1e-4), pytest.approx(LON, abs=1e-4))


def bracketed_block(lat: float, lon: float, second: int) -> str:
    return (f"<font size=\"28\">FrameCnt: {second + 1}, DiffTime: 1000ms\n2026-01-01 16:00:{second:02d}.000\n"
            f"[iso: 100] [latitude: {lat:.6f}] [longitude: {lon:.6f}] [rel_alt: 80.000 abs_alt: 100.000] </font>")


def test_a_glitch_far_from_its_neighbours_is_refused_while_a_fast_flight_is_kept() -> None:
    north_15_mps = 15.0 / 111_320.0  # degrees of latitude per second at 15 m/s
    bodies = [bracketed_block(LAT + i * north_15_mps, LON, i) for i in range(12)]
    bodies[6] = bracketed_block(LAT + 6 * north_15_mps, LON + 0.03, 6)  # 2.9 km east for one second
    stats = ParseStats("mini")
    records = parse_srt(srt(*bodies), clock_tz=CST, source="mini", stats=stats)
    assert [r.index for r in records] == [i for i in range(1, 13) if i != 7]
    assert stats["implausible"] == 1 and "block 7" in stats.examples["implausible"]


def test_no_gps_lock_zero_position_is_counted_as_no_fix() -> None:
    stats = ParseStats("mini")
    records = parse_srt(srt(bracketed_block(0.0, 0.0, 0), bracketed_block(LAT, LON, 1)), clock_tz=CST,
                        source="mini", stats=stats)
    assert [r.index for r in records] == [2] and stats["no_fix"] == 1


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

11
no time range here
[latitude: 31.3] [longitude: 120.5]
"""


def test_corrupt_blocks_are_counted_by_block_and_skipped() -> None:
    stats = ParseStats("dji")
    good = srt(DIALECTS["mavic-3"].body)
    records = parse_srt(CORRUPT + "\n\n" + good, clock_tz=CST, source="dji", stats=stats)
    assert [r.index for r in records] == [1]
    assert stats["no_time"] == 1  # block 7's short arrow is read, but it has no wall clock
    assert stats["malformed"] == 4  # no position, bad index, latitude off the globe, no time range
    assert "block 10" in stats.examples["malformed"] or "block 8" in stats.examples["malformed"]


def test_read_srt_from_a_file_with_bom_and_crlf_and_from_utf16(tmp_path: Path) -> None:
    text = srt(DIALECTS["phantom-4"].body, DIALECTS["phantom-4"].body)
    utf8 = tmp_path / "DJI_0001.SRT"
    utf8.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    utf16 = tmp_path / "DJI_0002.SRT"
    utf16.write_bytes(text.replace("\n", "\r\n").encode("utf-16"))
    for path in (utf8, utf16):
        records = read_srt(path, clock_tz=CST)
        assert len(records) == 2 and records[0].pose.source == str(path)
        assert records[0].pose.lat == pytest.approx(LIS_LAT)


def test_a_binary_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "DJI_0003.SRT"
    path.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(64))  # an MP4 renamed .SRT
    with pytest.raises(TelemetryError, match=r"DJI_0003.SRT: byte 0: binary data"):
        read_srt(path, clock_tz=CST)


# --- no attitude in the file: heading from the flight path, gimbal pitch from the config ---------------

def test_position_only_flight_is_geo_matched_from_the_flight_path_with_an_assumed_accuracy() -> None:
    """A Mavic 2 Zoom flying east with no attitude in its sidecar, gimbal pitched -90 by the pilot."""
    east = 8.0 / (111_320.0 * 0.8545)  # 8 m/s east at 31.3 degrees
    bodies = [(f'<font size="36">FrameCnt : {i + 1}, DiffTime : 1000ms\n2020-04-02 15:19:{i:02d},000,000\n'
               f"[focal_len : 240] [latitude : {LAT:.6f}] [longtitude : {LON + i * east:.6f}] "
               "[altitude: 80.000000] </font>") for i in range(10)]
    poses = [r.pose for r in parse_srt(srt(*bodies), clock_tz=CST, source="m2z")]
    assert all(p.gimbal is None and p.heading_deg is None for p in poses)

    completed = with_flight_path_attitude(poses, gimbal_pitch_deg=-90.0)
    assert all(p.heading_deg == pytest.approx(90.0, abs=0.5) for p in completed)
    assert all(p.gimbal is not None and p.gimbal.pitch_deg == -90.0 for p in completed)
    assert FLIGHT_PATH_HEADING in completed[0].assumed

    uncertainty = Uncertainty(attitude_sigma_deg=1.0, assumed_attitude_sigma_deg=5.0)
    cam = drone_camera_pose(completed[0], offsets=MountOffsets(), uncertainty=uncertainty, ground_alt_m=20.0)
    assert cam.height_m == pytest.approx(60.0)
    assert FLIGHT_PATH_HEADING in cam.assumed  # the log and the accuracy say what it rests on
    assert cam.attitude_sigma_rad == pytest.approx(5.0 * 3.141592653589793 / 180)


def test_a_hovering_drone_gets_no_flight_path_heading() -> None:
    bodies = [bracketed_block(LAT + (i % 2) * 1e-6, LON, i) for i in range(30)]  # 10 cm of jitter for 30 s
    poses = [r.pose for r in parse_srt(srt(*bodies), clock_tz=CST, source="hover")]
    completed = with_flight_path_attitude(poses, gimbal_pitch_deg=-60.0)
    assert all(p.heading_deg is None and p.gimbal is None for p in completed)


def test_measured_attitude_is_never_replaced_by_the_flight_path() -> None:
    case = DIALECTS["mini-5-pro"]
    poses = [r.pose for r in parse_srt(srt(case.body, case.body), clock_tz=CST, source="mini5")]
    assert with_flight_path_attitude(poses, gimbal_pitch_deg=-10.0) == poses
