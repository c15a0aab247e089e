"""The figure reviewers care about: how many dismissed cases a model would still alert on, and how
many confirmed cases it would miss, for the deployed and the candidate model side by side.

Both models run through the edge's own `Detector` (same pre-processing, thresholds and NMS as in
production) on each case's evidence images. A model "alerts" on a case when, on one of its
evidence images, it finds an object of the same training class as one of the alert's boxes,
overlapping it (IoU >= iou). This is a per-image proxy of the edge rules (no tracking or dwell
time), which is what a detector change moves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from streetwatch.edge.detector import Detector
from streetwatch.training.classmap import ClassMap
from streetwatch.training.harvest import POSITIVE_STATUSES, CaseSource, ReviewedCase

logger = logging.getLogger(__name__)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4), xyxy."""
    if a.size == 0 or b.size == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    return (inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)).astype(np.float32)


def matches_alert(
    detected: Sequence[tuple[int, tuple[float, float, float, float]]],
    alerted: Sequence[tuple[int, tuple[float, float, float, float]]],
    *,
    iou: float,
) -> bool:
    """True if any alerted (class, box) has a detection of the same class with IoU >= iou."""
    for cls in {c for c, _ in alerted}:
        a = np.array([b for c, b in alerted if c == cls], dtype=np.float32).reshape(-1, 4)
        d = np.array([b for c, b in detected if c == cls], dtype=np.float32).reshape(-1, 4)
        if (iou_matrix(a, d) >= iou).any():
            return True
    return False


@dataclass
class OperationalRow:
    """One model's figures: dismissed cases still alerted on, confirmed cases missed."""

    model: str
    dismissed_alerted: int = 0
    dismissed_total: int = 0
    confirmed_missed: int = 0
    confirmed_total: int = 0
    missed_cases: list[int] = field(default_factory=list)

    @property
    def dismissed_share(self) -> float:
        return self.dismissed_alerted / self.dismissed_total if self.dismissed_total else float("nan")

    @property
    def missed_share(self) -> float:
        return self.confirmed_missed / self.confirmed_total if self.confirmed_total else float("nan")


XYXY = tuple[float, float, float, float]


def detections_in_classes(detector: Detector, image: np.ndarray, class_map: ClassMap) -> list[tuple[int, XYXY]]:
    """The detector's boxes on one image, as (training class index, xyxy); unmapped classes dropped."""
    found = detector.detect(image)
    out = []
    for name, box in zip(found.data["class_name"], found.xyxy, strict=True):
        index = class_map.index_of(str(name))
        if index is not None:
            out.append((index, (float(box[0]), float(box[1]), float(box[2]), float(box[3]))))
    return out


def case_alerts(detector: Detector, case: ReviewedCase, source: CaseSource, *, class_map: ClassMap,
                iou: float) -> bool:
    """Would this detector alert on this case (on any of its evidence images)?"""
    for alert in case.alerts:
        alerted = [(i, b) for cls, b in alert.objects if (i := class_map.index_of(cls)) is not None]
        if not alerted:
            continue
        jpeg = source.evidence(case, alert)
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"case {case.case_id} alert {alert.alert_id}: evidence is not a decodable JPEG")
        if matches_alert(detections_in_classes(detector, image, class_map), alerted, iou=iou):
            return True
    return False


def compare(
    detectors: dict[str, Detector],
    cases: Sequence[ReviewedCase],
    source: CaseSource,
    *,
    class_map: ClassMap,
    iou: float = 0.5,
) -> list[OperationalRow]:
    """One row per detector over the same confirmed and dismissed cases."""
    rows = []
    for name, detector in detectors.items():
        row = OperationalRow(model=name)
        for case in cases:
            alerted = case_alerts(detector, case, source, class_map=class_map, iou=iou)
            if case.status in POSITIVE_STATUSES:
                row.confirmed_total += 1
                if not alerted:
                    row.confirmed_missed += 1
                    row.missed_cases.append(case.case_id)
            else:
                row.dismissed_total += 1
                row.dismissed_alerted += int(alerted)
        logger.info("model %s: dismissed still alerted %d/%d, confirmed missed %d/%d", name,
                    row.dismissed_alerted, row.dismissed_total, row.confirmed_missed, row.confirmed_total)
        rows.append(row)
    return rows


def format_table(rows: Sequence[OperationalRow]) -> str:
    """A plain-text table, models side by side."""
    header = f"{'model':<28} {'dismissed still alerted':>24} {'confirmed missed':>20}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.model:<28} {f'{r.dismissed_alerted}/{r.dismissed_total} ({r.dismissed_share:.0%})':>24} "
            f"{f'{r.confirmed_missed}/{r.confirmed_total} ({r.missed_share:.0%})':>20}"
        )
    return "\n".join(lines)
