"""GPX replays: times and elevation optional per point, headings from the track, gaps counted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from streetwatch.edge.telemetry import ParseStats, TelemetryError, parse_gpx, read_gpx

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


def test_read_gpx_reads_offsets_and_names_file_line_and_column_when_it_is_not_gpx(tmp_path: Path) -> None:
    good = tmp_path / "drive.gpx"
    good.write_text(gpx(pt(31.3, 120.5, t="2026-01-01T08:00:00+08:00")), encoding="utf-8")
    poses = read_gpx(good)
    assert poses[0].t == datetime(2026, 1, 1, 0, 0, tzinfo=UTC) and poses[0].source == str(good)

    bad = tmp_path / "notes.gpx"
    bad.write_text("this is not xml", encoding="utf-8")
    with pytest.raises(TelemetryError, match=r"notes.gpx: line 1, column 1: not well-formed XML"):
        read_gpx(bad)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        pytest.param('<?xml version="1.0"?>\n<gpx>\n  <trk><trkseg>\n    <trkpt lat="1" lon="2"></trkseg>',
                     "line 4, column 30", id="mismatched-tag"),
        pytest.param('<?xml version="1.0"?>\n<gpx><trk>\n<name>a & b</name></trk></gpx>', "line 3, column 10",
                     id="bare-ampersand"),
        pytest.param('<?xml version="1.0"?>\n<gpx><trk><trkseg>', "line 2, column 19", id="truncated-download"),
    ],
)
def test_broken_xml_names_the_file_line_and_column(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "ride.gpx"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TelemetryError) as err:
        read_gpx(path)
    assert str(err.value).startswith(f"{path}: {where}: not well-formed XML")


def test_a_kml_or_other_xml_is_refused_as_not_gpx(tmp_path: Path) -> None:
    path = tmp_path / "route.gpx"
    path.write_text('<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"/>', encoding="utf-8")
    with pytest.raises(TelemetryError, match="root element <kml>, expected <gpx>"):
        read_gpx(path)


def test_entity_declarations_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "laughs.gpx"
    path.write_text('<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                    "<gpx><trk><name>&b;</name></trk></gpx>", encoding="utf-8")
    with pytest.raises(TelemetryError, match="line 1: entity declaration 'a' refused"):
        read_gpx(path)


OUT_OF_SPEC = """<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="some phone app" xmlns="http://www.topografix.com/GPX/1/1">
<trk><trkseg>
<trkpt lat="31.3000000" lon="120.5000000"><ele>5</ele><time>2026-01-01T08:00:00Z</time><fix>3D</fix><sat>7</sat></trkpt>
<trkpt lat="31.3000900" lon="120.5000000"><ele>n/a</ele><time>2026-01-01T08:00:01Z</time><hdop>-</hdop></trkpt>
<trkpt lat="31.3001800" lon="120.5000000"><time>2026-01-01T08:00:02Z</time><fix>dgps</fix><sat>many</sat></trkpt>
<trkpt lat="north" lon="120.5000000"><time>2026-01-01T08:00:03Z</time></trkpt>
<trkpt lat="31.3002700" lon="120.5000000"><time>yesterday</time></trkpt>
<trkpt lat="31.3003600" lon="120.5000000"><time>2026-01-01T08:00:05Z</time><fix>none</fix></trkpt>
</trkseg></trk></gpx>
"""


def test_out_of_spec_optional_values_drop_the_field_not_the_file() -> None:
    stats = ParseStats("phone")
    poses = parse_gpx(OUT_OF_SPEC, source="phone", stats=stats)

    assert [p.t.second for p in poses] == [0, 1, 2]
    assert [p.alt_m for p in poses] == [5.0, None, None]  # "n/a" elevation dropped, the point kept
    assert [p.fix for p in poses] == [None, None, "dgps"]  # "3D" is not in GPX's none|2d|3d|dgps|pps
    assert stats["invalid_field"] == 4  # <fix>3D</fix>, <ele>n/a</ele>, <hdop>-</hdop>, <sat>many</sat>
    assert stats.examples["invalid_field"].startswith("line 4: <fix>3D</fix> is not one of none, 2d, 3d")
    assert stats["invalid"] == 2  # lat="north", time "yesterday": no position or time, point dropped
    assert "line 7" in stats.examples["invalid"]
    assert stats["no_fix"] == 1  # <fix>none</fix>: the device itself said it had no fix


DECLARED = """<?xml version="1.0" encoding="{encoding}"?>
<gpx version="1.1" creator="{creator}" xmlns="http://www.topografix.com/GPX/1/1">
<trk><name>{name}</name><trkseg>
<trkpt lat="31.3" lon="120.5"><time>2026-01-01T08:00:00Z</time></trkpt>
<trkpt lat="31.3001" lon="120.5"><time>2026-01-01T08:00:01Z</time></trkpt>
</trkseg></trk></gpx>
"""


@pytest.mark.parametrize(
    ("encoding", "name"),
    [("ISO-8859-1", "Tour de l'\u00eele, \u00e9t\u00e9"), ("windows-1252", "Stra\u00dfe \u20ac"),
     ("UTF-16", "\u5de1\u67e5\u8def\u7ebf 7"), ("GBK", "\u5de1\u67e5\u8def\u7ebf 7"),
     ("GB18030", "\u82cf\u5dde\u5de5\u4e1a\u56ed"), ("UTF-8", "\u5de1\u67e5 caf\u00e9")],
)
def test_the_xml_declarations_encoding_is_honoured(tmp_path: Path, encoding: str, name: str) -> None:
    path = tmp_path / f"{encoding}.gpx"
    path.write_bytes(DECLARED.format(encoding=encoding, creator="Garmin", name=name).encode(encoding))
    poses = read_gpx(path)
    assert [p.t.second for p in poses] == [0, 1]


def test_bytes_that_contradict_the_declared_encoding_name_the_file_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "broken.gpx"
    path.write_bytes(DECLARED.format(encoding="GBK", creator="x", name="n").encode("ascii").replace(b"<name>n",
                                                                                                   b"<name>\xff\xff"))
    with pytest.raises(TelemetryError, match=r"broken.gpx: byte \d+: not valid GBK"):
        read_gpx(path)


def test_garmin_extension_speed_and_timed_route_points_are_read() -> None:
    text = (
        '<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1" '
        'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2">'
        '<rte><rtept lat="31.3" lon="120.5"><time>2026-01-01T08:00:00Z</time><extensions>'
        "<gpxtpx:TrackPointExtension><gpxtpx:speed>4.5</gpxtpx:speed><gpxtpx:course>12.0</gpxtpx:course>"
        '</gpxtpx:TrackPointExtension></extensions></rtept><rtept lat="31.3001" lon="120.5"><time>'
        '2026-01-01T08:00:02Z</time></rtept><rtept lat="31.4" lon="120.6"/></rte></gpx>'
    )
    stats = ParseStats("garmin")
    poses = parse_gpx(text, source="garmin", stats=stats)
    assert [p.speed_mps for p in poses] == [pytest.approx(4.5), pytest.approx(5.56, abs=0.01)]
    assert stats["route_point"] == 1  # the untimed one is a plan, not a track
