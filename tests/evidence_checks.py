"""Pixel checks shared by the evidence-set tests: is a box or a zone edge drawn, in which colour, how thick."""

from __future__ import annotations

import io
from collections.abc import Sequence

import av
import cv2
import numpy as np

from streetwatch.edge.evidence import CONTEXT_COLOUR, SUBJECT_COLOUR, ZONE_COLOUR

__all__ = ["CONTEXT_COLOUR", "SUBJECT_COLOUR", "ZONE_COLOUR", "decode_clip", "decode_jpeg", "drawn_width", "edge_run",
           "zone_edge_colour_share"]


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


def _near(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: float = 70.0) -> np.ndarray:
    return np.linalg.norm(pixels.astype(float) - np.array(colour, float), axis=-1) < tolerance


def edge_run(image: np.ndarray, box: Sequence[float], colour: tuple[int, int, int]) -> tuple[float, int]:
    """Along the left edge of `box` (its middle half of rows): the share of rows where `colour` is
    drawn at the edge, and the median width (px) of that colour's run across the edge."""
    x1, y1, _x2, y2 = (round(v) for v in box)
    rows = range(round(y1 + (y2 - y1) * 0.25), round(y1 + (y2 - y1) * 0.75))
    hits, widths = 0, []
    for y in rows:
        band = _near(image[y, max(0, x1 - 6): x1 + 7], colour)
        if band.any():
            hits += 1
            widths.append(int(band.sum()))
    return hits / max(1, len(rows)), int(np.median(widths)) if widths else 0


def drawn_width(drawn: np.ndarray, clean: np.ndarray, box: Sequence[float], *, threshold: int = 40) -> int:
    """The median width (px) of what drawing changed across the left edge of `box` (drawn vs clean)."""
    x1, y1, _x2, y2 = (round(v) for v in box)
    changed = np.abs(drawn.astype(int) - clean.astype(int)).max(axis=2) > threshold
    widths = [int(changed[y, max(0, x1 - 6): x1 + 7].sum())
              for y in range(round(y1 + (y2 - y1) * 0.25), round(y1 + (y2 - y1) * 0.75))]
    return int(np.median(widths)) if widths else 0


def zone_edge_colour_share(image: np.ndarray, polygon: Sequence[tuple[float, float]]) -> float:
    """The share of points along the polygon's edges (sampled every few px) where the zone colour is
    drawn within 2 px."""
    points = [(float(x), float(y)) for x, y in polygon]
    hits = total = 0
    for (ax, ay), (bx, by) in zip(points, points[1:] + points[:1], strict=True):
        steps = max(2, int(np.hypot(bx - ax, by - ay) / 4))
        for i in range(1, steps):
            x, y = round(ax + (bx - ax) * i / steps), round(ay + (by - ay) * i / steps)
            if 2 <= x < image.shape[1] - 2 and 2 <= y < image.shape[0] - 2:
                total += 1
                hits += bool(_near(image[y - 2: y + 3, x - 2: x + 3], ZONE_COLOUR).any())
    return hits / max(1, total)


def decode_clip(data: bytes) -> tuple[int, float, tuple[int, int], str]:
    """(frames decoded, duration in s from the container, (width, height), codec name) of an MP4."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        count = sum(1 for _ in container.decode(stream))
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        return count, duration, (stream.width, stream.height), codec
