"""The versioned wire contract between edge and central: alert messages and MQTT topics.

This module imports only pydantic and the standard library, so central (and any third party)
can validate alerts without OpenCV or onnxruntime.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

ALERT_SCHEMA: Literal["streetwatch.alert/1"] = "streetwatch.alert/1"
TOPIC_PREFIX = "streetwatch/v1"
ALERTS_SHARED_SUBSCRIPTION = f"$share/central/{TOPIC_PREFIX}/alerts/#"

MAX_EVIDENCE_B64_CHARS = 400_000  # ~300 KB of JPEG; the edge downsizes to stay under it
MAX_PAYLOAD_BYTES = 512 * 1024
MAX_OBJECTS = 64
MAX_ZONE_POINTS = 64
MAX_PIXEL = 100_000.0  # box coordinates, in evidence-image pixels (the image is at most 10,000 wide)
# Unknown top-level fields are kept for forward compatibility, within bounds: a hostile box must
# not make central store (or recurse through) an arbitrarily deep or wide structure.
MAX_EXTRA_FIELDS = 32
MAX_EXTRA_DEPTH = 8
MAX_SEQ = 2**53  # exact in every JSON reader (a double's integer range)

Violation = Literal["illegal_parking", "street_vending", "stacked_goods"]
VIOLATIONS: tuple[Violation, ...] = ("illegal_parking", "street_vending", "stacked_goods")
# `sighting`: a moving camera saw the object once on one pass (no dwell on the edge); central
# confirms a violation from sightings on separate passes. Older messages never carry it.
AlertState = Literal["active", "ended", "sighting"]
SourceKind = Literal["fixed", "vehicle", "drone"]

# Ids travel inside MQTT topics and file names: no '/', '+', '#', spaces or control characters.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (UTC ISO-8601, e.g. 2026-01-01T08:00:00Z)")
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):  # 0001-01-01T00:00:00+14:00 has no UTC year
        raise ValueError(f"timestamp {value.isoformat()} is out of range once converted to UTC") from None


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]
Pixel = Annotated[float, Field(ge=-MAX_PIXEL, le=MAX_PIXEL)]
TrackId = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | Annotated[str, Field(min_length=1, max_length=64)]


class _WireModel(BaseModel):
    # allow_inf_nan=False: JSON has no NaN, but lenient parsers accept `NaN`/`Infinity` literals.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Location(_WireModel):
    """A WGS84 ground position with its estimated accuracy (1-sigma radius in metres)."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float = Field(ge=0, le=100_000)


class DetectedObject(_WireModel):
    """One detection behind the alert: class name, score and box in evidence-image pixels."""

    cls: str = Field(min_length=1, max_length=64)
    score: float = Field(ge=0, le=1)
    bbox: tuple[Pixel, Pixel, Pixel, Pixel] = Field(description="x1, y1, x2, y2 in frame pixels")

    @model_validator(mode="after")
    def _corners_in_order(self) -> DetectedObject:
        x1, y1, x2, y2 = self.bbox
        if x1 > x2 or y1 > y2:
            raise ValueError(f"bbox: expected x1 <= x2 and y1 <= y2, got {list(self.bbox)}")
        return self


class Evidence(_WireModel):
    """The frame with the offending boxes drawn, as a base64 JPEG of bounded size."""

    jpeg_b64: str = Field(max_length=MAX_EVIDENCE_B64_CHARS)
    width: int = Field(gt=0, le=10_000)
    height: int = Field(gt=0, le=10_000)


MediaKind = Literal["first", "confirmed", "crop", "clip", "clean"]
MEDIA_KINDS: tuple[MediaKind, ...] = ("first", "confirmed", "crop", "clip", "clean")
MediaType = Literal["image/jpeg", "video/mp4"]
MAX_MEDIA_ITEMS = 8
MAX_MEDIA_BYTES = 4 * 1024 * 1024  # one image or clip; the edge's config bounds it lower
MEDIA_CHUNK_BYTES = 256 * 1024  # raw bytes per media message (its base64 stays under MAX_PAYLOAD_BYTES)
MAX_MEDIA_CHUNKS = MAX_MEDIA_BYTES // MEDIA_CHUNK_BYTES
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class MediaRef(_WireModel):
    """One item of the alert's evidence set (revision 1.2), sent apart on the media topic.

    kind: `first` (the frame the object was first seen in, annotated), `confirmed` (the frame that
    confirmed the dwell, annotated), `crop` (the subject at full resolution), `clip` (H.264 MP4
    around the confirmation), `clean` (the frame behind `evidence`, unannotated, the same pixel
    size, so `objects` apply unchanged). The alert's own `evidence` is the latest frame. An item
    whose sha256 equals the evidence's is not sent again."""

    kind: MediaKind
    sha256: Sha256
    content_type: MediaType
    size: int = Field(gt=0, le=MAX_MEDIA_BYTES)
    width: int = Field(gt=0, le=10_000)
    height: int = Field(gt=0, le=10_000)
    captured_at: UtcDatetime | None = Field(default=None, description="the (last) frame's capture time")
    frames: int | None = Field(default=None, ge=1, le=10_000, description="a clip's frame count")
    duration_s: float | None = Field(default=None, ge=0, le=3600, description="a clip's length")


class ModelRef(_WireModel):
    """The detector that produced the alert, so a case can be traced to a model version."""

    name: str = Field(min_length=1, max_length=128)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Alert(BaseModel):
    """A `streetwatch.alert/1` message. Unknown top-level fields are kept (forward compatible,
    bounded by MAX_EXTRA_FIELDS and MAX_EXTRA_DEPTH).

    Revision 1.1 added `seq` and `outbox_id` (the delivery audit, see docs/mqtt.md): optional, so
    a 1.0 box's messages stay valid, and a 1.0 central keeps them as unknown fields. Revision 1.2
    added `media` (the evidence set) the same way."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True, allow_inf_nan=False)

    schema_: Literal["streetwatch.alert/1"] = Field(default=ALERT_SCHEMA, alias="schema")
    alert_id: Identifier = Field(description="Edge-made, globally unique: the idempotency key")
    episode_id: Identifier = Field(description="Shared by the first alert, reminders and the end")
    state: AlertState
    edge_id: Identifier
    camera_id: Identifier
    source_kind: SourceKind = "fixed"
    violation: Violation
    started_at: UtcDatetime
    observed_at: UtcDatetime
    dwell_s: float = Field(ge=0, le=10_000_000)
    confidence: float = Field(ge=0, le=1)
    location: Location | None = Field(default=None, description="None when the camera is not calibrated")
    zone_id: Identifier
    track_id: TrackId
    objects: list[DetectedObject] = Field(default_factory=list, max_length=MAX_OBJECTS)
    evidence: Evidence | None = None
    model: ModelRef
    seq: int | None = Field(
        default=None, ge=1, le=MAX_SEQ,
        description="Delivery number the box's outbox gave it: 1, 2, 3 ... per outbox_id, no gaps",
    )
    outbox_id: Identifier | None = Field(
        default=None, description="The numbering `seq` belongs to (made once per outbox file)"
    )
    media: list[MediaRef] | None = Field(
        default=None, max_length=MAX_MEDIA_ITEMS,
        description="Revision 1.2: the evidence set, whose bytes follow on the media topic",
    )
    zone_polygon_px: list[tuple[Pixel, Pixel]] | None = Field(
        default=None, min_length=3, max_length=MAX_ZONE_POINTS,
        description="Revision 1.2: the zone's outline in evidence-image pixels (fixed cameras)",
    )
    subjects: list[Annotated[int, Field(ge=0, lt=MAX_OBJECTS)]] | None = Field(
        default=None, max_length=MAX_OBJECTS,
        description="Revision 1.2: indexes into `objects` of what the violation is about (the rest is context)",
    )

    @model_validator(mode="after")
    def _verify_consistent(self) -> Alert:
        if self.started_at > self.observed_at:
            raise ValueError(
                f"started_at ({self.started_at.isoformat()}) is after observed_at ({self.observed_at.isoformat()})"
            )
        if (self.seq is None) != (self.outbox_id is None):
            raise ValueError("seq and outbox_id come together: both or neither")
        if self.subjects and max(self.subjects) >= len(self.objects):
            raise ValueError(f"subjects: index {max(self.subjects)} but only {len(self.objects)} objects")
        _verify_extra_fields(self.model_extra or {})
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


def _verify_extra_fields(extra: dict[str, object]) -> None:
    """Unknown fields: at most MAX_EXTRA_FIELDS, nested at most MAX_EXTRA_DEPTH deep (iteratively:
    the check itself must not recurse on hostile input)."""
    if len(extra) > MAX_EXTRA_FIELDS:
        raise ValueError(f"{len(extra)} unknown fields, at most {MAX_EXTRA_FIELDS} are kept")
    stack: list[tuple[str, object, int]] = [(name, value, 1) for name, value in extra.items()]
    while stack:
        name, value, depth = stack.pop()
        if depth > MAX_EXTRA_DEPTH:
            raise ValueError(f"{name}: unknown field nested deeper than {MAX_EXTRA_DEPTH} levels")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((name, child, depth + 1) for child in children)


class AlertRejected(ValueError):
    """A payload that is not a valid alert; `reason` is stored in the dead-letter table."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TimeBounds:
    """Timestamps a receiver believes: not before `not_before` (a box whose clock never synced
    reports 1970), not more than `max_ahead` after the message was received."""

    not_before: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_ahead: timedelta = timedelta(hours=24)


def time_problem(alert: Alert, *, received_at: datetime, bounds: TimeBounds) -> str | None:
    """Why the alert's timestamps cannot be right (naming the field), or None."""
    latest = received_at + bounds.max_ahead
    for name in ("started_at", "observed_at"):
        value: datetime = getattr(alert, name)
        if value < bounds.not_before:
            return f"{name}: {value.isoformat()} is before {bounds.not_before.isoformat()} (is the box's clock set?)"
        if value > latest:
            hours = bounds.max_ahead.total_seconds() / 3600
            return (f"{name}: {value.isoformat()} is more than {hours:g} h after it was received "
                    f"({received_at.isoformat()})")
    return None


def parse_alert(
    payload: bytes | str, *, received_at: datetime | None = None, bounds: TimeBounds | None = None
) -> Alert:
    """Validate a wire payload; raise AlertRejected with a human-readable reason.

    Timestamps are checked against `bounds` (default TimeBounds()) relative to `received_at`
    (default: now)."""
    alert = _parse(payload)
    problem = time_problem(alert, received_at=received_at or datetime.now(UTC), bounds=bounds or TimeBounds())
    if problem is not None:
        raise AlertRejected(f"schema violation: {problem}")
    return alert


def _parse(payload: bytes | str) -> Alert:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise AlertRejected(f"payload too large: {len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    # Fast path: pydantic parses the raw bytes itself (no Python dict in between). It is only
    # trusted for an accepted alert that named the schema; anything else takes the slow path,
    # which decides the rejection and its reason exactly as before.
    try:
        alert = Alert.model_validate_json(payload)
    except ValidationError:
        pass
    else:
        if "schema_" in alert.model_fields_set and alert.schema_ == ALERT_SCHEMA:
            return alert
    return _parse_alert_slowly(payload)


def _parse_alert_slowly(payload: bytes | str) -> Alert:
    """json.loads, then the schema check, then the model: each step names what is wrong."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AlertRejected(f"not JSON: {exc}") from None
    except RecursionError:  # e.g. 200 KB of [[[[...: Python's parser recurses per level
        raise AlertRejected("not an alert: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise AlertRejected(f"expected a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if schema != ALERT_SCHEMA:
        raise AlertRejected(f"unknown schema version {schema!r}; this service reads {ALERT_SCHEMA!r}")
    try:
        return Alert.model_validate(data)
    except ValidationError as exc:
        raise AlertRejected(_describe(exc)) from None
    except RecursionError:
        raise AlertRejected("schema violation: a field is nested too deeply") from None


def _describe(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()]
    return "schema violation: " + "; ".join(parts[:5])


COMMAND_SCHEMA: Literal["streetwatch.command/1"] = "streetwatch.command/1"
REPLY_SCHEMA: Literal["streetwatch.reply/1"] = "streetwatch.reply/1"
MAX_RESEND_SPAN = 100_000  # numbers one resend command may ask for
MAX_COMMAND_BYTES = 4096


class ResendCommand(_WireModel):
    """Central to one box, on `command_topic(edge_id)`: publish alerts first_seq..last_seq of
    outbox `outbox_id` again (the broker lost them after acknowledging them to the box)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, populate_by_name=True)

    schema_: Literal["streetwatch.command/1"] = Field(default=COMMAND_SCHEMA, alias="schema")
    command: Literal["resend"] = "resend"
    request_id: Identifier
    outbox_id: Identifier
    first_seq: int = Field(ge=1, le=MAX_SEQ)
    last_seq: int = Field(ge=1, le=MAX_SEQ)

    @model_validator(mode="after")
    def _verify_span(self) -> ResendCommand:
        if not 0 <= self.last_seq - self.first_seq < MAX_RESEND_SPAN:
            raise ValueError(f"last_seq: expected first_seq <= last_seq < first_seq + {MAX_RESEND_SPAN}, "
                             f"got {self.first_seq}..{self.last_seq}")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class ResendReply(_WireModel):
    """The box's answer on `reply_topic(edge_id)`: how many alerts it queued again, and the
    ranges it no longer holds (past its retention: those alerts cannot be recovered)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, populate_by_name=True)

    schema_: Literal["streetwatch.reply/1"] = Field(default=REPLY_SCHEMA, alias="schema")
    request_id: Identifier
    edge_id: Identifier
    outbox_id: Identifier
    first_seq: int = Field(ge=1, le=MAX_SEQ)
    last_seq: int = Field(ge=1, le=MAX_SEQ)
    requeued: int = Field(ge=0, le=MAX_RESEND_SPAN)
    missing: list[tuple[int, int]] = Field(default_factory=list, max_length=100)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


STATUS_SCHEMA: Literal["streetwatch.status/1"] = "streetwatch.status/1"
MAX_STATUS_BYTES = 16 * 1024


class EdgeStatus(BaseModel):
    """A box's retained status on `status_topic(edge_id)`: online/offline (the last will says
    offline when the connection dies), since when, and where its delivery numbering stands.
    Unknown fields (version, model, cameras ...) are kept, bounded like an alert's."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True, allow_inf_nan=False)

    schema_: Literal["streetwatch.status/1"] = Field(default=STATUS_SCHEMA, alias="schema")
    edge_id: Identifier
    state: Literal["online", "offline"]
    at: UtcDatetime
    reason: str | None = Field(default=None, max_length=64)
    outbox_id: Identifier | None = None
    last_seq: int | None = Field(default=None, ge=0, le=MAX_SEQ)

    @model_validator(mode="after")
    def _verify_extra(self) -> EdgeStatus:
        _verify_extra_fields(self.model_extra or {})
        return self


MEDIA_SCHEMA: Literal["streetwatch.media/1"] = "streetwatch.media/1"
# Not shared: the embedded broker (rumqttd 0.20) loses alerts when one client holds two filters of one
# share group, and its router panicked ("group must exists") with a second group. Every worker then
# gets every piece; pieces are idempotent (a held one costs a file check), so that is only extra work.
MEDIA_SHARED_SUBSCRIPTION = f"{TOPIC_PREFIX}/media/#"


class MediaChunk(_WireModel):
    """One piece of an evidence-set item, on `media_topic(edge_id, camera_id)`.

    The item is the `MediaRef` with this sha256 in alert `alert_id`; it is cut into `chunks` pieces
    of MEDIA_CHUNK_BYTES (the last shorter). Pieces are idempotent (sha256, chunk): a receiver keeps
    what it has, so a transfer cut off resumes with the missing ones and a repeat costs nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, populate_by_name=True)

    schema_: Literal["streetwatch.media/1"] = Field(default=MEDIA_SCHEMA, alias="schema")
    alert_id: Identifier
    edge_id: Identifier
    sha256: Sha256
    content_type: MediaType
    size: int = Field(gt=0, le=MAX_MEDIA_BYTES)
    chunk: int = Field(ge=0, lt=MAX_MEDIA_CHUNKS)
    chunks: int = Field(ge=1, le=MAX_MEDIA_CHUNKS)
    data_b64: str = Field(min_length=4, max_length=(MEDIA_CHUNK_BYTES + 2) // 3 * 4)

    @model_validator(mode="after")
    def _verify_pieces(self) -> MediaChunk:
        expected = -(-self.size // MEDIA_CHUNK_BYTES)
        if self.chunks != expected:
            raise ValueError(f"chunks: {self.size} bytes make {expected} chunks of {MEDIA_CHUNK_BYTES}, "
                             f"got {self.chunks}")
        if self.chunk >= self.chunks:
            raise ValueError(f"chunk: expected 0..{self.chunks - 1}, got {self.chunk}")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


def media_chunks(alert_id: str, edge_id: str, ref: MediaRef, data: bytes) -> list[MediaChunk]:
    """`data` (the bytes `ref` describes) as the media messages that carry it."""
    count = max(1, -(-len(data) // MEDIA_CHUNK_BYTES))
    return [
        MediaChunk(alert_id=alert_id, edge_id=edge_id, sha256=ref.sha256, content_type=ref.content_type,
                   size=len(data), chunk=i, chunks=count,
                   data_b64=base64.b64encode(data[i * MEDIA_CHUNK_BYTES:(i + 1) * MEDIA_CHUNK_BYTES]).decode("ascii"))
        for i in range(count)
    ]


def new_id(prefix: str) -> str:
    """A globally unique, topic-safe id such as `al-6f1c...`."""
    return f"{prefix}-{uuid.uuid4().hex}"


def alert_topic(edge_id: str, camera_id: str) -> str:
    """The one place alert topics are built: streetwatch/v1/alerts/{edge_id}/{camera_id}."""
    return f"{TOPIC_PREFIX}/alerts/{edge_id}/{camera_id}"


def status_topic(edge_id: str) -> str:
    """Retained edge status with a last will: streetwatch/v1/status/{edge_id}."""
    return f"{TOPIC_PREFIX}/status/{edge_id}"


def command_topic(edge_id: str) -> str:
    """Commands from central to one box (only central may publish, only that box reads)."""
    return f"{TOPIC_PREFIX}/commands/{edge_id}"


def reply_topic(edge_id: str) -> str:
    """A box's answers to commands: streetwatch/v1/replies/{edge_id}."""
    return f"{TOPIC_PREFIX}/replies/{edge_id}"


def media_topic(edge_id: str, camera_id: str) -> str:
    """Evidence-set pieces (wire 1.2): streetwatch/v1/media/{edge_id}/{camera_id}."""
    return f"{TOPIC_PREFIX}/media/{edge_id}/{camera_id}"


def edge_id_from_media_topic(topic: str) -> str | None:
    """The edge id a media topic names, or None if the topic is not a media topic."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{TOPIC_PREFIX}/media":
        return None
    return parts[3]


def edge_id_from_topic(topic: str) -> str | None:
    """The edge id an alert topic names, or None if the topic is not an alert topic."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{TOPIC_PREFIX}/alerts":
        return None
    return parts[3]
