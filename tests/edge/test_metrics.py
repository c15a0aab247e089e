"""Edge metrics an operator alerts on: every per-camera series from the start, the stalled-stream
gauge, and what the box runs (build_info)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from support import free_port

from streetwatch.edge.metrics import EdgeMetrics, start_metrics_server

PER_CAMERA = ("frames_decoded_total", "frames_dropped_total", "alerts_published_total", "outbox_full_total",
              "stream_connected", "seconds_since_frame")


@dataclass
class _Source:
    camera_id: str
    frames_decoded: int = 0
    frames_dropped: int = 0
    connected: bool = True


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_every_per_camera_series_exists_at_zero_before_any_event() -> None:
    metrics = EdgeMetrics()
    metrics.register_cameras(["cam-1", "cam-2"])
    for camera in ("cam-1", "cam-2"):
        for name in PER_CAMERA:
            value = metrics.sample(f"streetwatch_{name}", {"camera": camera})
            assert value is not None and value < 1, (name, camera)  # the stall gauge: a few µs since start
    assert metrics.sample("streetwatch_frames_dropped_total", {"camera": "cam-3"}) is None  # not configured


def test_seconds_since_frame_grows_while_a_stream_is_stalled_and_resets_on_a_frame() -> None:
    clock = _Clock()  # a controllable monotonic clock (the real one: tests/edge/test_secrets.py)
    metrics = EdgeMetrics(clock=clock)
    metrics.register_cameras(["cam-1"])
    source = _Source("cam-1")

    def stalled() -> float | None:
        return metrics.sample("streetwatch_seconds_since_frame", {"camera": "cam-1"})

    clock.now += 4
    assert stalled() == 4  # no frame since start
    source.frames_decoded = 10
    metrics.observe_sources([source])
    assert stalled() == 0
    clock.now += 7.5
    metrics.observe_sources([source])  # connected, but no new frame: a hung stream
    assert stalled() == 7.5
    source.frames_decoded = 11
    metrics.observe_sources([source])
    assert stalled() == 0


def test_build_info_and_the_series_are_served_on_metrics() -> None:
    metrics = EdgeMetrics()
    metrics.set_build(version="0.1.0", model="yolox_nano", model_sha256="ab" * 32)
    metrics.register_cameras(["cam-1"])
    server = start_metrics_server(free_port(), metrics, addr="127.0.0.1")
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.close()
    assert f'streetwatch_build_info{{model="yolox_nano",model_sha256="{"ab" * 32}",version="0.1.0"}} 1.0' in text
    assert 'streetwatch_outbox_full_total{camera="cam-1"} 0.0' in text
    assert 'streetwatch_alerts_published_total{camera="cam-1"} 0.0' in text
    assert 'streetwatch_seconds_since_frame{camera="cam-1"}' in text
