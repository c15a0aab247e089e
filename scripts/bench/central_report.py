"""The central benchmark's tables: the goals table, the runs, an A/B of two checkouts measured side by
side, and the arithmetic for a city of 10,000 cameras from the measured figures.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench_common import fmt, markdown_table, percentile

from bench.central_quality import Quality
from bench.central_queue import PageTiming
from bench.ingest_run import RunResult

GOALS = {
    "rate": "≥ 1,000 /s (1 worker)",
    "cpu": "≤ 1 ms",
    "p99": "≤ 200 ms",
    "precision": "≥ 0.99",
    "recall": "≥ 0.99",
    "attribution": "≥ 0.99",
    "lost": "0",
    "double": "0",
    "dead": "0",
    "queue": "≤ 150 ms",
}


@dataclass
class VariantRun:
    """One checkout's full-speed and paced runs on one fresh database, and what they left there."""

    code: str  # "this checkout" or the baseline's label
    full: RunResult
    paced: RunResult
    quality: Quality
    db_bytes: int
    evidence_bytes: int
    stored_alerts: int


@dataclass
class BackendResult:
    backend: str
    runs: list[VariantRun]  # every round of every checkout, in the order they ran
    bulk_rows: int = 0
    bulk_s: float = 0.0
    pages: dict[str, PageTiming] = field(default_factory=dict)
    total_cases: int = 0
    profile: str = ""

    def of(self, code: str) -> list[VariantRun]:
        return [run for run in self.runs if run.code == code]

    @property
    def headline(self) -> VariantRun:
        """The first run of this checkout: the goals table's figures."""
        return self.of(CURRENT)[0]


CURRENT = "this checkout"


def _latency(run: RunResult, q: float) -> str:
    return fmt(percentile(run.latencies_ms, q), 0) + " ms"


def results_table(results: Sequence[BackendResult], *, workers: int, rate: float) -> str:
    """Every goal beside the figures of this checkout's first run, per backend."""

    def row(name: str, goal: str, cell: Callable[[VariantRun], str]) -> list[str]:
        return [name, goal, *(cell(r.headline) for r in results)]

    def new_alerts_rate(v: VariantRun) -> str:
        s = v.full.summary
        return f"{(s.get('created', 0) + s.get('joined', 0)) / v.full.seconds:,.0f} /s"

    rows = [
        row(f"ingest rate, {workers} worker{'s' if workers > 1 else ''} (messages / (last row visible − first "
            "publish), full speed)", GOALS["rate"], lambda v: f"{v.full.rate:,.0f} /s"),
        row("worker CPU per message (user+sys, all worker threads)", GOALS["cpu"],
            lambda v: f"{v.full.cpu_ms_per_message:.2f} ms"),
        row("→ CPU-bound rate of one worker on a free core (1000 / CPU ms)", GOALS["rate"],
            lambda v: f"{1000 / v.full.cpu_ms_per_message:,.0f} /s"),
        row("… of which new alerts stored/s", "—", new_alerts_rate),
        row(f"publish→visible p50 at {rate:.0f} alerts/s offered", "—", lambda v: _latency(v.paced, 50)),
        row(f"publish→visible p99 at {rate:.0f} alerts/s offered", GOALS["p99"], lambda v: _latency(v.paced, 99)),
        row("publish→visible max at the offered rate", "—",
            lambda v: fmt(max(v.paced.latencies_ms, default=float("nan")), 0) + " ms"),
        row("paced run: messages / (last row visible − first publish)", f"{rate:.0f} /s",
            lambda v: f"{v.paced.rate:,.0f} /s"),
        row("de-duplication precision (pairs)", GOALS["precision"], lambda v: fmt(v.quality.precision, 4)),
        row("de-duplication recall (pairs)", GOALS["recall"], lambda v: fmt(v.quality.recall, 4)),
        row("cases / ground-truth violations (full-speed run)", "1.00",
            lambda v: f"{v.quality.cases:,} / {v.quality.expected_cases:,}"),
        row("attribution accuracy (all cases)", GOALS["attribution"], lambda v: fmt(v.quality.attribution, 4)),
        row("… violations inside a zone", "—", lambda v: fmt(v.quality.attribution_inside, 4)),
        row("… violations 2-5 m outside (nearest)", "—", lambda v: fmt(v.quality.attribution_nearest, 4)),
        row("lost alerts (published, not stored): full speed + paced", GOALS["lost"],
            lambda v: f"{v.quality.lost:,} ({v.quality.lost_by_run.get('full', 0):,} + "
            f"{v.quality.lost_by_run.get('paced', 0):,})"),
        row("double-counted (Σ alert_count − stored, full-speed run)", GOALS["double"],
            lambda v: f"{v.quality.double_counted:,}"),
        row("redeliveries recognised as duplicates", "—",
            lambda v: f"{v.full.summary.get('duplicate', 0) + v.paced.summary.get('duplicate', 0):,}"),
        row("dead letters", GOALS["dead"], lambda v: f"{v.quality.dead_letters:,}"),
    ]
    for name in results[0].pages if results else []:
        goal = GOALS["queue"] if name.startswith("GET / ") or name == "GET /api/cases" else "—"
        rows.append([f"{name} median server time", goal, *(_page_cell(r, name) for r in results)])
    rows.append(["cases stored for the queue timing", "1,000,000", *(f"{r.total_cases:,}" for r in results)])
    rows += [
        row("database bytes per stored alert (all tables)", "—",
            lambda v: f"{v.db_bytes / max(1, v.stored_alerts):,.0f} B"),
        row("evidence bytes per stored alert (files)", "—",
            lambda v: f"{v.evidence_bytes / max(1, v.stored_alerts):,.0f} B"),
    ]
    return markdown_table(["Metric", "Goal", *(r.backend for r in results)], rows)


def _page_cell(result: BackendResult, name: str) -> str:
    timing = result.pages.get(name)
    return f"{fmt(timing.median(), 1)} ms (p90 {fmt(timing.p90(), 1)})" if timing else "n/a"


def runs_table(results: Sequence[BackendResult]) -> str:
    """Every run: messages, seconds, the workers' outcome counts, how often visibility was polled."""
    rows = []
    for r in results:
        for v in r.runs:
            for label, run in (("full speed", v.full), ("paced", v.paced)):
                s = run.summary
                rows.append([
                    r.backend, v.code, label, f"{run.messages:,}", f"{run.seconds:.1f}", f"{run.rate:,.0f} /s",
                    f"{run.cpu_ms_per_message:.2f} ms", str(s.get("created", 0)), str(s.get("joined", 0)),
                    str(s.get("duplicate", 0)), str(s.get("dead_letter", 0)), str(s.get("db_errors", 0)),
                    f"{run.visibility.polls:,}",
                ])
    headers = ["backend", "code", "run", "messages", "seconds", "rate", "CPU/msg", "created", "joined",
               "duplicate", "dead letter", "db errors", "polls"]
    return markdown_table(headers, rows)


def ab_table(results: Sequence[BackendResult], *, baseline: str) -> str:
    """This checkout against the baseline, medians over the rounds, as ratios (this / baseline)."""
    metrics: list[tuple[str, int, Callable[[VariantRun], float]]] = [  # name, digits shown, metric
        ("ingest rate, full speed (/s)", 0, lambda v: v.full.rate),
        ("worker CPU per message (ms)", 3, lambda v: v.full.cpu_ms_per_message),
        ("publish→visible p50, paced (ms)", 1, lambda v: percentile(v.paced.latencies_ms, 50)),
        ("publish→visible p99, paced (ms)", 1, lambda v: percentile(v.paced.latencies_ms, 99)),
    ]
    rows = []
    for r in results:
        for name, digits, metric in metrics:
            mine = [metric(v) for v in r.of(CURRENT)]
            theirs = [metric(v) for v in r.of(baseline)]
            if not mine or not theirs:
                continue
            ratio = statistics.median(mine) / statistics.median(theirs)
            rows.append([r.backend, name, ", ".join(fmt(x, digits) for x in theirs),
                         ", ".join(fmt(x, digits) for x in mine), fmt(ratio, 3)])
    return markdown_table(["backend", "metric", f"{baseline} (each round)", f"{CURRENT} (each round)",
                           "ratio of medians (this / baseline)"], rows)


@dataclass(frozen=True)
class CityAssumptions:
    cameras: int = 10_000
    alerts_per_camera_hour: float = 6.0  # first alert + a reminder every 10 min for about one violation an hour
    peak_factor: float = 3.0  # busiest hour vs the daily mean
    evidence_kb: float = 20.0
    retention_days: int = 90
    headroom: float = 0.5  # run workers at most at half their measured rate


def city_arithmetic(results: Sequence[BackendResult], *, workers: int, a: CityAssumptions = CityAssumptions()) -> str:
    mean_rate = a.cameras * a.alerts_per_camera_hour / 3600
    peak_rate = mean_rate * a.peak_factor
    per_day = a.cameras * a.alerts_per_camera_hour * 24
    lines = [
        f"Assumptions: {a.cameras:,} cameras x {a.alerts_per_camera_hour:g} alerts/camera/hour (daily mean), "
        f"busiest hour {a.peak_factor:g}x the mean, ~{a.evidence_kb:g} KB evidence per alert, "
        f"{a.retention_days} days retention, workers loaded to at most {a.headroom:.0%} of their measured rate.",
        "",
        f"- mean rate: {a.cameras:,} x {a.alerts_per_camera_hour:g} / 3600 = **{mean_rate:,.1f} alerts/s**; "
        f"peak: x {a.peak_factor:g} = **{peak_rate:,.0f} alerts/s**",
        f"- alerts per day: {a.cameras:,} x {a.alerts_per_camera_hour:g} x 24 = **{per_day:,.0f}**",
    ]
    rows = []
    for r in results:
        v = r.headline
        per_alert_db = v.db_bytes / max(1, v.stored_alerts)
        per_alert_ev = v.evidence_bytes / max(1, v.stored_alerts)
        db_day, ev_day = per_day * per_alert_db / 1e9, per_day * per_alert_ev / 1e9
        per_worker = v.full.rate / max(1, workers)
        needed = peak_rate / (per_worker * a.headroom)
        rows.append([
            r.backend,
            f"{per_alert_db:,.0f} B -> {db_day:,.2f} GB/day",
            f"{per_alert_ev:,.0f} B -> {ev_day:,.1f} GB/day",
            f"{(db_day + ev_day) * a.retention_days / 1000:,.2f} TB",
            f"{per_worker:,.0f} /s",
            f"{peak_rate:,.0f} / ({per_worker:,.0f} x {a.headroom:g}) = {needed:.2f} -> **{math.ceil(needed)}**",
        ])
    headers = ["backend", "rows (measured B/alert)", "evidence files", f"{a.retention_days}-day total",
               "measured per worker", "workers at peak"]
    return "\n".join(lines) + "\n\n" + markdown_table(headers, rows)
