"""MISB ST 0601 (UAS Datalink Local Set) KLV to poses, from a raw `.klv` dump or an MPEG-TS data stream.

Why our own decoder: the one PyPI parser, `klvdata` 0.0.3 (2018, "Alpha", classifiers up to Python
3.7), reads 1-byte tags only (ST 0601 tags are BER-OID, tag 128+ takes two bytes), never verifies
the checksum and ignores the standard's error sentinels (e.g. -(2^31) = "no value" for latitude).
The subset we need is a page of code; it follows the ST 0601 tag table:

| tag | item | encoding | mapping |
| --- | --- | --- | --- |
| 1 | checksum | uint16 | 16-bit running sum of big-endian words, key byte 0 .. checksum length byte |
| 2 | precision time stamp | uint64 | µs since 1970-01-01 (UTC, POSIX) |
| 5 | platform heading | uint16 | 0..2^16-1 -> 0..360° |
| 6 | platform pitch | int16 | ±(2^15-1) -> ±20°, -(2^15) = out of range |
| 7 | platform roll | int16 | ±(2^15-1) -> ±50°, -(2^15) = out of range |
| 13/14 | sensor latitude/longitude | int32 | ±(2^31-1) -> ±90° / ±180°, -(2^31) = error |
| 15 | sensor true altitude (MSL) | uint16 | 0..2^16-1 -> -900..19000 m |
| 16/17 | sensor horizontal/vertical field of view | uint16 | 0..2^16-1 -> 0..180° |
| 18 | sensor relative azimuth | uint32 | 0..2^32-1 -> 0..360° |
| 19 | sensor relative elevation | int32 | ±(2^31-1) -> ±180°, -(2^31) = error |
| 20 | sensor relative roll | uint32 | 0..2^32-1 -> 0..360° |
| 21 | slant range | uint32 | 0..2^32-1 -> 0..5,000,000 m |
| 23/24 | frame centre latitude/longitude | int32 | as 13/14 |
| 90 | platform pitch angle (full) | int32 | +-(2^31-1) -> +-90 deg, -(2^31) = out of range |
| 91 | platform roll angle (full) | int32 | +-(2^31-1) -> +-90 deg, -(2^31) = out of range |

Tags 90/91 carry the attitude past tag 6's +-20 deg and tag 7's +-50 deg: when present they win.

The checksum is the standard's 16-bit word sum (as ST 0601 and its reference code define it), not
a CRC; a packet that fails it is refused, as the standard requires. Other tags are skipped by
length and counted (`unknown_tag`), as the standard requires of a reader. Every refusal names the
packet's byte offset in the stream (`byte 228: ...`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streetwatch.edge.telemetry.pose import Gimbal, ParseStats, Pose, TelemetryError

log = logging.getLogger(__name__)

UAS_LS_KEY = bytes.fromhex("060E2B34020B01010E01030101000000")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_PACKET_BYTES = 64 * 1024

Value = float | datetime | None
Decoder = Callable[[bytes], Value]


class KlvError(ValueError):
    """A packet that cannot be used; `kind` is the ParseStats counter (truncated, checksum, malformed)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _unsigned(scale: float, offset: float = 0.0) -> Decoder:
    return lambda raw: int.from_bytes(raw, "big") * scale + offset


def _signed(half_range: float, bits: int) -> Decoder:
    sentinel = -(1 << (bits - 1))
    scale = half_range / ((1 << (bits - 1)) - 1)

    def decode(raw: bytes) -> float | None:
        value = int.from_bytes(raw, "big", signed=True)
        return None if value == sentinel else value * scale

    return decode


def _timestamp(raw: bytes) -> datetime:
    return EPOCH + timedelta(microseconds=int.from_bytes(raw, "big"))


# tag -> (name, value length in bytes, decoder)
TAGS: dict[int, tuple[str, int, Decoder]] = {
    2: ("precision_time", 8, _timestamp),
    5: ("platform_heading_deg", 2, _unsigned(360.0 / 0xFFFF)),
    6: ("platform_pitch_deg", 2, _signed(20.0, 16)),
    7: ("platform_roll_deg", 2, _signed(50.0, 16)),
    13: ("sensor_lat", 4, _signed(90.0, 32)),
    14: ("sensor_lon", 4, _signed(180.0, 32)),
    15: ("sensor_alt_m", 2, _unsigned(19900.0 / 0xFFFF, -900.0)),
    16: ("sensor_hfov_deg", 2, _unsigned(180.0 / 0xFFFF)),
    17: ("sensor_vfov_deg", 2, _unsigned(180.0 / 0xFFFF)),
    18: ("sensor_rel_azimuth_deg", 4, _unsigned(360.0 / 0xFFFFFFFF)),
    19: ("sensor_rel_elevation_deg", 4, _signed(180.0, 32)),
    20: ("sensor_rel_roll_deg", 4, _unsigned(360.0 / 0xFFFFFFFF)),
    21: ("slant_range_m", 4, _unsigned(5_000_000.0 / 0xFFFFFFFF)),
    23: ("frame_center_lat", 4, _signed(90.0, 32)),
    24: ("frame_center_lon", 4, _signed(180.0, 32)),
    90: ("platform_pitch_full_deg", 4, _signed(90.0, 32)),
    91: ("platform_roll_full_deg", 4, _signed(90.0, 32)),
}


@dataclass(frozen=True)
class UasLocalSet:
    """The decoded items of one ST 0601 packet by name (None: the standard's 'no value' sentinel)."""

    values: dict[str, Value] = field(default_factory=dict)
    unknown_tags: tuple[int, ...] = ()

    def number(self, name: str) -> float | None:
        value = self.values.get(name)
        return value if isinstance(value, float) else None


def read_ber_length(buf: bytes, pos: int) -> tuple[int, int]:
    """BER length at `pos`: short form (< 128) or long form 0x8N + N bytes. Returns (length, next pos)."""
    if pos >= len(buf):
        raise KlvError("truncated", f"length expected at byte {pos}, packet ends at {len(buf)}")
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count == 0 or count > 8:
        raise KlvError("malformed", f"BER long-form length with {count} bytes at byte {pos}")
    if pos + 1 + count > len(buf):
        raise KlvError("truncated", f"BER length needs {count} bytes at byte {pos + 1}")
    return int.from_bytes(buf[pos + 1 : pos + 1 + count], "big"), pos + 1 + count


def read_ber_oid(buf: bytes, pos: int) -> tuple[int, int]:
    """BER-OID tag at `pos`: 7 bits per byte, high bit set on all but the last byte."""
    value = 0
    for i in range(pos, min(pos + 4, len(buf))):
        value = (value << 7) | (buf[i] & 0x7F)
        if not buf[i] & 0x80:
            return value, i + 1
    kind = "truncated" if pos + 4 > len(buf) else "malformed"
    raise KlvError(kind, f"unterminated BER-OID tag at byte {pos}")


def st0601_checksum(data: bytes) -> int:
    """ST 0601 tag 1: the 16-bit running sum of big-endian words over `data` (odd tail byte high)."""
    total = 0
    for i in range(0, len(data) - 1, 2):
        total += (data[i] << 8) | data[i + 1]
    if len(data) % 2:
        total += data[-1] << 8
    return total & 0xFFFF


def decode_uas_local_set(packet: bytes, *, stats: ParseStats | None = None) -> UasLocalSet:
    """Decode one whole packet (key, length, value). Raise KlvError on a bad key, length or checksum."""
    if len(packet) < 16 and UAS_LS_KEY.startswith(packet):
        raise KlvError("truncated", f"packet of {len(packet)} bytes ends inside the 16-byte key")
    if packet[:16] != UAS_LS_KEY:
        raise KlvError("malformed", f"packet does not start with the ST 0601 key {UAS_LS_KEY.hex()}")
    length, start = read_ber_length(packet, 16)
    end = start + length
    if end > len(packet):
        raise KlvError("truncated", f"local set declares {length} bytes, only {len(packet) - start} present")
    packet = packet[:end]
    if length < 4 or packet[-4:-2] != b"\x01\x02":
        raise KlvError("malformed", "local set does not end with the checksum item (tag 1, length 2)")
    expected, found = st0601_checksum(packet[:-2]), int.from_bytes(packet[-2:], "big")
    if expected != found:
        raise KlvError("checksum", f"checksum 0x{found:04X} != computed 0x{expected:04X}")
    return _decode_items(packet, start, end - 4, stats=stats)


def _decode_items(packet: bytes, pos: int, end: int, *, stats: ParseStats | None) -> UasLocalSet:
    values: dict[str, Value] = {}
    unknown: list[int] = []
    while pos < end:
        tag, pos = read_ber_oid(packet, pos)
        length, pos = read_ber_length(packet, pos)
        raw = packet[pos : pos + length]
        if pos + length > end:
            raise KlvError("truncated", f"tag {tag} declares {length} bytes past the end of the set")
        pos += length
        spec = TAGS.get(tag)
        if spec is None:
            unknown.append(tag)
            if stats is not None:
                stats.note("unknown_tag", f"tag {tag} ({length} bytes) skipped: not read by this decoder")
            continue
        name, size, decoder = spec
        if length != size:
            if stats is not None:
                stats.fail("malformed", f"tag {tag} ({name}): {length} bytes, the standard says {size}")
            continue
        values[name] = decoder(raw)
    return UasLocalSet(values, tuple(unknown))


def to_pose(local_set: UasLocalSet, *, source: str) -> Pose | None:
    """The platform's pose; None without a timestamp (tag 2) or a sensor position (tags 13/14)."""
    t = local_set.values.get("precision_time")
    lat, lon = local_set.number("sensor_lat"), local_set.number("sensor_lon")
    if not isinstance(t, datetime) or lat is None or lon is None:
        return None
    n = local_set.number
    azimuth, elevation = n("sensor_rel_azimuth_deg"), n("sensor_rel_elevation_deg")
    gimbal = None
    if azimuth is not None and elevation is not None:
        gimbal = Gimbal(azimuth, elevation, n("sensor_rel_roll_deg") or 0.0, "platform")
    pitch = n("platform_pitch_full_deg")
    roll = n("platform_roll_full_deg")
    return Pose(
        t=t, lat=lat, lon=lon, alt_m=n("sensor_alt_m"), heading_deg=n("platform_heading_deg"),
        pitch_deg=pitch if pitch is not None else n("platform_pitch_deg"),
        roll_deg=roll if roll is not None else n("platform_roll_deg"), speed_mps=None, source=source,
        gimbal=gimbal, frame_center_lat=n("frame_center_lat"), frame_center_lon=n("frame_center_lon"),
        slant_range_m=n("slant_range_m"), hfov_deg=n("sensor_hfov_deg"), vfov_deg=n("sensor_vfov_deg"),
    )


class KlvStreamDecoder:
    """Reassembles ST 0601 packets from a byte stream (PES payloads may split or batch packets)."""

    def __init__(self, *, source: str, stats: ParseStats | None = None):
        self.source = source
        self.stats = stats or ParseStats(source)
        self._buffer = b""
        self._offset = 0  # stream offset of self._buffer[0]
        self._packet_at = 0  # stream offset of the packet being decoded
        self._last_t: datetime | None = None

    def feed(self, data: bytes) -> list[Pose]:
        self._buffer += data
        poses: list[Pose] = []
        while True:
            packet = self._next_packet()
            if packet is None:
                return poses
            pose = self._decode(packet)
            if pose is not None:
                poses.append(pose)

    def _next_packet(self) -> bytes | None:
        at = self._buffer.find(UAS_LS_KEY)
        if at < 0:
            keep = len(UAS_LS_KEY) - 1  # the key may be split across feeds
            if len(self._buffer) > keep:
                self._skip(len(self._buffer) - keep)
            return None
        if at > 0:
            self._skip(at)
        try:
            length, start = read_ber_length(self._buffer, 16)
        except KlvError as exc:
            if exc.kind == "truncated":
                return None
            self.stats.fail(exc.kind, f"byte {self._offset}: {exc}")
            self._drop(1)
            return b""
        if length > MAX_PACKET_BYTES:
            self.stats.fail("malformed", f"byte {self._offset}: declared length {length} > {MAX_PACKET_BYTES}")
            self._drop(1)
            return b""
        if start + length > len(self._buffer):
            return None
        self._packet_at = self._offset
        packet = self._buffer[: start + length]
        self._drop(start + length)
        return packet

    def _skip(self, count: int) -> None:
        self.stats.fail("malformed", f"byte {self._offset}: {count} bytes before an ST 0601 key skipped")
        self._drop(count)

    def _drop(self, count: int) -> None:
        self._buffer = self._buffer[count:]
        self._offset += count

    def _decode(self, packet: bytes) -> Pose | None:
        if not packet:
            return None
        where = f"byte {self._packet_at}"
        try:
            pose = to_pose(decode_uas_local_set(packet, stats=self.stats), source=self.source)
        except KlvError as exc:
            self.stats.fail(exc.kind, f"{where}: {exc}")
            if exc.kind != "checksum" or UAS_LS_KEY in packet[len(UAS_LS_KEY) :]:
                # Resync just after the bad packet's key: a corrupted length may have swallowed the next key.
                self._buffer = packet[len(UAS_LS_KEY) :] + self._buffer
                self._offset = self._packet_at + len(UAS_LS_KEY)
            return None
        if pose is None:
            self.stats.fail("no_time", f"{where}: packet without timestamp (tag 2) or sensor position (tags 13/14)")
            return None
        self.stats.check_gap(self._last_t, pose.t)
        self._last_t = pose.t
        self.stats.ok()
        return pose

    def finish(self) -> None:
        """End of stream: a partial packet left over is counted as truncated."""
        if self._buffer:
            self.stats.fail("truncated", f"byte {self._offset}: {len(self._buffer)} bytes of an unfinished packet "
                                         "at the end")
            self._drop(len(self._buffer))


def parse_klv_bytes(chunks: Iterable[bytes], *, source: str, stats: ParseStats | None = None) -> list[Pose]:
    """Poses from raw KLV bytes (e.g. a .klv dump or a list of packets)."""
    decoder = KlvStreamDecoder(source=source, stats=stats)
    poses = [pose for chunk in chunks for pose in decoder.feed(chunk)]
    decoder.finish()
    return poses


def is_raw_klv(head: bytes) -> bool:
    """True if bytes start like a SMPTE KLV key (06 0E 2B 34): a raw dump, not a media container."""
    return head.startswith(UAS_LS_KEY[:4])


def read_klv_file(path: str | Path, *, source: str | None = None, stats: ParseStats | None = None,
                  chunk_bytes: int = 1 << 16) -> list[Pose]:
    """Poses from a raw KLV dump (`.klv`, `.bin`), read in chunks so a large file stays small in memory."""
    decoder = KlvStreamDecoder(source=source or str(path), stats=stats)
    poses: list[Pose] = []
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            poses.extend(decoder.feed(chunk))
    decoder.finish()
    return poses


def read_klv_container(path: str | Path, *, source: str | None = None, stats: ParseStats | None = None,
                       stream_index: int = 0) -> Iterator[Pose]:
    """Poses from the `stream_index`-th data stream of a media file (MPEG-TS with KLV), via PyAV."""
    for _offset, pose in iter_klv_container(path, source=source, stats=stats, stream_index=stream_index):
        yield pose


def iter_klv_container(path: str | Path, *, source: str | None = None, stats: ParseStats | None = None,
                       stream_index: int = 0) -> Iterator[tuple[float | None, Pose]]:
    """(seconds from the video's first frame, pose) for each KLV packet of the data stream.

    The offset comes from the data packet's PTS, so a replay can line the video up with the KLV's
    own clock; None where the muxer wrote no PTS. TelemetryError if the file cannot be opened or
    has no such data stream.
    """
    import av  # the edge extra; imported here so the byte-level decoder needs nothing heavy

    decoder = KlvStreamDecoder(source=source or str(path), stats=stats)
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise TelemetryError(path, f"not a readable media file for KLV ({exc.strerror or exc})") from None
    with container:
        streams = container.streams.data
        if len(streams) <= stream_index:
            raise TelemetryError(path, f"no data stream #{stream_index} (found {len(streams)}); expected KLV "
                                       "in MPEG-TS, or give a raw .klv dump")
        video = container.streams.video[0] if container.streams.video else None
        origin = float(video.start_time * video.time_base) if video and video.start_time is not None and \
            video.time_base is not None else 0.0
        for packet in container.demux(streams[stream_index]):
            if not packet.size:
                continue
            at = float(packet.pts * packet.time_base) - origin if packet.pts is not None and packet.time_base else None
            for pose in decoder.feed(bytes(packet)):
                yield at, pose
    decoder.finish()
