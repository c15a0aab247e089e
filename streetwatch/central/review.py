"""The review service: confirm, dismiss, merge and reassign, each one transaction with an audit row.

Handlers (web pages and the JSON API) call these and never commit themselves. Every action
- locks the case row (`SELECT .. FOR UPDATE` on PostgreSQL; SQLite takes the write lock up front),
  so two reviewers acting on one case at once are serialised and the second gets a clear conflict;
- checks the reviewer's area (a case outside it is reported as not found: no existence leak);
- writes an AuditLog row with the reviewer's user name, the action, details and the time.

A merged case keeps its row (status `closed`, `merged_into_id` set) so links and the audit trail
stay valid; its alerts and episodes move to the target case (`cases.merge_cases`), and later alerts
of its episodes land in the target too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.access import AreaScope, case_visible, load_scope, merchant_visible
from streetwatch.central.case_store import merge_cases
from streetwatch.central.db import session_scope
from streetwatch.central.models import OPEN_CASE_STATUSES, AuditLog, Case, Merchant, User
from streetwatch.central.models import utcnow as _utcnow

log = logging.getLogger(__name__)

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


class ReviewError(Exception):
    """A review action that cannot be done; `detail` is shown to the reviewer as is."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ReviewError):
    """The case or merchant does not exist or lies outside the reviewer's area."""


class Conflict(ReviewError):
    """The case is not in a state that allows the action (e.g. already confirmed)."""


class InvalidInput(ReviewError):
    """The request names a bad value (empty reason, merge into itself, ...)."""


@dataclass(frozen=True)
class Reviewer:
    """Who acts: the user name written to the audit log, and the area the user may act on."""

    user_id: int
    username: str
    scope: AreaScope | None = field(default=None, compare=False)

    @classmethod
    def of(cls, session: Session, user: User) -> Reviewer:
        return cls(user_id=user.id, username=user.username, scope=load_scope(session, user))


@dataclass(frozen=True)
class ReviewOutcome:
    case_id: int
    action: str
    status: str
    audit_id: int
    at: datetime


Clock = Callable[[], datetime]


class ReviewService:
    """The four review actions over a session factory; `clock` makes the audit time testable."""

    def __init__(self, session_factory: sessionmaker[Session], *, clock: Clock = _utcnow) -> None:
        self._factory = session_factory
        self._clock = clock

    def confirm(self, case_id: int, *, reviewer: Reviewer) -> ReviewOutcome:
        with session_scope(self._factory, write_lock=True) as session:
            case = _locked_case(session, case_id, reviewer)
            _require_status(case, "confirm", allowed=("new",))
            case.status = "confirmed"
            return self._audit(session, case, reviewer, "confirm", {"from": "new"})

    def dismiss(self, case_id: int, *, reason: str, reviewer: Reviewer) -> ReviewOutcome:
        reason = _clean_reason(reason)
        with session_scope(self._factory, write_lock=True) as session:
            case = _locked_case(session, case_id, reviewer)
            _require_status(case, "dismiss", allowed=("new",))
            case.status = "dismissed"
            return self._audit(session, case, reviewer, "dismiss", {"from": "new", "reason": reason})

    def merge(self, case_id: int, *, into_case_id: int, reviewer: Reviewer) -> ReviewOutcome:
        if case_id == into_case_id:
            raise InvalidInput(f"into_case_id: a case cannot be merged into itself (case {case_id})")
        with session_scope(self._factory, write_lock=True) as session:
            # Lock in id order so two opposite merges cannot deadlock.
            first, second = sorted((case_id, into_case_id))
            locked = {first: _locked_case(session, first, reviewer), second: None}
            locked[second] = _locked_case(session, second, reviewer)
            source, target = locked[case_id], locked[into_case_id]
            assert source is not None and target is not None
            _check_mergeable(source, target)
            moved = source.alert_count
            priority = max(source.priority, target.priority)
            merge_cases(session, source_id=source.id, target_id=target.id)  # moves alerts, recounts target
            target.priority = priority
            target.evidence_sha256 = target.evidence_sha256 or source.evidence_sha256
            self._audit(session, target, reviewer, "merge_in", {"from_case_id": source.id, "alerts": moved})
            source.status = "closed"
            return self._audit(session, source, reviewer, "merge", {"into_case_id": target.id})

    def reassign(self, case_id: int, *, merchant_id: str, reviewer: Reviewer) -> ReviewOutcome:
        merchant_id = merchant_id.strip()
        if not merchant_id:
            raise InvalidInput("merchant_id: expected a merchant id, got an empty value")
        with session_scope(self._factory, write_lock=True) as session:
            case = _locked_case(session, case_id, reviewer)
            _require_status(case, "reassign", allowed=OPEN_CASE_STATUSES)
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

    def _audit(
        self, session: Session, case: Case, reviewer: Reviewer, action: str, detail: Mapping[str, object]
    ) -> ReviewOutcome:
        at = self._clock()
        case.updated_at = at
        entry = AuditLog(case_id=case.id, actor=reviewer.username, action=action, detail=dict(detail), at=at)
        session.add(entry)
        session.flush()
        log.info("case %s: %s by %s (%s)", case.id, action, reviewer.username, detail)
        return ReviewOutcome(case_id=case.id, action=action, status=case.status, audit_id=entry.id, at=at)


def _locked_case(session: Session, case_id: int, reviewer: Reviewer) -> Case:
    case = session.scalars(select(Case).where(Case.id == case_id).with_for_update()).one_or_none()
    if case is None or not case_visible(reviewer.scope, case):
        raise NotFound(f"case {case_id} not found")
    return case


def _require_status(case: Case, action: str, *, allowed: tuple[str, ...]) -> None:
    if case.status not in allowed:
        wanted = " or ".join(allowed)
        raise Conflict(f"case {case.id} is {case.status}; {action} needs a case that is {wanted}")


def _clean_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidInput("reason: a dismissal needs a reason, got an empty value")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"reason: at most {MAX_REASON_CHARS} characters, got {len(reason)}")
    return reason


def _check_mergeable(source: Case, target: Case) -> None:
    if source.status != "new":
        raise Conflict(f"case {source.id} is {source.status}; only new cases can be merged")
    if target.merged_into_id is not None:
        raise Conflict(f"case {target.id} was merged into case {target.merged_into_id}; merge into that one")
    if target.status not in OPEN_CASE_STATUSES:
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
