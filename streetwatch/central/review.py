"""The review service: confirm, dismiss, merge and reassign, each one transaction with an audit row.

Handlers (web pages and the JSON API) call these and never commit themselves. Every action is a
`CaseService` action (case_service.py): the case row locked, the reviewer's area checked (a case
outside it is not found), the status moved through the state machine (case_status.py), and an
AuditLog row with the reviewer's user name, the action, details and the time.

A merged case keeps its row (status `closed`, `merged_into_id` set) so links and the audit trail
stay valid; its alerts and episodes move to the target case (`case_store.merge_cases`), and later alerts
of its episodes land in the target too.
"""

from __future__ import annotations

import math
from typing import Final

import shapely

from streetwatch.central.access import merchant_visible
from streetwatch.central.case_service import ActionOutcome, CaseService, Reviewer, locked_case, require_status
from streetwatch.central.case_status import OPEN_STATUSES, CaseStatus
from streetwatch.central.case_store import merge_cases
from streetwatch.central.errors import Conflict, InvalidInput, NotFound
from streetwatch.central.models import Case, Merchant

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


class ReviewService(CaseService):
    """The four review actions of the queue."""

    def confirm(self, case_id: int, *, reviewer: Reviewer) -> ActionOutcome:
        with self._case_action(case_id, reviewer) as (session, case):
            return self._move(
                session, case, CaseStatus.CONFIRMED, action="confirm", reviewer=reviewer, detail={"from": "new"}
            )

    def dismiss(self, case_id: int, *, reason: str, reviewer: Reviewer) -> ActionOutcome:
        reason = _clean_reason(reason)
        with self._case_action(case_id, reviewer) as (session, case):
            detail = {"from": "new", "reason": reason}
            return self._move(session, case, CaseStatus.DISMISSED, action="dismiss", reviewer=reviewer, detail=detail)

    def merge(self, case_id: int, *, into_case_id: int, reviewer: Reviewer) -> ActionOutcome:
        if case_id == into_case_id:
            raise InvalidInput(f"into_case_id: a case cannot be merged into itself (case {case_id})")
        with self._transaction() as session:
            # Lock in id order so two opposite merges cannot deadlock.
            first, second = sorted((case_id, into_case_id))
            locked = {first: locked_case(session, first, reviewer)}
            locked[second] = locked_case(session, second, reviewer)
            source, target = locked[case_id], locked[into_case_id]
            _check_mergeable(source, target)
            moved = source.alert_count
            priority = max(source.priority, target.priority)
            merge_cases(session, source_id=source.id, target_id=target.id)  # moves alerts, recounts target
            target.priority = priority
            target.evidence_sha256 = target.evidence_sha256 or source.evidence_sha256
            self._audit(session, target, reviewer, "merge_in", {"from_case_id": source.id, "alerts": moved})
            detail = {"into_case_id": target.id}
            return self._move(session, source, CaseStatus.CLOSED, action="merge", reviewer=reviewer, detail=detail)

    def reassign(self, case_id: int, *, merchant_id: str, reviewer: Reviewer) -> ActionOutcome:
        merchant_id = merchant_id.strip()
        if not merchant_id:
            raise InvalidInput("merchant_id: expected a merchant id, got an empty value")
        with self._case_action(case_id, reviewer) as (session, case):
            require_status(case, "reassign", allowed=OPEN_STATUSES)
            merchant = session.get(Merchant, merchant_id)
            if merchant is None or not merchant_visible(reviewer.scope, merchant):
                raise NotFound(f"merchant {merchant_id!r} not found")
            detail: dict[str, object] = {
                "from_merchant_id": case.merchant_id,
                "to_merchant_id": merchant.id,
                "from_method": case.attribution_method,
            }
            case.merchant_id = merchant.id
            case.attribution_method = "manual"
            case.attribution_distance_m = _distance_to_zone_m(case, merchant)
            return self._audit(session, case, reviewer, "reassign", detail)


def _clean_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidInput("reason: a dismissal needs a reason, got an empty value")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"reason: at most {MAX_REASON_CHARS} characters, got {len(reason)}")
    return reason


def _check_mergeable(source: Case, target: Case) -> None:
    if source.status != CaseStatus.NEW:
        raise Conflict(f"case {source.id} is {source.status}; only new cases can be merged")
    if target.merged_into_id is not None:
        raise Conflict(f"case {target.id} was merged into case {target.merged_into_id}; merge into that one")
    if target.status not in OPEN_STATUSES:
        raise Conflict(f"case {target.id} is {target.status}; merge into a new, confirmed or notified case")
    if source.violation != target.violation:
        raise Conflict(
            f"case {source.id} is {source.violation} but case {target.id} is {target.violation}; "
            "only cases of the same violation can be merged"
        )


def _distance_to_zone_m(case: Case, merchant: Merchant) -> float | None:
    """Metres from the case point to the merchant's zone (0 inside), on a local flat projection."""
    if case.lat is None or case.lon is None:
        return None
    zone = shapely.from_wkt(merchant.zone_wkt)
    scale_x = METRES_PER_DEG * math.cos(math.radians(case.lat))
    local = shapely.transform(zone, lambda xy: (xy - (case.lon, case.lat)) * (scale_x, METRES_PER_DEG))
    return round(float(shapely.distance(local, shapely.Point(0.0, 0.0))), 2)
