"""The evidence set of an episode (wire 1.2): what a reviewer needs to judge a penalty, not one photo.

Beside the alert's own photo (the latest frame), each alert announces (`Alert.media`):

- `first`: the frame the object was first seen in (the dwell's start), annotated;
- `confirmed`: the frame that confirmed the dwell, annotated (the start alert's photo itself);
- `crop`: the subject at the camera's full resolution (bounded by `crop_max_px`);
- `clip`: H.264 MP4 of the `clip_s` seconds up to the confirmation, at the sample rate, with the zone
  and the subject drawn;
- `clean`: the frame behind the photo without any drawing, the same pixel size (issue 24: training).

A camera keeps two bounded histories to have those frames when the dwell is confirmed minutes after it
began: the last `clip_s` of sampled frames at the clip's width (raw, for encoding), and one JPEG every
`first_seen_every_s` over `first_seen_keep_s` at the evidence width. Both stay under
`history_max_bytes`, oldest out first. An episode's `first`, `confirmed` and `clip` are made once, at its
start, and announced again by its reminders (their bytes are sent once: central holds them by hash).
Nothing here may stop an alert: a set that cannot be made is logged and the alert goes without it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import tempfile
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction

import av
import cv2
import numpy as np

from streetwatch.edge.alerts import MediaKind, MediaRef
from streetwatch.edge.config import EvidenceConfig, EvidenceSetConfig
from streetwatch.edge.evidence import (
    RenderedEvidence,
    caption_for,
    draw_annotations,
    encode_jpeg,
    render_evidence,
)
from streetwatch.edge.picture import Picture, scaled_size
from streetwatch.edge.substream import detail_width
from streetwatch.edge.types import EvidenceObject, Frame, ViolationEvent

log = logging.getLogger(__name__)

# A camera with a sub-stream: the main stream's picture for `first seen` (main_stream.FullResolution).
FirstSeenSource = Callable[[Frame, ViolationEvent], tuple[Picture, datetime] | None]

MAX_OPEN_EPISODES = 64  # per camera: episodes whose first/confirmed/clip are kept for their reminders


@dataclass(frozen=True)
class MediaItem:
    """One announced item and its bytes; `data` None: already sent for this episode (announced only)."""

    ref: MediaRef
    data: bytes | None


@dataclass(frozen=True)
class _Kept:
    """A frame kept for later: stream time, capture time, and a BGR array (clip) or JPEG (first seen)."""

    pts_s: float
    captured_at: datetime
    image: np.ndarray | None = None
    jpeg: bytes | None = None

    @property
    def size(self) -> int:
        return self.image.nbytes if self.image is not None else len(self.jpeg or b"")


class FrameHistory:
    """The frames one camera keeps for its evidence sets, bounded in time and in bytes."""

    def __init__(self, settings: EvidenceSetConfig, *, evidence_width: int, jpeg_quality: int) -> None:
        self.settings = settings
        self.evidence_width = evidence_width
        self.jpeg_quality = jpeg_quality
        self.recent: deque[_Kept] = deque()
        self.sparse: deque[_Kept] = deque()
        self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def add(self, frame: Frame) -> None:
        """Keep `frame` if a set may need it (every sampled frame for the clip, one every
        `first_seen_every_s` for `first seen`), dropping what is too old or over the byte cap."""
        s = self.settings
        t = frame.pts_s
        if s.clip_s > 0:
            size = scaled_size(frame.width, frame.height, min(frame.width, s.clip_width))
            self._push(self.recent, _Kept(t, frame.captured_at, image=frame.picture.bgr(_even(size)).copy()))
            while self.recent and (t - self.recent[0].pts_s > s.clip_s or len(self.recent) > s.clip_max_frames):
                self._pop(self.recent)
        if not self.sparse or t - self.sparse[-1].pts_s >= s.first_seen_every_s or t < self.sparse[-1].pts_s:
            # at most the picture's own detail: a sub-stream's frame upscaled to 1280 px only costs bytes
            size = scaled_size(frame.width, frame.height, min(detail_width(frame.picture), self.evidence_width))
            jpeg = encode_jpeg(frame.picture.bgr(size), self.jpeg_quality)
            self._push(self.sparse, _Kept(t, frame.captured_at, jpeg=jpeg))
            while len(self.sparse) > 1 and t - self.sparse[0].pts_s > s.first_seen_keep_s:
                self._pop(self.sparse)
        while self._bytes > s.history_max_bytes and (self.sparse or self.recent):
            self._pop(self.sparse if len(self.sparse) > 1 or not self.recent else self.recent)

    def _push(self, queue: deque[_Kept], kept: _Kept) -> None:
        if queue and kept.pts_s < queue[-1].pts_s:  # the stream restarted (a looped file): start again
            while queue:
                self._pop(queue)
        queue.append(kept)
        self._bytes += kept.size

    def _pop(self, queue: deque[_Kept]) -> None:
        self._bytes -= queue.popleft().size

    def first_seen(self, t: float) -> _Kept | None:
        """The kept frame closest to stream time `t` (the oldest kept if `t` is before it)."""
        if not self.sparse:
            return None
        return min(self.sparse, key=lambda kept: abs(kept.pts_s - t))

    def clip(self, end_t: float) -> list[_Kept]:
        """The recent frames up to `end_t`, oldest first."""
        return [kept for kept in self.recent if end_t - self.settings.clip_s <= kept.pts_s <= end_t]


@dataclass
class _Episode:
    """What an open episode announces again with each reminder."""

    refs: dict[MediaKind, MediaRef] = field(default_factory=dict)
    sent: set[str] = field(default_factory=set)


class EvidenceSetBuilder:
    """One camera's evidence sets: `observe` every sampled frame, `render` for each alert."""

    def __init__(self, evidence: EvidenceConfig, zones_px: dict[str, Sequence[tuple[float, float]]], *,
                 still_camera: bool = True) -> None:
        """`still_camera` False (vehicles, drones): the view moves, so boxes from the confirming
        frame mean nothing on earlier frames; such a camera's set is the crop and the clean frame."""
        self.evidence = evidence
        self.settings = evidence.media
        self.zones_px = zones_px
        self.still_camera = still_camera
        self.history = FrameHistory(self.settings, evidence_width=evidence.max_width,
                                    jpeg_quality=evidence.jpeg_quality)
        self.first_seen_source: FirstSeenSource | None = None  # set by the worker for a sub-stream camera
        self._episodes: OrderedDict[str, _Episode] = OrderedDict()

    def observe(self, frame: Frame) -> None:
        if self.settings.enabled and self.still_camera:
            self.history.add(frame)

    def render(self, event: ViolationEvent, frame: Frame) -> tuple[RenderedEvidence, list[MediaItem]]:
        """The alert's photo (latest frame, annotated) and its evidence set."""
        zone = self.zones_px.get(event.zone_id)
        moment = {"start": "confirmed", "end": "ended"}.get(event.kind, "latest")
        rendered = self._photo(frame, event.objects, zone=zone, violation=event.violation, moment=moment,
                               clean=self.settings.enabled)
        if not self.settings.enabled:
            return rendered, []
        try:
            items = self._items(event, frame, rendered, zone)
        except Exception:  # a set that cannot be made must not cost the alert
            log.exception("camera %s episode %s: evidence set not made; the alert goes with its photo only",
                          frame.camera_id, event.episode_id)
            items = []
        return rendered, items

    def _photo(self, picture_or_frame: Frame | np.ndarray, objects: Sequence[EvidenceObject], *,
               zone: Sequence[tuple[float, float]] | None, violation: str, moment: str,
               clean: bool = False, when: datetime | None = None,
               frame_size: tuple[int, int] | None = None) -> RenderedEvidence:
        if isinstance(picture_or_frame, Frame):
            image: object = picture_or_frame.picture
            when = picture_or_frame.captured_at
            scale = 1.0
        else:
            image = picture_or_frame
            assert frame_size is not None
            scale = picture_or_frame.shape[1] / frame_size[0]  # a kept frame is smaller than the camera's
        scaled_objects = [EvidenceObject(o.cls, o.score, tuple(v * scale for v in o.bbox), o.emphasis)  # type: ignore[arg-type]
                          for o in objects]
        scaled_zone = [(x * scale, y * scale) for x, y in zone] if zone else None
        return render_evidence(
            image,  # type: ignore[arg-type]
            scaled_objects,
            max_width=self.evidence.max_width, jpeg_quality=self.evidence.jpeg_quality,
            max_bytes=self.evidence.max_bytes, zone_px=scaled_zone,
            caption=caption_for(violation, moment, _clock(when)), clean=clean,
        )

    def _items(self, event: ViolationEvent, frame: Frame, rendered: RenderedEvidence,
               zone: Sequence[tuple[float, float]] | None) -> list[MediaItem]:
        episode = self._episode(event)
        episode.sent.add(hashlib.sha256(_b64_bytes(rendered)).hexdigest())  # the photo travels in the alert
        items: list[MediaItem] = []
        if rendered.clean_jpeg is not None:
            items.append(_item("clean", rendered.clean_jpeg, rendered.evidence.width, rendered.evidence.height,
                               frame.captured_at))
        if not self.still_camera:
            pass
        elif event.kind == "start" or not episode.refs:
            self._first_and_clip(event, frame, rendered, zone, episode, items)
        else:
            for ref in episode.refs.values():
                items.append(MediaItem(ref, None))
        if event.kind != "end":  # an ended episode's object is gone: nothing to crop
            crop = self._crop(frame, event.objects)
            if crop is not None:
                items.append(crop)
        if event.kind == "end":
            self._episodes.pop(event.episode_id, None)
        return self._once(episode, items)

    def _first_and_clip(self, event: ViolationEvent, frame: Frame, rendered: RenderedEvidence,
                        zone: Sequence[tuple[float, float]] | None, episode: _Episode,
                        items: list[MediaItem]) -> None:
        size = (frame.width, frame.height)
        first = self._first_seen(event, frame)
        if first is not None:
            image, when = first
            photo = self._photo(image, event.objects, zone=zone, violation=event.violation, moment="first seen",
                                when=when, frame_size=size)
            items.append(_item("first", _b64_bytes(photo), photo.evidence.width, photo.evidence.height, when))
        if event.kind == "start":  # the photo of the start alert is the confirming frame
            items.append(_item("confirmed", _b64_bytes(rendered), rendered.evidence.width,
                               rendered.evidence.height, frame.captured_at))
        clip = self._clip(event, frame, zone)
        if clip is not None:
            items.append(clip)
        episode.refs = {item.ref.kind: item.ref for item in items if item.ref.kind in ("first", "confirmed", "clip")}

    def _first_seen(self, event: ViolationEvent, frame: Frame) -> tuple[np.ndarray, datetime] | None:
        """The picture of the dwell's start and when it was taken: the main stream's key frame at
        full resolution where the camera has one kept that close, else the frame kept here."""
        if self.first_seen_source is not None:
            found = self.first_seen_source(frame, event)
            if found is not None:
                main, when = found
                width = min(main.width, self.evidence.max_width)
                return main.bgr(scaled_size(main.width, main.height, width)), when
        kept = self.history.first_seen(event.started_t)
        if kept is None or kept.jpeg is None:
            return None
        image = cv2.imdecode(np.frombuffer(kept.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise RuntimeError("a kept first-seen JPEG does not decode")
        return image, kept.captured_at

    def _clip(self, event: ViolationEvent, frame: Frame,
              zone: Sequence[tuple[float, float]] | None) -> MediaItem | None:
        kept = self.history.clip(frame.pts_s)
        if len(kept) < 2 or kept[0].image is None:
            return None
        fps = _clip_rate(kept)
        height, width = kept[0].image.shape[:2]
        sx = width / frame.width
        boxes = [((o.bbox[0] * sx, o.bbox[1] * sx, o.bbox[2] * sx, o.bbox[3] * sx), o.cls, o.score, o.emphasis)
                 for o in event.objects]
        scaled_zone = [(x * sx, y * sx) for x, y in zone] if zone else None
        images = []
        for item in kept:
            assert item.image is not None
            canvas = item.image.copy()
            draw_annotations(canvas, boxes, zone_px=scaled_zone,
                             caption=caption_for(event.violation, "clip", _clock(item.captured_at)))
            images.append(canvas)
        data = encode_clip(images, fps=fps)
        if len(data) > self.settings.clip_max_bytes:
            log.warning("camera %s episode %s: clip of %d bytes > clip_max_bytes %d; not sent", frame.camera_id,
                        event.episode_id, len(data), self.settings.clip_max_bytes)
            return None
        ref = MediaRef(kind="clip", sha256=hashlib.sha256(data).hexdigest(), content_type="video/mp4",
                       size=len(data), width=width, height=height, captured_at=kept[-1].captured_at,
                       frames=len(images), duration_s=round(len(images) / fps, 3))
        return MediaItem(ref, data)

    def _crop(self, frame: Frame, objects: Sequence[EvidenceObject]) -> MediaItem | None:
        """The subjects' union box with a margin, from the full-resolution frame."""
        subjects = [o for o in objects if o.emphasis == "subject"] or list(objects)
        if not subjects:
            return None
        x1 = min(o.bbox[0] for o in subjects)
        y1 = min(o.bbox[1] for o in subjects)
        x2 = max(o.bbox[2] for o in subjects)
        y2 = max(o.bbox[3] for o in subjects)
        m = self.settings.crop_margin
        mx, my = (x2 - x1) * m + 4, (y2 - y1) * m + 4
        left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
        right, bottom = min(frame.width, int(np.ceil(x2 + mx))), min(frame.height, int(np.ceil(y2 + my)))
        if right - left < 2 or bottom - top < 2:
            return None
        crop = frame.image[top:bottom, left:right]
        longest = max(crop.shape[:2])
        if longest > self.settings.crop_max_px:
            f = self.settings.crop_max_px / longest
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))),
                              interpolation=cv2.INTER_AREA)
        data = encode_jpeg(np.ascontiguousarray(crop), self.evidence.jpeg_quality)
        return _item("crop", data, crop.shape[1], crop.shape[0], frame.captured_at)

    def _episode(self, event: ViolationEvent) -> _Episode:
        episode = self._episodes.get(event.episode_id)
        if episode is None:
            episode = self._episodes[event.episode_id] = _Episode()
            while len(self._episodes) > MAX_OPEN_EPISODES:
                self._episodes.popitem(last=False)
        self._episodes.move_to_end(event.episode_id)
        return episode

    @staticmethod
    def _once(episode: _Episode, items: list[MediaItem]) -> list[MediaItem]:
        """Bytes of each hash once per episode: a reminder announces the start's items again, unsent."""
        out = []
        for item in items:
            if item.data is not None and item.ref.sha256 in episode.sent:
                item = MediaItem(item.ref, None)
            elif item.data is not None:
                episode.sent.add(item.ref.sha256)
            out.append(item)
        return out


class MediaShelf:
    """An analyzer's evidence-set bytes between making an alert and the caller taking them (the
    worker puts them in the outbox after the alert). Bounded: items nobody takes (a caller that only
    wants alerts, such as a benchmark) are dropped oldest first."""

    def __init__(self, max_alerts: int = 64) -> None:
        self.max_alerts = max_alerts
        self._items: OrderedDict[str, list[MediaItem]] = OrderedDict()

    def keep(self, alert_id: str, items: list[MediaItem]) -> None:
        if items:
            self._items[alert_id] = items
            while len(self._items) > self.max_alerts:
                self._items.popitem(last=False)

    def take(self, alert_id: str) -> list[MediaItem]:
        return self._items.pop(alert_id, [])


def encode_clip(images: Sequence[np.ndarray], *, fps: float) -> bytes:
    """BGR frames (same even size) as an H.264 MP4, playable in browsers (yuv420p, the index at the
    front: `faststart` rewrites the file, so it is made in a temporary file, not in memory)."""
    rate = Fraction(fps).limit_denominator(1001)
    height, width = images[0].shape[:2]
    with tempfile.TemporaryDirectory(prefix="sw-clip-") as folder:
        path = os.path.join(folder, "clip.mp4")
        _write_clip(path, images, rate=rate, size=(width, height))
        with open(path, "rb") as clip:
            return clip.read()


def _write_clip(path: str, images: Sequence[np.ndarray], *, rate: Fraction, size: tuple[int, int]) -> None:
    width, height = size
    with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "28"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = 1 / rate
        for i, image in enumerate(images):
            video = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24").reformat(format="yuv420p")
            video.pts = i
            video.time_base = 1 / rate
            container.mux(stream.encode(video))
        container.mux(stream.encode(None))


def _clip_rate(kept: Sequence[_Kept]) -> float:
    """The clip plays at the rate the frames were sampled at (1 fps: a second per frame)."""
    span = kept[-1].pts_s - kept[0].pts_s
    return max(0.2, min(30.0, (len(kept) - 1) / span)) if span > 0 else 1.0


def _item(kind: MediaKind, data: bytes, width: int, height: int, when: datetime) -> MediaItem:
    ref = MediaRef(kind=kind, sha256=hashlib.sha256(data).hexdigest(), content_type="image/jpeg",
                   size=len(data), width=width, height=height, captured_at=when)
    return MediaItem(ref, data)


def _b64_bytes(rendered: RenderedEvidence) -> bytes:
    return base64.b64decode(rendered.evidence.jpeg_b64)


def _even(size: tuple[int, int]) -> tuple[int, int]:
    return (size[0] // 2 * 2, size[1] // 2 * 2)


def _clock(when: datetime | None) -> str:
    if when is None:
        return ""
    return (when - timedelta(microseconds=when.microsecond)).strftime("%Y-%m-%d %H:%M:%S UTC")


__all__ = ["EvidenceSetBuilder", "FrameHistory", "MediaItem", "MediaShelf", "encode_clip"]
