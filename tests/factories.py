"""Valid domain values for tests, with overrides: `make_alert(camera_id="cam-2", state="ended")`.

Import as `from factories import make_alert` (tests/ is on pytest's pythonpath, see pyproject.toml).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

from streetwatch.edge.alerts import Alert, new_id

# A real model hash shape (64 hex chars); the value names no real file.
FAKE_MODEL_SHA256 = hashlib.sha256(b"streetwatch-test-model").hexdigest()
# Smallest useful stand-in for an evidence JPEG: the JPEG start/end markers, base64-encoded.
TINY_JPEG_B64 = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"\xff\xd9").decode()


def make_alert(**overrides: object) -> Alert:
    """A valid `streetwatch.alert/1` Alert; any field can be overridden (validated as on the wire).

    Each call gets a fresh alert_id and episode_id unless given. Nested values (location, objects,
    evidence, model) may be passed as dicts. `started_at` follows an overridden `observed_at`
    (150 s before it) unless given: the wire refuses an episode that starts after it was seen.
    """
    observed = _as_datetime(overrides.get("observed_at", datetime(2026, 1, 15, 8, 30, tzinfo=UTC)))
    fields: dict[str, object] = {
        "alert_id": new_id("al"),
        "episode_id": new_id("ep"),
        "state": "active",
        "edge_id": "box-01",
        "camera_id": "cam-1",
        "source_kind": "fixed",
        "violation": "illegal_parking",
        "started_at": observed - timedelta(seconds=150),
        "observed_at": observed,
        "dwell_s": 150.0,
        "confidence": 0.82,
        "location": {"lat": 31.2304, "lon": 121.4737, "accuracy_m": 3.5},
        "zone_id": "z-parking-1",
        "track_id": 7,
        "objects": [{"cls": "car", "score": 0.82, "bbox": (100.0, 200.0, 380.0, 360.0)}],
        "evidence": {"jpeg_b64": TINY_JPEG_B64, "width": 640, "height": 480},
        "model": {"name": "yolox_nano", "sha256": FAKE_MODEL_SHA256},
    }
    fields.update(overrides)
    return Alert.model_validate(fields)


def _as_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
