"""Offline replay: one video file through the same analysis as live, alerts to JSONL, no broker.

Dwell is measured on stream time, so a replay runs as fast as the CPU allows. Each alert line is
flushed as it is written, so a crash loses nothing already found.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import av
from tqdm import tqdm

from streetwatch.edge.alerts import Alert
from streetwatch.edge.config import CameraConfig, EdgeConfig
from streetwatch.edge.detector import Detector
from streetwatch.edge.pipeline import build_analyzers
from streetwatch.edge.sources import iter_sampled_frames, open_container
from streetwatch.edge.types import Frame

log = logging.getLogger(__name__)


def replay_alerts(
    video: Path,
    *,
    config: EdgeConfig,
    camera: CameraConfig,
    start_time: datetime,
    detector: Detector | None = None,
    on_frame: Callable[[Frame], None] | None = None,
) -> Iterator[Alert]:
    """Yield the alerts the camera's rules raise on this file, in stream order."""
    detector = detector or Detector.from_config(config.model)
    analyzer = build_analyzers(config, detector.model_ref, [camera], video=video, clip_start=start_time)[camera.id]
    with open_container(str(video)) as container:
        frames = iter_sampled_frames(
            container,
            camera_id=camera.id,
            sample_fps=camera.sample_fps,
            keyframes_only=camera.keyframes_only,
            start_wall_time=start_time,
        )
        for frame in frames:
            if on_frame is not None:
                on_frame(frame)
            yield from analyzer.analyze(frame, detector.detect(frame.picture))


def replay_file(
    video: Path,
    *,
    config: EdgeConfig,
    camera: CameraConfig,
    out: Path,
    start_time: datetime,
    progress: bool = True,
) -> int:
    """Replay `video` as `camera` and append one alert per line to `out`; return the count."""
    out.parent.mkdir(parents=True, exist_ok=True)
    total = estimate_sampled_frames(video, camera.sample_fps)
    count = 0
    with out.open("ab") as sink, tqdm(total=total, unit="frame", disable=not progress) as bar:
        for alert in replay_alerts(
            video, config=config, camera=camera, start_time=start_time, on_frame=lambda _f: bar.update()
        ):
            sink.write(alert.to_json() + b"\n")
            sink.flush()
            count += 1
            bar.set_postfix(alerts=count)
    log.info("camera %s: replay of %s gave %d alert(s)", camera.id, video, count)
    return count


def estimate_sampled_frames(video: Path, sample_fps: float) -> int | None:
    """How many frames a replay will analyse, for the progress bar (None if the length is unknown)."""
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1_000_000
            else:
                return None
    except (av.error.FFmpegError, IndexError, OSError):
        return None
    return int(seconds * sample_fps) + 1
