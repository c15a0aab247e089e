"""Decoding at the edge: real H.264 through PyAV, from files and from a real RTSP server on loopback.

There is no street-level video among the assets, so the clips are built by tests/clips.py from the
real street photos: a still scene with per-frame sensor noise and a car crop pasted in and out,
encoded with libx264 at a known frame rate and key-frame cadence.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import threading
import time
import wave
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest
from clips import Paste, load_image, long_clip, solid_frames, still_scene, write_h264_clip
from rtsp_server import RtspServer

from streetwatch.edge.config import CameraConfig
from streetwatch.edge.sources import (
    CameraSource,
    DecodeStats,
    SourceOptions,
    StepSampler,
    is_live,
    iter_sampled_frames,
    open_container,
)
from streetwatch.edge.types import Frame

FPS = 25
SECONDS = 20
GOP = 50  # a key frame every 2 s
SIZE = (640, 360)


@pytest.fixture(scope="module")
def street_clip(street_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s at 25 fps of a kerb photo, a parked car crop shown from 5 s to 12 s, GOP 50."""
    image = load_image(street_dir / "kerb_parked_cars_street.jpg", size=SIZE)
    car = load_image(street_dir / "kerb_pickup_truck_scooter.jpg")[78:172, 466:692]
    frames = still_scene(image, seconds=SECONDS, fps=FPS, pastes=[Paste(car, (300, 240), 5.0, 12.0)],
                         brightness_drift=10.0)
    return write_h264_clip(tmp_path_factory.mktemp("clips") / "street.mp4", frames, fps=FPS, gop=GOP)


@pytest.fixture(scope="module")
def short_clip(street_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s at 25 fps of the market photo."""
    image = load_image(street_dir / "market_hanoi_goods_on_ground.jpg", size=SIZE)
    frames = still_scene(image, seconds=4, fps=FPS, seed=1)
    return write_h264_clip(tmp_path_factory.mktemp("clips") / "short.mp4", frames, fps=FPS, gop=FPS)


@pytest.fixture()
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[BaseException | None]:
    """Exceptions that escaped any thread during the test."""
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    return errors


def camera(url: str | Path, *, sample_fps: float = 1.0, keyframes_only: bool = False, cid: str = "cam-1"
           ) -> CameraConfig:
    return CameraConfig(id=cid, url=str(url), sample_fps=sample_fps, keyframes_only=keyframes_only)


def wait_for(condition: Callable[[], bool], *, timeout_s: float = 15.0) -> None:
    """Poll until `condition()` holds; fail the test if it never does."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(0.02)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample_file(path: Path, **kwargs: object) -> tuple[list[Frame], DecodeStats]:
    stats = DecodeStats()
    with open_container(path) as container:
        frames = list(iter_sampled_frames(container, camera_id="cam-1", stats=stats, **kwargs))  # type: ignore[arg-type]
    return frames, stats


# --- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample_fps", "times", "expected"),
    [
        (1.0, [0, 0.5, 0.99, 1.0, 1.5, 2.1, 2.5, 3.05], [0, 1.0, 2.1, 3.05]),
        (1.0, [10.0, 10.04, 11.0, 11.04], [10.0, 11.0]),  # steps count from the first frame
        (1.0, [0, 0.2, 5.3, 5.5, 6.0, 6.1], [0, 5.3, 6.0]),  # a gap: no burst of catch-up frames
        (2.0, [0, 0.25, 0.5, 0.75, 1.0], [0, 0.5, 1.0]),
        (25.0, [0, 0.04, 0.08, 0.12], [0, 0.04, 0.08, 0.12]),  # every frame of a 25 fps stream
        (0.1, [0, 3, 9.99, 10.0, 19.0, 20.5], [0, 10.0, 20.5]),
    ],
)
def test_step_sampler_takes_the_first_frame_at_or_after_each_step(
    sample_fps: float, times: list[float], expected: list[float]
) -> None:
    sampler = StepSampler(sample_fps)
    assert [t for t in times if sampler.due(t)] == expected


@pytest.mark.parametrize("sample_fps", [0.0, -1.0])
def test_step_sampler_refuses_a_rate_that_is_not_positive(sample_fps: float) -> None:
    with pytest.raises(ValueError, match="sample_fps"):
        StepSampler(sample_fps)


@pytest.mark.parametrize(
    ("url", "live"),
    [
        ("rtsp://10.0.0.5:554/stream1", True),
        ("RTSP://user:pw@cam/live", True),
        ("rtsps://cam.example/live", True),
        ("/var/video/cam1.mp4", False),
        ("clips/rtsp_recording.mp4", False),
    ],
)
def test_is_live_only_for_rtsp_urls(url: str, live: bool) -> None:
    assert is_live(url) is live


@pytest.mark.parametrize(
    ("field", "value"),
    [("queue_size", 0), ("timeout_s", 0.0), ("backoff_initial_s", 0.0), ("backoff_max_s", 0.1)],
)
def test_source_options_name_the_bad_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SourceOptions(**{field: value})  # type: ignore[arg-type]


# --- decoding files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample_fps", "expected"), [(1.0, 20), (2.5, 50), (0.25, 5), (25.0, 500), (60.0, 500)]
)
def test_sampling_on_stream_time(street_clip: Path, sample_fps: float, expected: int) -> None:
    start = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    frames, stats = sample_file(street_clip, sample_fps=sample_fps, start_wall_time=start)
    assert abs(len(frames) - expected) <= 1
    assert stats.frames_decoded == FPS * SECONDS
    assert stats.frames_sampled == len(frames)
    step = max(1.0 / sample_fps, 1.0 / FPS)
    gaps = np.diff([f.pts_s for f in frames])
    assert np.allclose(gaps, step, atol=1.0 / FPS)
    assert [f.index for f in frames] == list(range(len(frames)))
    offsets = [timedelta(seconds=f.pts_s - frames[0].pts_s) for f in frames]
    assert [f.captured_at for f in frames] == [start + offset for offset in offsets]
    assert all(f.image.shape == (SIZE[1], SIZE[0], 3) and f.image.dtype == np.uint8 for f in frames)


def test_one_fps_frames_show_what_the_scene_showed_at_that_time(street_clip: Path, street_dir: Path) -> None:
    """The car crop is in the clip from 5 s to 12 s: sampled frames at those times show it."""
    frames, _ = sample_file(street_clip, sample_fps=1.0, start_wall_time=datetime.now(UTC))
    region = (slice(240, 334), slice(300, 526))
    empty = frames[2].image[region].astype(np.float32)
    changed = [float(np.abs(f.image[region].astype(np.float32) - empty).mean()) > 20 for f in frames]
    assert changed == [5 <= round(f.pts_s) < 12 for f in frames]


def test_keyframes_only_decodes_one_frame_per_gop(street_clip: Path) -> None:
    frames, stats = sample_file(street_clip, sample_fps=1.0, keyframes_only=True,
                                start_wall_time=datetime.now(UTC))
    gops = FPS * SECONDS // GOP
    assert len(frames) == gops
    assert all(f.keyframe for f in frames)
    assert [round(f.pts_s, 3) for f in frames] == [i * GOP / FPS for i in range(gops)]
    assert stats.frames_decoded == gops  # the decoder skipped the other 490 frames


@pytest.mark.parametrize(
    ("bgr", "channel"),
    [((0, 0, 255), 2), ((0, 255, 0), 1), ((255, 0, 0), 0)],
    ids=["red", "green", "blue"],
)
def test_frames_come_out_in_bgr_order(tmp_path: Path, bgr: tuple[int, int, int], channel: int) -> None:
    clip = write_h264_clip(tmp_path / "solid.mp4", solid_frames(bgr, count=10, size=(64, 64)), fps=10)
    frames, _ = sample_file(clip, sample_fps=10.0, start_wall_time=datetime.now(UTC))
    assert len(frames) == 10
    means = frames[5].image.reshape(-1, 3).mean(axis=0)
    assert means[channel] > 200
    assert all(means[c] < 60 for c in range(3) if c != channel)


def test_video_stream_of_a_clip_with_audio_decodes(assets_dir: Path) -> None:
    """car-detection.mp4 holds H.264 video and AAC audio; the decoder takes the video stream."""
    path = assets_dir / "car-detection.mp4"
    with av.open(str(path)) as probe:
        assert {s.type for s in probe.streams} == {"video", "audio"}
        video = probe.streams.video[0]
        size, count = (video.codec_context.height, video.codec_context.width), video.frames
        assert video.duration is not None and video.time_base is not None
        duration_s = float(video.duration * video.time_base)
    frames, stats = sample_file(path, sample_fps=1.0, start_wall_time=datetime.now(UTC))
    assert stats.frames_decoded == count
    assert abs(len(frames) - (math.floor(duration_s) + 1)) <= 1
    assert frames[0].image.shape == (*size, 3)


def test_corrupt_packets_are_skipped_and_decoding_goes_on(street_clip: Path, tmp_path: Path) -> None:
    data = bytearray(street_clip.read_bytes())
    rng = np.random.default_rng(1)
    for start in np.linspace(len(data) * 0.2, len(data) * 0.6, 5).astype(int):
        data[start : start + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(bytes(data))
    frames, stats = sample_file(corrupt, sample_fps=1.0, start_wall_time=datetime.now(UTC))
    assert stats.packets_corrupt >= 1
    assert stats.frames_decoded >= 0.8 * FPS * SECONDS  # not cut off at the first bad packet
    assert frames[-1].pts_s >= SECONDS - 1.5


def test_long_clip_repeats_the_video_without_re_encoding(short_clip: Path, tmp_path: Path) -> None:
    long = long_clip(short_clip, tmp_path / "long.mp4", 3)
    with av.open(str(short_clip)) as one, av.open(str(long)) as three:
        assert [s.type for s in three.streams] == ["video"]
        one_sizes = [p.size for p in one.demux(video=0) if p.size]
        three_sizes = [p.size for p in three.demux(video=0) if p.size]
    assert three_sizes == one_sizes * 3  # the same packets, copied
    frames, stats = sample_file(long, sample_fps=1.0, start_wall_time=datetime.now(UTC))
    assert stats.frames_decoded == 3 * 4 * FPS
    assert [round(f.pts_s, 2) for f in frames] == [float(i) for i in range(12)]


# --- CameraSource: replay ---------------------------------------------------------------------


def test_replay_is_lossless_and_reports_when_done(assets_dir: Path, thread_errors: list) -> None:
    path = assets_dir / "car-detection.mp4"
    source = CameraSource(camera(path, sample_fps=5.0), options=SourceOptions(queue_size=2))
    with source:
        frames = list(source)  # the decoder waits for this consumer; iteration ends when done
    assert source.finished
    assert source.get(timeout=0.1) is None
    assert len(frames) == source.frames_sampled > 100
    assert source.frames_dropped == 0
    assert source.reconnects == 0
    assert [f.index for f in frames] == list(range(len(frames)))
    assert thread_errors == []


def test_stop_ends_a_replay_blocked_on_a_full_queue(street_clip: Path) -> None:
    source = CameraSource(camera(street_clip, sample_fps=FPS), options=SourceOptions(queue_size=1)).start()
    wait_for(lambda: source.frames_sampled >= 2)  # one frame queued, the next one waiting
    source.stop(timeout_s=5.0)
    assert not source._thread.is_alive()
    assert source.frames_sampled < FPS * SECONDS and source.frames_dropped == 0


def test_looped_replay_keeps_stream_time_increasing(short_clip: Path) -> None:
    start = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    options = SourceOptions(loop=True, start_wall_time=start)
    with CameraSource(camera(short_clip, sample_fps=1.0), options=options) as source:
        frames = [source.get(timeout=10) for _ in range(10)]
    assert all(f is not None for f in frames)
    pts = [f.pts_s for f in frames if f is not None]
    assert np.allclose(np.diff(pts), 1.0, atol=1.0 / FPS)  # even across the loop seams at 4 s, 8 s
    assert [f.index for f in frames if f is not None] == list(range(10))
    assert [f.captured_at for f in frames if f is not None] == [start + timedelta(seconds=p) for p in pts]


@pytest.fixture(params=["garbage", "truncated", "missing", "audio_only"])
def broken_file(request: pytest.FixtureRequest, tmp_path: Path, short_clip: Path) -> Path:
    path = tmp_path / f"{request.param}.mp4"
    if request.param == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    elif request.param == "truncated":
        data = short_clip.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # the MP4 index (moov) is at the end: cut off
    elif request.param == "audio_only":
        path = tmp_path / "audio_only.wav"
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(bytes(16000))
    return path


def test_broken_file_is_logged_with_the_camera_and_spares_other_cameras(
    broken_file: Path, short_clip: Path, caplog: pytest.LogCaptureFixture, thread_errors: list
) -> None:
    caplog.set_level(logging.WARNING, logger="streetwatch.edge.sources")
    broken = CameraSource(camera(broken_file, cid="cam-broken"))
    good = CameraSource(camera(short_clip, sample_fps=5.0, cid="cam-good"))
    with broken, good:
        good_frames = list(good)
        wait_for(lambda: broken.finished)
    assert len(good_frames) == 20
    assert broken.frames_sampled == 0 and broken.last_error
    assert not broken.connected
    assert any("cam-broken" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert not any("cam-good" in r.getMessage() for r in caplog.records)
    assert thread_errors == []


# --- CameraSource: live -----------------------------------------------------------------------


def test_live_mode_drops_the_oldest_frames_and_keeps_the_newest(street_clip: Path) -> None:
    """A live source (forced on a file, so the stream is the same every run) with no consumer:
    the queue keeps the newest frames, older ones are dropped and counted."""
    options = SourceOptions(queue_size=3, live=True, backoff_initial_s=30.0, backoff_max_s=30.0)
    source = CameraSource(camera(street_clip, sample_fps=FPS), options=options).start()
    try:
        wait_for(lambda: source.last_error == "stream ended")  # now waiting 30 s to reconnect
        frames = [source.get(timeout=0) for _ in range(4)]
    finally:
        source.stop()
    total = FPS * SECONDS
    assert source.frames_sampled == total
    assert source.frames_dropped == total - 3
    assert [f.index for f in frames if f is not None] == [total - 3, total - 2, total - 1]
    assert frames[3] is None


def test_unreachable_stream_retries_with_growing_back_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="streetwatch.edge.sources")
    url = f"rtsp://127.0.0.1:{unused_port()}/cam"  # nothing listens there
    options = SourceOptions(backoff_initial_s=0.05, backoff_max_s=0.2, timeout_s=2.0)
    source = CameraSource(camera(url, cid="cam-dead"), options=options).start()
    try:
        wait_for(lambda: source.reconnects >= 4)
        assert not source.connected
        assert source.last_error is not None and "ConnectionRefused" in source.last_error
    finally:
        source.stop()
    pattern = re.compile(r"camera cam-dead: reconnecting in ([0-9.]+) s")
    waits = [float(m[1]) for r in caplog.records if (m := pattern.match(r.getMessage()))]
    assert waits[:5] == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert source.frames_sampled == 0


def test_stop_interrupts_a_back_off_wait() -> None:
    url = f"rtsp://127.0.0.1:{unused_port()}/cam"
    options = SourceOptions(backoff_initial_s=300.0, backoff_max_s=300.0)
    source = CameraSource(camera(url), options=options).start()
    wait_for(lambda: source.last_error is not None)  # refused once, now waiting 300 s
    source.stop(timeout_s=5.0)
    assert not source._thread.is_alive()
    assert source.finished


@pytest.fixture()
def rtsp_server(street_clip: Path) -> Iterator[RtspServer]:
    with RtspServer(street_clip, "/kerb") as server:
        yield server


def test_rtsp_camera_down_at_start_then_restarted_is_followed(
    street_clip: Path, caplog: pytest.LogCaptureFixture, thread_errors: list
) -> None:
    """Camera down at start (refused, back-off grows), comes up (frames, back-off reset), is killed
    and restarted on the same port (the source reconnects and frames flow again)."""
    caplog.set_level(logging.WARNING, logger="streetwatch.edge.sources")
    server = RtspServer(street_clip, "/kerb", port=unused_port())
    options = SourceOptions(backoff_initial_s=0.1, backoff_max_s=0.4, timeout_s=3.0)
    began = datetime.now(UTC)
    source = CameraSource(camera(server.url, sample_fps=10.0, cid="cam-rtsp"), options=options)
    try:
        with source:  # stopped before the server, so the server's last stop is not a stream end
            wait_for(lambda: source.reconnects >= 3)
            server.start()
            before = [take(source) for _ in range(3)]
            assert source.connected
            reconnects_when_up = source.reconnects
            server.restart(down_s=0.5)  # killed: the stream ends, connects are refused, then back
            sampled_at_restart = source.frames_sampled
            after = take(source)
            while after.index < sampled_at_restart:  # skip frames queued before the restart
                after = take(source)
            assert source.reconnects > reconnects_when_up
            assert source.connected
    finally:
        server.stop()
    pattern = re.compile(r"camera cam-rtsp: reconnecting in ([0-9.]+) s \((.*)\)")
    waits = [(float(m[1]), m[2]) for r in caplog.records if (m := pattern.match(r.getMessage()))]
    assert [w for w, _ in waits[:3]] == [0.1, 0.2, 0.4]  # refused while down
    ended = [i for i, (_, why) in enumerate(waits) if why == "stream ended"]
    assert len(ended) == 1 and waits[ended[0]][0] == 0.1  # reset after the healthy stream
    assert after.image.shape == before[0].image.shape == (SIZE[1], SIZE[0], 3)
    assert after.pts_s > before[-1].pts_s  # stream time keeps going across the reconnect
    assert began <= before[0].captured_at <= after.captured_at <= datetime.now(UTC)  # live: wall clock
    assert thread_errors == []


def test_hung_rtsp_server_is_detected_by_the_socket_timeout(rtsp_server: RtspServer) -> None:
    """A camera that keeps the TCP connection open but sends nothing: the read times out, the
    source reconnects, and frames flow again once the camera answers."""
    options = SourceOptions(backoff_initial_s=0.1, backoff_max_s=0.4, timeout_s=1.0)
    with CameraSource(camera(rtsp_server.url, sample_fps=5.0, cid="cam-hung"), options=options) as source:
        take(source)
        rtsp_server.freeze()
        try:
            wait_for(lambda: not source.connected and source.reconnects >= 1)
        finally:
            rtsp_server.thaw()
        sampled_at_thaw = source.frames_sampled
        after = take(source)
        while after.index < sampled_at_thaw:
            after = take(source)
        assert source.connected


def take(source: CameraSource) -> Frame:
    frame = source.get(timeout=15)
    if frame is None:
        pytest.fail(f"camera {source.camera_id}: no frame within 15 s ({source.last_error})")
    return frame
