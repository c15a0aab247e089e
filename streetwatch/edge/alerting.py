"""One rule event -> one wire Alert, for every kind of camera.

Both analyzers (pipeline.CameraAnalyzer for fixed cameras, moving.MovingCameraAnalyzer for
vehicles and drones) hand their rules' `ViolationEvent`s here with the frame that decided them and
the event's location, which each computes its own way (a fixed camera's ground homography, a moving
camera's tangent plane). Everything else an alert carries is built the same way for both: ids,
times (stream seconds of the event placed on the frame's capture time), rounding, the evidence
photo and the model. The wire contract itself is edge/alerts.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from streetwatch.edge.alerts import MAX_ZONE_POINTS, Alert, Location, ModelRef, new_id
from streetwatch.edge.config import CameraConfig, EdgeConfig
from streetwatch.edge.evidence import render_evidence
from streetwatch.edge.evidence_set import EvidenceSetBuilder, MediaItem
from streetwatch.edge.types import Frame, ViolationEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertContext:
    """What every alert of this edge box carries besides the event itself."""

    edge_id: str
    model: ModelRef
    config: EdgeConfig


def build_alert(
    event: ViolationEvent,
    frame: Frame,
    *,
    camera: CameraConfig,
    context: AlertContext,
    location: Location | None,
) -> Alert:
    """The alert for `event`, decided on `frame` of `camera`, with its evidence drawn on that frame.

    started_at: the frame's capture time minus the stream time since the dwell began.
    location: where the event is on the ground (None: the camera has no geo calibration, or the
    point is above the horizon).
    """
    return build_alert_with_media(event, frame, camera=camera, context=context, location=location)[0]


def build_alert_with_media(
    event: ViolationEvent,
    frame: Frame,
    *,
    camera: CameraConfig,
    context: AlertContext,
    location: Location | None,
    evidence_set: EvidenceSetBuilder | None = None,
) -> tuple[Alert, list[MediaItem]]:
    """`build_alert`, and with `evidence_set` the alert's evidence set: the alert announces it
    (`media`, wire 1.2) and the items' bytes come back to be sent on the media topic."""
    settings = context.config.evidence
    media: list[MediaItem] = []
    if evidence_set is not None:
        rendered, media = evidence_set.render(event, frame)
    else:
        rendered = render_evidence(
            frame.picture,
            event.objects,
            max_width=settings.max_width,
            jpeg_quality=settings.jpeg_quality,
            max_bytes=settings.max_bytes,
        )
    log.info(
        "camera %s episode %s %s %s zone %s track %s dwell %.0fs",
        camera.id, event.episode_id, event.kind, event.violation, event.zone_id, event.track_id, event.dwell_s,
    )  # fmt: skip
    subjects = [i for i, emphasis in enumerate(rendered.emphasis) if emphasis == "subject"]
    zone = evidence_set.zones_px.get(event.zone_id) if evidence_set is not None else None
    zone_px = ([(round(x * rendered.scale, 1), round(y * rendered.scale, 1)) for x, y in zone]
               if zone and 3 <= len(zone) <= MAX_ZONE_POINTS else None)
    alert = Alert(
        alert_id=new_id("al"),
        episode_id=event.episode_id,
        state=event.state,
        edge_id=context.edge_id,
        camera_id=camera.id,
        source_kind=camera.kind,
        violation=event.violation,
        started_at=frame.captured_at - timedelta(seconds=frame.pts_s - event.started_t),
        observed_at=frame.captured_at,
        dwell_s=round(event.dwell_s, 1),
        confidence=round(event.confidence, 3),
        location=location,
        zone_id=event.zone_id,
        track_id=event.track_id,
        objects=list(rendered.objects),
        evidence=rendered.evidence,
        model=context.model,
        media=[item.ref for item in media] or None,
        subjects=subjects if media else None,
        zone_polygon_px=zone_px if media else None,
    )
    return alert, media
