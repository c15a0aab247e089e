"""A sub-stream picture seen in the camera's stated pixels, and boxes mapped between resolutions.

A camera with a sub-stream (`detect_url`) is detected on a small picture (say 640x360) while its
zones and calibration are in the pixels of another (`pixel_size`, usually the main stream's
1920x1080). `ScenePicture` wraps the sub-stream picture and reports the stated size, so every
stage (detector letterbox, tracking, rules, background model, geo) works in the stated pixels
unchanged: the detector maps its boxes back through the picture's size, the background model
scales its regions to it. Renderings come from the sub-stream picture (a larger size is the
sub-stream picture enlarged, which only the evidence fallback ever asks for).

`map_box` takes a box from one picture size to another, axis by axis. Two sizes of different
aspect (a 704x576 sub-stream beside a 16:9 main stream) are taken to show the same field of view
stretched, which is what cameras do; `aspect_mismatch` says when that assumption is made, so it
can be logged. A sub-stream that is a crop of the main one cannot be told from the sizes:
`pictures_agree` compares the two pictures themselves.
"""

from __future__ import annotations

import cv2
import numpy as np

from streetwatch.edge.picture import Picture, Size, _CachedPicture
from streetwatch.edge.types import EvidenceObject

Box = tuple[float, float, float, float]
ASPECT_TOLERANCE = 0.02  # 2 %: 1920x1080 vs 640x360 is exact, 1920x1080 vs 704x396 is 0.3 % off
# Normalised cross-correlation of the two pictures' grey thumbnails below which they are taken to
# show different views (a cropped or mis-configured sub-stream): the same view, a key frame up to
# a GOP apart with people moving, stays above 0.8 on the street footage.
AGREEMENT_MIN = 0.6
THUMB_WIDTH = 160


class ScenePicture(_CachedPicture):
    """`inner` (a sub-stream picture) reported at `size`; renders come from `inner`."""

    def __init__(self, inner: Picture, size: Size) -> None:
        super().__init__(size[0], size[1])
        self.inner = inner

    def _render(self, size: Size, *, fast: bool) -> np.ndarray:
        if size[0] <= self.inner.width and size[1] <= self.inner.height:
            return self.inner.bgr(size, fast=fast)
        return cv2.resize(self.inner.bgr(), size, interpolation=cv2.INTER_LINEAR)


def detail_width(picture: Picture) -> int:
    """How many pixels wide the picture's detail really is: a sub-stream's own width, not the
    `pixel_size` it is reported at (rendering it wider only upscales)."""
    return picture.inner.width if isinstance(picture, ScenePicture) else picture.width


def map_box(box: Box, src: Size, dst: Size) -> Box:
    """`box` in `src` pixels, in `dst` pixels (each axis scaled by its own ratio, clipped to dst)."""
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    x1, y1, x2, y2 = box
    return (
        float(np.clip(x1 * sx, 0, dst[0])),
        float(np.clip(y1 * sy, 0, dst[1])),
        float(np.clip(x2 * sx, 0, dst[0])),
        float(np.clip(y2 * sy, 0, dst[1])),
    )


def map_objects(objects: tuple[EvidenceObject, ...], src: Size, dst: Size) -> tuple[EvidenceObject, ...]:
    if src == dst:
        return objects
    return tuple(
        EvidenceObject(cls=o.cls, score=o.score, bbox=map_box(o.bbox, src, dst), emphasis=o.emphasis) for o in objects
    )


def aspect_mismatch(a: Size, b: Size) -> float:
    """Relative difference of the two sizes' aspect ratios (0 = same shape)."""
    ra, rb = a[0] / a[1], b[0] / b[1]
    return abs(ra - rb) / min(ra, rb)


def pictures_agree(sub: Picture, main: Picture) -> float:
    """Normalised cross-correlation (-1..1) of the two pictures' grey thumbnails at one size: near 1
    when they show the same view, low when one is a crop or another camera."""
    height = max(1, round(THUMB_WIDTH * sub.height / sub.width))
    size = (min(THUMB_WIDTH, sub.width, main.width), min(height, sub.height, main.height))
    a = cv2.cvtColor(sub.bgr(size), cv2.COLOR_BGR2GRAY).astype(np.float32)
    b = cv2.cvtColor(main.bgr(size), cv2.COLOR_BGR2GRAY).astype(np.float32)
    a -= a.mean()
    b -= b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def in_camera_pixels(picture: Picture, pixel_size: Size | None) -> Picture:
    """The decoded picture as the camera's stages see it: wrapped to report `pixel_size` (the size
    the zones and calibration are in) when that differs from the picture's own; else itself."""
    if pixel_size is None or (picture.width, picture.height) == tuple(pixel_size):
        return picture
    return ScenePicture(picture, (int(pixel_size[0]), int(pixel_size[1])))
