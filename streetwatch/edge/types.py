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
    """One box for the evidence. emphasis: `subject` is what the violation is about (the parked car,
    the vendor and the props, the goods), drawn highlighted; `context` is anything else in view,
    drawn thin or dimmed."""

    cls: str
    score: float
    bbox: tuple[float, float, float, float]
    emphasis: Literal["subject", "context"] = "subject"


EventKind = Literal["sighting", "start", "reminder", "end"]
ALERT_STATE: dict[EventKind, AlertState] = {"sighting": "sighting", "start": "active", "reminder": "active",
                                            "end": "ended"}


@dataclass(frozen=True)
class ViolationEvent:
    """What the rules of one camera decided on one frame; `alerting.build_alert` makes it an Alert.

    kind: `start` / `reminder` / `end` of an episode (fixed and moving cameras), or a moving
    camera's `sighting` (one per object and pass; episode_id is then the pass id).
    track_id: the subject: a fixed camera's track id or static-region id, a moving camera's ground
    object id. started_t / observed_t: stream seconds (dwell began / this frame).
    anchor: the point the alert is located at, in the coordinates the camera's rules work in, like
    its zones (zones.Zone): frame pixels (x, y) for a fixed camera (the bottom centre of the main
    box, or a region's), east/north metres in the rules' tangent plane for a moving camera.
    accuracy_m: a moving camera's 1-sigma of that ground point; None for pixels (geo computes it).
    """

    kind: EventKind
    violation: Violation
    zone_id: str
    episode_id: str
    track_id: int | str
    started_t: float
    observed_t: float
    confidence: float
    anchor: tuple[float, float]
    accuracy_m: float | None = None
    objects: tuple[EvidenceObject, ...] = field(default_factory=tuple)

    @property
    def state(self) -> AlertState:
        return ALERT_STATE[self.kind]

    @property
    def dwell_s(self) -> float:
        return max(0.0, self.observed_t - self.started_t)
