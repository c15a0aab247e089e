"""Alert ingest: validate, store idempotently, keep the evidence, decide the case, for every source.

One path: `ingest_payload` (bytes off the wire) -> `ingest_alert` (a parsed alert), and
`ingest_many` for a batch in one transaction with the same results as one by one. The MQTT consumer
(consumer.py), `central ingest-jsonl` (offline.py) and the tests all go through it.

Per message: parse and check it (schema, size, timestamps within settings.ingest's bounds, topic,
evidence, an episode that another box opened; what fails becomes a dead letter with the reason),
then the transaction's case engine (case_engine.CaseEngine) recognises a
duplicate by its `alert_id`, the evidence JPEG is stored by its hash (evidence_store), and the engine
folds the alert into its case. The caller commits: open the transaction with
`db.session_scope(factory, write_lock=True)`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from streetwatch.central.alert_rows import may_hold_nul, scrub_text
from streetwatch.central.attribution import MerchantIndex
from streetwatch.central.case_engine import Arrival, CaseEngine
from streetwatch.central.config import CentralSettings
from streetwatch.central.evidence_store import EvidenceError, decode_jpeg_b64, evidence_store
from streetwatch.central.media import promote_staged
from streetwatch.central.models import DEAD_LETTER_PAYLOAD_MAX_CHARS, DeadLetter
from streetwatch.edge.alerts import (
    ID_PATTERN,
    MAX_SEQ,
    AlertRejected,
    TimeBounds,
    edge_id_from_topic,
    parse_alert,
    time_problem,
)
from streetwatch.edge.alerts import Alert as WireAlert

log = logging.getLogger(__name__)

_ID = re.compile(ID_PATTERN)

Outcome = Literal["created", "joined", "pending", "duplicate", "dead_letter"]


@dataclass(frozen=True)
class IngestResult:
    """What happened to one message: a new case, a joined case, a pending sighting (stored, no case
    yet), a duplicate, or a dead letter."""

    outcome: Outcome
    alert_id: str | None = None
    case_id: int | None = None
    reason: str | None = None
    observed_at: datetime | None = None  # the alert's, for the latency metric


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
    media: dict[str, int] = field(default_factory=dict)  # evidence-set pieces per media_ingest outcome

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
    """A message that passed every check: its alert, evidence bytes, whether it may hold a NUL, and
    its dead-letter label (for a refusal that needs the transaction's rows)."""

    alert: WireAlert
    jpeg: bytes | None
    may_hold_nul: bool
    label: str


@dataclass(frozen=True)
class _Refused:
    """A message that failed a check: the dead letter to store."""

    label: str
    reason: str
    payload: bytes | str


def dead_letter(session: Session, *, topic: str, reason: str, payload: bytes | str) -> IngestResult:
    """Store an unusable message with its reason (payload truncated to a bound, NULs replaced),
    and its box numbering where the payload still says it (a refused alert is not a lost one)."""
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    edge_id, outbox_id, seq = delivery_number(payload)
    session.add(
        DeadLetter(
            topic=scrub_text(topic[:512]),
            reason=scrub_text(reason),
            payload=scrub_text(text[:DEAD_LETTER_PAYLOAD_MAX_CHARS]),
            edge_id=edge_id,
            outbox_id=outbox_id,
            seq=seq,
        )
    )
    session.flush()
    log.warning("dead letter from %s: %s", topic, reason)
    return IngestResult("dead_letter", reason=reason)


def delivery_number(payload: bytes | str) -> tuple[str | None, str | None, int | None]:
    """(edge_id, outbox_id, seq) of a refused payload if it is a JSON object that carries them in
    their wire form, else Nones. Best effort on hostile input: no exception escapes."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    edge, outbox, seq = data.get("edge_id"), data.get("outbox_id"), data.get("seq")
    if not (isinstance(edge, str) and isinstance(outbox, str) and type(seq) is int):
        return None, None, None
    if not (_ID.match(edge) and _ID.match(outbox) and 1 <= seq <= MAX_SEQ):
        return None, None, None
    return edge, outbox, seq


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


def failure_reason(exc: BaseException) -> str:
    """A dead letter's reason for a message whose storing raised `exc` (bounded, names the type)."""
    if isinstance(exc, DataError):  # the database refuses this content: retrying cannot help
        return f"database refused the message: {exc.orig}"[:500]
    return f"internal error: {type(exc).__name__}: {exc}"[:500]


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
    return _Checked(alert, jpeg, may_hold_nul(payload), label)


def _check_payload(payload: bytes | str, *, topic: str | None, label: str, bounds: TimeBounds) -> _Checked | _Refused:
    try:
        alert = parse_alert(payload, received_at=datetime.now(UTC), bounds=bounds)
    except AlertRejected as exc:
        return _Refused(label, exc.reason, payload)
    return _check(alert, topic=topic, label=label, payload=payload)


def _foreign_episode(engine: CaseEngine, alert: WireAlert, *, settings: CentralSettings) -> str | None:
    """Why the alert may not touch its episode: another box opened it (the per-box broker ACL
    keeps a box to its own topic, not to its own episode ids; an `ended` could close another
    box's case)."""
    if not settings.ingest.episode_owner_check:
        return None
    episode = engine.episode(alert.episode_id)
    if episode is None or episode.edge_id == alert.edge_id:
        return None
    return (f"episode_id: episode {alert.episode_id} belongs to box {episode.edge_id!r}, "
            f"not to {alert.edge_id!r}; the alert changes nothing")


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
    foreign = _foreign_episode(engine, alert, settings=settings)
    if foreign is not None:
        return dead_letter(session, topic=checked.label, reason=foreign, payload=alert.to_json())
    store = evidence_store(settings.evidence_dir)
    sha256 = store.put(checked.jpeg) if checked.jpeg is not None else None
    if alert.media:  # wire 1.2: items that beat their alert wait staged; keep them now
        promote_staged(store, alert.edge_id, alert.media)
    decision = engine.decide(Arrival(alert, evidence_sha256=sha256, may_hold_nul=checked.may_hold_nul))
    if decision.case_id is None:
        return IngestResult("pending", alert_id=alert.alert_id, observed_at=alert.observed_at)
    outcome: Outcome = "created" if decision.created else "joined"
    log.info("alert %s (camera %s, track %s, %s): %s case %d", alert.alert_id, alert.camera_id, alert.track_id,
             alert.state, "opened" if decision.created else "joined", decision.case_id)
    return IngestResult(outcome, alert_id=alert.alert_id, case_id=decision.case_id, observed_at=alert.observed_at)


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
    label = origin or topic or ""
    problem = time_problem(alert, received_at=datetime.now(UTC), bounds=settings.ingest.time_bounds())
    checked = (_Refused(label, f"schema violation: {problem}", alert.to_json()) if problem is not None
               else _check(alert, topic=topic, label=label, payload=None))
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
    checked = _check_payload(payload, topic=topic, label=origin or topic or "", bounds=settings.ingest.time_bounds())
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
    bounds = settings.ingest.time_bounds()
    checked = [_check_payload(m.payload, topic=m.topic, label=m.origin or m.topic or "", bounds=bounds)
               for m in messages]
    return _ingest_checked_all(session, checked, settings=settings, index=index)


__all__ = [
    "IngestResult",
    "IngestSummary",
    "Message",
    "Outcome",
    "dead_letter",
    "failure_reason",
    "ingest_alert",
    "ingest_many",
    "ingest_payload",
    "topic_mismatch",
]
