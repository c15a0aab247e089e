"""Video sources: decode files and RTSP streams with PyAV, sample frames, feed a bounded queue.

- `open_container` opens an rtsp:// URL with low-latency probing over TCP and a socket timeout, or a
  file as it is.
- `iter_sampled_frames` decodes the first video stream and yields `Frame`s sampled on stream time;
  only sampled frames are converted to BGR, and key-frames-only mode makes the decoder skip
  non-key frames entirely.
- `CameraSource` runs one daemon thread per camera. Live streams never make the consumer lag (a
  full queue drops its oldest frame) and reconnect with exponential back-off; files replay
  losslessly (a full queue blocks) and end the source unless looped.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

import av
import av.container
import av.error

from streetwatch.edge.config import CameraConfig
from streetwatch.edge.picture import AvPicture, Picture
from streetwatch.edge.substream import ASPECT_TOLERANCE, ScenePicture, aspect_mismatch, in_camera_pixels
from streetwatch.edge.types import Frame
from streetwatch.redaction import redact

log = logging.getLogger(__name__)

LIVE_SCHEMES = ("rtsp://", "rtsps://")
# Probe little so a stream opens in ~0.15 s; TCP so no UDP packet loss on busy links.
# `timeout` is the RTSP socket I/O timeout in microseconds (this FFmpeg ignores `stimeout`).
RTSP_OPTIONS: dict[str, str] = {"rtsp_transport": "tcp", "analyzeduration": "100000", "probesize": "32768"}
_FALLBACK_FPS = 25.0
_PTS_EPSILON_S = 1e-6


def is_live(url: str | Path) -> bool:
    """True for network streams (rtsp://, rtsps://), False for files."""
    return str(url).lower().startswith(LIVE_SCHEMES)


def open_container(url: str | Path, *, timeout_s: float = 5.0) -> av.container.InputContainer:
    """Open a video for reading. rtsp:// gets TCP transport, short probing and a socket timeout of
    `timeout_s` (an unanswered connect or a stalled stream raises instead of hanging)."""
    if not is_live(url):
        return av.open(str(url), mode="r")
    options = {**RTSP_OPTIONS, "timeout": str(int(timeout_s * 1_000_000))}
    return av.open(str(url), mode="r", options=options, timeout=timeout_s)


@dataclass(frozen=True)
class VideoFacts:
    """What a video file says about itself before decoding: its creation time (UTC, None if not
    written), its length and its picture size."""

    created: datetime | None
    duration_s: float | None
    width: int
    height: int


CREATION_KEYS = ("creation_time", "com.apple.quicktime.creationdate", "date")
EARLIEST_CREATION = datetime(1990, 1, 1, tzinfo=UTC)  # MP4 zero dates (1904, 1970) mean "not set"


def creation_time(metadata: dict[str, str]) -> datetime | None:
    """The container's creation time as UTC: MP4/MOV `creation_time` (UTC by the standard), the
    QuickTime creation date (with its offset), or a `date` tag; None if absent, unparsable or zero."""
    for key in CREATION_KEYS:
        text = metadata.get(key, "").strip()
        if not text:
            continue
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            continue
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if value >= EARLIEST_CREATION:
            return value
    return None


def video_facts(path: str | Path) -> VideoFacts:
    """Open a video file just to read its metadata; ValueError naming the file if it is not a video."""
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream in the file")
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                duration: float | None = float(stream.duration * stream.time_base)
            else:
                duration = container.duration / 1_000_000 if container.duration is not None else None
            created = creation_time(dict(container.metadata)) or creation_time(dict(stream.metadata))
            return VideoFacts(created, duration, stream.codec_context.width, stream.codec_context.height)
    except av.error.FFmpegError as exc:
        raise ValueError(f"{path}: not a readable video ({exc.strerror or exc})") from None


@dataclass
class DecodeStats:
    """Counters a decode loop updates in place (read from other threads; ints only)."""

    frames_decoded: int = 0
    frames_sampled: int = 0
    last_pts_s: float | None = None  # stream time of the last decoded frame (sampled or not)
    packets_corrupt: int = 0  # packets the decoder refused and that were skipped


class StepSampler:
    """Picks the first frame at or after each 1/sample_fps step of stream time, from the first frame.

    Pure and stateful only in its own position: `due(t)` answers and advances. After a gap longer
    than a step, the next frame is taken and the steps continue from its slot (no burst).
    """

    def __init__(self, sample_fps: float) -> None:
        if sample_fps <= 0:
            raise ValueError(f"sample_fps: expected > 0, got {sample_fps}")
        self.period_s = 1.0 / sample_fps
        self._origin_s: float | None = None
        self._next_step = 0

    def due(self, pts_s: float) -> bool:
        if self._origin_s is None:
            self._origin_s = pts_s
        step = (pts_s - self._origin_s) / self.period_s
        if step + _PTS_EPSILON_S < self._next_step:
            return False
        self._next_step = int(step + _PTS_EPSILON_S) + 1
        return True


def iter_sampled_frames(
    container: av.container.InputContainer,
    *,
    camera_id: str,
    sample_fps: float,
    keyframes_only: bool = False,
    start_wall_time: datetime | None = None,
    stats: DecodeStats | None = None,
) -> Iterator[Frame]:
    """Decode the first video stream of `container` and yield frames sampled on stream time.

    pts_s = pts * time_base (a frame without pts: the previous pts_s + 1/fps, or its number / fps).
    captured_at = start_wall_time + (pts_s - first pts_s) for a replay; with start_wall_time=None
    (live streams) the UTC wall clock when the frame was decoded. Frame.index counts sampled frames
    from 0. Frames carry the decoded picture (AvPicture): nothing is converted to BGR until a
    stage asks for it, at the size it needs. A packet the decoder refuses is skipped and
    counted (stats.packets_corrupt). Ends when the stream ends (for RTSP also when the server goes
    away: PyAV then just stops iterating). Raises ValueError if there is no video stream.
    """
    stream = first_video_stream(container, camera_id=camera_id)
    if keyframes_only:
        stream.codec_context.skip_frame = "NONKEY"  # the decoder drops non-key frames unseen
    fps = float(stream.average_rate or stream.guessed_rate or _FALLBACK_FPS)
    stats = stats if stats is not None else DecodeStats()
    sampler = StepSampler(sample_fps)
    first_pts_s: float | None = None
    last_pts_s: float | None = None
    number = 0
    for av_frame in _decode_skipping_corrupt(container, stream, camera_id=camera_id, stats=stats):
        stats.frames_decoded += 1
        pts_s = _frame_time(av_frame, last_pts_s, number=number, fps=fps)
        number += 1
        last_pts_s = stats.last_pts_s = pts_s
        first_pts_s = pts_s if first_pts_s is None else first_pts_s
        if not sampler.due(pts_s):
            continue
        if start_wall_time is None:
            captured_at = datetime.now(UTC)
        else:
            captured_at = start_wall_time + timedelta(seconds=pts_s - first_pts_s)
        index, stats.frames_sampled = stats.frames_sampled, stats.frames_sampled + 1
        yield Frame(camera_id, AvPicture(av_frame), pts_s, captured_at, index, keyframe=bool(av_frame.key_frame))


def first_video_stream(container: av.container.InputContainer, *, camera_id: str) -> av.VideoStream:
    """The stream that is decoded; ValueError naming the camera and input if there is none."""
    if not container.streams.video:
        raise ValueError(f"camera {camera_id}: {container.name} has no video stream")
    return container.streams.video[0]


def _decode_skipping_corrupt(
    container: av.container.InputContainer, stream: av.VideoStream, *, camera_id: str, stats: DecodeStats
) -> Iterator[av.VideoFrame]:
    """Decode packet by packet: `container.decode()` would end the whole stream at the first
    corrupt packet (InvalidDataError), where the decoder recovers at the next key frame."""
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as exc:
            stats.packets_corrupt += 1
            if stats.packets_corrupt == 1 or stats.packets_corrupt % 100 == 0:
                log.warning("camera %s: skipped %d corrupt packet(s) so far (%s)",
                            camera_id, stats.packets_corrupt, exc)
            continue
        yield from frames


def _frame_time(av_frame: av.VideoFrame, last_pts_s: float | None, *, number: int, fps: float) -> float:
    if av_frame.pts is not None and av_frame.time_base is not None:
        return float(av_frame.pts * av_frame.time_base)
    # RTSP: the first frame after connecting often has no pts.
    return last_pts_s + 1.0 / fps if last_pts_s is not None else number / fps


@dataclass(frozen=True)
class SourceOptions:
    """How a CameraSource reads. Back-off: initial, doubled per failure up to max, reset after a
    stream that delivered frames."""

    queue_size: int = 4
    timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    loop: bool = False
    live: bool | None = None  # None: from the URL (rtsp:// is live)
    start_wall_time: datetime | None = None  # replay: what the file's first frame stands for; None: now
    # Renders the detector's view of a picture (cached on it): called in the decode thread, which
    # runs beside the detection loop, so that loop finds the small BGR picture it needs ready.
    render_view: Callable[[Picture], object] | None = None

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ValueError(f"queue_size: expected >= 1, got {self.queue_size}")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError(
                f"backoff_initial_s/backoff_max_s: expected 0 < initial <= max, got "
                f"{self.backoff_initial_s}/{self.backoff_max_s}"
            )
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s: expected > 0, got {self.timeout_s}")


class _Timeline:
    """Keeps pts_s and Frame.index increasing across reconnects and replay loops.

    A live stream restarts its clock on reconnect; its next session continues from the last
    decoded frame plus the wall time that passed (the outage counts as time). A looped file
    continues one frame period after the previous loop's last frame.
    """

    def __init__(self, *, live: bool, start_wall_time: datetime) -> None:
        self.live = live
        self.start_wall_time = start_wall_time
        self._offset_s = 0.0
        self._rebased = False
        self._end_s: float | None = None  # rebased stream time where the last session ended
        self._end_monotonic = 0.0
        self._step_s = 0.0
        self._next_index = 0

    def new_session(self, step_s: float) -> None:
        self._rebased = False
        self._step_s = step_s

    def end_session(self, last_pts_s: float | None) -> None:
        """Record where the session ended: `last_pts_s` is its last decoded frame's stream time."""
        if self._rebased and last_pts_s is not None:
            self._end_s = last_pts_s + self._offset_s
            self._end_monotonic = time.monotonic()

    def session_wall_start(self) -> datetime | None:
        """start_wall_time for the next replay session (None for live: wall clock per frame)."""
        return None if self.live else self.start_wall_time + timedelta(seconds=self._next_start_s())

    def _next_start_s(self) -> float:
        if self._end_s is None:
            return 0.0
        gap = time.monotonic() - self._end_monotonic if self.live else self._step_s
        return self._end_s + max(gap, 0.0)

    def rebase(self, frame: Frame) -> Frame:
        if not self._rebased:
            self._rebased = True
            self._offset_s = self._next_start_s() - frame.pts_s if self._end_s is not None else 0.0
        index, self._next_index = self._next_index, self._next_index + 1
        return dataclasses.replace(frame, pts_s=frame.pts_s + self._offset_s, index=index)


class CameraSource:
    """One camera: a daemon thread that opens, decodes, samples and queues Frames.

    Live (rtsp://): a full queue drops its oldest frame (`frames_dropped`), so the consumer always
    gets the newest; a failed open or an ended stream is logged and retried with exponential
    back-off. Replay (files): a full queue blocks the decoder (lossless); the end of the file ends
    the source (`finished`) unless options.loop. Nothing raised in the thread leaves it.
    Counters (read any time): frames_decoded, frames_sampled, frames_dropped, packets_corrupt,
    reconnects, last_error, connected.
    """

    def __init__(self, camera: CameraConfig, *, options: SourceOptions | None = None) -> None:
        self.camera = camera
        self.camera_id = camera.id
        self.url = camera.detect_url or camera.url  # with a sub-stream, the main one is for evidence only
        self.options = options or SourceOptions()
        self.live = is_live(camera.url) if self.options.live is None else self.options.live
        self.stats = DecodeStats()
        self.frames_dropped = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.connected = False
        self._queue: queue.Queue[Frame] = queue.Queue(maxsize=self.options.queue_size)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source-{camera.id}", daemon=True)

    @property
    def frames_decoded(self) -> int:
        return self.stats.frames_decoded

    @property
    def frames_sampled(self) -> int:
        return self.stats.frames_sampled

    @property
    def packets_corrupt(self) -> int:
        return self.stats.packets_corrupt

    @property
    def finished(self) -> bool:
        """True once the source has ended (file done, or stopped) and every frame was taken."""
        return self._done.is_set() and self._queue.empty()

    def start(self) -> CameraSource:
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the thread and wait for it. A read blocked on a silent stream ends within
        options.timeout_s; back-off waits and a blocked replay queue end at once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.options.timeout_s + 1.0 if timeout_s is None else timeout_s)

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None if none came within `timeout` seconds or the source finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Short waits so a consumer blocked here notices when the source finishes.
            wait = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            try:
                return self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                if self.finished or (deadline is not None and time.monotonic() >= deadline):
                    return None

    def __iter__(self) -> Iterator[Frame]:
        """Every frame until the source finishes (for replays; a live source runs until stop())."""
        while (frame := self.get()) is not None:
            yield frame

    def __enter__(self) -> CameraSource:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        start_wall_time = self.options.start_wall_time or datetime.now(UTC)
        timeline = _Timeline(live=self.live, start_wall_time=start_wall_time)
        backoff = self.options.backoff_initial_s
        try:
            while not self._stop.is_set():
                healthy = self._session(timeline)
                if self._stop.is_set() or not (self.live or self.options.loop):
                    break
                if healthy and not self.live:
                    continue  # next loop of a replay
                backoff = self.options.backoff_initial_s if healthy else backoff
                log.warning(
                    "camera %s: reconnecting in %.2f s (%s)", self.camera_id, backoff, self.last_error
                )
                if self._stop.wait(backoff):
                    break
                self.reconnects += 1
                backoff = min(backoff * 2, self.options.backoff_max_s)
        except Exception:  # a bug must not kill other cameras or the process
            log.exception("camera %s: source thread failed", self.camera_id)
        finally:
            self.connected = False
            self._done.set()

    def _session(self, timeline: _Timeline) -> bool:
        """Open, decode and queue until the stream ends; True if it delivered frames."""
        sampled_before = self.stats.frames_sampled
        try:
            with open_container(self.url, timeout_s=self.options.timeout_s) as container:
                self.connected = True
                log.info("camera %s: opened %s", self.camera_id, _redact(self.url))
                self._pump(container, timeline)
            if not self._stop.is_set():
                self.last_error = "stream ended"
                level = logging.WARNING if self.live else logging.INFO
                log.log(level, "camera %s: stream ended after %d sampled frames", self.camera_id,
                        self.stats.frames_sampled - sampled_before)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self.last_error = redact(f"{type(exc).__name__}: {exc}")  # PyAV quotes the URL
            log.warning("camera %s: cannot read %s: %s", self.camera_id, _redact(self.url), self.last_error)
        finally:
            self.connected = False
        return self.stats.frames_sampled > sampled_before

    def _pump(self, container: av.container.InputContainer, timeline: _Timeline) -> None:
        stream = first_video_stream(container, camera_id=self.camera_id)
        timeline.new_session(1.0 / float(stream.average_rate or stream.guessed_rate or _FALLBACK_FPS))
        self.stats.last_pts_s = None
        try:
            self._pump_session(container, timeline)
        finally:
            timeline.end_session(self.stats.last_pts_s)

    def _pump_session(self, container: av.container.InputContainer, timeline: _Timeline) -> None:
        frames = iter_sampled_frames(
            container,
            camera_id=self.camera_id,
            sample_fps=self.camera.sample_fps,
            keyframes_only=self.camera.keyframes_only,
            start_wall_time=timeline.session_wall_start(),
            stats=self.stats,
        )
        warned = False
        for frame in frames:
            if self._stop.is_set():
                return
            picture = in_camera_pixels(frame.picture, self.camera.pixel_size)
            if picture is not frame.picture:
                frame = dataclasses.replace(frame, picture=picture)
                warned = warned or _warn_aspect(self.camera_id, frame)
            if self.options.render_view is not None:
                self.options.render_view(frame.picture)
            self._put(timeline.rebase(frame))

    def _put(self, frame: Frame) -> None:
        if self.live:
            while True:
                try:
                    self._queue.put_nowait(frame)
                    return
                except queue.Full:
                    self._drop_oldest()
        while not self._stop.is_set():
            try:
                self._queue.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue

    def _drop_oldest(self) -> None:
        try:
            self._queue.get_nowait()
        except queue.Empty:
            return  # the consumer took it meanwhile
        self.frames_dropped += 1


def _warn_aspect(camera_id: str, frame: Frame) -> bool:
    """Log once per session when the decoded picture and pixel_size differ in shape."""
    picture = frame.picture
    if isinstance(picture, ScenePicture):
        own = (picture.inner.width, picture.inner.height)
        off = aspect_mismatch(own, (picture.width, picture.height))
        if off > ASPECT_TOLERANCE:
            log.warning("camera %s: the detected stream is %dx%d but pixel_size %dx%d differs in shape by %.0f %%: "
                        "mapped axis by axis, as for a stretched picture of the same view", camera_id, *own,
                        picture.width, picture.height, 100 * off)
    return True


def _redact(url: str) -> str:
    """The URL without a password (rtsp://user:pass@host/...), for logs."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
