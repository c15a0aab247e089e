"""The wire contract: what central accepts, what it rejects and why, and how topics are built."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from streetwatch.edge.alerts import (
    ALERT_SCHEMA,
    MAX_PAYLOAD_BYTES,
    AlertRejected,
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
        "started_at": "2026-11-21T08:00:00Z",
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
