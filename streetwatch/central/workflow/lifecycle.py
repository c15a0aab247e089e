"""Export cases to a city's existing platform: the national digital-city-management lifecycle
(立案 file, 派遣 dispatch, 处置 handle, 反馈 feedback, 核查 verify, 结案 close) and the configured
event class code of each violation, as JSON rows or CSV.

A case's history (the stages it went through, with times) comes from the audit log, so an export
shows a verification that failed and went back to dispatch as such.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from streetwatch.central.access import AreaScope, case_clause, case_visible
from streetwatch.central.csv_export import to_csv
from streetwatch.central.models import Alert, AuditLog, Case, Merchant
from streetwatch.central.workflow.config import EventClass, WorkflowSettings
from streetwatch.central.workflow.rules import lifecycle_stage

# Audit actions onto lifecycle stages (the history column).
ACTION_STAGES: dict[str, str] = {
    "confirm": "file",
    "notify": "dispatch",
    "inspection": "handle",
    "rectified": "feedback",
    "verified": "verify",
    "verify_failed": "dispatch",
    "close": "close",
    "dismiss": "void",
}
CSV_FIELDS = (
    "case_id",
    "stage",
    "stage_zh",
    "status",
    "event_code",
    "event_category",
    "event_name",
    "violation",
    "reported_at",
    "updated_at",
    "lat",
    "lon",
    "address",
    "road",
    "merchant_id",
    "merchant_name",
    "before_photo",
    "after_photo",
    "history",
)


@dataclass(frozen=True)
class LifecycleRow:
    case_id: int
    stage: str
    stage_zh: str
    status: str
    event_code: str
    event_category: str
    event_name: str
    violation: str
    reported_at: str
    updated_at: str
    lat: float | None
    lon: float | None
    address: str
    road: str
    merchant_id: str | None
    merchant_name: str
    before_photo: str | None
    after_photo: str | None
    history: list[dict[str, str]]


def evidence_url(sha256: str | None) -> str | None:
    return f"/evidence/{sha256}" if sha256 else None


def build_row(
    case: Case,
    merchant: Merchant | None,
    history: Sequence[AuditLog],
    *,
    event: EventClass | None,
    after_sha256: str | None,
) -> LifecycleRow:
    """One case as the city platform wants it (pure: everything comes in as arguments)."""
    actions = [h.action for h in history]
    verified = "verified" in actions and actions[::-1].index("verified") < _last_index(actions, "verify_failed")
    stage, stage_zh = lifecycle_stage(case.status, verified=verified)
    return LifecycleRow(
        case_id=case.id,
        stage=stage,
        stage_zh=stage_zh,
        status=case.status,
        event_code=event.code if event else "",
        event_category=event.category if event else "",
        event_name=event.name if event else case.violation,
        violation=case.violation,
        reported_at=case.first_seen.isoformat(),
        updated_at=case.updated_at.isoformat(),
        lat=case.lat,
        lon=case.lon,
        address=merchant.address if merchant else "",
        road=merchant.road if merchant else "",
        merchant_id=case.merchant_id,
        merchant_name=merchant.name if merchant else "",
        before_photo=evidence_url(case.evidence_sha256),
        after_photo=evidence_url(after_sha256),
        history=[
            {"stage": ACTION_STAGES[h.action], "action": h.action, "at": h.at.isoformat(), "by": h.actor}
            for h in history
            if h.action in ACTION_STAGES
        ],
    )


def _last_index(actions: list[str], action: str) -> int:
    """Distance from the end of the last `action` (a large number when absent)."""
    return actions[::-1].index(action) if action in actions else 1 << 30


def lifecycle_rows(
    session: Session,
    *,
    settings: WorkflowSettings,
    scope: AreaScope | None = None,
    since: datetime | None = None,
    limit: int = 10_000,
) -> list[LifecycleRow]:
    """Every case the scope covers (merged-away cases excluded), oldest first."""
    query = select(Case).where(case_clause(scope), Case.merged_into_id.is_(None)).order_by(Case.id).limit(limit)
    if since is not None:
        query = query.where(Case.updated_at >= since)
    cases = [c for c in session.scalars(query) if case_visible(scope, c)]
    ids = [c.id for c in cases]
    merchants = {
        m.id: m
        for m in session.scalars(
            select(Merchant).where(Merchant.id.in_({c.merchant_id for c in cases if c.merchant_id}))
        )
    }
    history: dict[int, list[AuditLog]] = defaultdict(list)
    for entry in session.scalars(select(AuditLog).where(AuditLog.case_id.in_(ids)).order_by(AuditLog.id)):
        history[entry.case_id or 0].append(entry)
    after: dict[int, str] = {}
    ended = (
        select(Alert.case_id, Alert.evidence_sha256)
        .where(Alert.case_id.in_(ids), Alert.state == "ended", Alert.evidence_sha256.is_not(None))
        .order_by(Alert.observed_at)
    )
    for case_id, sha in session.execute(ended):
        if case_id is not None and sha:
            after[case_id] = sha  # the latest wins
    return [
        build_row(
            c,
            merchants.get(c.merchant_id or ""),
            history[c.id],
            event=settings.event_classes.get(c.violation),
            after_sha256=after.get(c.id),
        )
        for c in cases
    ]


def rows_to_json(rows: Sequence[LifecycleRow]) -> list[dict[str, object]]:
    return [asdict(r) for r in rows]


def rows_to_csv(rows: Sequence[LifecycleRow]) -> str:
    """CSV with one line per case; the history is `stage@time` joined by `;`."""
    def values(row: LifecycleRow) -> dict[str, object]:
        flat: dict[str, object] = asdict(row)
        flat["history"] = ";".join(f"{h['stage']}@{h['at']}" for h in row.history)
        return flat

    return to_csv(CSV_FIELDS, (values(row) for row in rows))
