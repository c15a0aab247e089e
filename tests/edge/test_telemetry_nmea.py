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


def test_gga_only_epochs_use_the_last_rmc_date_and_need_one() -> None:
    stats = ParseStats("test-gps")
    poses = poses_of([gga("075959.00"), *epoch(0, heading=None), gga("080001.00")], stats)

    assert stats["no_time"] == 1  # the GGA before any RMC date cannot be timestamped
    assert [p.t.second for p in poses] == [0, 1]
    assert poses[1].alt_m == pytest.approx(12.5)


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
