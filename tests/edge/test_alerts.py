"""The wire contract: what central accepts, what it rejects and why, and how topics are built."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streetwatch.edge.alerts import (
    ALERT_SCHEMA,
    MAX_PAYLOAD_BYTES,
    AlertRejected,
    TimeBounds,
    alert_topic,
    edge_id_from_topic,
    parse_alert,
    status_topic,
)


def valid_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "schema": ALERT_SCHEMA,
        "alert_id": "al-1",
        "episode_id": "ep-1",
        "state": "active",
        "edge_id": "box-01",
        "camera_id": "cam-001",
        "source_kind": "fixed",
        "violation": "illegal_parking",
        "started_at": "2026-11-21T00:00:00Z",
        "observed_at": "2026-11-21T08:02:00+08:00",
        "dwell_s": 120.0,
        "confidence": 0.7,
        "location": {"lat": 31.3, "lon": 120.58, "accuracy_m": 1.5},
        "zone_id": "z-1",
        "track_id": 7,
        "objects": [{"cls": "car", "score": 0.7, "bbox": [1, 2, 3, 4]}],
        "model": {"name": "yolox_nano", "sha256": "a" * 64},
    }
    payload.update(overrides)
    return payload


def test_valid_alert_round_trips_and_keeps_unknown_fields() -> None:
    alert = parse_alert(json.dumps(valid_payload(future_field={"x": 1})))
    assert alert.observed_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert alert.observed_at.hour == 0  # 08:02+08:00 normalised to UTC
    again = parse_alert(alert.to_json())
    assert again == alert
    assert json.loads(alert.to_json())["future_field"] == {"x": 1}


@pytest.mark.parametrize(
    ("state", "source_kind"), [("active", "fixed"), ("ended", "fixed"), ("sighting", "vehicle"), ("sighting", "drone")]
)
def test_states_of_schema_1_include_moving_camera_sightings(state: str, source_kind: str) -> None:
    """`sighting` was added to streetwatch.alert/1 compatibly: earlier messages stay valid, schema unchanged."""
    alert = parse_alert(json.dumps(valid_payload(state=state, source_kind=source_kind)))
    assert (alert.state, alert.source_kind, json.loads(alert.to_json())["schema"]) == (
        state, source_kind, "streetwatch.alert/1")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (json.dumps(valid_payload(state="seen")).encode(), "state"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps(valid_payload(schema="streetwatch.alert/2")).encode(), "unknown schema version"),
        (json.dumps(valid_payload(violation="littering")).encode(), "violation"),
        (json.dumps(valid_payload(started_at="2026-11-21T08:00:00")).encode(), "time zone"),
        (json.dumps(valid_payload(edge_id="box/01")).encode(), "edge_id"),
        (json.dumps(valid_payload(location={"lat": 91, "lon": 0, "accuracy_m": 1})).encode(), "location.lat"),
        (json.dumps(valid_payload(model={"name": "m", "sha256": "xyz"})).encode(), "model.sha256"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "too large"),
    ],
)
def test_rejections_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(AlertRejected) as err:
        parse_alert(payload)
    assert reason in err.value.reason


def test_topics_are_built_in_one_place() -> None:
    assert alert_topic("box-01", "cam-001") == "streetwatch/v1/alerts/box-01/cam-001"
    assert status_topic("box-01") == "streetwatch/v1/status/box-01"
    assert edge_id_from_topic("streetwatch/v1/alerts/box-01/cam-001") == "box-01"
    assert edge_id_from_topic("streetwatch/v1/status/box-01") is None


def test_schema_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, streetwatch.edge.alerts; "
        "heavy = {'cv2', 'onnxruntime', 'av', 'numpy', 'torch', 'sqlalchemy'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _raw(**overrides: Any) -> bytes:
    return json.dumps(valid_payload(**overrides)).encode()


HOSTILE = [
    # Timestamps whose conversion to UTC overflows (these once killed central's ingest thread)
    ("year-1-plus-14h", _raw(started_at="0001-01-01T00:00:00+14:00"), "started_at"),
    ("year-9999-minus-14h", _raw(observed_at="9999-12-31T23:59:59-14:00"), "observed_at"),
    ("far-future", _raw(observed_at="9999-12-31T23:59:59Z"), "observed_at"),
    ("clock-never-set", _raw(started_at="1970-01-01T00:00:00Z"), "started_at"),
    ("started-after-observed", _raw(started_at="2026-11-21T09:00:00Z"), "started_at"),
    ("nan", _raw().replace(b'"dwell_s": 120.0', b'"dwell_s": NaN'), "dwell_s"),
    ("infinity", _raw().replace(b'"confidence": 0.7', b'"confidence": Infinity'), "confidence"),
    ("bbox-inf", _raw().replace(b"[1, 2, 3, 4]", b"[1, 2, 1e400, 4]"), "bbox"),
    ("bbox-reversed", _raw(objects=[{"cls": "car", "score": 0.5, "bbox": [5, 2, 3, 4]}]), "bbox"),
    ("bbox-huge", _raw(objects=[{"cls": "car", "score": 0.5, "bbox": [0, 0, 1e12, 4]}]), "bbox"),
    ("track-id-2^70", _raw(track_id=2**70), "track_id"),
    ("track-id-long", _raw(track_id="t" * 65), "track_id"),
    ("seq-without-outbox", _raw(seq=3), "seq and outbox_id"),
    ("seq-zero", _raw(seq=0, outbox_id="ob-1"), "seq"),
    ("deep-unknown-field", _raw(future=[[[[[[[[[[1]]]]]]]]]]), "future"),
    ("many-unknown-fields", _raw(**{f"f{i}": i for i in range(40)}), "unknown fields"),
    # 200 KB of brackets: no field to name, the parser cannot get that far
    ("nested-brackets", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("nested-in-field", _raw().replace(b'"zone_id": "z-1"', b'"zone_id": ' + b"[" * 50_000 + b"]" * 50_000),
     "nested too deeply"),
    ("too-large", b"[" * 300_000 + b"]" * 300_000, "too large"),
    ("nul-in-id", _raw(alert_id="al-\x00"), "alert_id"),
    ("wrong-type", _raw(location="here"), "location"),
]


@pytest.mark.parametrize(("payload", "field"), [row[1:] for row in HOSTILE], ids=[row[0] for row in HOSTILE])
def test_hostile_values_are_refused_naming_the_field(payload: bytes, field: str) -> None:
    """Every out-of-range or malformed value is an AlertRejected whose reason names the field;
    never another exception type (which would escape a receiver's error handling)."""
    with pytest.raises(AlertRejected) as err:
        parse_alert(payload)
    assert field in err.value.reason


def test_time_bounds_are_relative_to_receipt_and_configurable() -> None:
    received = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
    late = _raw(started_at="2026-11-21T23:00:00Z", observed_at="2026-11-22T01:00:00Z")
    with pytest.raises(AlertRejected, match="observed_at: .* more than 24 h after"):
        parse_alert(late, received_at=received)
    wide = TimeBounds(not_before=datetime(1990, 1, 1, tzinfo=UTC), max_ahead=timedelta(hours=48))
    assert parse_alert(late, received_at=received, bounds=wide).observed_at.day == 22
    old = _raw(started_at="1995-01-01T00:00:00Z", observed_at="1995-01-01T00:01:00Z")
    assert parse_alert(old, received_at=received, bounds=wide).started_at.year == 1995


def test_delivery_numbering_is_optional_and_round_trips() -> None:
    """Revision 1.1 (seq, outbox_id) is optional: 1.0 messages stay valid, 1.1 ones round-trip."""
    assert parse_alert(_raw()).seq is None
    alert = parse_alert(_raw(seq=41, outbox_id="ob-7f3a"))
    assert (alert.seq, alert.outbox_id) == (41, "ob-7f3a")
    assert json.loads(alert.to_json())["seq"] == 41
