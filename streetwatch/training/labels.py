"""Complete labels for one clean frame: the reviewed boxes, the deployed model's other detections as
pseudo-labels, and the dismissed boxes as negative regions.

An unlabelled object teaches "background", so every object of the trained classes in a harvested frame
gets a box:
- `confirmed`: the alert's boxes of a confirmed case (a reviewer looked at them). For the violations a
  detector class cannot name, the subject becomes the class the loop grows: a stacked-goods alert's
  boxes (the background model's `static_region`) become `goods`, a street-vending alert's props
  (anything that is not a vehicle or a person: umbrellas, carts) become `stall`.
- `pseudo`: the deployed model's detections on the clean frame at or above a score, except where a
  labelled box or a negative region already is. Marked as such in the sidecar, so they can be audited
  and weighted.
- negative regions: the boxes of a case dismissed as a false detection. They get no label (that area is
  background), and a pseudo-label on them is dropped: it is the mistake the reviewer dismissed. The rest
  of the frame is labelled as above, so the cars next to the false one stay positives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from streetwatch.training.classmap import ClassMap

XYXY = tuple[float, float, float, float]
LabelSource = Literal["confirmed", "pseudo"]
# violation -> the training class its subject boxes become when no detector class names them
SUBJECT_CLASS: dict[str, str] = {"stacked_goods": "goods", "street_vending": "stall"}
DETECTOR_ROLES = ("vehicle", "person")
OVERLAP_IOU = 0.5


@dataclass(frozen=True)
class LabelBox:
    """One labelled box in image pixels with its training class, where it came from and its score."""

    class_index: int
    xyxy: XYXY
    source: LabelSource
    score: float | None = None


@dataclass(frozen=True)
class FrameLabels:
    """A frame's boxes (positives) and negative regions (dismissed boxes: background)."""

    boxes: tuple[LabelBox, ...]
    negative_regions: tuple[XYXY, ...] = ()
    pseudo_dropped: int = 0  # pseudo-labels left out because a box or negative region was there


def iou(a: XYXY, b: np.ndarray) -> np.ndarray:
    """IoU of one box with each row of b (N, 4)."""
    if b.size == 0:
        return np.zeros(0, np.float32)
    tl = np.maximum(np.asarray(a[:2]), b[:, :2])
    br = np.minimum(np.asarray(a[2:]), b[:, 2:])
    inter = np.clip(br - tl, 0, None).prod(axis=1)
    area = (a[2] - a[0]) * (a[3] - a[1])
    areas = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9), np.float32)


def subject_index(violation: str, detector_class: str, class_map: ClassMap) -> int | None:
    """The training class of one alert box: the class map's, or the violation's grown class."""
    index = class_map.index_of(detector_class)
    grown = SUBJECT_CLASS.get(violation)
    if grown is None or grown not in class_map.names:
        return index
    if index is not None and class_map.classes[index].role in DETECTOR_ROLES:
        return index  # the vendor is a person, a car beside goods a vehicle
    return class_map.names.index(grown)


def confirmed_boxes(violation: str, objects: Sequence[tuple[str, XYXY]], class_map: ClassMap) -> list[LabelBox]:
    out = []
    for cls, xyxy in objects:
        index = subject_index(violation, cls, class_map)
        if index is not None:
            out.append(LabelBox(index, xyxy, "confirmed"))
    return out


def complete_labels(
    *,
    positive: bool,
    violation: str,
    objects: Sequence[tuple[str, XYXY]],
    detections: Sequence[tuple[int, XYXY, float]],
    class_map: ClassMap,
) -> FrameLabels:
    """Labels of a frame: a confirmed case's boxes, or a false detection's boxes as negative regions,
    plus every detection (training class, xyxy, score; already thresholded) that overlaps neither."""
    boxes = confirmed_boxes(violation, objects, class_map) if positive else []
    negatives = () if positive else tuple(xyxy for _, xyxy in objects)
    taken = np.array([b.xyxy for b in boxes] + list(negatives), np.float32).reshape(-1, 4)
    dropped = 0
    for index, xyxy, score in detections:
        if (iou(xyxy, taken) >= OVERLAP_IOU).any():
            dropped += 1
            continue
        boxes.append(LabelBox(index, xyxy, "pseudo", round(score, 4)))
    return FrameLabels(tuple(boxes), negatives, dropped)
