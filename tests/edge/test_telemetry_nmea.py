"""NMEA 0183 to poses: epochs combined, bad sentences counted and skipped, file/TCP/UDP readers.

Every sentence is written here; checksums are computed by the test's own XOR so a wrong
checksum in the parser's library would show.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import tty
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import reduce
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streetwatch.edge.telemetry import (
    ParseStats,
    Pose,
    UdpNmeaReader,
    parse_nmea_lines,
    read_nmea_file,
    read_nmea_tcp,
)

KNOT = 1852 / 3600
LAT, LON = 31.3, 120.0 + 35.0 / 60.0  # 3118.000,N  12035.000,E


def sentence(body: str) -> str:
    """`$body*HH` with the XOR checksum of the characters between '$' and '*'."""
    checksum = reduce(lambda acc, ch: acc ^ ord(ch), body, 0)
    return f"${body}*{checksum:02X}"


def rmc(hhmmss: str, *, status: str = "A", knots: str = "10.0", course: str = "45.0",
        date: str = "010126") -> str:
    return sentence(f"GPRMC,{hhmmss},{status},3118.000,N,12035.000,E,{knots},{course},{date},,,A")


def gga(hhmmss: str, *, quality: str = "1", alt: str = "12.5") -> str:
    return sentence(f"GPGGA,{hhmmss},3118.000,N,12035.000,E,{quality},10,0.8,{alt},M,7.0,M,,")


def vtg(course: str = "44.0", kmh: str = "18.0") -> str:
    return sentence(f"GPVTG,{course},T,,M,9.7,N,{kmh},K,A")


def hdt(heading: str) -> str:
    return sentence(f"GPHDT,{heading},T")


def epoch(second: int, *, heading: str | None = "90.0", knots: str = "10.0") -> list[str]:
    hhmmss = f"0800{second:02d}.00"
    lines = [gga(hhmmss), rmc(hhmmss, knots=knots), vtg()]
    return lines + ([hdt(heading)] if heading is not None else [])


def poses_of(lines: Sequence[str | bytes], stats: ParseStats | None = None) -> list[Pose]:
    return list(parse_nmea_lines(lines, source="test-gps", stats=stats))


def test_full_epoch_combines_rmc_gga_vtg_hdt_into_one_pose() -> None:
    stats = ParseStats("test-gps")
    poses = poses_of([*epoch(0), *epoch(1)], stats)

    assert len(poses) == 2 and stats["parsed"] == 2
    first = poses[0]
    assert first.t == datetime(2026, 1, 1, 8, 0, 0, tzinfo=UTC)
    assert first.lat == pytest.approx(LAT, abs=1e-9) and first.lon == pytest.approx(LON, abs=1e-9)
    assert first.alt_m == pytest.approx(12.5)  # GGA
    assert first.heading_deg == pytest.approx(90.0)  # HDT wins over RMC course 45
    assert first.speed_mps == pytest.approx(10.0 * KNOT)  # RMC knots
    assert first.pitch_deg is None and first.roll_deg is None  # NMEA has no attitude: not invented
    assert poses[1].t == datetime(2026, 1, 1, 8, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bad", "kind"),
    [
        pytest.param(rmc("080000.00")[:-2] + "00", "checksum", id="corrupt-checksum"),
        pytest.param(rmc("080000.00").replace("3118.000", "3118.001"), "checksum", id="payload-changed"),
        pytest.param(rmc("080000.00")[:30], "malformed", id="truncated-no-checksum"),
        pytest.param(sentence("GPRMC,080000.00,A,,,,"), "malformed", id="truncated-valid-checksum"),
        pytest.param(b"\xff\xfe\x00\x13garbage\x80", "malformed", id="garbage-bytes"),
        pytest.param("hello world", "malformed", id="not-nmea"),
        pytest.param(rmc("080000.00", status="V"), "no_fix", id="fix-lost-rmc"),
        pytest.param(gga("080000.00", quality="0"), "no_fix", id="gga-no-fix"),
    ],
)
def test_bad_input_is_counted_and_skipped_not_fatal(bad: str | bytes, kind: str) -> None:
    stats = ParseStats("test-gps")
    poses = poses_of([bad, *epoch(5)], stats)

    assert [p.t.second for p in poses] == [5]  # the good epoch after it still parses
    assert stats[kind] == 1
    assert stats["parsed"] == 1


def test_heading_falls_back_to_course_only_while_moving() -> None:
    lines = [
        rmc("080000.00", knots="0.0", course="200.0"),  # standing, no HDT: no heading yet
        rmc("080001.00", knots="10.0", course="45.0"),  # moving: course over ground
        rmc("080002.00", knots="0.1", course="300.0"),  # nearly stopped: course is noise, keep 45
        *[gga("080003.00"), rmc("080003.00", knots="", course=""), vtg(course="50.0", kmh="36.0")],
    ]
    headings = [p.heading_deg for p in poses_of(lines)]
    assert headings == [None, pytest.approx(45.0), pytest.approx(45.0), pytest.approx(50.0)]


def test_gga_only_epochs_use_the_last_rmc_date_and_wait_for_the_first() -> None:
    """A GGA before any date waits and is dated back from the first RMC; after it, the last date holds."""
    stats = ParseStats("test-gps")
    poses = poses_of([gga("075959.00"), *epoch(0, heading=None), gga("080001.00")], stats)

    assert stats["no_time"] == 0
    day = datetime(2026, 1, 1, tzinfo=UTC)
    assert [p.t for p in poses] == [day.replace(hour=7, minute=59, second=59), day.replace(hour=8),
                                    day.replace(hour=8, second=1)]
    assert poses[2].alt_m == pytest.approx(12.5)


def test_epochs_never_dated_are_counted_at_the_end() -> None:
    stats = ParseStats("test-gps")
    assert poses_of([gga("080000.00"), gga("080001.00")], stats) == []
    assert stats["no_time"] == 2
    assert "line 1" in stats.examples["no_time"] and "no RMC or ZDA" in stats.examples["no_time"]


def test_time_gaps_are_counted() -> None:
    stats = ParseStats("test-gps", gap_s=5.0)
    poses_of([*epoch(0), *epoch(1), *epoch(30)], stats)
    assert stats["gap"] == 1 and stats["parsed"] == 3


def test_warnings_are_throttled_and_name_the_source(caplog: pytest.LogCaptureFixture) -> None:
    stats = ParseStats("gps-van-7", warn_every=100)
    with caplog.at_level(logging.WARNING, logger="streetwatch.edge.telemetry"):
        poses_of(["garbage"] * 250 + epoch(0), stats)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # the 1st, 100th and 200th failure, not one per line
    assert all("gps-van-7" in r.getMessage() for r in warnings)
    assert stats["malformed"] == 250


def test_file_reader_and_serial_style_crlf(tmp_path: Path) -> None:
    path = tmp_path / "drive.nmea"
    path.write_bytes(("\r\n".join([*epoch(0), "garbage", *epoch(1)]) + "\r\n").encode())
    stats = ParseStats("file")
    poses = list(read_nmea_file(path, stats=stats))
    assert [p.t.second for p in poses] == [0, 1]
    assert poses[0].source == str(path)
    assert stats["malformed"] == 1


@pytest.fixture()
def nmea_tcp_server() -> Iterator[tuple[int, list[bytes]]]:
    """A one-shot NMEA-over-TCP server on 127.0.0.1 that sends `chunks` and closes."""
    chunks: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            for chunk in chunks:
                conn.sendall(chunk)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1]), chunks
    thread.join(timeout=5)
    server.close()


def test_tcp_reader_reassembles_lines_split_across_packets(nmea_tcp_server: tuple[int, list[bytes]]) -> None:
    port, chunks = nmea_tcp_server
    stream = ("\r\n".join([*epoch(0), rmc("080000.50")[:-3] + "*00", *epoch(1), *epoch(2)]) + "\r\n").encode()
    chunks.extend(stream[i : i + 37] for i in range(0, len(stream), 37))  # cut mid-sentence
    stats = ParseStats("tcp")

    poses = list(read_nmea_tcp("127.0.0.1", port, stats=stats))

    assert [p.t.second for p in poses] == [0, 1, 2]
    assert stats["checksum"] == 1
    assert poses[0].source == f"tcp://127.0.0.1:{port}"


def test_udp_reader_takes_one_or_many_sentences_per_datagram() -> None:
    with UdpNmeaReader("127.0.0.1", 0) as reader, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        target = ("127.0.0.1", reader.port)
        tx.sendto("\r\n".join(epoch(0)).encode(), target)  # a whole epoch in one datagram
        for line in epoch(1):  # one sentence per datagram
            tx.sendto(line.encode(), target)
        tx.sendto(b"\x00\xffnoise", target)
        poses = list(reader.poses(idle_timeout_s=0.5))

    assert [p.t.second for p in poses] == [0, 1]
    assert all(p.heading_deg == pytest.approx(90.0) for p in poses)
    assert reader.stats["malformed"] == 1


def test_serial_device_is_read_as_a_file_through_a_real_tty() -> None:
    """A pseudo-terminal stands in for /dev/ttyUSB0: same kernel tty layer, no hardware needed."""
    master, slave = os.openpty()
    tty.setraw(slave)  # what `stty -F /dev/ttyUSB0 raw` does for a real receiver
    try:
        os.write(master, ("\r\n".join([*epoch(0), "garbage", *epoch(1), *epoch(2)]) + "\r\n").encode())
        stats = ParseStats("tty")
        poses = list(itertools.islice(read_nmea_file(os.ttyname(slave), stats=stats), 2))
    finally:
        os.close(master)
        os.close(slave)
    assert [p.t.second for p in poses] == [0, 1]
    assert stats["malformed"] == 1


# --- what real receivers send besides RMC/GGA: counted, never raised -------------------------------------

def zda(hhmmss: str, day: int, month: int, year: int) -> str:
    return sentence(f"GPZDA,{hhmmss},{day:02d},{month:02d},{year},00,00")


def ths(heading: str, mode: str = "A") -> str:
    return sentence(f"GPTHS,{heading},{mode}")


PROPRIETARY = {
    "u-blox PUBX": sentence("PUBX,00,080000.00,3118.000000,N,12035.000000,E,12.5,G3,2.1,2.0,0.007,77.52,0.007,,"
                            "0.92,1.19,0.77,9,0,0"),
    "MediaTek PMTK boot banner": sentence("PMTK011,MTKGPS"),
    "MediaTek PMTK channel list": sentence("PMTKCHN,14001,29001,23001,02001,21001"),
    "Quectel PQTM": sentence("PQTMVERNO,LC29HEANR11A03S,2023/05/04,17:27:30"),
    "ST PSTM": sentence("PSTMVER,GNSSLIB_8.4.18.25_ARM"),
    "CASIC PCAS": sentence("PCAS03,1,1,1,1,1,1,0,0"),
    "Hemisphere PSAT": sentence("PSAT,HPR,080000.00,77.5,1.2,,N"),
    "PASHR attitude": sentence("PASHR,080000.000,77.52,T,-0.12,0.50,0.00,0.032,0.029,0.051,1,0"),
    "Furuno PFEC": sentence("PFEC,GPatt,077.5,+01.2,-00.3"),
    "SiRF PSRF without checksum": "$PSRF103,00,01,00,01",
    "Oncore POLYN without checksum": "$POLYN,TIME,RESTART_OCCURRED",
}
AIS = ["!AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0*26", "!AIVDO,1,1,,,B39i>1000nTu;gQAlBj:wwS5kP06,0*5D"]
GARBAGE: list[str | bytes] = [
    "foobar", "$GPGGA,080000.00,3118.0", b"\x00\x00\x00\x00", b"\xb5b\x01\x07\x5c\x00", sentence("GPR00,A,B,C"),
    sentence("GPXYZ,1,2,3"), sentence("IIMWV,271.0,R,000.2,N,A"), "$$$***", "*", "$", sentence("GPRMC"),
    sentence("GPGGA,080000.00,9960.000,N,12035.000,E,1,10,0.8,12.5,M,7.0,M,,"),  # latitude 100 degrees
]


@pytest.mark.parametrize("name", list(PROPRIETARY))
def test_every_proprietary_sentence_is_skipped_and_counted(name: str) -> None:
    stats = ParseStats("test-gps")
    poses = poses_of([*epoch(0), PROPRIETARY[name], *epoch(1)], stats)
    assert [p.t.second for p in poses] == [0, 1]
    assert stats["proprietary"] == 1 and stats.failures == 0  # a note, not a failure: receivers send them
    assert "line 5" in stats.examples["proprietary"]


def test_ais_unknown_talkers_and_garbage_never_raise_and_never_cost_a_pose() -> None:
    stats = ParseStats("test-gps")
    lines: list[str | bytes] = [*epoch(0)]
    for i, bad in enumerate([*AIS, *GARBAGE]):
        lines += [bad, *epoch(i + 1)]
    poses = poses_of(lines, stats)

    assert [p.t.second for p in poses] == list(range(len(AIS) + len(GARBAGE) + 1))
    assert stats["ais"] == 2
    assert stats["unknown_sentence"] == 1  # $GPXYZ: a talker sentence nobody defined
    assert stats["unused"] == 2  # $GPR00 waypoints, $IIMWV wind: real sentences this reader does not use
    assert stats["malformed"] + stats["checksum"] >= 8


@pytest.mark.parametrize("talker", ["GP", "GN", "BD", "GB", "GA", "GL", "QZ", "GI", "IN"])
def test_position_sentences_of_any_gnss_talker_give_poses(talker: str) -> None:
    line = sentence(f"{talker}RMC,080000.00,A,3118.000,N,12035.000,E,10.0,45.0,010126,,,A")
    poses = poses_of([line])
    assert len(poses) == 1 and poses[0].lat == pytest.approx(LAT)


def test_glued_sentences_without_a_line_end_are_split() -> None:
    """A receiver that drops a CR LF glues two sentences: the gpsd GP-320FW log has them."""
    glued = sentence("GPGSA,A,1,,,,,,,,,,,,,,,") + rmc("080000.00")
    poses = poses_of([glued, gga("080001.00")])
    assert [p.t.second for p in poses] == [0, 1]


def test_gga_hdt_zda_receiver_without_rmc_gives_dated_poses_with_true_heading() -> None:
    """Survey/INS receivers often send GGA + HDT + ZDA and no RMC."""
    lines = []
    for second in range(3):
        hhmmss = f"0800{second:02d}.00"
        lines += [gga(hhmmss), hdt(f"{100 + second}.5"), zda(hhmmss, 1, 1, 2026)]
    poses = poses_of(lines)
    assert [p.t for p in poses] == [datetime(2026, 1, 1, 8, 0, s, tzinfo=UTC) for s in range(3)]
    assert [p.heading_deg for p in poses] == [pytest.approx(100.5), pytest.approx(101.5), pytest.approx(102.5)]
    assert all(p.fix == "gps" and p.speed_mps is None for p in poses)


def test_zda_dates_epochs_that_came_before_it() -> None:
    poses = poses_of([gga("235958.00"), gga("235959.00"), zda("000000.00", 1, 1, 2026), gga("000000.00")])
    assert [p.t for p in poses] == [datetime(2025, 12, 31, 23, 59, 58, tzinfo=UTC),
                                    datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC),
                                    datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)]


@pytest.mark.parametrize(
    ("last_rmc", "date", "expected_day"),
    [("235959.00", "311225", datetime(2026, 1, 1, tzinfo=UTC)),  # New Year
     ("235959.00", "280224", datetime(2024, 2, 29, tzinfo=UTC)),  # leap day
     ("235959.00", "290224", datetime(2024, 3, 1, tzinfo=UTC))],
)
def test_epochs_without_rmc_after_utc_midnight_are_the_next_day(last_rmc: str, date: str,
                                                                 expected_day: datetime) -> None:
    poses = poses_of([gga(last_rmc), rmc(last_rmc, date=date), gga("000000.00"), gga("000001.00")])
    assert [p.t for p in poses[1:]] == [expected_day, expected_day.replace(second=1)]


def test_late_epoch_from_before_midnight_keeps_its_day() -> None:
    """A receiver that sends RMC after midnight, then a delayed GGA stamped 23:59:59."""
    poses = poses_of([rmc("000000.00", date="010126"), gga("235959.00")])
    assert [p.t for p in poses] == [datetime(2026, 1, 1, tzinfo=UTC), datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)]


def test_ths_gives_the_heading_unless_its_mode_says_not_valid() -> None:
    poses = poses_of([gga("080000.00"), rmc("080000.00", knots="0.0"), ths("271.25"),
                      gga("080001.00"), rmc("080001.00", knots="0.0"), ths("10.0", mode="V")])
    assert [p.heading_deg for p in poses] == [pytest.approx(271.25), pytest.approx(271.25)]  # V: keep the last


@pytest.mark.parametrize(
    ("quality", "fix"), [("1", "gps"), ("2", "dgps"), ("4", "rtk_fixed"), ("5", "rtk_float"), ("6", "dead_reckoning")]
)
def test_fix_quality_comes_from_gga(quality: str, fix: str) -> None:
    assert poses_of([gga("080000.00", quality=quality), rmc("080000.00")])[0].fix == fix


def test_gns_and_gll_receivers_give_poses() -> None:
    gns = sentence("GNGNS,080000.00,3118.000,N,12035.000,E,AAN,10,1.0,20.0,10.0,,")
    gll = sentence("GPGLL,3118.000,N,12035.000,E,080001.00,A,A")
    void = sentence("GPGLL,3118.000,N,12035.000,E,080002.00,V,N")
    stats = ParseStats("test-gps")
    poses = poses_of([rmc("075959.00"), gns, gll, void], stats)
    assert [p.t.second for p in poses] == [59, 0, 1]
    assert poses[1].alt_m == pytest.approx(20.0)
    assert stats["no_fix"] == 1


def test_a_tty_that_hangs_up_ends_the_input_with_proprietary_sentences_counted() -> None:
    """A receiver that hangs up mid-log: what was read is kept, the hang-up ends the input."""
    master, slave = os.openpty()
    tty.setraw(slave)
    lines = [*epoch(0), PROPRIETARY["MediaTek PMTK boot banner"], "garbage", *epoch(1)]
    os.write(master, ("\r\n".join(lines) + "\r\n").encode())
    stats = ParseStats("tty")
    reader = read_nmea_file(os.ttyname(slave), stats=stats)
    try:
        poses = [next(reader)]  # the device is open and read from
        os.close(master)  # now the other end hangs up
        poses += list(reader)
    finally:
        os.close(slave)
    assert [p.t.second for p in poses] == [0, 1]
    assert stats["proprietary"] == 1 and stats["malformed"] == 1


def test_a_line_without_end_is_read_in_bounded_pieces(tmp_path: Path) -> None:
    path = tmp_path / "noise.nmea"
    path.write_bytes(b"A" * 50_000 + b"\r\n" + ("\r\n".join(epoch(0)) + "\r\n").encode())
    stats = ParseStats("file")
    poses = list(read_nmea_file(path, stats=stats))
    assert len(poses) == 1
    assert stats["malformed"] == 49  # 50,000 bytes in 1 KB pieces, each counted, none kept in memory


def test_udp_counts_proprietary_ais_and_garbage_and_keeps_the_poses() -> None:
    with UdpNmeaReader("127.0.0.1", 0) as reader, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        target = ("127.0.0.1", reader.port)
        tx.sendto("\r\n".join(epoch(0)).encode(), target)
        tx.sendto("\r\n".join([PROPRIETARY["u-blox PUBX"], AIS[0], "junk"]).encode(), target)
        tx.sendto("\r\n".join(epoch(1)).encode(), target)
        poses = list(reader.poses(idle_timeout_s=0.5))
    assert [p.t.second for p in poses] == [0, 1]
    assert (reader.stats["proprietary"], reader.stats["ais"], reader.stats["malformed"]) == (1, 1, 1)


FIELD = st.text(alphabet="0123456789.-+,NSEWAVTMKn/a ", max_size=14)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["GPRMC", "GNGGA", "GNGNS", "GPGLL", "GPZDA", "GPVTG", "GPHDT", "GPTHS", "BDRMC"]),
       st.lists(FIELD, min_size=0, max_size=14))
def test_checksummed_sentences_with_any_field_values_never_raise(kind: str, fields: list[str]) -> None:
    """The checksum passes, so the sentence reaches pynmea2 and the epoch logic with mangled fields."""
    stats = ParseStats("fuzz")
    poses = poses_of([sentence(",".join([kind, *fields])), *epoch(0), sentence(",".join([kind, *fields]))], stats)
    assert all(-90 <= p.lat <= 90 and -180 <= p.lon <= 180 for p in poses)
