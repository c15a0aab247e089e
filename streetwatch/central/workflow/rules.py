"""The city's rules as pure functions (docs/design.md, "Where the rules come from"; house rule 4).

No I/O and no clock here: the service modules read the rows, call these, and write the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from streetwatch.central.case_status import VERIFIABLE_STATUSES, CaseStatus

RectifyDecision = Literal["wait", "rectified", "inspection"]
StrikeAction = Literal["warning", "rectification_notice", "penalty"]
Grade = Literal["red", "yellow", "green"]
InspectionFrequency = Literal["daily", "weekly", "monthly"]

STRIKE_ACTIONS: Final[dict[int, StrikeAction]] = {1: "warning", 2: "rectification_notice", 3: "penalty"}
FREQUENCY_OF_GRADE: Final[dict[Grade, InspectionFrequency]] = {"red": "daily", "yellow": "weekly", "green": "monthly"}
FREQUENCY_DAYS: Final[dict[InspectionFrequency, int]] = {"daily": 1, "weekly": 7, "monthly": 30}


def rectify_decision(
    *, now: datetime, due_at: datetime, clear_since: datetime | None, not_before: datetime | None = None
) -> RectifyDecision:
    """The 30-minute rule. `clear_since` is when the edge last saw the spot clear (every episode of the
    case ended), None while a violation is still seen. Clear by the deadline: rectified by the merchant;
    still seen at the deadline: send an inspector; otherwise keep waiting. `not_before` ignores a clear
    view older than it (after a failed verification the old `ended` proved wrong)."""
    if clear_since is not None and not_before is not None and clear_since < not_before:
        clear_since = None
    if clear_since is not None and clear_since <= due_at:
        return "rectified"
    if now >= due_at:
        return "inspection"
    return "wait"


def strike_step(prior_strikes: int) -> int:
    """The step of a new confirmed case given the merchant's counted strikes in the window (1..3)."""
    if prior_strikes < 0:
        raise ValueError(f"prior_strikes: expected >= 0, got {prior_strikes}")
    return min(prior_strikes + 1, 3)


def strike_action(step: int) -> StrikeAction:
    if step not in STRIKE_ACTIONS:
        raise ValueError(f"step: expected 1, 2 or 3, got {step}")
    return STRIKE_ACTIONS[step]


def strike_counts(*, status: str, count_self_rectified: bool) -> bool:
    """Whether an earlier strike still counts: dismissed ones never, self-rectified ones as configured."""
    if status == CaseStatus.DISMISSED:
        return False
    return count_self_rectified or status != CaseStatus.RECTIFIED


def close_blocker(*, strike_step: int | None, penalty_decision: str | None) -> str | None:
    """Why a case may not close yet (None: it may). A third strike needs its penalty decided first."""
    if strike_step == 3 and not (penalty_decision or "").strip():
        return "a third-strike case needs a penalty decision before it can be closed"
    return None


def merchant_grade(records: int, *, red_at: int = 5, yellow_at: int = 3) -> Grade:
    """Confirmed cases plus complaints in the window: >= red_at red, >= yellow_at yellow, else green."""
    if records < 0:
        raise ValueError(f"records: expected >= 0, got {records}")
    if records >= red_at:
        return "red"
    if records >= yellow_at:
        return "yellow"
    return "green"


def inspection_frequency(grade: str) -> InspectionFrequency:
    if grade not in FREQUENCY_OF_GRADE:
        raise ValueError(f"grade: expected red, yellow or green, got {grade!r}")
    return FREQUENCY_OF_GRADE[grade]  # type: ignore[index]


def inspection_due_at(*, grade: str, last_done: datetime | None, since: datetime) -> datetime:
    """When the next routine visit is due: last visit + the grade's interval (from `since` if never)."""
    days = FREQUENCY_DAYS[inspection_frequency(grade)]
    if last_done is None:
        return since
    return last_done + timedelta(days=days)


def hotspot_active(*, was_active: bool, case_count: int, threshold: int = 5) -> bool:
    """On at `threshold` cases in the window; once on, shown until the count is back to zero."""
    if case_count >= threshold:
        return True
    return was_active and case_count > 0


@dataclass(frozen=True)
class RoadRecord:
    """A road's merchants by grade and its active hotspots."""

    red: int
    yellow: int
    green: int
    hotspots: int

    @classmethod
    def of(cls, grades: Sequence[str], *, hotspots: int) -> RoadRecord:
        return cls(grades.count("red"), grades.count("yellow"), grades.count("green"), hotspots)


def road_grade(record: RoadRecord, *, red_share: float = 0.2) -> Grade:
    """Red with an active hotspot or >= `red_share` red merchants; yellow with any red or yellow
    merchant; green otherwise (a road with no merchants and no hotspot is green)."""
    total = record.red + record.yellow + record.green
    if record.hotspots > 0 or (total and record.red / total >= red_share):
        return "red"
    if record.red or record.yellow:
        return "yellow"
    return "green"


def retry_delay_s(attempts: int, *, base_s: float, max_s: float) -> float:
    """Exponential back-off after `attempts` failed deliveries (1 -> base, 2 -> 2*base, ...)."""
    if attempts < 1:
        raise ValueError(f"attempts: expected >= 1, got {attempts}")
    return float(min(max_s, base_s * 2 ** min(attempts - 1, 30)))


# The national digital-city-management lifecycle (数字化城市管理): our statuses onto its stages.
LIFECYCLE_STAGES: Final[dict[str, tuple[str, str]]] = {
    "new": ("report", "上报"),
    "confirmed": ("file", "立案"),
    "notified": ("dispatch", "派遣"),
    "escalated": ("handle", "处置"),
    "rectified": ("feedback", "反馈"),
    "verified": ("verify", "核查"),
    "closed": ("close", "结案"),
    "dismissed": ("void", "不予立案"),
}


def lifecycle_stage(status: str, *, verified: bool = False) -> tuple[str, str]:
    """(stage, 中文) of a case status; a rectified or inspected case with a verification is 核查."""
    if verified and status in VERIFIABLE_STATUSES:  # rectified by the merchant, or inspected
        return LIFECYCLE_STAGES["verified"]
    if status not in LIFECYCLE_STAGES:
        raise ValueError(f"status: expected one of {sorted(LIFECYCLE_STAGES)}, got {status!r}")
    return LIFECYCLE_STAGES[status]
