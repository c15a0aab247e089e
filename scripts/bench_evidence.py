"""Table 4 of bench_edge.py: the evidence of one alert, the old single JPEG beside the evidence set.

Real decoded 1080p frames of the benchmark clip go through one camera's `EvidenceSetBuilder` at the
sample rate (its per-frame cost: keeping the frames a set may need); then, alert by alert and
interleaved, the old evidence (`render_evidence`: one annotated JPEG) and the new (`EvidenceSetBuilder.render`
for a `start`: the photo with zone and subject, plus first seen, crop, clip and clean frame; and for a
`reminder`, which reuses the start's first seen and clip). Sizes are what would go on the wire.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
from bench_common import Summary, fmt, markdown_table

START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def bench_evidence_set(clip: Path, *, config: object, sample_fps: float, alerts: int = 12) -> str:
    from streetwatch.edge.evidence import render_evidence
    from streetwatch.edge.evidence_set import EvidenceSetBuilder
    from streetwatch.edge.picture import AvPicture
    from streetwatch.edge.types import EvidenceObject, Frame, ViolationEvent

    camera = config.cameras[0]  # type: ignore[attr-defined]
    zones = {zone.id: list(zone.polygon_px) for zone in camera.zones if zone.polygon_px}
    zone_id = next(iter(zones))
    xs, ys = [p[0] for p in zones[zone_id]], [p[1] for p in zones[zone_id]]
    subject = (min(xs), min(ys), max(xs), max(ys))
    objects = (EvidenceObject("car", 0.8, subject, "subject"),
               EvidenceObject("person", 0.6, (subject[0] - 200, subject[1] - 150, subject[0] - 120, subject[1]),
                              "context"))
    settings = config.evidence  # type: ignore[attr-defined]
    builder = EvidenceSetBuilder(settings, zones)
    with av.open(str(clip)) as container:
        decoded = []
        step = max(1, round(float(container.streams.video[0].average_rate or 25) / sample_fps))
        for i, frame in enumerate(container.decode(video=0)):
            if i % step == 0:
                decoded.append(frame)
            if len(decoded) >= 40:
                break
    observe, old, new_start, new_reminder = [], [], [], []
    old_bytes, start_bytes, reminder_bytes = [], [], []
    t = 0.0
    for n in range(alerts * 12):
        av_frame = decoded[n % len(decoded)]
        frame = Frame(camera.id, AvPicture(av_frame), t, START + timedelta(seconds=t), n)
        a0 = time.perf_counter()
        builder.observe(frame)
        observe.append((time.perf_counter() - a0) * 1000)
        if n % 12 == 11:  # an alert every 12 sampled frames: a start, then a reminder of its episode
            kind = "start" if (n // 12) % 2 == 0 else "reminder"
            episode = f"ep-{n // 24}"
            event = ViolationEvent(kind=kind, violation="illegal_parking", zone_id=zone_id, episode_id=episode,
                                   track_id=1, started_t=max(0.0, t - 60), observed_t=t, confidence=0.8,
                                   anchor=(0.0, 0.0), objects=objects)
            own = AvPicture(av_frame)  # renders are cached per picture: each variant gets its own
            b0 = time.perf_counter()
            single = render_evidence(own, objects, max_width=settings.max_width, jpeg_quality=settings.jpeg_quality,
                                     max_bytes=settings.max_bytes)
            b1 = time.perf_counter()
            photo, items = builder.render(event, Frame(camera.id, AvPicture(av_frame), t, frame.captured_at, n))
            b2 = time.perf_counter()
            old.append((b1 - b0) * 1000)
            old_bytes.append(len(base64.b64decode(single.evidence.jpeg_b64)))
            sent = len(base64.b64decode(photo.evidence.jpeg_b64)) + sum(len(i.data) for i in items if i.data)
            (new_start if kind == "start" else new_reminder).append((b2 - b1) * 1000)
            (start_bytes if kind == "start" else reminder_bytes).append(sent)
        t += 1 / sample_fps
    o, s, r, obs = Summary.of(old), Summary.of(new_start), Summary.of(new_reminder), Summary.of(observe)
    rows = [
        ["old: one annotated JPEG (`render_evidence`)", o.n, fmt(o.median, 1), fmt(o.p90, 1), "1.0",
         fmt(sum(old_bytes) / len(old_bytes) / 1000, 0)],
        ["new, `start`: photo + first seen + confirmed + crop + clip + clean", s.n, fmt(s.median, 1), fmt(s.p90, 1),
         fmt(s.median / o.median, 1), fmt(sum(start_bytes) / len(start_bytes) / 1000, 0)],
        ["new, `reminder`: photo + crop + clean (first seen, clip reused)", r.n, fmt(r.median, 1), fmt(r.p90, 1),
         fmt(r.median / o.median, 1), fmt(sum(reminder_bytes) / len(reminder_bytes) / 1000, 0)],
    ]
    table = markdown_table(["per alert, 1080p frame", "alerts", "median ms", "p90 ms", "x old", "kB sent"], rows)
    media = settings.media
    return (
        f"{table}\n\nper sampled frame, keeping the frames a set may need (`observe`: a {media.clip_width} px "
        f"raw frame for the clip, a {settings.max_width} px JPEG every {media.first_seen_every_s:g} s for "
        f"`first seen`): median {fmt(obs.median, 2)} ms, p90 {fmt(obs.p90, 2)} ms, mean {fmt(obs.mean, 2)} ms "
        f"over {obs.n} frames; memory held: {builder.history.size_bytes / 1e6:.1f} MB "
        f"(cap {media.history_max_bytes / 1e6:.0f} MB). Clip: {media.clip_s:g} s at {sample_fps:g} fps, "
        f"{media.clip_width} px, libx264 veryfast CRF 28."
    )


__all__ = ["bench_evidence_set"]
