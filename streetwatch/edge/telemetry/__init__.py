"""Telemetry of moving cameras (patrol vehicles, drones): parsers to `Pose`s, and time alignment.

One module per source: `nmea` (NMEA 0183 file/TCP/UDP/serial), `gpx` (replays), `mqtt_json`
(`streetwatch.telemetry/1` over MQTT), `srt` (DJI subtitle sidecars), `klv` (MISB ST 0601 in
MPEG-TS); `align` matches frame times to poses. Nothing here imports OpenCV or onnxruntime.
"""

from streetwatch.edge.telemetry.align import PoseMatch, PoseTrack, interpolate, lerp_angle
from streetwatch.edge.telemetry.gpx import parse_gpx, read_gpx
from streetwatch.edge.telemetry.klv import (
    KlvError,
    KlvStreamDecoder,
    UasLocalSet,
    decode_uas_local_set,
    parse_klv_bytes,
    read_klv_container,
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
from streetwatch.edge.telemetry.pose import Gimbal, ParseStats, Pose
from streetwatch.edge.telemetry.srt import SrtRecord, parse_srt, read_srt

__all__ = [
    "TELEMETRY_SCHEMA", "Gimbal", "KlvError", "KlvStreamDecoder", "NmeaEpochAssembler", "ParseStats", "Pose",
    "PoseMatch", "PoseTrack", "SrtRecord", "TelemetryHandler", "TelemetryMessage", "TelemetryRejected",
    "UasLocalSet", "UdpNmeaReader", "decode_uas_local_set", "interpolate", "lerp_angle", "parse_gpx",
    "parse_klv_bytes", "parse_nmea_lines", "parse_telemetry", "read_gpx", "read_klv_container",
    "parse_srt", "read_nmea_file", "read_nmea_tcp", "read_srt", "st0601_checksum", "telemetry_topic",
]
