"""An alert's database row: every column from the wire alert, the payload kept without its evidence bytes.

Pure shaping, no I/O. PostgreSQL text and JSONB cannot hold NUL characters, which JSON can carry
escaped (`\\u0000`): they are replaced with U+FFFD, in the payload and in every text column.
"""

from __future__ import annotations

from streetwatch.central.models import utcnow
from streetwatch.edge.alerts import Alert as WireAlert


def scrub(value: object) -> object:
    """Replace NUL characters in every string (PostgreSQL text and JSONB cannot hold them)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {str(scrub(k)): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def scrub_text(value: str) -> str:
    """`value` with its NUL characters replaced."""
    return value.replace("\x00", "\ufffd")


def may_hold_nul(payload: bytes | str | None) -> bool:
    """Whether a parsed alert may contain a NUL: JSON can only carry one escaped (a raw control
    character is invalid JSON), so a payload without `\\u0000` has none. None = unknown: maybe."""
    if isinstance(payload, bytes):
        # Most payloads hold no backslash at all (base64 evidence has none): one memchr (0.5 us on
        # a 27 KB alert) instead of a substring search (15 us).
        return b"\\" in payload and b"\\u0000" in payload
    return payload is None or "\\u0000" in payload


def stored_payload(alert: WireAlert, *, evidence_sha256: str | None, may_hold_nul: bool = True) -> dict[str, object]:
    """The alert as JSON for the row: every field (unknown ones too) except the evidence bytes.

    `may_hold_nul=False` skips the NUL scrub (the caller saw no escaped NUL in the raw payload).
    """
    data = alert.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"evidence"})
    if alert.evidence is not None:
        data["evidence"] = {
            "width": alert.evidence.width,
            "height": alert.evidence.height,
            "sha256": evidence_sha256,
        }
    if not may_hold_nul:
        return data
    scrubbed = scrub(data)
    assert isinstance(scrubbed, dict)
    return scrubbed


def alert_values(
    alert: WireAlert, *, case_id: int | None, evidence_sha256: str | None, scrub_payload: bool = True
) -> dict[str, object]:
    """The alert's row as column values (for a bulk insert, or an ORM row)."""
    loc = alert.location
    return {
        "alert_id": alert.alert_id,
        "episode_id": alert.episode_id,
        "case_id": case_id,
        "edge_id": alert.edge_id,
        "camera_id": alert.camera_id,
        "source_kind": alert.source_kind,
        "violation": alert.violation,
        "state": alert.state,
        "started_at": alert.started_at,
        "observed_at": alert.observed_at,
        "lat": loc.lat if loc else None,
        "lon": loc.lon if loc else None,
        "accuracy_m": loc.accuracy_m if loc else None,
        "confidence": alert.confidence,
        "zone_id": alert.zone_id,
        "track_id": scrub_text(str(alert.track_id))[:64],
        "evidence_sha256": evidence_sha256,
        "payload": stored_payload(alert, evidence_sha256=evidence_sha256, may_hold_nul=scrub_payload),
        "model_name": scrub_text(alert.model.name),
        "model_sha256": alert.model.sha256,
        "received_at": utcnow(),
    }


__all__ = ["alert_values", "may_hold_nul", "scrub", "scrub_text", "stored_payload"]
