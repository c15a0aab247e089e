"""`edge` command line: run (live), replay (offline, to JSONL), check (is this box ready to run),
calibrate (check a calibration), telemetry (check a telemetry file before a patrol),
config-schema (the config's JSON Schema, for editors)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from streetwatch.edge.config import CameraConfig, ConfigError, EdgeConfig, load_edge_config
from streetwatch.redaction import install_log_redaction, redact
from streetwatch.stop_signals import StopSignals
from streetwatch.version import package_version

log = logging.getLogger(__name__)

TELEMETRY_FORMATS = ("auto", "nmea", "gpx", "srt", "klv")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quiet = args.handler in (_telemetry, _check)  # their report already says what went wrong
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.ERROR if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_redaction()  # camera URLs and secrets from ${VAR} never reach a log line
    if args.handler is _telemetry:
        return _telemetry(args)
    if args.handler is _config_schema:
        return _config_schema(args)
    try:
        config = load_edge_config(args.config)
        return int(args.handler(args, config))
    except ConfigError as exc:
        print(f"edge: {redact(str(exc))}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge", description="StreetWatch edge worker")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--version", action="version", version=f"edge (streetwatch) {package_version()}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="watch every camera live and publish alerts over MQTT")
    run.add_argument("--config", required=True, type=Path)
    run.set_defaults(handler=_run)

    replay = commands.add_parser("replay", help="analyse a video file offline; write alerts as JSONL")
    replay.add_argument("video", type=Path)
    replay.add_argument("--config", required=True, type=Path)
    replay.add_argument("--camera", help="camera id whose zones and calibration apply (default: first)")
    replay.add_argument("--out", type=Path, default=Path("alerts.jsonl"))
    replay.add_argument("--start-time", type=_utc, help="UTC ISO time of the first frame (default: from the "
                        "telemetry's own clock or the video's creation time; fixed cameras: now)")
    replay.add_argument("--no-progress", action="store_true")
    replay.set_defaults(handler=_replay)

    check = commands.add_parser("check", help="is this box ready: cameras, calibration, model, broker, outbox, "
                                "clock; a table, exit 1 on any failure")
    check.add_argument("--config", required=True, type=Path)
    check.add_argument("--ntp-server", help="HOST[:PORT] to measure the clock offset against (default: only the "
                       "kernel's sync state)")
    check.add_argument("--max-calibration-error", type=float, default=2.0, metavar="M",
                       help="largest reprojection error accepted, metres (default 2)")
    check.add_argument("--max-clock-offset", type=float, default=1.0, metavar="S",
                       help="largest clock offset accepted, seconds (default 1)")
    check.set_defaults(handler=_check)

    schema = commands.add_parser("config-schema", help="print the edge config's JSON Schema (editor completion)")
    schema.set_defaults(handler=_config_schema)

    calibrate = commands.add_parser("calibrate", help="check calibrations: reprojection error in metres")
    calibrate.add_argument("--config", required=True, type=Path)
    calibrate.add_argument("--camera", help="only this camera")
    calibrate.set_defaults(handler=_calibrate)

    telemetry = commands.add_parser("telemetry", help="read a telemetry file as the edge would: a summary, "
                                    "or every pose as JSON lines; exit 2 if it gives no pose")
    telemetry.add_argument("file", type=Path)
    telemetry.add_argument("--format", choices=TELEMETRY_FORMATS, default="auto")
    telemetry.add_argument("--jsonl", action="store_true", help="print every pose as one JSON line")
    telemetry.add_argument("--clock-tz", default="UTC", help="DJI SRT: IANA zone of the drone's clock (as "
                           "telemetry.clock_tz; default UTC)")
    telemetry.add_argument("--gimbal-pitch", type=float, help="drones without attitude: read as with "
                           "camera_model.gimbal_pitch_deg (heading from the flight path)")
    telemetry.add_argument("--start-time", type=_utc, help="SRT without a wall clock: UTC time of the first frame")
    telemetry.set_defaults(handler=_telemetry)
    return parser


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def pick_camera(config: EdgeConfig, camera_id: str | None) -> CameraConfig:
    if camera_id is None:
        return config.cameras[0]
    for camera in config.cameras:
        if camera.id == camera_id:
            return camera
    known = ", ".join(c.id for c in config.cameras)
    raise ConfigError(f"--camera {camera_id!r} is not in the config (cameras: {known})")


def _run(args: argparse.Namespace, config: EdgeConfig) -> int:
    from streetwatch.edge.manifest import ManifestError, ModelError
    from streetwatch.edge.moving import TelemetryFileError
    from streetwatch.edge.outbox import OutboxError
    from streetwatch.edge.telemetry import TelemetryError
    from streetwatch.edge.worker import EdgeWorker

    try:
        worker = EdgeWorker(config)
    except (TelemetryError, TelemetryFileError, OutboxError, ModelError, ManifestError) as exc:
        print(f"edge run: {exc}", file=sys.stderr)
        return 2
    signals = StopSignals(worker.request_stop).install(signal.SIGTERM, signal.SIGINT)
    worker.start()
    try:
        worker.run()
    finally:
        if signals.received:
            log.info("edge %s: signal %d, stopping", config.edge_id, signals.received[0])
        worker.stop()
    return 0


def _replay(args: argparse.Namespace, config: EdgeConfig) -> int:
    from streetwatch.edge.manifest import ManifestError, ModelError
    from streetwatch.edge.replay import ReplayError, replay_file

    camera = pick_camera(config, args.camera)
    if not args.video.is_file():
        print(f"edge replay: {args.video}: no such video file", file=sys.stderr)
        return 2
    try:
        count = replay_file(
            args.video,
            config=config,
            camera=camera,
            out=args.out,
            start_time=args.start_time,
            progress=not args.no_progress,
        )
    except (ReplayError, ModelError, ManifestError) as exc:
        print(f"edge replay: {exc}", file=sys.stderr)
        return 2
    print(f"edge replay: {count} alert(s) written to {args.out}")
    return 0


def _check(args: argparse.Namespace, config: EdgeConfig) -> int:
    from streetwatch.edge.check import CheckOptions, exit_status, format_table, run_checks

    options = CheckOptions(ntp_server=args.ntp_server, max_calibration_error_m=args.max_calibration_error,
                           max_clock_offset_s=args.max_clock_offset)
    rows = run_checks(config, options)
    print(format_table(rows))
    return exit_status(rows)


def _config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(EdgeConfig.model_json_schema(), indent=2, ensure_ascii=False))
    return 0


def _calibrate(args: argparse.Namespace, config: EdgeConfig) -> int:
    from streetwatch.edge.geo import calibration_report, format_calibration_report

    cameras = [pick_camera(config, args.camera)] if args.camera else config.cameras
    checked = 0
    for camera in cameras:
        if camera.calibration is None:
            print(f"camera {camera.id}: no calibration")
            continue
        report = calibration_report(camera.calibration.points)
        print(f"camera {camera.id}:")
        print(format_calibration_report(report))
        checked += 1
    return 0 if checked else 1


def _telemetry(args: argparse.Namespace) -> int:
    from streetwatch.edge.telemetry import ReadOptions, TelemetryError, read_telemetry
    from streetwatch.edge.telemetry.summary import no_poses_line, pose_record, summary_lines
    from streetwatch.edge.zones import resolve_timezone

    try:
        options = ReadOptions(clock_tz=resolve_timezone(args.clock_tz, camera_id="--clock-tz"),
                              clip_start=args.start_time, flight_path=args.gimbal_pitch is not None,
                              gimbal_pitch_deg=args.gimbal_pitch)
        result = read_telemetry(args.file, fmt=args.format, options=options)
    except (TelemetryError, ValueError) as exc:
        print(f"edge telemetry: {exc}", file=sys.stderr)
        return 2
    if args.jsonl:
        for pose in result.poses:
            print(json.dumps(pose_record(pose), ensure_ascii=False))
    else:
        clock = f"drone clock read as {args.clock_tz} (--clock-tz)" if result.format == "srt" else None
        print("\n".join(summary_lines(result, clock=clock)))
    if not result.poses:
        print(f"edge telemetry: {no_poses_line(result, clip_start=args.start_time)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
