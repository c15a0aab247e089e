"""Domain values passed between edge stages. Adapters (PyAV, ONNX, MQTT) convert at the boundary.

Detections travel as `supervision.Detections` (parallel arrays: xyxy (N, 4) float32 in frame pixels,
confidence (N,), class_id (N,), tracker_id (N,) after tracking, data["class_name"] (N,) str and
data["role"] (N,) str), so geometry and tracking libraries take them without copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np

from streetwatch.edge.alerts import AlertState, Violation
from streetwatch.edge.picture import ArrayPicture, Picture

Role = Literal["vehicle", "person", "vending_prop", "goods", "ignore"]
ROLES: tuple[Role, ...] = ("vehicle", "person", "vending_prop", "goods", "ignore")


@dataclass(frozen=True)
class Frame:
    """One decoded, sampled frame.

    picture: the decoded picture, rendered to BGR at the size each stage asks for (an (H, W, 3)
    uint8 BGR array is accepted too and wrapped, for tests and tools). pts_s: stream time in
    seconds (rules measure dwell on it, so a replay runs as fast as the CPU allows). captured_at:
    UTC wall time the frame stands for.
    """

    camera_id: str
    picture: Picture
    pts_s: float
    captured_at: datetime
    index: int
    keyframe: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.picture, np.ndarray):
            object.__setattr__(self, "picture", ArrayPicture(self.picture))

    @property
    def image(self) -> np.ndarray:
        """The full-resolution BGR frame (converted on first use, then cached)."""
        return self.picture.bgr()

    @property
    def width(self) -> int:
        return self.picture.width

    @property
    def height(self) -> int:
        return self.picture.height


@dataclass(frozen=True)
class EvidenceObject:
    cls: str
    score: float
    bbox: tuple[float, float, float, float]


@dataclass(frozen=True)
class ViolationEvent:
    """What the rules decided on one frame: an episode started, is reminded, or ended.

    anchor_px: the ground point (bottom-centre of the main box, or the region centroid) in pixels,
    which geo projects to WGS84. started_pts_s / observed_pts_s are stream times.
    """

    camera_id: str
    episode_id: str
    kind: Literal["start", "reminder", "end"]
    violation: Violation
    zone_id: str
    track_id: int | str
    started_pts_s: float
    observed_pts_s: float
    confidence: float
    anchor_px: tuple[float, float]
    objects: tuple[EvidenceObject, ...] = field(default_factory=tuple)

    @property
    def state(self) -> AlertState:
        return "ended" if self.kind == "end" else "active"

    @property
    def dwell_s(self) -> float:
        return max(0.0, self.observed_pts_s - self.started_pts_s)
