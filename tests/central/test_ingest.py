"""The ingest path without a broker: valid alerts -> cases, idempotency, dead letters, evidence files."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from factories import make_alert
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.alert_rows import may_hold_nul
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.evidence_store import EvidenceStore
from streetwatch.central.ingest import IngestResult, ingest_payload
from streetwatch.central.models import DEAD_LETTER_PAYLOAD_MAX_CHARS, Alert, Case, DeadLetter
from streetwatch.central.offline import ingest_jsonl
from streetwatch.edge.alerts import MAX_PAYLOAD_BYTES, alert_topic

TOPIC = alert_topic("box-01", "cam-1")


def wire(**overrides: object) -> bytes:
    return make_alert(**overrides).to_json()


def ingest(
    factory: sessionmaker[Session], settings: CentralSettings, payload: bytes, topic: str = TOPIC
) -> IngestResult:
    with session_scope(factory, write_lock=True) as session:
        return ingest_payload(session, payload, topic=topic, settings=settings)


def count(factory: sessionmaker[Session], model: type) -> int:
    with session_scope(factory) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture()
def street_jpeg_b64(street_dir: Path) -> tuple[bytes, str]:
    """A real street photo as the edge would attach it (small enough for the wire limit)."""
    data = (street_dir / "kerb_pickup_truck_scooter.jpg").read_bytes()
    return data, base64.b64encode(data).decode()


def test_valid_alerts_make_cases_and_rows(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    first = make_alert(confidence=0.9, track_id=42)
    reminder = make_alert(episode_id=first.episode_id, observed_at=first.observed_at + timedelta(minutes=15))
    results = [ingest(session_factory, central_settings, a.to_json()) for a in (first, reminder)]
    assert [r.outcome for r in results] == ["created", "joined"]
    with session_scope(session_factory) as session:
        case = session.scalars(select(Case)).one()
        assert (case.violation, case.status, case.alert_count, case.episode_count) == (
            "illegal_parking",
            "new",
            2,
            1,
        )
        assert case.first_seen == first.observed_at and case.last_seen == reminder.observed_at
        row = session.get(Alert, first.alert_id)
        assert row is not None and row.case_id == case.id
        assert (row.track_id, row.confidence, row.model_name) == ("42", 0.9, "yolox_nano")
        assert row.lat == pytest.approx(31.2304) and row.accuracy_m == pytest.approx(3.5)


def test_redelivery_changes_nothing(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    payload = wire()
    first = ingest(session_factory, central_settings, payload)
    with session_scope(session_factory) as session:
        before = session.scalars(select(Case)).one()
        snapshot = (
            before.alert_count,
            before.episode_count,
            before.priority,
            before.last_seen,
            before.updated_at,
        )
    again = [ingest(session_factory, central_settings, payload) for _ in range(3)]
    assert first.outcome == "created"
    assert [r.outcome for r in again] == ["duplicate"] * 3
    assert {r.case_id for r in again} == {first.case_id}
    with session_scope(session_factory) as session:
        after = session.scalars(select(Case)).one()
        assert (
            after.alert_count,
            after.episode_count,
            after.priority,
            after.last_seen,
            after.updated_at,
        ) == snapshot
    assert count(session_factory, Alert) == 1


def test_unknown_fields_are_kept_and_evidence_bytes_are_not(
    session_factory: sessionmaker[Session],
    central_settings: CentralSettings,
    street_jpeg_b64: tuple[bytes, str],
) -> None:
    data, b64 = street_jpeg_b64
    body = json.loads(wire(evidence={"jpeg_b64": b64, "width": 640, "height": 480}))
    body["firmware"] = {"version": "2.1.0"}  # a field from a newer edge
    result = ingest(session_factory, central_settings, json.dumps(body).encode())
    sha = hashlib.sha256(data).hexdigest()
    with session_scope(session_factory) as session:
        row = session.get(Alert, body["alert_id"])
        assert row is not None
        assert row.payload["firmware"] == {"version": "2.1.0"}
        assert row.payload["evidence"] == {"width": 640, "height": 480, "sha256": sha}
        assert b64[:100] not in json.dumps(row.payload)
        assert row.evidence_sha256 == sha
        case = session.get(Case, result.case_id)
        assert case is not None and case.evidence_sha256 == sha


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"track_id": "t1", "evidence": {"jpeg_b64": "AAEC/+=="}}', False),  # no backslash at all
        (b'{"note": "line\\nbreak \\" quoted"}', False),  # escapes, but no NUL
        (b'{"note": "a\\u0000b"}', True),
        ('{"note": "a\\u0000b"}', True),
        ('{"note": "ab"}', False),
        (None, True),  # unknown: scrub
    ],
)
def test_only_a_payload_with_an_escaped_nul_needs_scrubbing(payload: bytes | str | None, expected: bool) -> None:
    assert may_hold_nul(payload) is expected


def test_nul_characters_are_stored_on_every_backend(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    """JSON may carry \\u0000, which PostgreSQL text/JSONB refuse: it is replaced, the alert kept."""
    body = json.loads(wire(track_id="t\x00"))
    body["note"] = "a\x00b"
    body["objects"] = [{"cls": "car\x00", "score": 0.9, "bbox": [1, 2, 3, 4]}]
    result = ingest(session_factory, central_settings, json.dumps(body).encode())
    assert result.outcome == "created"
    with session_scope(session_factory) as session:
        row = session.get(Alert, body["alert_id"])
        assert row is not None and row.track_id == "t\ufffd"
        assert row.payload["note"] == "a\ufffdb" and row.payload["objects"][0]["cls"] == "car\ufffd"


def test_evidence_is_a_file_named_by_its_sha256(
    session_factory: sessionmaker[Session],
    central_settings: CentralSettings,
    street_jpeg_b64: tuple[bytes, str],
) -> None:
    data, b64 = street_jpeg_b64
    ingest(session_factory, central_settings, wire(evidence={"jpeg_b64": b64, "width": 640, "height": 480}))
    # the same picture on another alert is stored once
    ingest(session_factory, central_settings, wire(evidence={"jpeg_b64": b64, "width": 640, "height": 480}))
    sha = hashlib.sha256(data).hexdigest()
    files = [p for p in central_settings.evidence_dir.rglob("*") if p.is_file()]
    assert [p.name for p in files] == [f"{sha}.jpg"]
    assert files[0].read_bytes() == data
    assert EvidenceStore(central_settings.evidence_dir).read(sha) == data


def test_latest_evidence_shows_on_the_case(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, street_dir: Path
) -> None:
    photos = [
        (street_dir / name).read_bytes()
        for name in ("kerb_pickup_truck_scooter.jpg", "aerial_winding_road_cars.jpg")
    ]
    first = make_alert(
        evidence={"jpeg_b64": base64.b64encode(photos[0]).decode(), "width": 640, "height": 480}
    )
    later = make_alert(
        episode_id=first.episode_id,
        observed_at=first.observed_at + timedelta(minutes=15),
        evidence={"jpeg_b64": base64.b64encode(photos[1]).decode(), "width": 640, "height": 480},
    )
    # delivered out of order: the later picture still wins
    for alert in (later, first):
        ingest(session_factory, central_settings, alert.to_json())
    with session_scope(session_factory) as session:
        case = session.scalars(select(Case)).one()
        assert case.evidence_sha256 == hashlib.sha256(photos[1]).hexdigest()


def _too_large() -> bytes:
    body = json.loads(wire())
    body["padding"] = "x" * MAX_PAYLOAD_BYTES
    return json.dumps(body).encode()


BAD_PAYLOADS = [
    ("not-json", b"{this is not json", TOPIC, "not JSON"),
    ("not-json-nul-bytes", b"\x00\xff\x00garbage", TOPIC, "not JSON"),
    ("not-object", b"[1, 2, 3]", TOPIC, "expected a JSON object, got list"),
    (
        "schema-missing-field",
        json.dumps({k: v for k, v in json.loads(wire()).items() if k != "violation"}).encode(),
        TOPIC,
        "schema violation: violation: Field required",
    ),
    (
        "schema-bad-value",
        wire().replace(b'"confidence":0.82', b'"confidence":7'),
        TOPIC,
        "schema violation: confidence",
    ),
    (
        "unknown-schema-version",
        wire().replace(b"streetwatch.alert/1", b"streetwatch.alert/9"),
        TOPIC,
        "unknown schema version 'streetwatch.alert/9'",
    ),
    ("too-large", _too_large(), TOPIC, "payload too large"),
    (
        "edge-id-mismatch",
        wire(edge_id="box-02"),
        TOPIC,
        "edge_id mismatch: topic names 'box-01', payload has 'box-02'",
    ),
    ("not-an-alert-topic", wire(), "streetwatch/v1/status/box-01", "is not an alert topic"),
    (
        "evidence-not-base64",
        wire(evidence={"jpeg_b64": "@@@@", "width": 1, "height": 1}),
        TOPIC,
        "evidence.jpeg_b64: expected base64",
    ),
    (
        "evidence-not-jpeg",
        wire(evidence={"jpeg_b64": base64.b64encode(b"\x89PNG....").decode(), "width": 1, "height": 1}),
        TOPIC,
        "evidence.jpeg_b64: expected a JPEG",
    ),
]


@pytest.mark.parametrize(
    ("payload", "topic", "reason"), [row[1:] for row in BAD_PAYLOADS], ids=[row[0] for row in BAD_PAYLOADS]
)
def test_bad_payloads_become_dead_letters_with_the_reason(
    session_factory: sessionmaker[Session],
    central_settings: CentralSettings,
    payload: bytes,
    topic: str,
    reason: str,
) -> None:
    result = ingest(session_factory, central_settings, payload, topic)
    assert result.outcome == "dead_letter" and reason in (result.reason or "")
    with session_scope(session_factory) as session:
        letter = session.scalars(select(DeadLetter)).one()
        assert reason in letter.reason and letter.topic == topic
        assert len(letter.payload) <= DEAD_LETTER_PAYLOAD_MAX_CHARS
        assert letter.payload[:20] == payload.decode("utf-8", errors="replace").replace("\x00", "\ufffd")[:20]
    assert count(session_factory, Alert) == 0 and count(session_factory, Case) == 0
    # and the next good alert goes through
    assert ingest(session_factory, central_settings, wire()).outcome == "created"


def test_ingest_jsonl_uses_the_same_path(
    tmp_path: Path, session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    a = make_alert()
    b = make_alert(episode_id=a.episode_id, observed_at=a.observed_at + timedelta(minutes=15))
    far = make_alert(location={"lat": 31.24, "lon": 121.47, "accuracy_m": 3})
    lines = [a.to_json(), b.to_json(), a.to_json(), b"", b"not json", far.to_json()]
    path = tmp_path / "alerts.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    summary = ingest_jsonl(path, session_factory=session_factory, settings=central_settings)
    assert (summary.created, summary.joined, summary.duplicate, summary.dead_letter) == (2, 1, 1, 1)
    with session_scope(session_factory) as session:
        letter = session.scalars(select(DeadLetter)).one()
        assert letter.topic == f"file:{path}:5" and "not JSON" in letter.reason
        assert sorted(c.alert_count for c in session.scalars(select(Case))) == [1, 2]
