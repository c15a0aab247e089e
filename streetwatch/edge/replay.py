"""Offline replay: one video file through the same analysis as live, alerts to JSONL, no broker.

Dwell is measured on stream time, so a replay runs as fast as the CPU allows. Each alert line is
flushed as it is written, so a crash loses nothing already found. The bytes of each alert's
evidence set (frames, crop, clip, clean frame) go to `OUT.media/<sha256>.jpg|mp4`.

When does the video start? `--start-time` if given; for a moving camera with a telemetry file,
else the telemetry's own clock (DJI SRT wall clock, KLV in the video) or the video's creation time
(edge/telemetry/clock.py). Every problem with the video or the telemetry is a ReplayError: one
line naming the file, where and what is wrong, which `edge replay` prints instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import av
from tqdm import tqdm

from streetwatch.edge.alerts import Alert, MediaRef
from streetwatch.edge.change_gate import Detected, detect_or_carry, gate_for
from streetwatch.edge.config import FILE_TELEMETRY, CameraConfig, EdgeConfig
from streetwatch.edge.detector import Detector
from streetwatch.edge.evidence_set import MediaItem
from streetwatch.edge.moving import TelemetryFileError, telemetry_file
from streetwatch.edge.pipeline import build_analyzers
from streetwatch.edge.sources import VideoFacts, iter_sampled_frames, open_container, video_facts
from streetwatch.edge.substream import in_camera_pixels
from streetwatch.edge.telemetry import TelemetryError, TelemetryFile
from streetwatch.edge.telemetry.clock import VideoTimes, replay_start
from streetwatch.edge.telemetry_feed import read_camera_file
from streetwatch.edge.types import Frame

log = logging.getLogger(__name__)


class ReplayError(ValueError):
    """A video or telemetry problem that stops a replay; the message is the one line to print."""


def replay_alerts(
    video: Path,
    *,
    config: EdgeConfig,
    camera: CameraConfig,
    start_time: datetime,
    detector: Detector | None = None,
    on_frame: Callable[[Frame], None] | None = None,
    on_media: Callable[[Alert, list[MediaItem]], None] | None = None,
    on_detected: Callable[[Detected], None] | None = None,
) -> Iterator[Alert]:
    """Yield the alerts the camera's rules raise on this file, in stream order (`on_media`: given
    each alert's evidence-set items before the alert is yielded). `on_detected` sees each frame's
    detections and whether the change test let it skip the detector."""
    detector = detector or Detector.from_config(config.model_for([camera]))
    analyzer = build_analyzers(config, detector.model_ref, [camera], video=video, clip_start=start_time)[camera.id]
    gate = gate_for(camera, getattr(analyzer, "homography", None))
    gates = {camera.id: gate} if gate is not None else {}
    thresholds = {camera.id: config.score_threshold_for(camera)}
    with open_container(str(video)) as container:
        frames = iter_sampled_frames(
            container,
            camera_id=camera.id,
            sample_fps=camera.sample_fps,
            keyframes_only=camera.keyframes_only,
            start_wall_time=start_time,
        )
        for frame in frames:
            picture = in_camera_pixels(frame.picture, camera.pixel_size)
            frame = frame if picture is frame.picture else dataclasses.replace(frame, picture=picture)
            if on_frame is not None:
                on_frame(frame)
            (result,), _ = detect_or_carry(detector, [frame], gates, thresholds)
            if on_detected is not None:
                on_detected(result)
            for alert in analyzer.analyze(frame, result.detections):
                media = analyzer.take_media(alert.alert_id)
                if on_media is not None:
                    on_media(alert, media)
                yield alert


def replay_file(
    video: Path,
    *,
    config: EdgeConfig,
    camera: CameraConfig,
    out: Path,
    start_time: datetime | None = None,
    progress: bool = True,
) -> int:
    """Replay `video` as `camera` and append one alert per line to `out`; return the count.

    start_time None: found from the telemetry or the video (see the module docstring).
    Raises ReplayError for any problem with the video or the telemetry.
    """
    facts = _facts(video)
    start = replay_start_time(video, camera=camera, given=start_time, facts=facts)
    out.parent.mkdir(parents=True, exist_ok=True)
    total = int(facts.duration_s * camera.sample_fps) + 1 if facts.duration_s is not None else None
    count = 0
    media_dir = media_folder(out)

    def keep_media(_alert: Alert, items: list[MediaItem]) -> None:
        for item in items:
            if item.data is not None:
                media_dir.mkdir(exist_ok=True)
                (media_dir / media_file_name(item.ref)).write_bytes(item.data)

    with out.open("ab") as sink, tqdm(total=total, unit="frame", disable=not progress) as bar:
        try:
            for alert in replay_alerts(
                video, config=config, camera=camera, start_time=start, on_frame=lambda _f: bar.update(),
                on_media=keep_media,
            ):
                sink.write(alert.to_json() + b"\n")
                sink.flush()
                count += 1
                bar.set_postfix(alerts=count)
        except (TelemetryError, TelemetryFileError) as exc:
            raise ReplayError(str(exc)) from None
        except av.error.FFmpegError as exc:
            raise ReplayError(f"{video}: the decoder stopped ({exc.strerror or exc})") from None
    log.info("camera %s: replay of %s gave %d alert(s)", camera.id, video, count)
    return count


def media_folder(out: Path) -> Path:
    """Where `edge replay --out X.jsonl` writes the evidence sets' bytes: `X.jsonl.media/`."""
    return out.parent / f"{out.name}.media"


def media_file_name(ref: MediaRef) -> str:
    """An item's file: its sha256 and the extension of its type (as central stores it)."""
    return f"{ref.sha256}.{'mp4' if ref.content_type == 'video/mp4' else 'jpg'}"


def _facts(video: Path) -> VideoFacts:
    try:
        return video_facts(video)
    except ValueError as exc:
        raise ReplayError(str(exc)) from None


def replay_start_time(video: Path, *, camera: CameraConfig, given: datetime | None, facts: VideoFacts) -> datetime:
    """The UTC time of the video's first frame for this camera's replay (ReplayError if unknowable)."""
    telemetry = _telemetry_for(video, camera=camera, clip_start=given or facts.created)
    max_gap_s = camera.telemetry.max_gap_s if camera.telemetry is not None else 0.0
    clock = replay_start(VideoTimes(video.name, facts.created, facts.duration_s), telemetry=telemetry, given=given,
                         max_gap_s=max_gap_s)
    if clock.problem is not None:
        raise ReplayError(f"cannot line up the video with its telemetry: {clock.problem}")
    if clock.warning is not None:
        log.warning("camera %s: nothing will be geo-matched: %s", camera.id, clock.warning)
    if clock.start is None:
        return datetime.now(UTC)
    log.info("camera %s: replay of %s starts at %s (from %s)", camera.id, video.name, clock.start.isoformat(),
             clock.how)
    return clock.start


def _telemetry_for(video: Path, *, camera: CameraConfig, clip_start: datetime | None) -> TelemetryFile | None:
    """The camera's telemetry file, read once to line the video up; None for live or no telemetry."""
    if camera.telemetry is None or camera.telemetry.source not in FILE_TELEMETRY:
        return None
    try:
        return read_camera_file(camera, telemetry_file(camera, camera.telemetry, video=video), clip_start=clip_start)
    except (TelemetryError, TelemetryFileError) as exc:
        raise ReplayError(str(exc)) from None
