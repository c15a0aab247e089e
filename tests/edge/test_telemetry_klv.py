"""MISB ST 0601 KLV: packets built here from the standard's tag table, decoded back.

The encoder below is the test's own reading of ST 0601 (integer mappings, BER lengths, BER-OID
tags, the 16-bit word-sum checksum), written independently of the decoder under test.
Tolerances are the format's resolution (range / integer range).
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streetwatch.edge.config import CameraConfig
from streetwatch.edge.moving import read_poses
from streetwatch.edge.telemetry import (
    KlvError,
    ParseStats,
    decode_uas_local_set,
    parse_klv_bytes,
    read_klv_container,
    read_telemetry,
    st0601_checksum,
)
from streetwatch.edge.telemetry.klv import to_pose

KEY = bytes([0x06, 0x0E, 0x2B, 0x34, 0x02, 0x0B, 0x01, 0x01, 0x0E, 0x01, 0x03, 0x01, 0x01, 0x00, 0x00, 0x00])
T0 = datetime(2026, 1, 1, 8, 0, 0, 123456, tzinfo=UTC)

# tag: (format, low, high) per ST 0601; signed formats map +-(2^(n-1)-1) to +-high
TABLE: dict[int, tuple[str, float, float]] = {
    5: (">H", 0.0, 360.0),
    6: (">h", -20.0, 20.0),
    7: (">h", -50.0, 50.0),
    13: (">i", -90.0, 90.0),
    14: (">i", -180.0, 180.0),
    15: (">H", -900.0, 19000.0),
    16: (">H", 0.0, 180.0),
    18: (">I", 0.0, 360.0),
    19: (">i", -180.0, 180.0),
    20: (">I", 0.0, 360.0),
    21: (">I", 0.0, 5_000_000.0),
    23: (">i", -90.0, 90.0),
    24: (">i", -180.0, 180.0),
}
INT_MAX = {">H": 0xFFFF, ">h": 0x7FFF, ">I": 0xFFFFFFFF, ">i": 0x7FFFFFFF}


def resolution(tag: int) -> float:
    fmt, low, high = TABLE[tag]
    return high / INT_MAX[fmt] if fmt in (">h", ">i") else (high - low) / INT_MAX[fmt]


def encode_value(tag: int, value: float) -> bytes:
    fmt, low, high = TABLE[tag]
    if fmt in (">h", ">i"):  # symmetric signed: int = value / high * (2^(n-1) - 1)
        return struct.pack(fmt, round(value / high * INT_MAX[fmt]))
    return struct.pack(fmt, round((value - low) / (high - low) * INT_MAX[fmt]))


def ber_length(n: int) -> bytes:
    if n < 128:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def ber_oid(tag: int) -> bytes:
    groups = [tag & 0x7F]
    tag >>= 7
    while tag:
        groups.insert(0, 0x80 | (tag & 0x7F))
        tag >>= 7
    return bytes(groups)


def item(tag: int, raw: bytes) -> bytes:
    return ber_oid(tag) + ber_length(len(raw)) + raw


def word_sum(data: bytes) -> int:
    padded = data + b"\x00" * (len(data) % 2)
    return sum(struct.unpack(f">{len(padded) // 2}H", padded)) % 65536


def packet(items: bytes) -> bytes:
    """Key + BER length + items + checksum item (tag 1, length 2, sum over all before the value)."""
    body_len = len(items) + 4
    head = KEY + ber_length(body_len) + items + b"\x01\x02"
    return head + struct.pack(">H", word_sum(head))


VALUES = {5: 359.99, 6: -12.5, 7: 30.25, 13: 31.300123, 14: 120.585432, 15: 120.3, 16: 62.8,
          18: 270.5, 19: -45.25, 20: 1.5, 21: 350.0, 23: 31.2990, 24: 120.5861}


def full_packet(t: datetime = T0, *, extra: bytes = b"", overrides: dict[int, float] | None = None) -> bytes:
    micros = (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    values = {**VALUES, **(overrides or {})}
    items = item(2, struct.pack(">Q", micros)) + extra
    items += b"".join(item(tag, encode_value(tag, v)) for tag, v in values.items())
    return packet(items)


@pytest.mark.parametrize(("data", "expected"), [
    (b"", 0), (b"\x01\x02", 0x0102), (b"\x01\x02\x03", 0x0402), (b"\xff\xff\x00\x02", 0x0001),
])
def test_checksum_is_the_standards_16_bit_word_sum(data: bytes, expected: int) -> None:
    assert st0601_checksum(data) == expected


def test_packet_decodes_to_the_encoded_values_within_resolution() -> None:
    local_set = decode_uas_local_set(full_packet())
    names = {5: "platform_heading_deg", 6: "platform_pitch_deg", 7: "platform_roll_deg", 13: "sensor_lat",
             14: "sensor_lon", 15: "sensor_alt_m", 16: "sensor_hfov_deg", 18: "sensor_rel_azimuth_deg",
             19: "sensor_rel_elevation_deg", 20: "sensor_rel_roll_deg", 21: "slant_range_m",
             23: "frame_center_lat", 24: "frame_center_lon"}
    for tag, name in names.items():
        assert local_set.values[name] == pytest.approx(VALUES[tag], abs=resolution(tag)), name
    assert local_set.values["precision_time"] == T0  # microseconds, exact


def test_pose_carries_platform_attitude_and_platform_relative_gimbal() -> None:
    pose = to_pose(decode_uas_local_set(full_packet()), source="uav-1")
    assert pose is not None
    assert (pose.t, pose.source) == (T0, "uav-1")
    assert pose.lat == pytest.approx(31.300123, abs=1e-7) and pose.lon == pytest.approx(120.585432, abs=1e-7)
    assert pose.heading_deg == pytest.approx(359.99, abs=0.006)
    assert pose.pitch_deg == pytest.approx(-12.5, abs=0.001)
    assert pose.roll_deg == pytest.approx(30.25, abs=0.002)
    assert pose.alt_m == pytest.approx(120.3, abs=0.31)
    assert pose.gimbal is not None and pose.gimbal.reference == "platform"
    assert (pose.gimbal.yaw_deg, pose.gimbal.pitch_deg) == (pytest.approx(270.5), pytest.approx(-45.25))
    assert (pose.frame_center_lat, pose.frame_center_lon) == (pytest.approx(31.299), pytest.approx(120.5861))
    assert pose.slant_range_m == pytest.approx(350.0, abs=0.002)


def test_flipped_byte_is_caught_by_the_checksum() -> None:
    good = bytearray(full_packet())
    good[30] ^= 0x10
    with pytest.raises(KlvError) as err:
        decode_uas_local_set(bytes(good))
    assert err.value.kind == "checksum"


def test_unknown_tags_are_skipped_incl_two_byte_tags_and_long_form_lengths() -> None:
    extra = item(3, b"MISSION-7") + item(130, b"\x00" * 3) + item(99, b"\xaa" * 200)  # forces a long length
    data = full_packet(extra=extra)
    assert data[16] & 0x80  # the set itself now needs a BER long-form length
    stats = ParseStats("uav-1")
    local_set = decode_uas_local_set(data, stats=stats)
    assert local_set.unknown_tags == (3, 130, 99)
    assert stats["unknown_tag"] == 3
    assert local_set.values["sensor_lat"] == pytest.approx(31.300123, abs=1e-7)


@pytest.mark.parametrize("cut", [10, 17, 40, -3])
def test_truncated_packet_is_rejected(cut: int) -> None:
    with pytest.raises(KlvError) as err:
        decode_uas_local_set(full_packet()[:cut])
    assert err.value.kind == "truncated"


def test_error_sentinel_means_no_value_and_no_pose() -> None:
    raw = item(2, struct.pack(">Q", 1)) + item(13, struct.pack(">i", -(2**31)))  # -(2^31): "error"
    raw += item(14, encode_value(14, 1.0))
    local_set = decode_uas_local_set(packet(raw))
    assert local_set.values["sensor_lat"] is None
    assert to_pose(local_set, source="uav-1") is None


def test_wrong_item_length_is_counted_and_the_item_dropped() -> None:
    stats = ParseStats("uav-1")
    local_set = decode_uas_local_set(full_packet(extra=item(5, b"\x00\x00\x00")), stats=stats)
    assert stats["malformed"] == 1
    assert local_set.values["platform_heading_deg"] == pytest.approx(359.99, abs=0.006)  # the good tag 5


def test_byte_stream_split_anywhere_with_garbage_and_a_bad_packet() -> None:
    packets = [full_packet(T0 + timedelta(seconds=i)) for i in range(3)]
    corrupt = bytearray(full_packet(T0 + timedelta(seconds=9)))
    corrupt[-1] ^= 0xFF
    stream = b"\x00junk" + packets[0] + bytes(corrupt) + packets[1] + packets[2] + packets[0][:20]
    stats = ParseStats("uav-1", gap_s=60)
    chunks = [stream[i : i + 7] for i in range(0, len(stream), 7)]  # keys and lengths split across feeds
    poses = parse_klv_bytes(chunks, source="uav-1", stats=stats)

    assert [p.t for p in poses] == [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]
    assert stats["checksum"] == 1 and stats["truncated"] == 1 and stats["malformed"] >= 1


def test_corrupted_length_does_not_swallow_the_next_packet() -> None:
    bad = bytearray(full_packet(T0))
    bad[16] += 10  # declares 10 bytes more than it has: the next packet's key falls inside it
    good = full_packet(T0 + timedelta(seconds=1))
    stats = ParseStats("uav-1")
    poses = parse_klv_bytes([bytes(bad) + good], source="uav-1", stats=stats)
    assert [p.t for p in poses] == [T0 + timedelta(seconds=1)]
    assert stats["malformed"] >= 1  # the bad packet no longer ends with the checksum item


def write_klv_ts(path: Path, *, corrupt: int | None = None) -> Path:
    """H.264 + a KLV data stream in MPEG-TS through PyAV: 10 frames at 10 fps, one packet per frame
    (the packet `corrupt` with a flipped checksum bit)."""
    with av.open(str(path), "w", format="mpegts") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        data = out.add_data_stream("klv")
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            frame.pts = i
            for p in video.encode(frame):
                out.mux(p)
            raw = full_packet(T0 + timedelta(milliseconds=100 * i))
            if i == corrupt:
                raw = raw[:-1] + bytes([raw[-1] ^ 0x01])
            klv = av.Packet(raw)
            klv.stream, klv.time_base, klv.pts, klv.dts = data, Fraction(1, 90000), i * 9000, i * 9000
            out.mux(klv)
        for p in video.encode():
            out.mux(p)
    return path


def test_klv_from_an_mpeg_ts_data_stream_through_pyav(tmp_path: Path) -> None:
    """PyAV can mux a KLV data stream: write H.264 + KLV into MPEG-TS, read the poses back."""
    path = write_klv_ts(tmp_path / "uav.ts", corrupt=4)  # one corrupt packet in the stream

    stats = ParseStats("uav-ts")
    poses = list(read_klv_container(path, source="uav-ts", stats=stats))

    assert [p.t for p in poses] == [T0 + timedelta(milliseconds=100 * i) for i in range(10) if i != 4]
    assert stats["checksum"] == 1
    assert all(p.lat == pytest.approx(31.300123, abs=1e-7) for p in poses)


def test_file_without_a_data_stream_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "plain.ts"
    with av.open(str(path), "w", format="mpegts") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for p in video.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")):
            out.mux(p)
        for p in video.encode():
            out.mux(p)
    with pytest.raises(ValueError, match="plain.ts: no data stream"):
        list(read_klv_container(path))


def full_range(value: float) -> bytes:
    """Tags 90/91 (platform pitch/roll, full range): int32 over +-90 degrees, the test's own mapping."""
    return struct.pack(">i", round(value / 90.0 * 0x7FFFFFFF))


@pytest.mark.parametrize(("pitch", "roll"), [(-62.5, 75.25), (88.0, -89.5), (0.0, 0.0)])
def test_full_range_pitch_and_roll_tags_90_91_win_over_the_saturating_tags_6_7(pitch: float, roll: float) -> None:
    """Tag 6 stops at +-20 deg and tag 7 at +-50 deg: a diving or banking aircraft needs 90/91."""
    extra = item(90, full_range(pitch)) + item(91, full_range(roll))
    stats = ParseStats("uav-1")
    pose = to_pose(decode_uas_local_set(full_packet(extra=extra), stats=stats), source="uav-1")
    assert pose is not None
    assert pose.pitch_deg == pytest.approx(pitch, abs=90 / 0x7FFFFFFF * 2)
    assert pose.roll_deg == pytest.approx(roll, abs=90 / 0x7FFFFFFF * 2)
    assert stats["unknown_tag"] == 0


def test_full_range_out_of_range_sentinel_falls_back_to_tags_6_7() -> None:
    extra = item(90, struct.pack(">i", -(2**31))) + item(91, struct.pack(">i", -(2**31)))
    pose = to_pose(decode_uas_local_set(full_packet(extra=extra)), source="uav-1")
    assert pose is not None
    assert pose.pitch_deg == pytest.approx(-12.5, abs=0.001) and pose.roll_deg == pytest.approx(30.25, abs=0.002)


def test_a_raw_klv_dump_is_read_as_a_file_and_refusals_name_their_byte_offset(tmp_path: Path) -> None:
    packets = [full_packet(T0 + timedelta(seconds=i)) for i in range(4)]
    corrupt = bytearray(packets[2])
    corrupt[40] ^= 0x01
    data = packets[0] + packets[1] + bytes(corrupt) + packets[3]
    path = tmp_path / "flight.klv"
    path.write_bytes(data)

    result = read_telemetry(path)  # the format is found from the bytes: a SMPTE key, not a container
    assert result.format == "klv" and "raw" in result.dialect
    assert [p.t for p in result.poses] == [T0 + timedelta(seconds=i) for i in (0, 1, 3)]
    offset = len(packets[0]) + len(packets[1])
    assert result.stats.examples["checksum"].startswith(f"byte {offset}: checksum")

    # and through a camera's config, as `edge run` reads `telemetry.path` (no PyAV involved)
    camera = CameraConfig.model_validate({
        "id": "uav-1", "kind": "drone", "url": "rtsp://x/1", "camera_model": {"hfov_deg": 60, "ground_alt_m": 5},
        "telemetry": {"source": "klv", "path": str(path)}})
    assert len(read_poses(camera)) == 3


def test_klv_muxed_in_the_video_carries_its_offsets_so_a_replay_can_line_up(tmp_path: Path) -> None:
    path = write_klv_ts(tmp_path / "uav.ts")
    result = read_telemetry(path)  # found to be a media container by its sync bytes
    assert result.format == "klv" and result.self_timed and len(result.poses) == 10
    starts = {round((p.t - timedelta(seconds=o)).timestamp(), 2)  # type: ignore[arg-type]
              for p, o in zip(result.poses, result.offsets_s, strict=True)}
    assert len(starts) == 1  # every packet puts the first frame at the same instant
