"""Real H.264 clips built from real photos, for the demo, the tests and the benchmarks.

There is no street-level video among the shared assets (see assets/street/SOURCES.md), so the demo
and the tests build their clips from the real street photos: a still photo held for seconds or
minutes, with per-frame Gaussian sensor noise, an optional slow brightness drift (lighting change)
and crops pasted in and out of the scene during given time windows (a car parks, goods are set
down). The frames are encoded with PyAV's libx264 into a real MP4, so decode, sampling and
key-frame behaviour are the real thing.

- ``load_image(path, *, size=None) -> np.ndarray``: a BGR photo, optionally resized to (w, h).
- ``Paste(patch, xy, start_s, end_s)``: a BGR crop shown with its top-left corner at xy=(x, y) for
  stream times start_s <= t < end_s.
- ``still_scene(image, *, seconds, fps, noise_sigma=2.0, seed=0, pastes=(), brightness_drift=0.0,
  size=None) -> Iterator[np.ndarray]``: the frames of such a scene, BGR uint8.
- ``write_h264_clip(path, frames, *, fps, gop=None) -> Path``: encode BGR frames to H.264 MP4.
- ``long_clip(src, dst, loops) -> Path``: repeat a clip's video stream `loops` times by stream copy.
- ``solid_frames(bgr, *, count, size) -> Iterator[np.ndarray]``: frames of one colour.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

# Noise fields are cut at a random offset from one pre-drawn Gaussian field larger than the frame:
# every frame gets Gaussian noise of the given sigma and the noise differs between frames, at a
# fraction of the cost of drawing fresh normals for 6 M pixels per 1080p frame.
_NOISE_MARGIN = 64


@dataclass(frozen=True)
class Paste:
    """A BGR crop pasted with its top-left corner at xy=(x, y) while start_s <= t < end_s."""

    patch: np.ndarray
    xy: tuple[int, int]
    start_s: float
    end_s: float

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


def load_image(path: str | Path, *, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a photo as BGR uint8; `size=(w, h)` resizes it (e.g. (1920, 1080) for a 1080p clip)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{path}: not a readable image")
    return image if size is None else _resize(image, size)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def solid_frames(bgr: tuple[int, int, int], *, count: int, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """`count` frames of one BGR colour, size=(w, h)."""
    frame = np.empty((size[1], size[0], 3), np.uint8)
    frame[:] = bgr
    for _ in range(count):
        yield frame.copy()


def still_scene(
    image: np.ndarray,
    *,
    seconds: float,
    fps: float,
    noise_sigma: float = 2.0,
    seed: int = 0,
    pastes: Sequence[Paste] = (),
    brightness_drift: float = 0.0,
    size: tuple[int, int] | None = None,
) -> Iterator[np.ndarray]:
    """Frames of a still photo held for `seconds` at `fps`, like a fixed camera watching a street.

    noise_sigma: per-frame Gaussian sensor noise (grey levels). brightness_drift: grey levels added
    linearly from 0 at the start to this value at the end (slow lighting change). pastes: crops
    shown in their time windows (objects moved in and out). size=(w, h) resizes the photo first,
    and pastes are given in the resized frame's pixels.
    """
    base = _resize(image, size) if size is not None else image
    height, width = base.shape[:2]
    rng = np.random.default_rng(seed)
    noise = _noise_field(rng, height, width, noise_sigma)
    work = np.empty(base.shape, np.int16)  # reused: fresh 12 MB buffers per 1080p frame cost more
    count = max(1, round(seconds * fps))
    for i in range(count):
        t = i / fps
        np.copyto(work, base)
        for paste in pastes:
            if paste.active(t):
                _paste(work, paste)
        if noise is not None:
            dy, dx = (int(v) for v in rng.integers(0, _NOISE_MARGIN, size=2))
            work += noise[dy : dy + height, dx : dx + width]
        work += round(brightness_drift * i / max(1, count - 1))
        np.clip(work, 0, 255, out=work)
        yield work.astype(np.uint8)  # a new array per frame: callers may keep frames


def _noise_field(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray | None:
    if sigma <= 0:
        return None
    shape = (height + _NOISE_MARGIN, width + _NOISE_MARGIN, 3)
    # Whole grey levels, as a sensor delivers; int16 arithmetic is several times faster than float.
    return np.rint(rng.normal(0.0, sigma, shape)).astype(np.int16)


def _paste(frame: np.ndarray, paste: Paste) -> None:
    x, y = paste.xy
    h = min(paste.patch.shape[0], frame.shape[0] - y)
    w = min(paste.patch.shape[1], frame.shape[1] - x)
    if x < 0 or y < 0 or h <= 0 or w <= 0:
        raise ValueError(f"Paste.xy={paste.xy}: the patch must start inside the {frame.shape[1]}x"
                         f"{frame.shape[0]} frame")
    frame[y : y + h, x : x + w] = paste.patch[:h, :w]


def write_h264_clip(
    path: str | Path, frames: Iterable[np.ndarray], *, fps: float, gop: int | None = None
) -> Path:
    """Encode BGR uint8 frames (all the same even width and height) to an H.264 MP4 at `path`.

    libx264, yuv420p, preset ultrafast (no B-frames). gop: frames between key frames; when given,
    key frames come exactly every `gop` frames (scene-cut detection is off), so tests know the
    key-frame cadence. Frame i has pts i/fps seconds. Returns the path.
    """
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream: av.VideoStream | None = None
        for i, image in enumerate(frames):
            if stream is None:
                stream = _add_h264_stream(container, image, rate=rate, gop=gop)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
            frame.pts = i
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        if stream is None:
            raise ValueError(f"{path}: no frames to encode")
        container.mux(stream.encode(None))
    return path


def _add_h264_stream(
    container: av.container.OutputContainer, image: np.ndarray, *, rate: Fraction, gop: int | None
) -> av.VideoStream:
    height, width = image.shape[:2]
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or width % 2 or height % 2:
        raise ValueError(f"frames: expected (H, W, 3) uint8 BGR with even W and H, got {image.shape} "
                         f"{image.dtype}")
    options = {"preset": "ultrafast"}
    if gop is not None:
        options["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
    stream = container.add_stream("libx264", rate=rate, options=options)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.time_base = 1 / rate
    if gop is not None:
        stream.codec_context.gop_size = gop
    return stream


def long_clip(src: str | Path, dst: str | Path, loops: int) -> Path:
    """Write `src`'s first video stream `loops` times back to back into `dst` (stream copy, no
    re-encode), e.g. to make an RTSP test stream last long enough. Other streams are left out."""
    if loops < 1:
        raise ValueError(f"loops: expected >= 1, got {loops}")
    dst = Path(dst)
    with av.open(str(dst), mode="w") as out:
        out_stream: av.VideoStream | None = None
        offset = 0
        for _ in range(loops):
            with av.open(str(src)) as inp:
                in_stream = inp.streams.video[0]
                if out_stream is None:
                    out_stream = out.add_stream_from_template(in_stream)
                offset = _copy_packets(inp, in_stream, out, out_stream, offset)
    return dst


def _copy_packets(
    inp: av.container.InputContainer,
    in_stream: av.VideoStream,
    out: av.container.OutputContainer,
    out_stream: av.VideoStream,
    offset: int,
) -> int:
    """Mux every packet of `in_stream` shifted by `offset` ticks; return the offset for the next
    copy (the end of the last frame)."""
    end = offset
    for packet in inp.demux(in_stream):
        if packet.dts is None or packet.pts is None:
            continue  # the demuxer's final flush packet
        packet.pts += offset
        packet.dts += offset
        end = max(end, packet.pts + (packet.duration or 0))
        packet.stream = out_stream
        out.mux(packet)
    return end
