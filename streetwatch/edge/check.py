"""`edge check --config F`: is this box ready to run? One row per thing `edge run` depends on.

camera       each camera: reachable and decodable, its size, frame rate and key-frame interval
calibration  each fixed camera with calibration points: reprojection error in metres
model        the manifest entry's file found, with the manifest's sha256
broker       the broker accepts this box's user and password (a client id of its own)
outbox       its folder writable, and disk free for it to grow to outbox_max_bytes
clock        the offset from an NTP server (--ntp-server), else the kernel's sync state

A FAIL row makes the command exit 1; WARN and SKIP rows say what could not be known. Nothing here
changes the box: no outbox is created, no message published.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streetwatch.broker_config import ConfigError
from streetwatch.edge.clock import ClockError, kernel_clock_state, sntp_offset
from streetwatch.edge.config import CameraConfig, EdgeConfig
from streetwatch.edge.manifest import ManifestError, ModelError, resolve_model
from streetwatch.edge.outbox import OutboxError, check_outbox_path
from streetwatch.edge.probe import ProbeError, probe_broker, probe_camera
from streetwatch.mqtt_common import MqttSetupError
from streetwatch.redaction import redact

Result = Literal["OK", "WARN", "SKIP", "FAIL"]


@dataclass(frozen=True)
class CheckRow:
    check: str
    target: str
    result: Result
    detail: str


@dataclass(frozen=True)
class CheckOptions:
    camera_timeout_s: float = 5.0  # connect and read timeout, as the worker's
    probe_s: float = 12.0  # live streams: read at most this long for two key frames
    max_calibration_error_m: float = 2.0
    ntp_server: str | None = None  # host or host:port
    max_clock_offset_s: float = 1.0
    broker_timeout_s: float = 5.0


def run_checks(config: EdgeConfig, options: CheckOptions) -> list[CheckRow]:
    """Every row, cameras probed in parallel (a dead camera waits out its timeout alone)."""
    with ThreadPoolExecutor(max_workers=min(8, len(config.cameras))) as pool:
        cameras = list(pool.map(lambda camera: check_camera(camera, options), config.cameras))
    rows = [*cameras, *(check_calibration(camera, options) for camera in config.cameras)]
    rows += [check_model(config), check_broker(config, options), check_outbox(config), check_clock(options)]
    return rows


def check_camera(camera: CameraConfig, options: CheckOptions) -> CheckRow:
    try:
        facts = probe_camera(camera.url, camera_id=camera.id, timeout_s=options.camera_timeout_s,
                             probe_s=options.probe_s)
    except ProbeError as exc:
        if camera.detect_url is None:
            return CheckRow("camera", camera.id, "FAIL", str(exc))
        main: str | None = None
        failure = str(exc)
    else:
        if camera.detect_url is None:
            return CheckRow("camera", camera.id, "OK", facts.describe())
        main, failure = facts.describe(), ""
    # A sub-stream camera: detection needs the sub-stream; the main one only makes evidence sharper.
    try:
        sub = probe_camera(camera.detect_url, camera_id=camera.id, timeout_s=options.camera_timeout_s,
                           probe_s=options.probe_s)
    except ProbeError as exc:
        return CheckRow("camera", camera.id, "FAIL", f"sub-stream (detect_url): {exc}")
    if main is None:
        return CheckRow("camera", camera.id, "WARN", f"sub-stream {sub.describe()}; main stream (url) unreadable, "
                        f"evidence will come from the sub-stream: {failure}")
    return CheckRow("camera", camera.id, "OK", f"main {main}; sub-stream {sub.describe()}")


def check_calibration(camera: CameraConfig, options: CheckOptions) -> CheckRow:
    from streetwatch.edge.geo import calibration_report

    if camera.calibration is None:
        what = "moving camera: poses from telemetry" if camera.kind != "fixed" else "no calibration: no locations"
        return CheckRow("calibration", camera.id, "SKIP", what)
    points = camera.calibration.points
    try:
        report = calibration_report(points)
    except ValueError as exc:
        return CheckRow("calibration", camera.id, "FAIL", f"the points give no homography: {exc}")
    if not math.isfinite(report.max_error_m):  # the fit kept no point (geo's RANSAC): say which is off
        worst = max((p for p in report.points if math.isfinite(p.loo_error_m)), key=lambda p: p.loo_error_m,
                    default=None)
        where = f"; point {worst.index} is {worst.loo_error_m:.1f} m from where the others put it" if worst else ""
        return CheckRow("calibration", camera.id, "FAIL", f"{len(points)} points do not fit one ground plane{where}")
    detail = f"{len(points)} points, RMSE {report.rmse_m:.2f} m, max {report.max_error_m:.2f} m"
    if report.max_error_m > options.max_calibration_error_m:
        return CheckRow("calibration", camera.id, "FAIL", f"{detail} (limit {options.max_calibration_error_m:g} m): "
                        "a point is wrong or the ground is not flat; see `edge calibrate`")
    if len(points) == 4:
        return CheckRow("calibration", camera.id, "WARN", f"{detail}: 4 points fit exactly; add points to measure")
    return CheckRow("calibration", camera.id, "OK", detail)


def check_model(config: EdgeConfig) -> CheckRow:
    model = config.model
    try:
        resolved = resolve_model(model.name, manifest_path=model.manifest, model_dir=model.model_dir)
    except (ModelError, ManifestError) as exc:
        return CheckRow("model", model.name, "FAIL", str(exc))
    return CheckRow("model", model.name, "OK", f"{resolved.path}, sha256 {resolved.entry.sha256[:16]}... verified")


def check_broker(config: EdgeConfig, options: CheckOptions) -> CheckRow:
    """Every node of `broker.urls` (or `url`): OK if all answer, WARN if some do (the box moves to
    those), FAIL if none does."""
    urls = config.broker.endpoints()
    target = redact(", ".join(urls))
    answers, failures = [], []
    for url in urls:
        try:
            answers.append(probe_broker(config.broker, client_id=f"sw-check-{config.edge_id}",
                                        timeout_s=options.broker_timeout_s, url=url))
        except (ProbeError, ConfigError, MqttSetupError, OSError) as exc:
            failures.append(redact(str(exc)))
    if not answers:
        return CheckRow("broker", target, "FAIL", "; ".join(failures))
    return CheckRow("broker", target, "WARN" if failures else "OK", "; ".join(answers + failures))


def check_outbox(config: EdgeConfig) -> CheckRow:
    """The outbox's folder takes a file (what `edge run` checks, then a real write: a read-only
    mount passes a permission check as root), and its disk has room to reach outbox_max_bytes."""
    path = config.outbox.absolute()
    try:
        check_outbox_path(path)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".edge-check-"):
            pass
    except OutboxError as exc:
        return CheckRow("outbox", str(path), "FAIL", str(exc))
    except OSError as exc:
        return CheckRow("outbox", str(path), "FAIL", f"cannot write in {path.parent}: {exc.strerror}")
    used = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.is_file())
    free = shutil.disk_usage(path.parent).free
    needed = max(0, config.outbox_max_bytes - used)
    detail = f"{_size(free)} free in {path.parent}, outbox {_size(used)} of at most {_size(config.outbox_max_bytes)}"
    if free < needed:
        return CheckRow("outbox", str(path), "FAIL", f"{detail}: free disk or lower outbox_max_bytes")
    return CheckRow("outbox", str(path), "OK", detail)


def check_clock(options: CheckOptions) -> CheckRow:
    if options.ntp_server:
        host, _, port = options.ntp_server.partition(":")
        try:
            offset = sntp_offset(host, port=int(port or 123))
        except (ClockError, ValueError) as exc:
            return CheckRow("clock", options.ntp_server, "FAIL", str(exc))
        detail = f"offset {offset:+.3f} s from {options.ntp_server}"
        if abs(offset) > options.max_clock_offset_s:
            return CheckRow("clock", options.ntp_server, "FAIL",
                            f"{detail} (limit {options.max_clock_offset_s:g} s): alert times would be wrong; fix NTP")
        return CheckRow("clock", options.ntp_server, "OK", detail)
    state = kernel_clock_state()
    if state is None:
        return CheckRow("clock", "kernel", "SKIP", "not known here; give --ntp-server HOST to measure the offset")
    if not state.synchronised:
        return CheckRow("clock", "kernel", "WARN", "the kernel clock is not NTP-synchronised (no chrony or "
                        "timesyncd keeps it); give --ntp-server HOST to measure the offset")
    return CheckRow("clock", "kernel", "OK", f"NTP-synchronised, max error {state.max_error_s * 1000:.0f} ms")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def format_table(rows: Sequence[CheckRow]) -> str:
    headers = ("CHECK", "TARGET", "RESULT", "DETAIL")
    widths = [max(len(headers[i]), *(len(getattr(r, f)) for r in rows)) for i, f in enumerate(("check", "target",
                                                                                              "result"))]
    lines = [f"{headers[0]:<{widths[0]}}  {headers[1]:<{widths[1]}}  {headers[2]:<{widths[2]}}  {headers[3]}"]
    for row in rows:
        lines.append(f"{row.check:<{widths[0]}}  {row.target:<{widths[1]}}  {row.result:<{widths[2]}}  {row.detail}")
    failed = sum(row.result == "FAIL" for row in rows)
    lines.append(f"{failed} check(s) failed" if failed else "all checks passed")
    return redact("\n".join(lines))


def exit_status(rows: Sequence[CheckRow]) -> int:
    return 1 if any(row.result == "FAIL" for row in rows) else 0
