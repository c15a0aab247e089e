"""A case's status, the groups of statuses the rest of central asks about, and the allowed moves.

The values are the strings the `cases.status` column and the JSON API have always carried. Every
change of a case's status goes through `move(case, to, action=...)`, which refuses a move that
`TRANSITIONS` does not list with an error naming both states. Creation is not a move: a case is
born `new` (case_engine.new_case).

In short: a reviewer confirms, dismisses or merges a new case; the workflow notifies the merchant of
a confirmed one; its timer ends a notified case rectified or escalated; a failed verification sends
it back to notified; a reviewer closes any confirmed case that is not dismissed. Within the undo
window a reviewer may take back a confirm, a dismissal or a merge (`undo`: back to new; the
workflow waits for the window before it notifies anyone). Otherwise dismissed and closed are final.

Imports nothing of central but its errors, so the training code can use the groups too.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal, Protocol, get_args

from streetwatch.central.errors import Conflict


class CaseStatus(StrEnum):
    NEW = "new"  # an alert opened it; nobody has reviewed it
    CONFIRMED = "confirmed"  # a reviewer confirmed the violation
    DISMISSED = "dismissed"  # a reviewer found no violation
    NOTIFIED = "notified"  # the merchant was told; the rectification timer runs
    RECTIFIED = "rectified"  # the spot was seen clear in time
    ESCALATED = "escalated"  # still seen at the deadline: an inspector goes
    CLOSED = "closed"  # done (closed by a reviewer, or merged into another case)


S = CaseStatus

# The same values as a Literal, for query parameters: the API has always validated `status` as a
# literal, and its 422 answers (type "literal_error") are part of its contract.
CaseStatusName = Literal["new", "confirmed", "dismissed", "notified", "rectified", "escalated", "closed"]
if get_args(CaseStatusName) != tuple(CaseStatus):  # pragma: no cover - a guard for whoever edits one of them
    raise RuntimeError("case_status: CaseStatusName must list the CaseStatus values in order")

ALL_STATUSES: Final[tuple[CaseStatus, ...]] = tuple(CaseStatus)
# A new alert may still join the case (the spot is still "open" for the review loop); a reviewer
# may still reassign it or merge another case into it.
OPEN_STATUSES: Final[tuple[CaseStatus, ...]] = (S.NEW, S.CONFIRMED, S.NOTIFIED)
# Confirmed by a reviewer and not yet resolved: what the city still has to act on (Open311 "open").
IN_HAND_STATUSES: Final[tuple[CaseStatus, ...]] = (S.CONFIRMED, S.NOTIFIED, S.ESCALATED)
# Still needing someone, reviewed or not: the cases the city map shows.
UNRESOLVED_STATUSES: Final[tuple[CaseStatus, ...]] = (S.NEW, *IN_HAND_STATUSES)
# Decided by a reviewer one way or the other (Open311 publishes only the violations and closed ones).
REVIEWED_STATUSES: Final[tuple[CaseStatus, ...]] = tuple(s for s in CaseStatus if s is not S.NEW)
# A reviewer said "this is a violation" and the case was not merged or closed away: training positives.
VIOLATION_STATUSES: Final[tuple[CaseStatus, ...]] = (S.CONFIRMED, S.NOTIFIED, S.RECTIFIED, S.ESCALATED)
# A reviewer said "no violation": training negatives (when dismissed as a false detection).
NO_VIOLATION_STATUSES: Final[tuple[CaseStatus, ...]] = (S.DISMISSED,)

# (from, to) -> the action that makes the move: the whole state machine in one table.
TRANSITIONS: Final[dict[tuple[CaseStatus, CaseStatus], str]] = {
    (S.NEW, S.CONFIRMED): "confirm",  # review.ReviewService.confirm
    (S.NEW, S.DISMISSED): "dismiss",  # review.ReviewService.dismiss
    (S.NEW, S.CLOSED): "merge",  # review.ReviewService.merge (the source case)
    (S.CONFIRMED, S.NEW): "undo",  # review.ReviewService.undo, within the undo window
    (S.DISMISSED, S.NEW): "undo",
    (S.CLOSED, S.NEW): "undo",  # a merge taken back (the source case)
    (S.CONFIRMED, S.NOTIFIED): "notify",  # workflow.timers.start_workflow
    (S.NOTIFIED, S.RECTIFIED): "rectified",  # workflow.timers.resolve_timer
    (S.NOTIFIED, S.ESCALATED): "inspection",  # workflow.timers.resolve_timer
    (S.RECTIFIED, S.NOTIFIED): "verify_failed",  # workflow.service.WorkflowService.verify
    (S.ESCALATED, S.NOTIFIED): "verify_failed",
    (S.CONFIRMED, S.CLOSED): "close",  # workflow.service.WorkflowService.close
    (S.NOTIFIED, S.CLOSED): "close",
    (S.RECTIFIED, S.CLOSED): "close",
    (S.ESCALATED, S.CLOSED): "close",
}


def sources_of(action: str) -> tuple[CaseStatus, ...]:
    """The statuses from which `action` moves a case, in the enum's order."""
    found = {src for (src, _), name in TRANSITIONS.items() if name == action}
    if not found:
        raise ValueError(f"action: expected one of {sorted(set(TRANSITIONS.values()))}, got {action!r}")
    return tuple(s for s in CaseStatus if s in found)


# Statuses a reviewer may close; statuses an inspector verifies (核查): both read off the table.
CLOSABLE_STATUSES: Final[tuple[CaseStatus, ...]] = sources_of("close")
VERIFIABLE_STATUSES: Final[tuple[CaseStatus, ...]] = sources_of("verify_failed")


class IllegalTransition(Conflict):
    """A status change the state machine does not allow; names both states (HTTP 409)."""


class HasStatus(Protocol):
    """Anything with a case id and a status column (models.Case; no import of the models here)."""

    id: int
    status: str


def parse_status(value: str) -> CaseStatus:
    """A stored or requested status as a CaseStatus; ValueError naming the value otherwise."""
    try:
        return CaseStatus(value)
    except ValueError:
        expected = ", ".join(ALL_STATUSES)
        raise ValueError(f"status: expected one of {expected}, got {value!r}") from None


def can_move(current: str, to: CaseStatus, *, action: str) -> bool:
    return TRANSITIONS.get((parse_status(current), to)) == action


def move(case: HasStatus, to: CaseStatus, *, action: str) -> None:
    """Set `case.status` to `to` by `action` if the table has that move from the current status;
    IllegalTransition naming both states (and what the current one allows) otherwise."""
    current = parse_status(case.status)
    if TRANSITIONS.get((current, to)) != action:
        allowed = ", ".join(f"{dst} by {name}" for (src, dst), name in TRANSITIONS.items() if src is current)
        raise IllegalTransition(
            f"case {case.id}: {action} cannot move a case from {current} to {to} "
            f"(from {current}: {allowed or 'no move, it is final'})"
        )
    case.status = to
