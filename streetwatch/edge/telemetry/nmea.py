"""NMEA 0183 to poses, from a file, a serial device, TCP or UDP.

Sentence syntax is `pynmea2`'s job; this module decides what a receiver's stream means. It groups
the sentences of one receiver epoch (same UTC time of fix) into one Pose:

- position: RMC, else GGA, else GNS, else GLL (any GNSS talker: GP, GN, BD, GB, GA, GL, QZ...);
  the fix is refused when RMC says void (V), GGA quality 0, GNS mode all N or GLL status V;
- date: RMC's, else ZDA's (same epoch), else the last known date with the UTC-midnight rollover
  (an epoch whose time of day is more than 12 h before the last one is the next day). Epochs that
  come before any date (GGA+HDT+ZDA receivers, a cold start) wait, up to `MAX_PENDING`, and are
  dated back from the first date that arrives;
- altitude: GGA or GNS; speed: RMC, else VTG; fix quality: GGA's quality, else RMC's mode;
- heading: HDT, else THS (dual-antenna or INS receivers), else the course over ground, but only
  while moving faster than `min_course_speed_mps` (a parked car's GPS course is noise), else the
  last known heading. Untimed sentences (VTG, HDT, THS) belong to the epoch open when they arrive.

Everything else a real receiver sends is skipped and counted, never raised, on every transport:
proprietary sentences (`$P...`: u-blox PUBX, MediaTek PMTK, Quectel PQTM, ST PSTM, CASIC PCAS,
Hemisphere PSAT, PASHR, Furuno PFEC..., with or without a checksum), AIS (`!AIVDM`) and `#` comment
lines of logging tools are *notes*; unknown sentence types and sentences this reader does not use
(GSV, GSA...) are notes too; checksum errors, garbage, NUL runs
and truncated lines are *failures*. Two sentences glued together without a line end are split.
Every detail names its line (`line 12: ...`).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import select
import socket
import termios
import threading
import tty
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import reduce
from pathlib import Path
from typing import BinaryIO

import pynmea2

from streetwatch.edge.telemetry.pose import ParseStats, Pose

log = logging.getLogger(__name__)

KNOTS_TO_MPS = 1852.0 / 3600.0
POSITION = ("RMC", "GGA", "GNS", "GLL")
TIMED = (*POSITION, "ZDA")
UNTIMED = ("VTG", "HDT", "THS")
IDLE_FLUSH_S = 0.25  # a live reader closes the open epoch after this long without data
MAX_LINE_BYTES = 1024  # NMEA allows 82 characters; a longer run without a newline is garbage
MAX_PENDING = 600  # undated epochs kept while waiting for the first date (10 min at 1 Hz)
HALF_DAY = timedelta(hours=12)
GGA_QUALITY = {1: "gps", 2: "dgps", 3: "pps", 4: "rtk_fixed", 5: "rtk_float", 6: "dead_reckoning",
               7: "manual", 8: "simulation"}
RMC_MODE = {"A": "gps", "D": "dgps", "R": "rtk_fixed", "F": "rtk_float", "E": "dead_reckoning",
            "M": "manual", "S": "simulation", "P": "gps"}
_SENTENCE_START = re.compile(r"(?=[$!])")


@dataclass(frozen=True, slots=True)
class Ths:
    """`$--THS,heading,mode`: true heading and its status (pynmea2 does not know THS)."""

    heading: float | None
    valid: bool


@dataclass
class _Epoch:
    """The sentences seen for one time of fix, and the line where the epoch began."""

    fix_time: time | None = None
    line: int = 0
    sentences: dict[str, object] = field(default_factory=dict)


class NmeaEpochAssembler:
    """Feed NMEA lines one at a time; get Poses as each epoch completes.

    An epoch is complete when a timed sentence with a different time arrives, or on `flush()` (a
    live reader's idle tick, a connection's end). `finish()` ends the input: epochs still waiting for
    a date are counted as `no_time`. Bad lines are counted in `stats`, never raised.
    """

    def __init__(self, *, source: str, stats: ParseStats | None = None, min_course_speed_mps: float = 1.0):
        self.source = source
        self.stats = stats or ParseStats(source)
        self.min_course_speed_mps = min_course_speed_mps
        self.line_no = 0
        self._epoch = _Epoch()
        self._anchor: datetime | None = None  # the last fully dated time of fix
        self._pending: list[_Epoch] = []  # complete epochs waiting for a date
        self._last_heading: float | None = None
        self._last_t: datetime | None = None

    def feed(self, line: str | bytes) -> list[Pose]:
        """Parse one line (it may hold several glued sentences); return the poses it completed."""
        self.line_no += 1
        text = self._text(line)
        if text is None:
            return []
        if text.startswith("#"):  # a logging tool's comment, not sentences glued together
            self.stats.note("comment", f"line {self.line_no}: {text[:40]}")
            return []
        done: list[Pose] = []
        for part in _SENTENCE_START.split(text):
            if part.strip():
                done.extend(self._feed_sentence(part.strip()))
        return done

    def flush(self) -> list[Pose]:
        """Close the open epoch; return the poses it (and any epochs it dated) make."""
        epoch, self._epoch = self._epoch, _Epoch()
        if epoch.fix_time is None:
            if epoch.sentences:  # VTG/HDT with no timed sentence: carry them to the next epoch
                self._epoch.sentences.update(epoch.sentences)
                self._epoch.line = epoch.line
            return []
        return self._close(epoch)

    def finish(self) -> list[Pose]:
        """End of input: flush, then count epochs that never got a date."""
        poses = self.flush()
        for epoch in self._pending:
            self.stats.fail("no_time", f"line {epoch.line}: epoch {epoch.fix_time} before any date "
                                       "(no RMC or ZDA in the stream), cannot timestamp the fix")
        self._pending = []
        return poses

    def _text(self, line: str | bytes) -> str | None:
        if isinstance(line, bytes):
            try:
                line = line.decode("ascii")
            except UnicodeDecodeError:
                self.stats.fail("malformed", f"line {self.line_no}: non-ASCII bytes {line[:40]!r}")
                return None
        text = line.strip().strip("\x00")
        if "\x00" in text:
            self.stats.fail("malformed", f"line {self.line_no}: NUL bytes in {text[:40]!r}")
            return None
        return text or None

    def _feed_sentence(self, text: str) -> list[Pose]:
        msg = self._parse(text)
        if msg is None:
            return []
        kind = "THS" if isinstance(msg, Ths) else msg.sentence_type
        if kind not in TIMED + UNTIMED:
            self.stats.note("unused", f"line {self.line_no}: {text[:16]}")
            return []
        done: list[Pose] = []
        if kind in TIMED:
            fix_time = _time_of_fix(msg)
            if fix_time is None:
                if getattr(msg, "timestamp", None) not in (None, ""):
                    self.stats.fail("malformed", f"line {self.line_no}: time of fix is not a time: {text[:40]!r}")
                elif kind in POSITION:
                    self.stats.fail("no_fix", f"line {self.line_no}: {text[:20]}... without a time of fix "
                                              "(the receiver has no fix)")
                return []
            if self._epoch.fix_time is not None and fix_time != self._epoch.fix_time:
                done = self.flush()
            if self._epoch.fix_time is None:
                self._epoch.line = self._epoch.line or self.line_no
            self._epoch.fix_time = fix_time
        elif not self._epoch.sentences and self._epoch.fix_time is None:
            self._epoch.line = self.line_no
        self._epoch.sentences[kind] = msg
        return done

    def _parse(self, text: str) -> pynmea2.NMEASentence | Ths | None:
        where = f"line {self.line_no}"
        if text.startswith("!"):
            self.stats.note("ais", f"{where}: {text[:16]} (AIS, not this platform's position)")
            return None
        if text.startswith("$P"):  # no standard talker starts with P: a manufacturer's sentence
            self.stats.note("proprietary", f"{where}: {text.split(',', 1)[0]} (manufacturer sentence)")
            return None
        if not text.startswith("$") or "*" not in text:
            self.stats.fail("malformed", f"{where}: not a checksummed NMEA sentence: {text[:60]!r}")
            return None
        if not _checksum_ok(text):
            self.stats.fail("checksum", f"{where}: checksum does not match: {text[:60]!r}")
            return None
        if text[3:6] == "THS":
            return _parse_ths(text)
        try:
            msg = pynmea2.parse(text)
        except pynmea2.SentenceTypeError:
            self.stats.note("unknown_sentence", f"{where}: {text.split(',', 1)[0]}")
            return None
        except Exception as exc:  # pynmea2 raises anything on garbage; bad telemetry is data
            self.stats.fail("malformed", f"{where}: {exc.args[0] if exc.args else exc}: {text[:60]!r}")
            return None
        if not isinstance(msg, pynmea2.TalkerSentence):
            self.stats.note("proprietary", f"{where}: {text.split(',', 1)[0]} (manufacturer sentence)")
            return None
        return msg

    def _close(self, epoch: _Epoch) -> list[Pose]:
        t = self._date_of(epoch)  # a ZDA-only epoch still tells the date
        has_position = any(kind in epoch.sentences for kind in POSITION)
        if t is None:
            if has_position:
                self._wait_for_date(epoch)
            return []
        dated = [(self._back_dated(e, t), e) for e in self._pending]
        if has_position:
            dated.append((t, epoch))
        self._pending = []
        return [pose for when, e in dated if (pose := self._emit(e, when)) is not None]

    def _wait_for_date(self, epoch: _Epoch) -> None:
        self._pending.append(epoch)
        if len(self._pending) > MAX_PENDING:
            old = self._pending.pop(0)
            self.stats.fail("no_time", f"line {old.line}: epoch {old.fix_time}: no date within "
                                       f"{MAX_PENDING} epochs (no RMC or ZDA)")

    def _date_of(self, epoch: _Epoch) -> datetime | None:
        """The epoch's full UTC time: its own RMC/ZDA date, else the last date with midnight rollover."""
        assert epoch.fix_time is not None
        day = _explicit_date(epoch.sentences)
        clock = epoch.fix_time.replace(tzinfo=None)
        if day is not None:
            self._anchor = datetime.combine(day, clock, tzinfo=UTC)
            return self._anchor
        if self._anchor is None:
            return None
        t = datetime.combine(self._anchor.date(), clock, tzinfo=UTC)
        if t - self._anchor < -HALF_DAY:
            t += timedelta(days=1)  # past UTC midnight since the last date
        elif t - self._anchor > HALF_DAY:
            t -= timedelta(days=1)  # a late epoch from before midnight
        self._anchor = t
        return t

    @staticmethod
    def _back_dated(epoch: _Epoch, later: datetime) -> datetime:
        assert epoch.fix_time is not None
        t = datetime.combine(later.date(), epoch.fix_time.replace(tzinfo=None), tzinfo=UTC)
        return t - timedelta(days=1) if t - later > HALF_DAY else t

    def _emit(self, epoch: _Epoch, t: datetime) -> Pose | None:
        pose = self._build(epoch, t)
        if pose is None:
            return None
        self.stats.check_gap(self._last_t, pose.t)
        self._last_t = pose.t
        self.stats.ok()
        return pose

    def _build(self, epoch: _Epoch, t: datetime) -> Pose | None:
        s = epoch.sentences
        where = f"line {epoch.line}: epoch {epoch.fix_time}"
        try:
            refusal = _refusal(s)
            if refusal is not None:
                self.stats.fail("no_fix", f"{where}: {refusal} (receiver has no valid fix)")
                return None
            fix = next(s[k] for k in POSITION if k in s)
            if not getattr(fix, "lat", None) or not getattr(fix, "lon", None):
                self.stats.fail("malformed", f"{where}: no latitude/longitude in {fix.sentence_type}")  # type: ignore[attr-defined]
                return None
            speed = _speed_mps(s.get("RMC"), s.get("VTG"))
            return Pose(
                t=t, lat=float(fix.latitude), lon=float(fix.longitude), alt_m=_altitude(s),  # type: ignore[attr-defined]
                heading_deg=self._heading(s, speed), pitch_deg=None, roll_deg=None,
                speed_mps=speed, source=self.source, fix=_fix_quality(s),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            self.stats.fail("malformed", f"{where}: {exc}")
            return None

    def _heading(self, s: dict[str, object], speed: float | None) -> float | None:
        heading = _true_heading(s)
        if heading is None and speed is not None and speed >= self.min_course_speed_mps:
            rmc, vtg = s.get("RMC"), s.get("VTG")
            course = _float_or_none(getattr(rmc, "true_course", None))
            if course is None and vtg is not None:
                course = _float_or_none(getattr(vtg, "true_track", None))
            heading = course
        if heading is not None:
            self._last_heading = heading % 360.0
        return self._last_heading


def _checksum_ok(text: str) -> bool:
    body, _, given = text[1:].partition("*")
    given = given.strip()[:2]
    try:
        return len(given) == 2 and reduce(lambda acc, ch: acc ^ ord(ch), body, 0) == int(given, 16)
    except ValueError:
        return False


def _parse_ths(text: str) -> Ths:
    fields = text.split("*", 1)[0].split(",")
    heading = _float_or_none(fields[1]) if len(fields) > 1 else None
    mode = fields[2] if len(fields) > 2 else ""
    return Ths(heading, mode in ("A", "E"))


def _time_of_fix(msg: object) -> time | None:
    """The sentence's UTC time of fix; None if empty or not a time (pynmea2 gives it back as text)."""
    try:
        value = getattr(msg, "timestamp", None)
    except Exception:  # pynmea2 parses lazily and raises anything on a mangled field
        return None
    return value if isinstance(value, time) else None


def _explicit_date(s: dict[str, object]) -> date | None:
    """RMC's date, else ZDA's; None if absent, empty or impossible (31 Feb, 999999)."""
    for kind in ("RMC", "ZDA"):
        try:
            day = getattr(s.get(kind), "datestamp", None)
        except Exception:  # pynmea2 parses lazily and raises anything on a mangled field
            day = None
        if isinstance(day, date):
            return day
    return None


def _refusal(s: dict[str, object]) -> str | None:
    """Why the receiver itself says this epoch has no fix, or None."""
    rmc, gga, gns, gll = (s.get(k) for k in POSITION)
    if rmc is not None:
        return None if getattr(rmc, "status", "") == "A" else f"RMC status {getattr(rmc, 'status', '')!r}"
    if gga is not None:
        return None if getattr(gga, "gps_qual", 0) else "GGA fix quality 0"
    if gns is not None:
        mode = str(getattr(gns, "mode_indicator", "") or "")
        return None if mode.strip("N") else f"GNS mode {mode!r}"
    return None if getattr(gll, "status", "") == "A" else f"GLL status {getattr(gll, 'status', '')!r}"


def _fix_quality(s: dict[str, object]) -> str | None:
    gga, rmc = s.get("GGA"), s.get("RMC")
    if gga is not None and getattr(gga, "gps_qual", None):
        return GGA_QUALITY.get(int(gga.gps_qual), f"quality {gga.gps_qual}")  # type: ignore[attr-defined]
    mode = str(getattr(rmc, "mode_indicator", "") or "") if rmc is not None else ""
    return RMC_MODE.get(mode[:1]) if mode else None


def _altitude(s: dict[str, object]) -> float | None:
    for kind in ("GGA", "GNS"):
        if kind in s:
            value = _float_or_none(getattr(s[kind], "altitude", None))
            if value is not None:
                return value
    return None


def _true_heading(s: dict[str, object]) -> float | None:
    hdt, ths = s.get("HDT"), s.get("THS")
    heading = _float_or_none(getattr(hdt, "heading", None)) if hdt is not None else None
    if heading is None and isinstance(ths, Ths) and ths.valid:
        heading = ths.heading
    return heading


def _float_or_none(value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _speed_mps(rmc: object | None, vtg: object | None) -> float | None:
    knots = _float_or_none(getattr(rmc, "spd_over_grnd", None)) if rmc is not None else None
    if knots is not None:
        return knots * KNOTS_TO_MPS
    kmph = _float_or_none(getattr(vtg, "spd_over_grnd_kmph", None)) if vtg is not None else None
    return kmph / 3.6 if kmph is not None else None


def parse_nmea_lines(
    lines: Iterable[str | bytes], *, source: str, stats: ParseStats | None = None
) -> Iterator[Pose]:
    """Poses from an iterable of NMEA lines (a file, a list in a test, a socket's line reader)."""
    assembler = NmeaEpochAssembler(source=source, stats=stats)
    for line in lines:
        yield from assembler.feed(line)
    yield from assembler.finish()


def read_nmea_file(
    path: str | Path, *, source: str | None = None, stats: ParseStats | None = None
) -> Iterator[Pose]:
    """Poses from an NMEA log file (a live serial device is `read_nmea_device`).

    Lines are read at most MAX_LINE_BYTES at a time, so a file without line ends cannot fill the memory.
    """
    with open(path, "rb") as handle:
        yield from parse_nmea_lines(_bounded_lines(handle), source=source or str(path), stats=stats)


def _bounded_lines(handle: BinaryIO) -> Iterator[bytes]:
    while line := handle.readline(MAX_LINE_BYTES):
        yield line


class _LineSplitter:
    """Cuts a byte stream (TCP, serial) into lines; a run longer than MAX_LINE_BYTES is dropped, counted."""

    def __init__(self, stats: ParseStats) -> None:
        self.stats = stats
        self._buffer = b""

    def lines(self, chunk: bytes) -> list[bytes]:
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > MAX_LINE_BYTES:
            self.stats.fail("malformed", f"{len(self._buffer)} bytes without a line end, dropped")
            self._buffer = b""
        return lines

    def rest(self) -> list[bytes]:
        rest, self._buffer = self._buffer, b""
        return [rest] if rest else []


def read_nmea_tcp(
    host: str, port: int, *, source: str | None = None, stats: ParseStats | None = None,
    stop: threading.Event | None = None, connect_timeout_s: float = 5.0,
    assembler: NmeaEpochAssembler | None = None,
) -> Iterator[Pose]:
    """Poses from an NMEA-over-TCP server (a receiver or gpsd-style relay) until EOF or `stop`.

    Connection errors propagate (the caller's watchdog reconnects); the open epoch is flushed
    after IDLE_FLUSH_S without data so a live pose is not held back until the next epoch. Pass the
    same `assembler` across reconnects to keep the date and the counters.
    """
    assembler = assembler or NmeaEpochAssembler(source=source or f"tcp://{host}:{port}", stats=stats)
    splitter = _LineSplitter(assembler.stats)
    with socket.create_connection((host, port), timeout=connect_timeout_s) as sock:
        sock.settimeout(IDLE_FLUSH_S)
        while stop is None or not stop.is_set():
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                yield from assembler.flush()
                continue
            if not chunk:
                break
            for line in splitter.lines(chunk):
                yield from assembler.feed(line)
        for line in splitter.rest():
            yield from assembler.feed(line)
    yield from assembler.flush()


def read_nmea_device(
    path: str | Path, *, assembler: NmeaEpochAssembler, stop: threading.Event | None = None, baud: int | None = None,
) -> Iterator[Pose]:
    """Poses from a serial receiver (/dev/ttyUSB0, /dev/ttyACM0) until it hangs up or `stop`.

    With `baud`, the line is set raw at that speed (termios); otherwise as `stty` left it. The read
    waits at most IDLE_FLUSH_S at a time, so a live pose is not held back and `stop` is seen.
    OSError (unplugged, no such device) propagates: the caller's watchdog opens it again.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    splitter = _LineSplitter(assembler.stats)
    try:
        if baud is not None:
            _set_line(fd, baud)
        while stop is None or not stop.is_set():
            ready, _, _ = select.select([fd], [], [], IDLE_FLUSH_S)
            if not ready:
                yield from assembler.flush()
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break  # the other end hung up
            for line in splitter.lines(chunk):
                yield from assembler.feed(line)
    finally:
        os.close(fd)
    for line in splitter.rest():
        yield from assembler.feed(line)
    yield from assembler.flush()


def _set_line(fd: int, baud: int) -> None:
    speed = getattr(termios, f"B{baud}", None)
    if speed is None:
        raise OSError(errno.EINVAL, f"unsupported serial speed {baud} baud")
    tty.setraw(fd, termios.TCSANOW)  # not TCSAFLUSH: what the receiver already sent is kept
    attrs = termios.tcgetattr(fd)
    attrs[4] = attrs[5] = speed  # input and output speed
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class UdpNmeaReader:
    """Binds a UDP socket (port 0 picks a free one: see `.port`) and yields poses from datagrams.

    Each datagram may hold one or several lines (receivers differ).
    """

    def __init__(self, host: str = "0.0.0.0", port: int = 0, *, source: str | None = None,
                 stats: ParseStats | None = None, assembler: NmeaEpochAssembler | None = None):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self.port = int(self._sock.getsockname()[1])
        name = source or f"udp://{host}:{self.port}"
        self.assembler = assembler or NmeaEpochAssembler(source=name, stats=stats)

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
