"""A camera with two RTSP streams, served by the real GStreamer test server (tests/rtsp_server.py).

The main stream (1920x1080) and the sub-stream (640x360) of the same street come from two server
processes, one mount each, so the main one can be killed and restored while the sub-stream goes
on, as when a camera's main encoder or the link to it fails. The real `EdgeWorker` detects on the
sub-stream; the alert's evidence is the main stream's picture with the box on the parked car;
with the main stream gone the evidence falls back to the sub-stream (counted) and detection goes
on; once it is back, evidence is full resolution again.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from clips import still_scene, write_h264_clip
from rtsp_server import RtspServer
from support import free_port

from streetwatch.edge.config import EdgeConfig
from streetwatch.edge.worker import EdgeWorker

MAIN, SUB = (1920, 1080), (640, 360)
PHOTO = (958, 568)  # kerb_parked_cars_street.jpg
GREEN_CAR = (586, 322, 713, 367)  # the YOLOX box of the car parked at the right kerb, photo pixels
ZONE = [(620, 340), (740, 340), (740, 385), (620, 385)]


def to_main(points: list[tuple[float, float]]) -> list[list[float]]:
    return [[x * MAIN[0] / PHOTO[0], y * MAIN[1] / PHOTO[1]] for x, y in points]


@pytest.fixture(scope="module")
def clips(street_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """90 s of the kerb street at 5 fps, GOP 2 s, at main and at sub-stream resolution."""
    folder = tmp_path_factory.mktemp("substreams")
    image = cv2.imread(str(street_dir / "kerb_parked_cars_street.jpg"))
    main = write_h264_clip(folder / "main.mp4", still_scene(image, seconds=90, fps=5, size=MAIN, seed=3),
                           fps=5, gop=10)
    sub = write_h264_clip(folder / "sub.mp4", still_scene(image, seconds=90, fps=5, size=SUB, seed=3),
                          fps=5, gop=10)
    return main, sub


def config(tmp_path: Path, model_dir: Path, main_url: str, sub_url: str) -> EdgeConfig:
    return EdgeConfig.model_validate({
        "edge_id": "box-sub", "outbox": str(tmp_path / "outbox.sqlite"),
        "broker": {"url": f"mqtt://127.0.0.1:{free_port()}"},  # nobody listens: alerts stay in the outbox
        "model": {"name": "yolox_nano", "model_dir": str(model_dir), "detection_loops": 1},
        "rules": {"reminder_interval_s": 10, "end_after_s": 60},
        "cameras": [{"id": "cam-kerb", "url": main_url, "detect_url": sub_url, "pixel_size": list(MAIN),
                     "sample_fps": 1, "max_skip_s": 10,  # skipping is opt-in
                     "zones": [{"id": "kerb", "violations": ["illegal_parking"], "dwell_s": 3,
                                "polygon_px": to_main(ZONE)}]}],
    })


def alerts(worker: EdgeWorker) -> list[dict[str, Any]]:
    return [json.loads(item.payload) for item in worker.outbox.pending(1000)]


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 40.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def evidence_image(alert: dict[str, Any]) -> np.ndarray:
    data = np.frombuffer(base64.b64decode(alert["evidence"]["jpeg_b64"]), np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def car_in(alert: dict[str, Any]) -> float:
    """IoU of the alert's box with the parked car, both in the evidence image's pixels."""
    sx, sy = alert["evidence"]["width"] / PHOTO[0], alert["evidence"]["height"] / PHOTO[1]  # the photo, stretched
    x1, y1, x2, y2 = GREEN_CAR
    expected = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
    return max(iou(tuple(obj["bbox"]), expected) for obj in alert["objects"])


def test_detects_on_the_sub_stream_evidence_from_the_main_one_main_killed_and_restored(
    clips: tuple[Path, Path], model_dir: Path, tmp_path: Path
) -> None:
    main_clip, sub_clip = clips
    with RtspServer(main_clip, "/main") as main_server, RtspServer(sub_clip, "/sub") as sub_server:
        worker = EdgeWorker(config(tmp_path, model_dir, main_server.url, sub_server.url))
        runner = threading.Thread(target=worker.run, daemon=True)
        worker.start()
        runner.start()
        try:
            main = worker.main_streams["cam-kerb"]
            wait_for("the first alert", lambda: len(alerts(worker)) >= 1)
            first = alerts(worker)[0]
            assert (first["evidence"]["width"], first["evidence"]["height"]) == (1280, 720)  # from 1920x1080
            assert car_in(first) > 0.6, first["objects"]
            # `first seen` (the dwell's start, seconds before) is the main stream's kept key frame too
            seen = {ref["kind"]: ref for ref in first["media"]}
            assert (seen["first"]["width"], seen["first"]["height"]) == (1280, 720), seen
            assert main.keyframes_held[0] >= 1
            assert main.decodes >= 1 and main.packets_demuxed > 0
            assert worker.metrics.sample("streetwatch_evidence_full_resolution_total", {"camera": "cam-kerb"}) == 1

            main_server.stop()  # the main stream dies; the sub-stream goes on
            wait_for("the main stream to be seen down", lambda: not main.connected, timeout_s=15)
            sampled = worker.sources[0].frames_sampled
            before = len(alerts(worker))
            wait_for("an alert while the main stream is down", lambda: len(alerts(worker)) > before)
            degraded = alerts(worker)[-1]
            # The sub-stream's own picture, the box mapped to it.
            assert (degraded["evidence"]["width"], degraded["evidence"]["height"]) == SUB
            assert car_in(degraded) > 0.6, degraded["objects"]
            assert worker.sources[0].frames_sampled > sampled  # detection never stopped
            assert worker.metrics.sample("streetwatch_evidence_fallback_total",
                                         {"camera": "cam-kerb", "reason": "main stream down"}) == 1
            assert worker.metrics.sample("streetwatch_main_stream_connected", {"camera": "cam-kerb"}) == 0

            main_server.start()  # back on the same port
            wait_for("the main stream to reconnect", lambda: main.connected and main.reconnects >= 1, timeout_s=40)
            wait_for("a key frame", lambda: main.packets_demuxed > 20, timeout_s=10)
            before = len(alerts(worker))
            wait_for("an alert after the main stream came back", lambda: len(alerts(worker)) > before)
            restored = alerts(worker)[-1]
            assert restored["evidence"]["width"] == 1280
            assert car_in(restored) > 0.6, restored["objects"]
            assert worker.sources[0].reconnects == 0  # the sub-stream never noticed
            skipped = worker.metrics.sample("streetwatch_frames_skipped_total", {"camera": "cam-kerb"})
            assert skipped is not None and skipped > 0  # a still street: frames skip the detector, counted
            latency = worker.metrics.sample("streetwatch_evidence_seconds_sum")
            count = worker.metrics.sample("streetwatch_evidence_seconds_count")
            assert count is not None and latency is not None and count >= 3
            print(f"evidence alert -> JPEG: mean {latency / count * 1000:.0f} ms over {count:.0f} alerts")
        finally:
            worker.request_stop()
            runner.join(timeout=15)
            worker.stop()
