"""Alert ingest: validate, store idempotently, keep the evidence, decide the case, for every source.

One path: `ingest_payload` (bytes off the wire) -> `ingest_alert` (a parsed alert), and
`ingest_many` for a batch in one transaction with the same results as one by one. The MQTT consumer
(consumer.py), `central ingest-jsonl` (offline.py) and the tests all go through it.

Per message: parse and check it (schema, size, topic, evidence; what fails becomes a dead letter
with the reason), then the transaction's case engine (case_engine.CaseEngine) recognises a
duplicate by its `alert_id`, the evidence JPEG is stored by its hash (evidence_store), and the engine
folds the alert into its case. The caller commits: open the transaction with
`db.session_scope(factory, write_lock=True)`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy.orm import Session

from streetwatch.central.alert_rows import may_hold_nul, scrub_text
from streetwatch.central.attribution import MerchantIndex
from streetwatch.central.case_engine import Arrival, CaseEngine
from streetwatch.central.config import CentralSettings
from streetwatch.central.evidence_store import EvidenceError, decode_jpeg_b64, evidence_store
from streetwatch.central.models import DEAD_LETTER_PAYLOAD_MAX_CHARS, DeadLetter
from streetwatch.edge.alerts import Alert as WireAlert
from streetwatch.edge.alerts import AlertRejected, edge_id_from_topic, parse_alert

log = logging.getLogger(__name__)

Outcome = Literal["created", "joined", "pending", "duplicate", "dead_letter"]


@dataclass(frozen=True)
class IngestResult:
    """What happened to one message: a new case, a joined case, a pending sighting (stored, no case
    yet), a duplicate, or a dead letter."""

    outcome: Outcome
    alert_id: str | None = None
    case_id: int | None = None
    reason: str | None = None


@dataclass
class IngestSummary:
    """Counts per outcome of a batch (a JSON-lines file or a consumer's lifetime)."""

    created: int = 0
    joined: int = 0
    pending: int = 0
    duplicate: int = 0
    dead_letter: int = 0
    db_errors: int = 0
    reasons: list[str] = field(default_factory=list)

    def add(self, result: IngestResult) -> None:
        setattr(self, result.outcome, getattr(self, result.outcome) + 1)
        if result.reason and len(self.reasons) < 20:
            self.reasons.append(result.reason)

    @property
    def total(self) -> int:
        return self.created + self.joined + self.pending + self.duplicate + self.dead_letter


@dataclass(frozen=True)
class Message:
    """One payload to ingest: its MQTT topic (None offline), bytes, and a dead-letter label."""

    topic: str | None
    payload: bytes
    origin: str | None = None


@dataclass(frozen=True)
class _Checked:
    """A message that passed every check: its alert, evidence bytes, and whether it may hold a NUL."""

    alert: WireAlert
    jpeg: bytes | None
    may_hold_nul: bool


@dataclass(frozen=True)
class _Refused:
    """A message that failed a check: the dead letter to store."""

    label: str
    reason: str
    payload: bytes | str


def dead_letter(session: Session, *, topic: str, reason: str, payload: bytes | str) -> IngestResult:
    """Store an unusable message with its reason (payload truncated to a bound, NULs replaced)."""
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    session.add(
        DeadLetter(
            topic=scrub_text(topic[:512]),
            reason=scrub_text(reason),
            payload=scrub_text(text[:DEAD_LETTER_PAYLOAD_MAX_CHARS]),
        )
    )
    session.flush()
    log.warning("dead letter from %s: %s", topic, reason)
    return IngestResult("dead_letter", reason=reason)


def topic_mismatch(alert: WireAlert, topic: str | None) -> str | None:
    """Why the alert may not arrive on `topic` (None = fine; no topic = offline, nothing to check)."""
    if topic is None:
        return None
    topic_edge = edge_id_from_topic(topic)
    if topic_edge is None:
        return f"topic {topic!r} is not an alert topic (streetwatch/v1/alerts/{{edge_id}}/{{camera_id}})"
    if topic_edge != alert.edge_id:
        return f"edge_id mismatch: topic names {topic_edge!r}, payload has {alert.edge_id!r}"
    return None


def _check(alert: WireAlert, *, topic: str | None, label: str, payload: bytes | str | None) -> _Checked | _Refused:
    """The alert's topic and evidence checked. `payload` is the raw message if at hand (it tells
    whether the row needs a NUL scrub)."""
    mismatch = topic_mismatch(alert, topic)
    if mismatch is not None:
        return _Refused(label, mismatch, alert.to_json())
    try:
        jpeg = decode_jpeg_b64(alert.evidence.jpeg_b64) if alert.evidence is not None else None
    except EvidenceError as exc:
        return _Refused(label, str(exc), alert.to_json())
    return _Checked(alert, jpeg, may_hold_nul(payload))


def _check_payload(payload: bytes | str, *, topic: str | None, label: str) -> _Checked | _Refused:
    try:
        alert = parse_alert(payload)
    except AlertRejected as exc:
        return _Refused(label, exc.reason, payload)
    return _check(alert, topic=topic, label=label, payload=payload)


def _ingest_checked(
    session: Session, engine: CaseEngine, checked: _Checked | _Refused, *, settings: CentralSettings
) -> IngestResult:
    """A checked message through the transaction's case engine (refused: a dead letter)."""
    if isinstance(checked, _Refused):
        return dead_letter(session, topic=checked.label, reason=checked.reason, payload=checked.payload)
    alert = checked.alert
    known = engine.known_alert(alert.alert_id)
    if known is not None:
        log.info("alert %s: duplicate delivery, case %s unchanged", alert.alert_id, known.case_id)
        return IngestResult("duplicate", alert_id=alert.alert_id, case_id=known.case_id)
    sha256 = evidence_store(settings.evidence_dir).put(checked.jpeg) if checked.jpeg is not None else None
    decision = engine.decide(Arrival(alert, evidence_sha256=sha256, may_hold_nul=checked.may_hold_nul))
    if decision.case_id is None:
        return IngestResult("pending", alert_id=alert.alert_id)
    outcome: Outcome = "created" if decision.created else "joined"
    log.info("alert %s (camera %s, track %s, %s): %s case %d", alert.alert_id, alert.camera_id, alert.track_id,
             alert.state, "opened" if decision.created else "joined", decision.case_id)
    return IngestResult(outcome, alert_id=alert.alert_id, case_id=decision.case_id)


def _ingest_checked_all(
    session: Session,
    checked: Sequence[_Checked | _Refused],
    *,
    settings: CentralSettings,
    index: MerchantIndex | None,
) -> list[IngestResult]:
    """Checked messages in order through one case engine: one transaction's unit of work."""
    engine = CaseEngine.begin(
        session, [c.alert for c in checked if isinstance(c, _Checked)], settings=settings, index=index
    )
    results = [_ingest_checked(session, engine, c, settings=settings) for c in checked]
    engine.finish()
    return results


def ingest_alert(
    session: Session,
    alert: WireAlert,
    *,
    topic: str | None,
    settings: CentralSettings,
    index: MerchantIndex | None = None,
    origin: str | None = None,
) -> IngestResult:
    """Store one parsed alert and fold it into its case, inside the caller's transaction.

    `topic` is the MQTT topic it came on (None offline); `origin` labels dead letters (default: the
    topic; e.g. `file:alerts.jsonl:12` offline). `index` is the attribution index (built from
    the database when None: fine for one-off calls, slow per alert at scale).
    """
    checked = _check(alert, topic=topic, label=origin or topic or "", payload=None)
    return _ingest_checked_all(session, [checked], settings=settings, index=index)[0]


def ingest_payload(
    session: Session,
    payload: bytes | str,
    *,
    topic: str | None,
    settings: CentralSettings,
    index: MerchantIndex | None = None,
    origin: str | None = None,
) -> IngestResult:
    """Validate raw bytes off the wire and ingest them; unusable payloads become dead letters."""
    checked = _check_payload(payload, topic=topic, label=origin or topic or "")
    return _ingest_checked_all(session, [checked], settings=settings, index=index)[0]


def ingest_many(
    session: Session,
    messages: Sequence[Message],
    *,
    settings: CentralSettings,
    index: MerchantIndex | None = None,
) -> list[IngestResult]:
    """Ingest several messages in the caller's one transaction (one commit for the batch).

    The case engine takes every case lock the batch needs first, in one sorted order, so two
    workers' batches cannot deadlock, and reads the batch's stored duplicates, episodes and cases
    with one query each; the messages then go through the same steps as `ingest_alert`, with the
    same results as alone.
    """
    checked = [_check_payload(m.payload, topic=m.topic, label=m.origin or m.topic or "") for m in messages]
    return _ingest_checked_all(session, checked, settings=settings, index=index)


__all__ = [
    "IngestResult",
    "IngestSummary",
    "Message",
    "Outcome",
    "dead_letter",
    "ingest_alert",
    "ingest_many",
    "ingest_payload",
    "topic_mismatch",
]
