"""Evidence photos: the frame with the offending boxes drawn, as a bounded base64 JPEG.

The frame is downscaled to max_width first and the boxes are drawn at the output size, so lines
and labels stay legible whatever the camera resolution. The JPEG quality is then lowered in
steps, and if that is not enough the width too, until the JPEG fits max_bytes and its base64
fits the wire limit (alerts.MAX_EVIDENCE_B64_CHARS).

What a reviewer sees: the zone outline (cyan, over a dark edge so it shows on any ground), the
subject (`EvidenceObject.emphasis == "subject"`: what the violation is about) in thick amber with
a label, everything else in view thin grey without a label, and a caption bar naming the
violation ("stacked goods", never an internal id) and which moment the frame is. `clean=True`
also encodes the unannotated frame at the very same size and quality, for retraining.
"""

from __future__ import annotations

import base64
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from streetwatch.edge.alerts import MAX_EVIDENCE_B64_CHARS, MAX_OBJECTS, DetectedObject, Evidence
from streetwatch.edge.picture import ArrayPicture, Picture, scaled_size
from streetwatch.edge.types import EvidenceObject

log = logging.getLogger(__name__)

MIN_QUALITY = 30
QUALITY_STEP = 10
MIN_WIDTH = 160
WIDTH_STEP = 0.75
# Colour-blind-friendly palette (Okabe-Ito), BGR; a class keeps its colour across frames and runs.
_PALETTE = ((0, 159, 230), (233, 180, 86), (115, 158, 0), (66, 228, 240), (178, 114, 0), (0, 94, 213),
            (167, 121, 204))
SUBJECT_COLOUR = (0, 200, 255)  # BGR amber: the subject
CONTEXT_COLOUR = (170, 170, 170)  # BGR grey: others in view, 1 px, no label
ZONE_COLOUR = (255, 255, 0)  # BGR cyan: the zone outline
VIOLATION_NAMES = {"illegal_parking": "illegal parking", "street_vending": "street vending",
                   "stacked_goods": "stacked goods"}
# Class names a reviewer should never read as such (internal ids of the rules).
CLASS_NAMES = {"static_region": "goods"}


@dataclass(frozen=True)
class RenderedEvidence:
    """evidence: the wire value. objects: the boxes in evidence-image pixels (what the alert
    carries; at most MAX_OBJECTS, highest score first). scale: evidence width / frame width.
    jpeg_quality: the quality that fitted."""

    evidence: Evidence
    objects: tuple[DetectedObject, ...]
    scale: float
    jpeg_quality: int
    clean_jpeg: bytes | None = None
    emphasis: tuple[str, ...] = ()  # per object: `subject` or `context`


class EvidenceTooLarge(ValueError):
    """Even the smallest, lowest-quality JPEG does not fit the byte limit."""


def render_evidence(
    image: np.ndarray | Picture,
    objects: Sequence[EvidenceObject],
    *,
    max_width: int = 1280,
    jpeg_quality: int = 80,
    max_bytes: int = 250_000,
    zone_px: Sequence[tuple[float, float]] | None = None,
    caption: str | None = None,
    clean: bool = False,
) -> RenderedEvidence:
    """Draw `objects` (boxes in frame pixels) on the frame and encode it within the size limits.

    `image`: the frame as a Picture (rendered straight at the evidence width) or a BGR array.
    `zone_px`: the zone polygon in frame pixels, outlined. `caption`: the bar at the top.
    `clean`: also return the unannotated frame as a JPEG of the same size and quality.
    """
    picture = ArrayPicture(image) if isinstance(image, np.ndarray) else image
    if max_width < MIN_WIDTH:
        raise ValueError(f"max_width: expected >= {MIN_WIDTH} px, got {max_width}")
    limit = min(max_bytes, MAX_EVIDENCE_B64_CHARS // 4 * 3)  # base64 makes 4 characters of 3 bytes
    chosen = sorted(objects, key=lambda o: o.score, reverse=True)[:MAX_OBJECTS]
    width = min(picture.width, max_width)
    while True:
        plain, canvas, scaled = _draw(picture, chosen, width=width, zone_px=zone_px, caption=caption)
        for quality in _qualities(jpeg_quality):
            jpeg = _encode(canvas, quality)
            if len(jpeg) <= limit:
                return RenderedEvidence(
                    evidence=Evidence(
                        jpeg_b64=base64.b64encode(jpeg).decode("ascii"),
                        width=canvas.shape[1],
                        height=canvas.shape[0],
                    ),
                    objects=scaled,
                    scale=canvas.shape[1] / picture.width,
                    jpeg_quality=quality,
                    clean_jpeg=_encode(plain, quality) if clean else None,
                    emphasis=tuple(o.emphasis for o in chosen),
                )
        if width <= MIN_WIDTH:
            raise EvidenceTooLarge(
                f"evidence: a {MIN_WIDTH} px wide JPEG at quality {MIN_QUALITY} is still "
                f"{len(jpeg)} bytes > max_bytes {limit}; raise evidence.max_bytes"
            )
        width = max(MIN_WIDTH, int(width * WIDTH_STEP))
        log.debug("evidence over %d bytes at every quality; retrying at %d px wide", limit, width)


def _qualities(start: int) -> list[int]:
    start = max(MIN_QUALITY, min(100, start))
    return [*range(start, MIN_QUALITY, -QUALITY_STEP), MIN_QUALITY]


def encode_jpeg(canvas: np.ndarray, quality: int) -> bytes:
    """A BGR array as JPEG bytes."""
    return _encode(canvas, quality)


def _encode(canvas: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode failed to encode the evidence JPEG")
    return bytes(buf.tobytes())


def _draw(
    picture: Picture,
    objects: Sequence[EvidenceObject],
    *,
    width: int,
    zone_px: Sequence[tuple[float, float]] | None = None,
    caption: str | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[DetectedObject, ...]]:
    """Downscale to `width` (never up), then draw; returns (the plain frame, the drawn one, boxes)."""
    width_in, height_in = picture.width, picture.height
    width, height = scaled_size(width_in, height_in, width)
    plain = picture.bgr((width, height))  # renders are cached and shared: draw on a copy
    canvas = plain.copy()
    sx, sy = width / width_in, height / height_in
    scaled = [
        DetectedObject(cls=obj.cls, score=obj.score, bbox=(
            float(np.clip(obj.bbox[0] * sx, 0, width)), float(np.clip(obj.bbox[1] * sy, 0, height)),
            float(np.clip(obj.bbox[2] * sx, 0, width)), float(np.clip(obj.bbox[3] * sy, 0, height))))
        for obj in objects
    ]
    draw_annotations(canvas, [(o.bbox, o.cls, o.score, e.emphasis) for o, e in zip(scaled, objects, strict=True)],
                     zone_px=[(x * sx, y * sy) for x, y in zone_px] if zone_px else None, caption=caption)
    return plain, canvas, tuple(scaled)


Annotation = tuple[tuple[float, float, float, float], str, float, str]  # box, class, score, emphasis


def line_width(width: int) -> int:
    """The base line width at an image width: legible at 640 px and at 4K alike."""
    return max(2, round(width / 640))


def draw_annotations(
    canvas: np.ndarray,
    boxes: Sequence[Annotation],
    *,
    zone_px: Sequence[tuple[float, float]] | None = None,
    caption: str | None = None,
) -> None:
    """Draw in place, boxes and zone in `canvas` pixels: context thin first, then the zone, then the
    subjects on top (thick, labelled), then the caption bar."""
    thickness = line_width(canvas.shape[1])
    for box, _cls, _score, emphasis in boxes:
        if emphasis != "subject":
            x1, y1, x2, y2 = (round(v) for v in box)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), CONTEXT_COLOUR, 1, cv2.LINE_AA)
    if zone_px:
        points = np.array([[round(x), round(y)] for x, y in zone_px], np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [points], True, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.polylines(canvas, [points], True, ZONE_COLOUR, thickness, cv2.LINE_AA)
    for box, cls, score, emphasis in boxes:
        if emphasis == "subject":
            _draw_box(canvas, box, f"{CLASS_NAMES.get(cls, cls)} {score:.2f}", SUBJECT_COLOUR, thickness + 1)
    if caption:
        _draw_caption(canvas, caption, thickness)


def _draw_caption(canvas: np.ndarray, text: str, thickness: int) -> None:
    font_scale = 0.3 * thickness
    weight = max(1, thickness // 2)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, weight)
    pad = 2 * thickness
    cv2.rectangle(canvas, (0, 0), (min(canvas.shape[1], tw + 2 * pad), th + base + 2 * pad), (32, 32, 32), -1)
    cv2.putText(canvas, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), weight,
                cv2.LINE_AA)


def caption_for(violation: str, moment: str, when: str) -> str:
    """The caption bar: `stacked goods | first seen 09:00:05 UTC`."""
    return f"{VIOLATION_NAMES.get(violation, violation.replace('_', ' '))} | {moment} {when}"


def _draw_box(
    canvas: np.ndarray, box: tuple[float, float, float, float], label: str, colour: tuple[int, int, int],
    thickness: int,
) -> None:
    x1, y1, x2, y2 = (round(v) for v in box)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
    font_scale = 0.45 * thickness
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, thickness // 2))
    top = y1 - th - base - 2 * thickness if y1 - th - base - 2 * thickness >= 0 else y1  # above, else inside
    cv2.rectangle(canvas, (x1, top), (x1 + tw + 2 * thickness, top + th + base + 2 * thickness), colour, -1)
    cv2.putText(canvas, label, (x1 + thickness, top + th + thickness), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                (0, 0, 0), max(1, thickness // 2), cv2.LINE_AA)


def _colour(cls: str) -> tuple[int, int, int]:
    return _PALETTE[zlib.crc32(cls.encode()) % len(_PALETTE)]
