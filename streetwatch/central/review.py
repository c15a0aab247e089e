"""The review service: confirm, dismiss, merge and reassign, each one transaction with an audit row,
and `undo`, which takes one of them back within the undo window (`workflow.undo_window_s`).

Handlers (web pages and the JSON API) call these and never commit themselves. Every action is a
`CaseService` action (case_service.py): the case row locked, the reviewer's area checked (a case
outside it is not found), the status moved through the state machine (case_status.py), and an
AuditLog row with the reviewer's user name, the action, details and the time.

A merged case keeps its row (status `closed`, `merged_into_id` set) so links and the audit trail
stay valid; its alerts and episodes move to the target case (`case_store.merge_cases`), and later alerts
of its episodes land in the target too. The merge's audit row keeps which alerts and episodes moved
and what it replaced on the target, so an undo can put them back.

Undo: only the reviewer's own decision, only while it is the case's latest entry (nothing happened
after it, in particular no notice: the workflow waits for the window, `cases.decided_at`), only
within the window. The undo is itself an audit row (`undo`, naming the row it took back).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import shapely
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.access import merchant_visible
from streetwatch.central.case_service import ActionOutcome, CaseService, Reviewer, locked_case, require_status
from streetwatch.central.case_status import OPEN_STATUSES, CaseStatus
from streetwatch.central.case_store import merge_cases, recount_case
from streetwatch.central.errors import Conflict, DomainError, InvalidInput, NotFound
from streetwatch.central.models import Alert, AuditLog, Case, Episode, Merchant
from streetwatch.central.workflow.clock import Clock, system_clock

DISMISS_REASONS: Final = (
    "false_detection",
    "not_a_violation",
    "allowed_time_window",
    "wrong_location",
    "duplicate",
    "other",
)
MAX_REASON_CHARS: Final = 200
METRES_PER_DEG: Final = 111_320.0
UNDOABLE: Final = ("confirm", "dismiss", "merge", "reassign")
MAX_MERGE_RECORD: Final = 5_000  # alert ids a merge's audit row keeps for its undo


@dataclass(frozen=True)
class BulkOutcome:
    """One case of a bulk decision: what happened to it, or why it was refused."""

    case_id: int
    outcome: ActionOutcome | None
    error: str | None


class ReviewService(CaseService):
    """The four review actions of the queue, and undo."""

    def __init__(
        self, session_factory: sessionmaker[Session], *, clock: Clock = system_clock, undo_window_s: float = 30.0
    ) -> None:
        super().__init__(session_factory, clock=clock)
        self.undo_window_s = undo_window_s

    def confirm(self, case_id: int, *, reviewer: Reviewer) -> ActionOutcome:
        with self._case_action(case_id, reviewer) as (session, case):
            case.decided_at = self._clock()
            return self._move(
                session, case, CaseStatus.CONFIRMED, action="confirm", reviewer=reviewer, detail={"from": "new"}
            )

    def dismiss(self, case_id: int, *, reason: str, reviewer: Reviewer) -> ActionOutcome:
        reason = _clean_reason(reason)
        with self._case_action(case_id, reviewer) as (session, case):
            detail = {"from": "new", "reason": reason}
            case.decided_at = self._clock()
            return self._move(session, case, CaseStatus.DISMISSED, action="dismiss", reviewer=reviewer, detail=detail)

    def bulk(self, case_ids: Sequence[int], *, action: str, reviewer: Reviewer, reason: str = "") -> list[BulkOutcome]:
        """Confirm or dismiss each case in its own transaction; a refused case does not stop the rest."""
        if action not in ("confirm", "dismiss"):
            raise InvalidInput(f"action: expected confirm or dismiss, got {action!r}")
        results = []
        for case_id in dict.fromkeys(case_ids):  # each case once, in the order given
            try:
                if action == "confirm":
                    outcome = self.confirm(case_id, reviewer=reviewer)
                else:
                    outcome = self.dismiss(case_id, reason=reason, reviewer=reviewer)
                results.append(BulkOutcome(case_id, outcome, None))
            except DomainError as exc:
                results.append(BulkOutcome(case_id, None, exc.detail))
        return results

    def merge(self, case_id: int, *, into_case_id: int, reviewer: Reviewer) -> ActionOutcome:
        if case_id == into_case_id:
            raise InvalidInput(
                f"into_case_id: a case cannot be merged into itself (case {case_id})",
                code="merge_self",
                case_id=case_id,
            )
        with self._transaction() as session:
            # Lock in id order so two opposite merges cannot deadlock.
            first, second = sorted((case_id, into_case_id))
            locked = {first: locked_case(session, first, reviewer)}
            locked[second] = locked_case(session, second, reviewer)
            source, target = locked[case_id], locked[into_case_id]
            _check_mergeable(source, target)
            moved = source.alert_count
            detail = {"into_case_id": target.id, **_merge_record(session, source, target)}
            priority = max(source.priority, target.priority)
            merge_cases(session, source_id=source.id, target_id=target.id)  # moves alerts, recounts target
            target.priority = priority
            target.evidence_sha256 = target.evidence_sha256 or source.evidence_sha256
            self._audit(session, target, reviewer, "merge_in", {"from_case_id": source.id, "alerts": moved})
            source.decided_at = self._clock()
            return self._move(session, source, CaseStatus.CLOSED, action="merge", reviewer=reviewer, detail=detail)

    def reassign(self, case_id: int, *, merchant_id: str, reviewer: Reviewer) -> ActionOutcome:
        merchant_id = merchant_id.strip()
        if not merchant_id:
            raise InvalidInput("merchant_id: expected a merchant id, got an empty value")
        with self._case_action(case_id, reviewer) as (session, case):
            require_status(case, "reassign", allowed=OPEN_STATUSES)
            merchant = session.get(Merchant, merchant_id)
            if merchant is None or not merchant_visible(reviewer.scope, merchant):
                raise NotFound(
                    f"merchant {merchant_id!r} not found", code="merchant_not_found", merchant_id=merchant_id
                )
            detail: dict[str, object] = {
                "from_merchant_id": case.merchant_id,
                "to_merchant_id": merchant.id,
                "from_method": case.attribution_method,
                "from_distance_m": case.attribution_distance_m,
            }
            case.merchant_id = merchant.id
            case.attribution_method = "manual"
            case.attribution_distance_m = _distance_to_zone_m(case, merchant)
            case.decided_at = self._clock()
            return self._audit(session, case, reviewer, "reassign", detail)

    def undo(self, audit_id: int, *, reviewer: Reviewer) -> ActionOutcome:
        """Take back the reviewer's own confirm, dismiss, merge or reassign within the undo window."""
        with self._transaction() as session:
            entry = session.get(AuditLog, audit_id)
            if entry is None or entry.case_id is None or entry.action not in UNDOABLE:
                raise NotFound(f"decision {audit_id} not found", code="decision_not_found")
            case = locked_case(session, entry.case_id, reviewer)
            self._check_undoable(session, entry, reviewer)
            detail = {"undid": entry.action, "undid_audit_id": entry.id}
            if entry.action == "reassign":
                _undo_reassign(case, entry.detail)
                return self._audit(session, case, reviewer, "undo", detail)
            if entry.action == "merge":
                self._undo_merge(session, case, entry.detail, reviewer)
            case.decided_at = None
            return self._move(session, case, CaseStatus.NEW, action="undo", reviewer=reviewer, detail=detail)

    def _check_undoable(self, session: Session, entry: AuditLog, reviewer: Reviewer) -> None:
        if entry.actor != reviewer.username:
            raise Conflict(
                f"case {entry.case_id}: only {entry.actor} can undo their {entry.action}",
                code="undo_not_yours",
                case_id=entry.case_id,
            )
        if self._clock() - entry.at > timedelta(seconds=self.undo_window_s):
            raise Conflict(
                f"case {entry.case_id}: the {entry.action} is older than {self.undo_window_s:g} s "
                "and can no longer be undone",
                code="undo_expired",
                case_id=entry.case_id,
            )
        latest = session.scalar(
            select(AuditLog.id).where(AuditLog.case_id == entry.case_id).order_by(AuditLog.id.desc()).limit(1)
        )
        if latest != entry.id:
            raise Conflict(
                f"case {entry.case_id}: something happened after the {entry.action}; it cannot be undone",
                code="undo_superseded",
                case_id=entry.case_id,
            )

    def _undo_merge(self, session: Session, source: Case, detail: dict[str, object], reviewer: Reviewer) -> None:
        """Move the merged alerts and episodes back and restore what the merge changed on the target."""
        target = locked_case(session, int(detail["into_case_id"]), reviewer)  # type: ignore[call-overload]
        alert_ids = [str(a) for a in detail.get("alert_ids", [])]  # type: ignore[attr-defined]
        episode_ids = [str(e) for e in detail.get("episode_ids", [])]  # type: ignore[attr-defined]
        if alert_ids:
            session.execute(update(Alert).where(Alert.alert_id.in_(alert_ids)).values(case_id=source.id))
        if episode_ids:
            session.execute(update(Episode).where(Episode.id.in_(episode_ids)).values(case_id=source.id))
        source.merged_into_id = None
        recount_case(session, source)
        recount_case(session, target)
        target.priority = int(detail.get("target_priority", target.priority))  # type: ignore[call-overload]
        target.evidence_sha256 = detail.get("target_evidence_sha256")  # type: ignore[assignment]
        self._audit(session, target, reviewer, "undo", {"undid": "merge_in", "from_case_id": source.id})


def _merge_record(session: Session, source: Case, target: Case) -> dict[str, object]:
    """What a merge moves and replaces, for its undo."""
    alert_ids = list(session.scalars(select(Alert.alert_id).where(Alert.case_id == source.id)))
    if len(alert_ids) > MAX_MERGE_RECORD:
        raise InvalidInput(f"case {source.id}: {len(alert_ids)} alerts; merge cases of at most {MAX_MERGE_RECORD}")
    episode_ids = list(session.scalars(select(Episode.id).where(Episode.case_id == source.id)))
    return {
        "alert_ids": alert_ids,
        "episode_ids": episode_ids,
        "target_priority": target.priority,
        "target_evidence_sha256": target.evidence_sha256,
    }


def _undo_reassign(case: Case, detail: dict[str, object]) -> None:
    case.merchant_id = detail.get("from_merchant_id")  # type: ignore[assignment]
    case.attribution_method = str(detail.get("from_method") or "none")
    distance = detail.get("from_distance_m")
    case.attribution_distance_m = float(distance) if isinstance(distance, int | float) else None
    case.decided_at = None


def reason_code(text: str) -> str | None:
    """The DISMISS_REASONS code a typed reason stands for ("False detection" -> false_detection), or None.

    Also reads the free-text reasons stored before the list was closed: case and spaces do not matter."""
    code = "_".join(text.replace("-", " ").lower().split())
    return code if code in DISMISS_REASONS else None


def _clean_reason(reason: str) -> str:
    text = " ".join(reason.split())
    if not text:
        raise InvalidInput("reason: a dismissal needs a reason, got an empty value")
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInput(f"reason: at most {MAX_REASON_CHARS} characters, got {len(text)}")
    code = reason_code(text)
    if code is None:
        # A closed list: a typo must not silently stop a false detection from being a training negative.
        raise InvalidInput(f"reason: expected one of {', '.join(DISMISS_REASONS)}, got {text!r}")
    return code


def _check_mergeable(source: Case, target: Case) -> None:
    if source.status != CaseStatus.NEW:
        raise Conflict(
            f"case {source.id} is {source.status}; only new cases can be merged",
            code="wrong_status",
            case_id=source.id,
            status=source.status,
        )
    if target.merged_into_id is not None:
        raise Conflict(f"case {target.id} was merged into case {target.merged_into_id}; merge into that one")
    if target.status not in OPEN_STATUSES:
        raise Conflict(
            f"case {target.id} is {target.status}; merge into a new, confirmed or notified case",
            code="merge_target_closed",
            case_id=target.id,
        )
    if source.violation != target.violation:
        raise Conflict(
            f"case {source.id} is {source.violation} but case {target.id} is {target.violation}; "
            "only cases of the same violation can be merged",
            code="merge_other_violation",
            case_id=source.id,
        )


def _distance_to_zone_m(case: Case, merchant: Merchant) -> float | None:
    """Metres from the case point to the merchant's zone (0 inside), on a local flat projection."""
    if case.lat is None or case.lon is None:
        return None
    zone = shapely.from_wkt(merchant.zone_wkt)
    scale_x = METRES_PER_DEG * math.cos(math.radians(case.lat))
    local = shapely.transform(zone, lambda xy: (xy - (case.lon, case.lat)) * (scale_x, METRES_PER_DEG))
    return round(float(shapely.distance(local, shapely.Point(0.0, 0.0))), 2)
