"""Charts for the statistics page as SVG geometry (no chart library, no script): pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streetwatch.central.web.citymap import VIOLATION_FILL


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    fill: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[float, float, str]]  # x, y, text
    max_value: int


def stacked_days(
    per_day: Mapping[str, Mapping[str, int]],
    violations: Sequence[str],
    *,
    width: int = 900,
    height: int = 260,
    names: Mapping[str, str] | None = None,
) -> Chart:
    """Cases per day, one stacked bar per day, one colour per violation (`names`: their display names)."""
    days = list(per_day)
    top = max((sum(v.values()) for v in per_day.values()), default=0)
    plot_h, base = height - 40, height - 24
    slot = (width - 40) / max(len(days), 1)
    bars: list[Bar] = []
    labels: list[tuple[float, float, str]] = []
    for i, day in enumerate(days):
        x, y = 30 + i * slot, float(base)
        for violation in violations:
            n = per_day[day].get(violation, 0)
            if n:
                h = plot_h * n / top
                y -= h
                bars.append(
                    Bar(
                        round(x + 2, 1),
                        round(y, 1),
                        round(max(slot - 4, 2), 1),
                        round(h, 1),
                        VIOLATION_FILL.get(violation, "#57606a"),
                        f"{day} {(names or {}).get(violation, violation)}: {n}",
                    )
                )
        if len(days) <= 16 or i % max(len(days) // 8, 1) == 0:
            labels.append((round(x + slot / 2, 1), height - 8, day[5:]))
    return Chart(width, height, bars, labels, top)


def horizontal(items: Sequence[tuple[str, int]], *, width: int = 420, row: int = 22, fill: str = "#0969da") -> Chart:
    """Top-N as horizontal bars with their names."""
    top = max((n for _, n in items), default=0)
    bars = [
        Bar(150, 4 + i * row, round((width - 190) * n / top, 1) if top else 0, row - 6, fill, f"{name}: {n}")
        for i, (name, n) in enumerate(items)
    ]
    labels = [(146.0, 4 + i * row + row / 2 + 1, name[:24]) for i, (name, _) in enumerate(items)]
    return Chart(width, max(len(items), 1) * row + 8, bars, labels, top)
