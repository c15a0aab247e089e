"""Telemetry of moving cameras (patrol vehicles, drones): parsers to `Pose`s, and time alignment.

One module per source: `nmea` (NMEA 0183 file/TCP/UDP/serial), `gpx` (replays), `mqtt_json`
(`streetwatch.telemetry/1` over MQTT), `srt` (DJI subtitle sidecars, every dialect), `klv` (MISB
ST 0601, raw or in MPEG-TS). `files` reads any file by format (what `edge telemetry` checks),
`flight_path` gives a heading where a drone's file has none, `summary` reports on a file, `clock`
lines a replayed video up with its telemetry, `align` matches frame times to poses. Nothing here
imports OpenCV or onnxruntime.
"""

from streetwatch.edge.telemetry.align import PoseMatch, PoseTrack, interpolate, lerp_angle
from streetwatch.edge.telemetry.files import FORMATS, ReadOptions, TelemetryFile, detect_format, read_telemetry
from streetwatch.edge.telemetry.flight_path import bearing_deg, distance_m, with_flight_path_attitude
from streetwatch.edge.telemetry.gpx import parse_gpx, read_gpx
from streetwatch.edge.telemetry.klv import (
    KlvError,
    KlvStreamDecoder,
    UasLocalSet,
    decode_uas_local_set,
    parse_klv_bytes,
    read_klv_container,
    read_klv_file,
    st0601_checksum,
)
from streetwatch.edge.telemetry.mqtt_json import (
    TELEMETRY_SCHEMA,
    TelemetryHandler,
    TelemetryMessage,
    TelemetryRejected,
    parse_telemetry,
    telemetry_topic,
)
from streetwatch.edge.telemetry.nmea import (
    NmeaEpochAssembler,
    UdpNmeaReader,
    parse_nmea_lines,
    read_nmea_file,
    read_nmea_tcp,
)
from streetwatch.edge.telemetry.pose import Gimbal, ParseStats, Pose, TelemetryError
from streetwatch.edge.telemetry.srt import DIALECTS, SrtDialect, SrtRecord, detect_dialect, parse_srt, read_srt

__all__ = [
    "DIALECTS", "FORMATS", "TELEMETRY_SCHEMA", "Gimbal", "KlvError", "KlvStreamDecoder", "NmeaEpochAssembler",
    "ParseStats", "Pose", "PoseMatch", "PoseTrack", "ReadOptions", "SrtDialect", "SrtRecord", "TelemetryError",
    "TelemetryFile",
    "TelemetryHandler", "TelemetryMessage", "TelemetryRejected", "UasLocalSet", "UdpNmeaReader", "bearing_deg",
    "decode_uas_local_set", "detect_dialect", "detect_format", "distance_m", "interpolate", "lerp_angle",
    "parse_gpx", "parse_klv_bytes", "parse_nmea_lines", "parse_srt", "parse_telemetry", "read_gpx",
    "read_klv_container", "read_klv_file", "read_nmea_file", "read_nmea_tcp", "read_srt", "read_telemetry",
    "st0601_checksum", "telemetry_topic", "with_flight_path_attitude",
]
