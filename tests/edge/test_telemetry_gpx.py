"""GPX replays: times and elevation optional per point, headings from the track, gaps counted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from streetwatch.edge.telemetry import ParseStats, parse_gpx, read_gpx

M_PER_DEG_LAT = 111_320.0  # close enough at the metre level for the test's 10 m steps


def gpx(points: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="streetwatch-test" xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><name>patrol</name><trkseg>{points}</trkseg></trk></gpx>"
    )


def pt(lat: float, lon: float, *, t: str | None, ele: float | None = None) -> str:
    inner = (f"<ele>{ele}</ele>" if ele is not None else "") + (f"<time>{t}</time>" if t else "")
    return f'<trkpt lat="{lat:.7f}" lon="{lon:.7f}">{inner}</trkpt>'


STEP = 10.0 / M_PER_DEG_LAT  # 10 m north


def off_north(heading: float) -> float:
    return abs((heading + 180.0) % 360.0 - 180.0)


def test_track_with_elevation_gives_positions_heading_and_speed() -> None:
    points = [pt(31.3 + i * STEP, 120.5, t=f"2026-01-01T08:00:0{i}Z", ele=5.0 + i) for i in range(4)]
    text = gpx("".join(points))
    poses = parse_gpx(text, source="replay")

    assert [p.t for p in poses] == [datetime(2026, 1, 1, 8, 0, i, tzinfo=UTC) for i in range(4)]
    assert [p.alt_m for p in poses] == [5.0, 6.0, 7.0, 8.0]
    assert all(p.heading_deg is not None and off_north(p.heading_deg) < 0.5 for p in poses)  # driving north
    assert poses[0].speed_mps is None and poses[2].speed_mps == pytest.approx(10.0, rel=0.02)


def test_without_elevation_altitude_is_unknown_and_heading_follows_turns() -> None:
    east = 10.0 / (M_PER_DEG_LAT * 0.8545)  # 10 m east at 31.3 deg (cos 31.3 = 0.8545)
    points = [
        pt(31.3, 120.5, t="2026-01-01T08:00:00Z"),
        pt(31.3 + STEP, 120.5, t="2026-01-01T08:00:01Z"),
        pt(31.3 + STEP, 120.5 + east, t="2026-01-01T08:00:02Z"),
        pt(31.3 + STEP, 120.5 + east, t="2026-01-01T08:00:03Z"),  # stopped
        pt(31.3 + STEP, 120.5 + east, t="2026-01-01T08:00:04Z"),
    ]
    poses = parse_gpx(gpx("".join(points)), source="replay")
    assert all(p.alt_m is None for p in poses)
    headings = [p.heading_deg for p in poses]
    assert headings[0] is not None and off_north(headings[0]) < 0.5
    assert headings[1] == pytest.approx(90.0, abs=0.5)
    assert headings[2:] == [pytest.approx(90.0, abs=0.5)] * 3  # standing still keeps the last heading


def test_points_without_time_and_time_gaps_are_counted() -> None:
    points = [
        pt(31.3, 120.5, t="2026-01-01T08:00:00Z"),
        pt(31.3 + STEP, 120.5, t=None),
        pt(31.3 + 2 * STEP, 120.5, t="2026-01-01T08:00:01Z"),
        pt(31.3 + 3 * STEP, 120.5, t="2026-01-01T08:01:00Z"),  # 59 s dropout (tunnel)
    ]
    stats = ParseStats("replay", gap_s=5.0)
    poses = parse_gpx(gpx("".join(points)), source="replay", stats=stats)
    assert len(poses) == 3
    assert stats["no_time"] == 1 and stats["gap"] == 1 and stats["parsed"] == 3


def test_read_gpx_names_the_file_when_it_is_not_gpx(tmp_path: Path) -> None:
    good = tmp_path / "drive.gpx"
    good.write_text(gpx(pt(31.3, 120.5, t="2026-01-01T08:00:00+08:00")), encoding="utf-8")
    poses = read_gpx(good)
    assert poses[0].t == datetime(2026, 1, 1, 0, 0, tzinfo=UTC) and poses[0].source == str(good)

    bad = tmp_path / "notes.gpx"
    bad.write_text("this is not xml", encoding="utf-8")
    with pytest.raises(ValueError, match="notes.gpx: not a readable GPX document"):
        read_gpx(bad)
