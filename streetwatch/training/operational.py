"""The figure reviewers care about: how many dismissed cases a model would still alert on, and how
many confirmed cases it would miss, for the deployed and the candidate model side by side.

Both models run through the edge's own `Detector` (same pre-processing, thresholds and NMS as in
production) on each case's clean frames (never the evidence JPEG: its drawn boxes change what a
detector finds). A model "alerts" on a case when, on one of its frames, it finds an object of the
same training class as one of the alert's boxes, overlapping it (IoU >= iou). This is a per-image
proxy of the edge rules (no tracking or dwell time), which is what a detector change moves.

Only what the detector under test could have found is counted: cases whose boxes come from the
background model (stacked goods: `static_region`) are shown apart, and cases without a clean frame
are left out and counted. `frame_scores` compares the models on the same val frames, box by box.
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
from streetwatch.training.labels import subject_index

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
BACKGROUND_CLASSES = frozenset({"static_region"})  # boxes made by the edge's background model, not a detector


def detections_in_classes(detector: Detector, image: np.ndarray, class_map: ClassMap) -> list[tuple[int, XYXY]]:
    """The detector's boxes on one image, as (training class index, xyxy); unmapped classes dropped."""
    found = detector.detect(image)
    out = []
    for name, box in zip(found.data["class_name"], found.xyxy, strict=True):
        index = class_map.index_of(str(name))
        if index is not None:
            out.append((index, (float(box[0]), float(box[1]), float(box[2]), float(box[3]))))
    return out


def from_background_model(case: ReviewedCase) -> bool:
    """Whether every box of the case was made by the background model (no detector class)."""
    objects = [cls for alert in case.alerts for cls, _ in alert.objects]
    return bool(objects) and all(cls in BACKGROUND_CLASSES for cls in objects)


def decode_frame(jpeg: bytes, *, where: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{where}: the clean frame is not a decodable JPEG")
    return np.asarray(image)


Labelled = list[tuple[int, XYXY]]


def case_frames(case: ReviewedCase, source: CaseSource, class_map: ClassMap) -> list[tuple[np.ndarray, Labelled]]:
    """(clean frame, alerted boxes in training classes) of each alert with boxes and a clean frame."""
    out = []
    for alert in case.alerts:
        indexed = [(subject_index(case.violation, cls, class_map), b) for cls, b in alert.objects]
        alerted = [(i, b) for i, b in indexed if i is not None]
        jpeg = source.clean_frame(case, alert) if alerted else None
        if jpeg is not None:
            out.append((decode_frame(jpeg, where=f"case {case.case_id} alert {alert.alert_id}"), alerted))
    return out


def has_boxes(case: ReviewedCase, class_map: ClassMap) -> bool:
    return any(subject_index(case.violation, cls, class_map) is not None for a in case.alerts for cls, _ in a.objects)


@dataclass
class Comparison:
    """The detector-class rows, the background-model rows, and the cases left out: with boxes but no
    clean frame, or with no box of a trained class at all (nothing a model could match)."""

    detector_rows: list[OperationalRow]
    background_rows: list[OperationalRow]
    no_clean_frame: list[int]
    no_boxes: list[int] = field(default_factory=list)


def compare(
    detectors: dict[str, Detector],
    cases: Sequence[ReviewedCase],
    source: CaseSource,
    *,
    class_map: ClassMap,
    iou: float = 0.5,
) -> Comparison:
    """One row per detector over the same cases and clean frames; background-model cases apart."""
    boxed = [c for c in cases if has_boxes(c, class_map)]
    frames = {c.case_id: case_frames(c, source, class_map) for c in boxed}
    usable = [c for c in boxed if frames[c.case_id]]
    result = Comparison([], [], [c.case_id for c in boxed if not frames[c.case_id]],
                        [c.case_id for c in cases if not has_boxes(c, class_map)])
    groups = ((result.detector_rows, [c for c in usable if not from_background_model(c)]),
              (result.background_rows, [c for c in usable if from_background_model(c)]))
    for name, detector in detectors.items():
        for rows, group in groups:
            row = OperationalRow(model=name)
            for case in group:
                alerted = any(matches_alert(detections_in_classes(detector, image, class_map), boxes, iou=iou)
                              for image, boxes in frames[case.case_id])
                count_case(row, case, alerted=alerted)
            rows.append(row)
        logger.info("model %s: %s", name, result.detector_rows[-1])
    return result


def count_case(row: OperationalRow, case: ReviewedCase, *, alerted: bool) -> None:
    if case.status in POSITIVE_STATUSES:
        row.confirmed_total += 1
        if not alerted:
            row.confirmed_missed += 1
            row.missed_cases.append(case.case_id)
    else:
        row.dismissed_total += 1
        row.dismissed_alerted += int(alerted)


def _share(part: int, total: int) -> str:
    return f"{part}/{total} ({part / total:.0%})" if total else "0/0 (none)"


def format_table(rows: Sequence[OperationalRow]) -> str:
    """A plain-text table, models side by side."""
    header = f"{'model':<28} {'dismissed still alerted':>24} {'confirmed missed':>20}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.model:<28} {_share(r.dismissed_alerted, r.dismissed_total):>24} "
                     f"{_share(r.confirmed_missed, r.confirmed_total):>20}")
    return "\n".join(lines)


@dataclass
class FrameScore:
    """One model on the val frames, per class: labelled boxes found (confirmed ones apart), extra boxes."""

    model: str
    found: dict[str, int] = field(default_factory=dict)
    labelled: dict[str, int] = field(default_factory=dict)
    confirmed_found: dict[str, int] = field(default_factory=dict)
    confirmed: dict[str, int] = field(default_factory=dict)
    extra: dict[str, int] = field(default_factory=dict)


LabelledFrame = tuple[np.ndarray, list[tuple[int, XYXY, str]]]  # image, (class index, xyxy, source)


def frame_scores(detectors: dict[str, Detector], frames: Sequence[LabelledFrame], *, class_map: ClassMap,
                 iou: float = 0.5) -> list[FrameScore]:
    """Each model on the same frames against their labels; a detection with IoU >= iou is a match."""
    out = []
    for name, detector in detectors.items():
        score = FrameScore(name)
        for image, labels in frames:
            detected = detections_in_classes(detector, image, class_map)
            for index, cls in enumerate(class_map.names):
                truth = [(b, src) for i, b, src in labels if i == index]
                found = np.array([b for i, b in detected if i == index], np.float32).reshape(-1, 4)
                matrix = iou_matrix(np.array([b for b, _ in truth], np.float32).reshape(-1, 4), found) >= iou
                hit: list[bool] = np.asarray(matrix.any(axis=1), bool).tolist() if len(truth) else []
                _add(score.labelled, cls, len(truth))
                _add(score.found, cls, sum(hit))
                _add(score.confirmed, cls, sum(1 for _, src in truth if src == "confirmed"))
                _add(score.confirmed_found, cls,
                     sum(1 for (_, src), h in zip(truth, hit, strict=True) if h and src == "confirmed"))
                _add(score.extra, cls, int((~matrix.any(axis=0)).sum()) if len(found) else 0)
        out.append(score)
    return out


def _add(counts: dict[str, int], key: str, value: int) -> None:
    counts[key] = counts.get(key, 0) + value


def format_frame_scores(scores: Sequence[FrameScore]) -> str:
    header = f"{'model':<28} {'class':<10} {'labelled found':>15} {'confirmed found':>16} {'extra boxes':>12}"
    lines = [header, "-" * len(header)]
    for s in scores:
        for cls in s.labelled:
            if s.labelled[cls] or s.extra[cls]:
                lines.append(f"{s.model:<28} {cls:<10} {f'{s.found[cls]}/{s.labelled[cls]}':>15} "
                             f"{f'{s.confirmed_found[cls]}/{s.confirmed[cls]}':>16} {s.extra[cls]:>12}")
    return "\n".join(lines)
