"""The statistics page's series: per day, ISO week or month, confirmed cases by violation with the
unreviewed ones apart, the self-rectification rate and the median time to close; and confirmed
cases per merchant, road and area. Pure: case facts in, rows out (each chart's table and CSV)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from streetwatch.central.case_status import CaseStatus
from streetwatch.central.workflow.stats import CaseFact

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")
NOT_COUNTED = (CaseStatus.DISMISSED, CaseStatus.NEW)
TOP_N = 10


def period_of(day: str, period: Period) -> str:
    """'2026-03-04' -> '2026-03-04' | '2026-W10' (ISO week) | '2026-03'."""
    if period == "day":
        return day
    if period == "month":
        return day[:7]
    year, week, _ = date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True)
class PeriodRow:
    period: str
    confirmed: dict[str, int]  # violation -> confirmed cases first seen in the period
    unreviewed: int  # new cases first seen in the period: shown apart, counted nowhere else
    ended: int  # confirmed cases that ended (rectified or closed)
    self_rectified: int  # ... of which the merchant rectified in time
    median_hours_to_close: float | None

    @property
    def total(self) -> int:
        return sum(self.confirmed.values())

    @property
    def self_rectified_share(self) -> float | None:
        return self.self_rectified / self.ended if self.ended else None


@dataclass(frozen=True)
class Breakdown:
    name: str
    confirmed: int
    unreviewed: int


@dataclass(frozen=True)
class Series:
    period: Period
    violations: list[str]
    rows: list[PeriodRow]
    merchants: list[Breakdown] = field(default_factory=list)
    roads: list[Breakdown] = field(default_factory=list)
    areas: list[Breakdown] = field(default_factory=list)


def _row(label: str, facts: Sequence[CaseFact]) -> PeriodRow:
    real = [f for f in facts if f.status not in NOT_COUNTED]
    ended = [f for f in real if f.status in (CaseStatus.RECTIFIED, CaseStatus.CLOSED)]
    hours = [f.hours_to_close for f in real if f.hours_to_close is not None]
    return PeriodRow(
        period=label,
        confirmed=dict(sorted(Counter(f.violation for f in real).items())),
        unreviewed=sum(f.status == CaseStatus.NEW for f in facts),
        ended=len(ended),
        self_rectified=sum(f.status == CaseStatus.RECTIFIED for f in ended),
        median_hours_to_close=round(statistics.median(hours), 2) if hours else None,
    )


def _breakdown(facts: Sequence[CaseFact], key: str) -> list[Breakdown]:
    confirmed = Counter(getattr(f, key) for f in facts if getattr(f, key) and f.status not in NOT_COUNTED)
    unreviewed = Counter(getattr(f, key) for f in facts if getattr(f, key) and f.status == CaseStatus.NEW)
    names = sorted(set(confirmed) | set(unreviewed), key=lambda n: (-confirmed[n], -unreviewed[n], n))
    return [Breakdown(n, confirmed[n], unreviewed[n]) for n in names[:TOP_N]]


def series(facts: Sequence[CaseFact], period: Period, *, days: Sequence[str] = ()) -> Series:
    """Rows for every period from the first to the last of `days` (each day of the window, so an
    empty period shows as zero, not as a gap) plus any period a fact falls in."""
    groups: dict[str, list[CaseFact]] = {period_of(d, period): [] for d in days}
    for f in facts:
        groups.setdefault(period_of(f.day, period), []).append(f)
    rows = [_row(label, groups[label]) for label in sorted(groups)]
    violations = sorted({f.violation for f in facts if f.status not in NOT_COUNTED})
    return Series(period, violations, rows, _breakdown(facts, "merchant"), _breakdown(facts, "road"),
                  _breakdown(facts, "area"))
