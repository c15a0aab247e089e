"""NMEA 0183 (RMC, GGA, VTG, HDT) to poses, from a file, a serial device, TCP or UDP.

Sentence syntax and checksums are `pynmea2`'s job. This module groups the sentences of one
receiver epoch (same UTC time of fix) into one Pose: RMC gives date, time, fix status, position,
speed and course; GGA altitude (and the position when RMC is absent); HDT the true heading of a
dual-antenna or INS receiver; VTG speed and course when RMC lacks them. Untimed sentences (VTG,
HDT) belong to the epoch that is open when they arrive.

Heading: HDT first; otherwise the course over ground, but only while moving faster than
`min_course_speed_mps` (a parked car's GPS course is noise), else the last known heading.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path

import pynmea2

from streetwatch.edge.telemetry.pose import ParseStats, Pose

log = logging.getLogger(__name__)

KNOTS_TO_MPS = 1852.0 / 3600.0
TIMED = ("RMC", "GGA")
UNTIMED = ("VTG", "HDT")
IDLE_FLUSH_S = 0.25  # a live reader closes the open epoch after this long without data
MAX_LINE_BYTES = 1024  # NMEA allows 82 characters; a longer run without a newline is garbage


@dataclass
class _Epoch:
    """The sentences seen for one time of fix."""

    fix_time: time | None = None
    sentences: dict[str, pynmea2.NMEASentence] = field(default_factory=dict)


class NmeaEpochAssembler:
    """Feed NMEA lines one at a time; get Poses as each epoch completes.

    An epoch is complete when a timed sentence with a different time arrives, or on `flush()`
    (end of input, or a live reader's idle tick). Bad lines are counted in `stats`, never raised.
    """

    def __init__(self, *, source: str, stats: ParseStats | None = None, min_course_speed_mps: float = 1.0):
        self.source = source
        self.stats = stats or ParseStats(source)
        self.min_course_speed_mps = min_course_speed_mps
        self._epoch = _Epoch()
        self._last_date: date | None = None
        self._last_heading: float | None = None
        self._last_t: datetime | None = None

    def feed(self, line: str | bytes) -> list[Pose]:
        """Parse one line; return the poses it completed (zero or one)."""
        msg = self._parse(line)
        if msg is None:
            return []
        kind = msg.sentence_type
        if kind not in TIMED + UNTIMED:
            self.stats.note("ignored")
            return []
        done: list[Pose] = []
        if kind in TIMED:
            fix_time = msg.timestamp
            if self._epoch.fix_time is not None and fix_time != self._epoch.fix_time:
                done = self.flush()
            self._epoch.fix_time = fix_time
        self._epoch.sentences[kind] = msg
        return done

    def flush(self) -> list[Pose]:
        """Close the open epoch; return its pose if it makes one."""
        epoch, self._epoch = self._epoch, _Epoch()
        if epoch.fix_time is None:
            if epoch.sentences:  # VTG/HDT with no timed sentence: carry them to the next epoch
                self._epoch.sentences.update(epoch.sentences)
            return []
        pose = self._build(epoch)
        if pose is None:
            return []
        self.stats.check_gap(self._last_t, pose.t)
        self._last_t = pose.t
        self.stats.ok()
        return [pose]

    def _parse(self, line: str | bytes) -> pynmea2.NMEASentence | None:
        if isinstance(line, bytes):
            try:
                line = line.decode("ascii")
            except UnicodeDecodeError:
                self.stats.fail("malformed", f"non-ASCII bytes {line[:40]!r}")
                return None
        text = line.strip()
        if not text:
            return None
        if not text.startswith(("$", "!")) or "*" not in text:
            self.stats.fail("malformed", f"not a checksummed NMEA sentence: {text[:60]!r}")
            return None
        try:
            return pynmea2.parse(text, check=True)
        except pynmea2.ChecksumError as exc:
            self.stats.fail("checksum", f"{exc.args[0]}: {text[:60]!r}")
        except (pynmea2.ParseError, ValueError, TypeError, AttributeError) as exc:
            self.stats.fail("malformed", f"{exc.args[0] if exc.args else exc}: {text[:60]!r}")
        return None

    def _build(self, epoch: _Epoch) -> Pose | None:
        s = epoch.sentences
        rmc, gga = s.get("RMC"), s.get("GGA")
        where = f"epoch {epoch.fix_time}"
        try:
            if rmc is not None and rmc.status != "A":
                self.stats.fail("no_fix", f"{where}: RMC status {rmc.status!r} (receiver has no valid fix)")
                return None
            if rmc is None and gga is not None and not gga.gps_qual:
                self.stats.fail("no_fix", f"{where}: GGA fix quality 0")
                return None
            fix = rmc if rmc is not None else gga
            if fix is None or not fix.lat or not fix.lon:
                self.stats.fail("malformed", f"{where}: no latitude/longitude in RMC or GGA")
                return None
            if rmc is not None and rmc.datestamp is not None:
                self._last_date = rmc.datestamp
            if self._last_date is None or epoch.fix_time is None:
                self.stats.fail("no_time", f"{where}: no RMC date seen yet, cannot timestamp the fix")
                return None
            t = datetime.combine(self._last_date, epoch.fix_time.replace(tzinfo=None), tzinfo=UTC)
            speed = _speed_mps(rmc, s.get("VTG"))
            return Pose(
                t=t, lat=float(fix.latitude), lon=float(fix.longitude),
                alt_m=_float_or_none(gga.altitude) if gga is not None else None,
                heading_deg=self._heading(s, speed), pitch_deg=None, roll_deg=None,
                speed_mps=speed, source=self.source,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            self.stats.fail("malformed", f"{where}: {exc}")
            return None

    def _heading(self, s: dict[str, pynmea2.NMEASentence], speed: float | None) -> float | None:
        hdt, rmc, vtg = s.get("HDT"), s.get("RMC"), s.get("VTG")
        heading = _float_or_none(hdt.heading) if hdt is not None else None
        if heading is None and speed is not None and speed >= self.min_course_speed_mps:
            course = _float_or_none(rmc.true_course) if rmc is not None else None
            if course is None and vtg is not None:
                course = _float_or_none(vtg.true_track)
            heading = course
        if heading is not None:
            self._last_heading = heading % 360.0
        return self._last_heading


def _float_or_none(value: object) -> float | None:
    if value is None or value == "":
        return None
    return float(value)  # type: ignore[arg-type]


def _speed_mps(rmc: pynmea2.NMEASentence | None, vtg: pynmea2.NMEASentence | None) -> float | None:
    knots = _float_or_none(rmc.spd_over_grnd) if rmc is not None else None
    if knots is not None:
        return knots * KNOTS_TO_MPS
    kmph = _float_or_none(vtg.spd_over_grnd_kmph) if vtg is not None else None
    return kmph / 3.6 if kmph is not None else None


def parse_nmea_lines(
    lines: Iterable[str | bytes], *, source: str, stats: ParseStats | None = None
) -> Iterator[Pose]:
    """Poses from an iterable of NMEA lines (a file, a list in a test, a socket's line reader)."""
    assembler = NmeaEpochAssembler(source=source, stats=stats)
    for line in lines:
        yield from assembler.feed(line)
    yield from assembler.flush()


def read_nmea_file(
    path: str | Path, *, source: str | None = None, stats: ParseStats | None = None
) -> Iterator[Pose]:
    """Poses from an NMEA log file, or a serial device read as a file (e.g. /dev/ttyUSB0).

    For a serial device, set the line speed first (`stty -F /dev/ttyUSB0 4800 raw`): reading it
    as a file then needs no extra dependency.
    """
    with open(path, "rb") as handle:
        yield from parse_nmea_lines(handle, source=source or str(path), stats=stats)


def read_nmea_tcp(
    host: str, port: int, *, source: str | None = None, stats: ParseStats | None = None,
    stop: threading.Event | None = None, connect_timeout_s: float = 5.0,
) -> Iterator[Pose]:
    """Poses from an NMEA-over-TCP server (a receiver or gpsd-style relay) until EOF or `stop`.

    Connection errors propagate (the caller's watchdog reconnects); the open epoch is flushed
    after IDLE_FLUSH_S without data so a live pose is not held back until the next epoch.
    """
    name = source or f"tcp://{host}:{port}"
    assembler = NmeaEpochAssembler(source=name, stats=stats)
    with socket.create_connection((host, port), timeout=connect_timeout_s) as sock:
        sock.settimeout(IDLE_FLUSH_S)
        buffer = b""
        while stop is None or not stop.is_set():
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                yield from assembler.flush()
                continue
            if not chunk:
                break
            lines = (buffer + chunk).split(b"\n")
            buffer = lines.pop()
            if len(buffer) > MAX_LINE_BYTES:
                assembler.stats.fail("malformed", f"{len(buffer)} bytes without a line end, dropped")
                buffer = b""
            for line in lines:
                yield from assembler.feed(line)
        if buffer:
            yield from assembler.feed(buffer)
    yield from assembler.flush()


class UdpNmeaReader:
    """Binds a UDP socket (port 0 picks a free one: see `.port`) and yields poses from datagrams.

    Each datagram may hold one or several lines (receivers differ).
    """

    def __init__(self, host: str = "0.0.0.0", port: int = 0, *, source: str | None = None,
                 stats: ParseStats | None = None):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self.port = int(self._sock.getsockname()[1])
        name = source or f"udp://{host}:{self.port}"
        self.assembler = NmeaEpochAssembler(source=name, stats=stats)

    @property
    def stats(self) -> ParseStats:
        return self.assembler.stats

    def poses(
        self, *, stop: threading.Event | None = None, idle_timeout_s: float | None = None
    ) -> Iterator[Pose]:
        """Yield poses until `stop` is set or nothing arrived for `idle_timeout_s` (None: forever)."""
        self._sock.settimeout(IDLE_FLUSH_S)
        idle = 0.0
        while stop is None or not stop.is_set():
            try:
                datagram = self._sock.recv(65535)
            except TimeoutError:
                yield from self.assembler.flush()
                idle += IDLE_FLUSH_S
                if idle_timeout_s is not None and idle >= idle_timeout_s:
                    break
                continue
            idle = 0.0
            for line in datagram.split(b"\n"):
                yield from self.assembler.feed(line)
        yield from self.assembler.flush()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> UdpNmeaReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
