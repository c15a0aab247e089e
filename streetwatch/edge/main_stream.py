"""A camera's main stream, kept for evidence only: demuxed without decoding, decoded on demand.

With a sub-stream to detect on (`detect_url`), the full-resolution main stream (`url`) costs only
its demuxing: `MainStream` runs one thread per camera that reads packets and keeps those since the
latest key frame (and the GOP before it, so a request for a moment just before a key frame arrived
still finds its pictures). When an alert needs evidence, `picture_at` decodes, in a decoder of its
own, the held GOP from its key frame to the packet nearest the alert's frame: one 1080p key frame
plus at most a GOP of P-frames, tens of milliseconds, and nothing at all while no alert fires.

The evidence set's `first seen` frame shows the moment the dwell began, minutes before the alert.
For it the thread also keeps one key frame's packet every `keyframe_every_s` over `keyframe_keep_s`
(bounded by `keyframe_max_bytes`, oldest out first); `keyframe_near` decodes the one nearest a
moment, alone (a key frame needs no other). Still undecoded until an alert asks.

Times: a live stream's packets are stamped with the wall clock when they arrive and a request
gives the frame's capture time (the sub-stream's frames carry the wall clock when decoded). A file
(replays, benchmarks) is demuxed paced to the stream time the sub-stream has reached (`follow`),
its packets stamped with their stream time, looped like the sub-stream's file when the camera loops.

The stream reconnects on its own, with the same exponential back-off as the sub-stream, and never
touches detection: when it is down, `picture_at` returns None and the evidence falls back to the
sub-stream picture (`FullResolution`, logged and counted).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

import av
import av.container
import av.error

from streetwatch.edge.picture import AvPicture, Picture
from streetwatch.edge.sources import is_live, open_container
from streetwatch.edge.substream import (
    AGREEMENT_MIN,
    ASPECT_TOLERANCE,
    ScenePicture,
    aspect_mismatch,
    map_objects,
    pictures_agree,
)
from streetwatch.edge.types import Frame, ViolationEvent
from streetwatch.redaction import redact

log = logging.getLogger(__name__)

MAX_GOP_BYTES = 16 * 1024 * 1024  # a 2 s GOP at 8 Mbit/s is 2 MB; a stream without key frames is cut here
FILE_LEAD_S = 2.0  # a file is demuxed this far ahead of the sub-stream
MAX_GAP_S = 1.0  # the main-stream picture must be this close before the alert's frame


@dataclass
class _Gop:
    """Packets from one key frame to the next, each with its time key."""

    packets: list[tuple[float, av.Packet]] = field(default_factory=list)
    size: int = 0

    @property
    def start(self) -> float:
        return self.packets[0][0]


@dataclass(frozen=True)
class MainStreamOptions:
    timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    loop: bool = False
    live: bool | None = None  # None: from the URL
    # Key frames kept for `first seen` (evidence_set.py): the defaults of evidence.media's
    # first_seen_every_s / first_seen_keep_s. 12 MiB holds about 60 1080p key frames of 200 KB:
    # at one every 5 s, five minutes back, the longest default dwell.
    keyframe_every_s: float = 5.0
    keyframe_keep_s: float = 900.0
    keyframe_max_bytes: int = 12 * 1024 * 1024


class MainStream:
    """One camera's main stream: a demux thread holding the last two GOPs' packets.

    Counters (read any time): connected, reconnects, packets_demuxed, gops_cut, decodes, last_error,
    size ((w, h) once the stream was opened).
    """

    def __init__(self, camera_id: str, url: str, *, options: MainStreamOptions | None = None) -> None:
        self.camera_id = camera_id
        self.url = url
        self.options = options or MainStreamOptions()
        self.live = is_live(url) if self.options.live is None else self.options.live
        self.connected = False
        self.reconnects = 0
        self.packets_demuxed = 0
        self.gops_cut = 0
        self.decodes = 0
        self.last_error: str | None = None
        self.size: tuple[int, int] | None = None
        self._codec: tuple[str, bytes | None] | None = None  # decoder name and extradata of the held packets
        self._gops: list[_Gop] = []  # at most two: the previous GOP and the current one
        self._keyframes: deque[tuple[float, av.Packet]] = deque()  # sparse, for `first seen`
        self._keyframe_bytes = 0
        self._open = False  # the current GOP takes packets (False until a key frame, or after a cut)
        self._lock = threading.Condition()
        self._followed = float("-inf")  # files: the stream time the consumer reached
        self._reached = float("-inf")  # the time key of the newest held packet
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"main-{camera_id}", daemon=True)

    def start(self) -> MainStream:
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(self.options.timeout_s + 1.0 if timeout_s is None else timeout_s)

    def follow(self, t: float) -> None:
        """Files: the sub-stream reached stream time `t`; demux up to FILE_LEAD_S beyond it."""
        if self.live:
            return
        with self._lock:
            if t > self._followed:
                self._followed = t
                self._lock.notify_all()

    def picture_at(self, t: float, *, wait_s: float = 2.0) -> Picture | None:
        """The main-stream picture nearest before time key `t` (wall-clock epoch s for a live stream,
        stream s for a file), decoded now; None if the stream holds nothing for `t` (down, not yet
        there after `wait_s`, or the packets do not decode)."""
        packets, codec = self._packets_for(t, wait_s)
        if not packets or codec is None:
            return None
        try:
            frame = _decode_last(packets, codec)
        except (av.error.FFmpegError, ValueError) as exc:
            self.last_error = f"decode: {type(exc).__name__}: {exc}"
            log.warning("camera %s: main stream packets did not decode: %s", self.camera_id, exc)
            return None
        if frame is None:
            return None
        self.decodes += 1
        return AvPicture(frame)

    def _packets_for(self, t: float, wait_s: float) -> tuple[list[av.Packet], tuple[str, bytes | None] | None]:
        deadline = time.monotonic() + wait_s
        with self._lock:
            if not self.live:
                self._followed = max(self._followed, t)
                self._lock.notify_all()
                while self._reached < t and not self._ended and not self._stop.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._lock.wait(min(left, 0.1))
            gops = [gop for gop in self._gops if gop.packets and gop.start <= t]
            if not gops:
                return [], None
            packets = [(key, packet) for key, packet in gops[-1].packets if key <= t]
            if t - packets[-1][0] > MAX_GAP_S:
                return [], None  # the newest picture before `t` is from another moment (the stream stalled)
            return [packet for _, packet in packets], self._codec

    def keyframe_near(self, t: float, *, within_s: float) -> tuple[float, Picture] | None:
        """The kept key frame nearest time key `t`, if one is within `within_s` of it, decoded now,
        with its time key."""
        with self._lock:
            near = min(self._keyframes, key=lambda kept: abs(kept[0] - t), default=None)
            codec = self._codec
        if near is None or codec is None or abs(near[0] - t) > within_s:
            return None
        try:
            frame = _decode_last([near[1]], codec)
        except (av.error.FFmpegError, ValueError) as exc:
            log.warning("camera %s: a kept main-stream key frame did not decode: %s", self.camera_id, exc)
            return None
        if frame is None:
            return None
        self.decodes += 1
        return near[0], AvPicture(frame)

    @property
    def keyframes_held(self) -> tuple[int, int]:
        """(key frames kept for `first seen`, their bytes)."""
        with self._lock:
            return len(self._keyframes), self._keyframe_bytes

    # ------------------------------------------------------------ the demux thread

    def _run(self) -> None:
        backoff = self.options.backoff_initial_s
        offset = 0.0
        try:
            while not self._stop.is_set():
                healthy, end = self._session(offset)
                if self._stop.is_set():
                    break
                if not self.live:
                    if not self.options.loop or not healthy:
                        break
                    offset = end  # the next loop continues after this one, as the sub-stream's file does
                    continue
                backoff = self.options.backoff_initial_s if healthy else backoff
                log.warning("camera %s: main stream: reconnecting in %.2f s (%s)", self.camera_id, backoff,
                            self.last_error)
                if self._stop.wait(backoff):
                    break
                self.reconnects += 1
                backoff = min(backoff * 2, self.options.backoff_max_s)
        except Exception:  # a bug here must not take detection down
            log.exception("camera %s: main stream thread failed", self.camera_id)
        finally:
            self.connected = False
            with self._lock:
                self._ended = True
                self._lock.notify_all()

    def _session(self, offset: float) -> tuple[bool, float]:
        """Open and demux until the stream ends; (delivered packets, the time key after the last)."""
        before = self.packets_demuxed
        end = offset
        try:
            with open_container(self.url, timeout_s=self.options.timeout_s) as container:
                if not container.streams.video:
                    raise ValueError(f"{redact(self.url)} has no video stream")
                stream = container.streams.video[0]
                context = stream.codec_context
                self.size = (context.width, context.height)
                with self._lock:
                    self._codec = (context.name, bytes(context.extradata) if context.extradata else None)
                    self._gops = []  # packets of an earlier connection do not continue this one
                    self._open = False
                self.connected = True
                log.info("camera %s: main stream opened %s (%dx%d), demuxed only", self.camera_id,
                         redact(self.url), context.width, context.height)
                end = self._demux(container, stream, offset)
            if not self._stop.is_set():
                self.last_error = "stream ended"
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self.last_error = redact(f"{type(exc).__name__}: {exc}")
            log.warning("camera %s: main stream: cannot read %s: %s", self.camera_id, redact(self.url),
                        self.last_error)
        finally:
            self.connected = False
            if self.live:
                with self._lock:
                    self._gops = []  # pictures from before an outage are not evidence of what follows
                    self._open = False
        return self.packets_demuxed > before, end

    def _demux(self, container: av.container.InputContainer, stream: av.VideoStream, offset: float) -> float:
        step = 1.0 / float(stream.average_rate or stream.guessed_rate or 25)
        end = offset
        for packet in container.demux(stream):
            if self._stop.is_set():
                break
            if packet.size == 0:
                continue
            if self.live:
                key = time.time()
            else:
                pts = packet.pts if packet.pts is not None else packet.dts
                key = offset + (float(pts * packet.time_base) if pts is not None and packet.time_base else 0.0)
                end = max(end, key + step)
                self._pace(key)
            self._hold(key, packet)
        return end

    def _pace(self, key: float) -> None:
        """Files: wait while this packet is more than FILE_LEAD_S ahead of the sub-stream."""
        with self._lock:
            while key > self._followed + FILE_LEAD_S and not self._stop.is_set():
                self._lock.wait(0.1)

    def _hold(self, key: float, packet: av.Packet) -> None:
        self.packets_demuxed += 1
        with self._lock:
            if packet.is_keyframe:
                self._gops = [*self._gops[-1:], _Gop()]
                self._open = True
                self._keep_keyframe(key, packet)
            if not self._open:
                return  # joined mid-GOP, or the GOP was cut: nothing decodes before the next key frame
            gop = self._gops[-1]
            if gop.size + packet.size > MAX_GOP_BYTES:
                self.gops_cut += 1
                self._gops = self._gops[:-1]
                self._open = False
                return
            gop.packets.append((key, packet))
            gop.size += packet.size
            self._reached = key
            self._lock.notify_all()

    def _keep_keyframe(self, key: float, packet: av.Packet) -> None:
        """Keep one key frame every keyframe_every_s, within keyframe_keep_s and keyframe_max_bytes
        (called with the lock held)."""
        o, kept = self.options, self._keyframes
        if kept and key < kept[-1][0]:  # the time went back (a file restarted): the old ones mean nothing
            kept.clear()
            self._keyframe_bytes = 0
        if o.keyframe_max_bytes <= 0 or (kept and key - kept[-1][0] < o.keyframe_every_s):
            return
        kept.append((key, packet))
        self._keyframe_bytes += packet.size
        while kept and (key - kept[0][0] > o.keyframe_keep_s or self._keyframe_bytes > o.keyframe_max_bytes):
            self._keyframe_bytes -= kept.popleft()[1].size


def _decode_last(packets: list[av.Packet], codec: tuple[str, bytes | None]) -> av.VideoFrame | None:
    """Decode `packets` (a key frame first) in a fresh decoder; the last picture they give."""
    name, extradata = codec
    context = av.CodecContext.create(name, "r")
    if not isinstance(context, av.VideoCodecContext):
        raise ValueError(f"codec {name}: not a video decoder")
    if extradata:
        context.extradata = extradata
    last: av.VideoFrame | None = None
    for packet in [*packets, None]:
        for frame in context.decode(packet):
            if isinstance(frame, av.VideoFrame):
                last = frame
    return last


class EvidenceCounters(Protocol):
    """Where `FullResolution` reports (edge.metrics.EdgeMetrics fits)."""

    def observe_evidence(self, camera: str, *, full_resolution: bool, reason: str, seconds: float) -> None: ...


class FullResolution:
    """The evidence picture of a camera with a sub-stream: the main stream's, at the frame's moment.

    `choose(frame, event)` gives the frame and event the alert is built from: the frame's picture
    replaced by the main-stream picture and the event's boxes mapped from the camera's pixels
    (`pixel_size`) to the main stream's; or, when the main stream has nothing for that moment, is
    down, or shows another view than the sub-stream (a crop, another camera), the sub-stream's own
    picture with the boxes mapped to it. Every fallback is logged (the first and then every 100th
    per reason) and counted; `done` records the alert -> evidence JPEG time.
    """

    def __init__(self, camera_id: str, main: MainStream, counters: EvidenceCounters | None = None) -> None:
        self.camera_id = camera_id
        self.main = main
        self.counters = counters
        self.fallbacks: dict[str, int] = {}
        self.full = 0
        self._warned_aspect: set[tuple[tuple[int, int], tuple[int, int]]] = set()
        self._last: tuple[bool, str] = (False, "")

    def time_key(self, frame: Frame) -> float:
        return frame.captured_at.timestamp() if self.main.live else frame.pts_s

    def follow(self, frame: Frame) -> None:
        self.main.follow(frame.pts_s)

    def choose(self, frame: Frame, event: ViolationEvent) -> tuple[Frame, ViolationEvent]:
        scene = (frame.width, frame.height)
        main = self.main.picture_at(self.time_key(frame))
        reason = "main stream down" if not self.main.connected else "no main-stream picture for the moment"
        if main is not None:
            self._check_aspect(scene, (main.width, main.height))
            agreement = pictures_agree(frame.picture, main)
            if agreement >= AGREEMENT_MIN:
                self.full += 1
                self._last = (True, "")
                objects = map_objects(event.objects, scene, (main.width, main.height))
                return replace(frame, picture=main), replace(event, objects=objects)
            reason = f"main and sub-stream show different views (correlation {agreement:.2f})"
        return self._fallback(frame, event, reason)

    def first_seen(self, frame: Frame, event: ViolationEvent) -> tuple[Picture, datetime] | None:
        """The main stream's key frame nearest the moment `event`'s dwell began (`frame` is the
        alert's), for the evidence set's `first seen`, and when it was taken; None when none is kept
        within keyframe_every_s of it, or when the main stream did not show the sub-stream's view at
        this alert (choose fell back)."""
        if not self._last[0]:
            return None
        now = self.time_key(frame)
        near = self.main.keyframe_near(now - event.dwell_s, within_s=self.main.options.keyframe_every_s)
        if near is None:
            return None
        key, picture = near
        return picture, frame.captured_at - timedelta(seconds=now - key)

    def done(self, seconds: float) -> None:
        full, reason = self._last
        if self.counters is not None:
            self.counters.observe_evidence(self.camera_id, full_resolution=full, reason=reason, seconds=seconds)

    def _fallback(self, frame: Frame, event: ViolationEvent, reason: str) -> tuple[Frame, ViolationEvent]:
        kind = reason.split(" (")[0]
        count = self.fallbacks[kind] = self.fallbacks.get(kind, 0) + 1
        if count == 1 or count % 100 == 0:
            log.warning("camera %s: evidence from the sub-stream (%d time(s)): %s", self.camera_id, count, reason)
        self._last = (False, kind)
        picture = frame.picture.inner if isinstance(frame.picture, ScenePicture) else frame.picture
        objects = map_objects(event.objects, (frame.width, frame.height), (picture.width, picture.height))
        return replace(frame, picture=picture), replace(event, objects=objects)

    def _check_aspect(self, scene: tuple[int, int], main: tuple[int, int]) -> None:
        if (scene, main) in self._warned_aspect or aspect_mismatch(scene, main) <= ASPECT_TOLERANCE:
            return
        self._warned_aspect.add((scene, main))
        log.warning("camera %s: pixel_size %dx%d and the main stream's %dx%d differ in shape by %.0f %%: boxes "
                    "are mapped axis by axis, as for a stretched picture of the same view", self.camera_id,
                    *scene, *main, 100 * aspect_mismatch(scene, main))
