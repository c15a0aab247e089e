"""Ingest quality against the generated ground truth: de-duplication pair precision/recall,
attribution accuracy, lost alerts, double counts and dead letters, read back from the database.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bench import central_truth as truth
from streetwatch.central.models import Alert, Case, DeadLetter


@dataclass
class Quality:
    precision: float
    recall: float
    attribution: float
    attribution_inside: float
    attribution_nearest: float
    cases: int
    expected_cases: int
    stored: int
    published_unique: int
    lost: int
    double_counted: int
    dead_letters: int
    foreign: int  # stored alerts of no dataset judged here (another run's)
    lost_by_run: dict[str, int] = field(default_factory=dict)
    dead_reasons: list[str] = field(default_factory=list)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def measure_quality(factory: sessionmaker[Session], datasets: Sequence[tuple[str, truth.Dataset]]) -> Quality:
    """Judge the stored alerts and cases of `datasets` (name, ground truth) against their truth."""
    violation_by_alert: dict[str, int] = {}
    violation_of: dict[int, truth.ViolationTruth] = {}
    offset = 0
    for _name, ds in datasets:
        for spec in ds.alerts:
            violation_by_alert[spec.alert_id] = offset + spec.violation_index
        for v in ds.violations:
            violation_of[offset + v.index] = v
        offset += len(ds.violations)
    with factory() as session:
        rows = session.execute(select(Alert.alert_id, Alert.case_id)).all()
        cases = {c.id: c for c in session.scalars(select(Case))}
        dead = session.scalar(select(func.count(DeadLetter.id))) or 0
        by_reason = select(DeadLetter.reason, func.count(DeadLetter.id)).group_by(DeadLetter.reason).limit(5)
        reasons = [f"{n} x {r[:160]}" for r, n in session.execute(by_reason)]
    ours = [(violation_by_alert[a], c) for a, c in rows if a in violation_by_alert and c is not None]
    stored_ids = {a for a, _ in rows}
    both, pred, true = truth.pair_counts([t for t, _ in ours], [c for _, c in ours])
    by_case: dict[int, Counter[int]] = defaultdict(Counter)
    for t, c in ours:
        by_case[c][t] += 1
    correct, per_method = 0, {"inside_zone": [0, 0], "nearest": [0, 0]}
    for case_id, counts in by_case.items():
        v = violation_of[counts.most_common(1)[0][0]]
        ok = cases[case_id].merchant_id == v.merchant_id
        correct += ok
        per_method[v.expected_method][0] += ok
        per_method[v.expected_method][1] += 1
    counted = sum(cases[c].alert_count for c in by_case)
    return Quality(
        precision=_ratio(both, pred),
        recall=_ratio(both, true),
        attribution=_ratio(correct, len(by_case)),
        attribution_inside=_ratio(*per_method["inside_zone"]),
        attribution_nearest=_ratio(*per_method["nearest"]),
        cases=len(by_case),
        expected_cases=offset,
        stored=len(ours),
        published_unique=len(violation_by_alert),
        lost=len(violation_by_alert) - len(ours),
        double_counted=counted - len(ours),
        dead_letters=int(dead),
        foreign=len(rows) - len(ours),
        lost_by_run={name: sum(1 for s in ds.alerts if s.alert_id not in stored_ids) for name, ds in datasets},
        dead_reasons=reasons,
    )
