"""`edge check`: one row per thing `edge run` depends on, and each failure class makes it exit 1
naming what is wrong. Real parts: an RTSP server, a Mosquitto with a password file, the real model
file (and a corrupt copy), a UDP NTP peer, the disk."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from clips import solid_frames, write_h264_clip
from fault_harness import Mosquitto
from rtsp_server import RtspServer
from support import BrokerEndpoint, free_port

from streetwatch.edge.check import (
    CheckOptions,
    check_broker,
    check_calibration,
    check_camera,
    check_clock,
    check_model,
    check_outbox,
    run_checks,
)
from streetwatch.edge.cli import main
from streetwatch.edge.config import CameraConfig, EdgeConfig
from streetwatch.edge.geo import fit_homography, pixel_to_geo

GOP_CLIP_FPS, GOP_FRAMES = 10, 20  # key frame every 2.00 s
# A street corner: a 40 m x 30 m rectangle seen by a camera, as image points -> lat/lon, and a fifth
# point that lies on the same ground plane (so the fit is exact: 0 m error).
CORNERS = [
    [[100, 900], [31.300000, 120.585000]], [[1800, 900], [31.300000, 120.585421]],
    [[1500, 300], [31.300270, 120.585421]], [[400, 300], [31.300270, 120.585000]],
]
_CENTRE = pixel_to_geo(fit_homography([((p[0][0], p[0][1]), (p[1][0], p[1][1])) for p in CORNERS]), 950, 600)
GOOD_POINTS = [*CORNERS, [[950, 600], [_CENTRE.lat, _CENTRE.lon]]]
TYPO_POINT = [[950, 600], [_CENTRE.lat + 20 / 111_320, _CENTRE.lon]]  # its latitude typed 20 m off


@pytest.fixture(scope="module")
def gop_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s of 320x240 H.264 at 10 fps, a key frame every 20 frames (2 s)."""
    path = tmp_path_factory.mktemp("check") / "gop.mp4"
    return write_h264_clip(path, solid_frames((40, 90, 160), count=600, size=(320, 240)), fps=GOP_CLIP_FPS,
                           gop=GOP_FRAMES)


def camera(url: str, **extra: object) -> CameraConfig:
    return CameraConfig.model_validate({"id": "cam-1", "url": url, **extra})


def box(tmp_path: Path, *, broker_url: str, model_dir: Path, **extra: object) -> EdgeConfig:
    return EdgeConfig.model_validate({
        "edge_id": "box-check", "broker": {"url": broker_url}, "outbox": str(tmp_path / "outbox.sqlite"),
        "model": {"model_dir": str(model_dir)}, "cameras": [{"id": "cam-1", "url": "x.mp4"}], **extra,
    })


def test_a_reachable_camera_reports_size_rate_and_key_frame_interval(gop_clip: Path) -> None:
    with RtspServer(gop_clip) as server:
        row = check_camera(camera(server.url), CheckOptions(probe_s=10))
    assert (row.result, row.target) == ("OK", "cam-1")
    assert row.detail == "320x240, 10.00 fps, key frame every 2.00 s, h264"


@pytest.mark.parametrize("kind", ["closed port", "not a video", "no such file"])
def test_an_unusable_camera_fails_naming_why(kind: str, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 1000)
    url = {"closed port": f"rtsp://127.0.0.1:{free_port()}/cam", "not a video": str(garbage),
           "no such file": str(tmp_path / "missing.mp4")}[kind]
    row = check_camera(camera(url), CheckOptions(camera_timeout_s=3))
    assert row.result == "FAIL" and row.detail.startswith("cannot read the stream"), row
    assert {"closed port": "Connection refused", "not a video": "Invalid data",
            "no such file": "No such file"}[kind] in row.detail


def test_a_sub_stream_camera_probes_both_streams(gop_clip: Path, tmp_path: Path) -> None:
    """Detection needs the sub-stream (FAIL without it); a missing main stream only degrades evidence (WARN)."""
    missing = str(tmp_path / "missing.mp4")
    both = camera(str(gop_clip), detect_url=str(gop_clip), pixel_size=[320, 240])
    row = check_camera(both, CheckOptions(camera_timeout_s=3))
    assert row.result == "OK" and row.detail.startswith("main 320x240") and "sub-stream 320x240" in row.detail
    no_main = check_camera(camera(missing, detect_url=str(gop_clip), pixel_size=[320, 240]),
                           CheckOptions(camera_timeout_s=3))
    assert no_main.result == "WARN" and "evidence will come from the sub-stream" in no_main.detail
    no_sub = check_camera(camera(str(gop_clip), detect_url=missing, pixel_size=[320, 240]),
                          CheckOptions(camera_timeout_s=3))
    assert no_sub.result == "FAIL" and no_sub.detail.startswith("sub-stream (detect_url): cannot read")


@pytest.mark.parametrize(
    ("points", "result", "phrase"),
    [
        (GOOD_POINTS, "OK", "5 points, RMSE 0.00 m"),
        (GOOD_POINTS[:4], "WARN", "4 points fit exactly"),
        ([*CORNERS, TYPO_POINT], "FAIL", "point 4 is 19.9 m from where the others put it"),
        ([*CORNERS, [[950, 600], [_CENTRE.lat + 3 / 111_320, _CENTRE.lon]]], "FAIL", "(limit 2 m)"),
        (None, "SKIP", "no calibration"),
    ],
)
def test_calibration_error_per_camera(points: list | None, result: str, phrase: str) -> None:  # type: ignore[type-arg]
    extra = {"calibration": {"points": points}} if points else {}
    row = check_calibration(camera("x.mp4", **extra), CheckOptions())
    assert row.result == result and phrase in row.detail, row


def test_model_present_with_the_manifest_sha256(tmp_path: Path, model_dir: Path) -> None:
    config = box(tmp_path, broker_url="mqtt://127.0.0.1:1", model_dir=model_dir)
    row = check_model(config)
    assert row.result == "OK" and "sha256 695e750a5d5754bb" in row.detail


def test_a_wrong_or_missing_model_file_fails(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREETWATCH_MODEL_DIR", raising=False)  # only model_dir is searched (a checkout's
    monkeypatch.setattr("streetwatch.edge.manifest.REPO_MODELS_DIR", tmp_path / "no-checkout")  # models/ neither)
    data = bytearray((model_dir / "yolox_nano.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed, same size: a bad download
    (tmp_path / "yolox_nano.onnx").write_bytes(bytes(data))
    wrong = check_model(box(tmp_path, broker_url="mqtt://127.0.0.1:1", model_dir=tmp_path))
    assert wrong.result == "FAIL" and "wrong sha256" in wrong.detail
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = check_model(box(tmp_path, broker_url="mqtt://127.0.0.1:1", model_dir=empty))
    assert missing.result == "FAIL" and "not found" in missing.detail


@pytest.fixture()
def locked_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, str]]:
    """A Mosquitto that takes only box-check with a password (a real password file)."""
    password = "pw-" + str(time.time_ns())
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "box-check", password], check=True)
    port = free_port()
    broker = Mosquitto(tmp_path / "broker", port, conf=f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                       f"password_file {passwd}\nuser root\n")
    broker.start()
    try:
        yield broker, password
    finally:
        broker.kill()


def test_broker_login_with_the_box_credentials(
    tmp_path: Path, model_dir: Path, locked_broker: tuple[Mosquitto, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, password = locked_broker
    config = box(tmp_path, broker_url=broker.url, model_dir=model_dir,
                 broker={"url": broker.url, "username": "box-check", "password_env": "BOX_PW", "protocol": "5"})
    monkeypatch.setenv("BOX_PW", password)
    ok = check_broker(config, CheckOptions())
    assert ok.result == "OK" and "accepted user box-check" in ok.detail
    monkeypatch.setenv("BOX_PW", "not-the-password")
    refused = check_broker(config, CheckOptions())
    assert refused.result == "FAIL" and "refused" in refused.detail and "not-the-password" not in refused.detail
    monkeypatch.delenv("BOX_PW")
    unset = check_broker(config, CheckOptions())
    assert unset.result == "FAIL" and "BOX_PW is not set" in unset.detail


def test_an_unreachable_broker_fails(tmp_path: Path, model_dir: Path) -> None:
    row = check_broker(box(tmp_path, broker_url=f"mqtt://127.0.0.1:{free_port()}", model_dir=model_dir),
                       CheckOptions(broker_timeout_s=5))
    assert row.result == "FAIL" and "cannot reach 127.0.0.1" in row.detail, row


def test_outbox_writable_with_room_to_grow(tmp_path: Path, model_dir: Path) -> None:
    config = box(tmp_path, broker_url="mqtt://127.0.0.1:1", model_dir=model_dir)
    ok = check_outbox(config)
    assert ok.result == "OK" and "free in" in ok.detail and list(tmp_path.glob(".edge-check-*")) == []
    free = shutil.disk_usage(tmp_path).free
    too_big = check_outbox(box(tmp_path, broker_url="mqtt://127.0.0.1:1", model_dir=model_dir,
                               outbox_max_bytes=free * 4))
    assert too_big.result == "FAIL" and "free disk or lower outbox_max_bytes" in too_big.detail


@pytest.mark.parametrize(("outbox", "phrase"), [("missing/outbox.sqlite", "does not exist"),
                                                ("/proc/outbox.sqlite", "cannot write in /proc")])
def test_an_outbox_the_box_cannot_write_fails(outbox: str, phrase: str, tmp_path: Path, model_dir: Path) -> None:
    path = outbox if outbox.startswith("/") else str(tmp_path / outbox)
    row = check_outbox(box(tmp_path, broker_url="mqtt://127.0.0.1:1", model_dir=model_dir, outbox=path))
    assert row.result == "FAIL" and phrase in row.detail, row


class NtpPeer:
    """An NTP server on loopback whose clock runs `offset_s` ahead of this machine's (RFC 4330 replies)."""

    def __init__(self, offset_s: float) -> None:
        self.offset_s = offset_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                request, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            now = time.time() + self.offset_s + 2_208_988_800
            stamp = struct.pack("!II", int(now), int((now % 1) * 2**32))
            reply = bytes([0x24, 2, 0, 0]) + bytes(20) + request[40:48] + stamp + stamp
            self.sock.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.mark.parametrize(("offset_s", "result"), [(0.0, "OK"), (30.0, "FAIL"), (-5.0, "FAIL")])
def test_clock_offset_from_an_ntp_server(offset_s: float, result: str) -> None:
    peer = NtpPeer(offset_s)
    try:
        row = check_clock(CheckOptions(ntp_server=f"127.0.0.1:{peer.port}"))
    finally:
        peer.close()
    assert row.result == result, row
    measured = float(row.detail.split()[1])
    assert abs(measured - offset_s) < 0.5


def test_a_silent_ntp_server_fails_and_no_server_gives_the_kernel_state() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        row = check_clock(CheckOptions(ntp_server=f"127.0.0.1:{silent.getsockname()[1]}"))
    finally:
        silent.close()
    assert row.result == "FAIL" and "no answer" in row.detail
    kernel = check_clock(CheckOptions())
    assert kernel.target == "kernel" and kernel.result in ("OK", "WARN", "SKIP")


def write_config(tmp_path: Path, url: str, *, broker_url: str, model_dir: Path) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump({
        "edge_id": "box-check", "broker": {"url": broker_url}, "outbox": str(tmp_path / "outbox.sqlite"),
        "model": {"model_dir": str(model_dir)},
        "cameras": [{"id": "cam-1", "url": url, "calibration": {"points": GOOD_POINTS}}],
    }))
    return path


def test_cli_prints_the_table_and_exits_1_on_any_failure(
    tmp_path: Path, gop_clip: Path, model_dir: Path, mqtt_broker: BrokerEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    with RtspServer(gop_clip) as server:
        good = write_config(tmp_path, server.url, broker_url=mqtt_broker.url, model_dir=model_dir)
        assert main(["check", "--config", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["CHECK", "TARGET", "RESULT", "DETAIL"]
    assert {line.split()[0] for line in out.splitlines()[1:-1]} == {"camera", "calibration", "model", "broker",
                                                                   "outbox", "clock"}
    assert out.rstrip().endswith("all checks passed")
    dead = write_config(tmp_path, f"rtsp://127.0.0.1:{free_port()}/cam", broker_url=mqtt_broker.url,
                        model_dir=model_dir)
    assert main(["check", "--config", str(dead)]) == 1
    out = capsys.readouterr().out
    assert "camera       cam-1" in out and "FAIL" in out and out.rstrip().endswith("1 check(s) failed")


def test_run_checks_gives_one_row_per_camera_and_per_box_check(tmp_path: Path, model_dir: Path) -> None:
    config = EdgeConfig.model_validate({
        "edge_id": "box-check", "broker": {"url": f"mqtt://127.0.0.1:{free_port()}"},
        "outbox": str(tmp_path / "o.sqlite"), "model": {"model_dir": str(model_dir)},
        "cameras": [{"id": f"cam-{i}", "url": str(tmp_path / f"{i}.mp4")} for i in range(3)],
    })
    rows = run_checks(config, CheckOptions(broker_timeout_s=3))
    assert [(r.check, r.target) for r in rows][:6] == [("camera", f"cam-{i}") for i in range(3)] + [
        ("calibration", f"cam-{i}") for i in range(3)]
    assert [r.check for r in rows][6:] == ["model", "broker", "outbox", "clock"]
