"""Evidence photos: the frame with the offending boxes drawn, as a bounded base64 JPEG.

The frame is downscaled to max_width first and the boxes are drawn at the output size, so lines
and labels stay legible whatever the camera resolution. The JPEG quality is then lowered in
steps, and if that is not enough the width too, until the JPEG fits max_bytes and its base64
fits the wire limit (alerts.MAX_EVIDENCE_B64_CHARS).
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


@dataclass(frozen=True)
class RenderedEvidence:
    """evidence: the wire value. objects: the boxes in evidence-image pixels (what the alert
    carries; at most MAX_OBJECTS, highest score first). scale: evidence width / frame width.
    jpeg_quality: the quality that fitted."""

    evidence: Evidence
    objects: tuple[DetectedObject, ...]
    scale: float
    jpeg_quality: int


class EvidenceTooLarge(ValueError):
    """Even the smallest, lowest-quality JPEG does not fit the byte limit."""


def render_evidence(
    image: np.ndarray | Picture,
    objects: Sequence[EvidenceObject],
    *,
    max_width: int = 1280,
    jpeg_quality: int = 80,
    max_bytes: int = 250_000,
) -> RenderedEvidence:
    """Draw `objects` (boxes in frame pixels) on the frame and encode it within the size limits.

    `image`: the frame as a Picture (rendered straight at the evidence width) or a BGR array.
    """
    picture = ArrayPicture(image) if isinstance(image, np.ndarray) else image
    if max_width < MIN_WIDTH:
        raise ValueError(f"max_width: expected >= {MIN_WIDTH} px, got {max_width}")
    limit = min(max_bytes, MAX_EVIDENCE_B64_CHARS // 4 * 3)  # base64 makes 4 characters of 3 bytes
    chosen = sorted(objects, key=lambda o: o.score, reverse=True)[:MAX_OBJECTS]
    width = min(picture.width, max_width)
    while True:
        canvas, scaled = _draw(picture, chosen, width=width)
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


def _encode(canvas: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode failed to encode the evidence JPEG")
    return bytes(buf.tobytes())


def _draw(
    picture: Picture, objects: Sequence[EvidenceObject], *, width: int
) -> tuple[np.ndarray, tuple[DetectedObject, ...]]:
    """Downscale to `width` (never up), then draw each box with a `cls score` label."""
    width_in, height_in = picture.width, picture.height
    width, height = scaled_size(width_in, height_in, width)
    canvas = picture.bgr((width, height)).copy()  # renders are cached and shared: draw on a copy
    sx, sy = width / width_in, height / height_in
    thickness = max(2, round(width / 640))
    scaled = []
    for obj in objects:
        x1, y1, x2, y2 = obj.bbox
        box = (
            float(np.clip(x1 * sx, 0, width)),
            float(np.clip(y1 * sy, 0, height)),
            float(np.clip(x2 * sx, 0, width)),
            float(np.clip(y2 * sy, 0, height)),
        )
        _draw_box(canvas, box, f"{obj.cls} {obj.score:.2f}", _colour(obj.cls), thickness)
        scaled.append(DetectedObject(cls=obj.cls, score=obj.score, bbox=box))
    return canvas, tuple(scaled)


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
