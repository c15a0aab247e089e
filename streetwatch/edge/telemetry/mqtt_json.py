"""`streetwatch.telemetry/1`: a vehicle's pose as JSON over MQTT, and its topic.

The topic builder lives here rather than in `alerts.py` so the shared wire module stays
untouched; it uses the same `TOPIC_PREFIX`, so all topics still come from one prefix:
`streetwatch/v1/telemetry/{edge_id}/{camera_id}`. Transport (paho) stays with the caller: this
module validates payloads and turns them into Poses, nothing more.
"""

from __future__ import annotations

import json
import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streetwatch.edge.alerts import TOPIC_PREFIX, Identifier, UtcDatetime
from streetwatch.edge.telemetry.pose import ParseStats, Pose

log = logging.getLogger(__name__)

TELEMETRY_SCHEMA: Literal["streetwatch.telemetry/1"] = "streetwatch.telemetry/1"
MAX_TELEMETRY_BYTES = 4096


def telemetry_topic(edge_id: str, camera_id: str) -> str:
    """The one place telemetry topics are built: streetwatch/v1/telemetry/{edge_id}/{camera_id}."""
    return f"{TOPIC_PREFIX}/telemetry/{edge_id}/{camera_id}"


class TelemetryMessage(BaseModel):
    """One pose of one camera's platform. Unknown fields are refused (a typo is not silent)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: Literal["streetwatch.telemetry/1"] = Field(alias="schema")
    edge_id: Identifier
    camera_id: Identifier
    t: UtcDatetime = Field(description="Time of the fix, ISO-8601 with a zone")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    alt_m: float | None = Field(default=None, ge=-1000, le=20_000, description="Above mean sea level")
    heading_deg: float | None = Field(default=None, ge=0, lt=360, description="Clockwise from true north")
    pitch_deg: float | None = Field(default=None, ge=-90, le=90, description="Nose up positive")
    roll_deg: float | None = Field(default=None, ge=-180, le=180, description="Right side down positive")
    speed_mps: float | None = Field(default=None, ge=0, le=150)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    def to_pose(self, *, source: str | None = None) -> Pose:
        return Pose(
            t=self.t, lat=self.lat, lon=self.lon, alt_m=self.alt_m, heading_deg=self.heading_deg,
            pitch_deg=self.pitch_deg, roll_deg=self.roll_deg, speed_mps=self.speed_mps,
            source=source or telemetry_topic(self.edge_id, self.camera_id),
        )


class TelemetryRejected(ValueError):
    """A payload that is not a valid telemetry message; `reason` names the field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_telemetry(payload: bytes | str) -> TelemetryMessage:
    """Validate one payload; raise TelemetryRejected with the field and what was expected."""
    if len(payload) > MAX_TELEMETRY_BYTES:
        raise TelemetryRejected(f"payload too large: {len(payload)} bytes > {MAX_TELEMETRY_BYTES}")
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TelemetryRejected(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TelemetryRejected(f"expected a JSON object, got {type(data).__name__}")
    if data.get("schema") != TELEMETRY_SCHEMA:
        raise TelemetryRejected(f"schema: expected {TELEMETRY_SCHEMA!r}, got {data.get('schema')!r}")
    try:
        return TelemetryMessage.model_validate(data)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise TelemetryRejected("; ".join(parts[:5])) from None


class TelemetryHandler:
    """Turns MQTT payloads for one camera into Poses; rejects are counted, not raised.

    Messages for another edge/camera than the one this handler serves are counted as `invalid`
    (a mis-routed publisher would otherwise move the wrong camera).
    """

    def __init__(self, *, edge_id: str, camera_id: str, stats: ParseStats | None = None):
        self.edge_id = edge_id
        self.camera_id = camera_id
        self.stats = stats or ParseStats(telemetry_topic(edge_id, camera_id))
        self._last: Pose | None = None

    def handle(self, payload: bytes | str) -> Pose | None:
        try:
            msg = parse_telemetry(payload)
        except TelemetryRejected as exc:
            self.stats.fail("invalid", exc.reason)
            return None
        if (msg.edge_id, msg.camera_id) != (self.edge_id, self.camera_id):
            self.stats.fail("invalid", f"message for {msg.edge_id}/{msg.camera_id} on this camera's handler")
            return None
        pose = msg.to_pose()
        self.stats.check_gap(self._last.t if self._last else None, pose.t)
        self._last = pose
        self.stats.ok()
        return pose
