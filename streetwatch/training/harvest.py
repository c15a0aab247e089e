"""Reviewed cases from central -> labelled images: the reviewers' decisions are the labels.

Two sources give the same `ReviewedCase` records:
- `DatabaseSource`: central's database through SQLAlchemy, read-only (PostgreSQL read-only
  transactions, SQLite `query_only`), evidence JPEGs read from central's evidence folder;
- `ApiSource`: central's JSON API with a bearer token (`/api/cases`, `/api/cases/{id}` and its
  `/alerts`, `/evidence/{sha256}`); each alert there carries its `objects` and evidence size.

Both read a case's alerts oldest first (ties by alert id), so both pick the same images.

Labels: the boxes of a confirmed case's alerts (`objects`, in evidence-image pixels, which is the
evidence JPEG's own pixel grid) mapped to training classes by the class map. Dismissed cases become
hard negatives (an empty label file) only when dismissed for a reason that says the detection was
wrong (default: `false_detection`); a case dismissed as `allowed_time_window` or `duplicate` shows
real objects and would teach the model to miss them, so it is left out.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from streetwatch.central.case_status import NO_VIOLATION_STATUSES, VIOLATION_STATUSES
from streetwatch.training.classmap import ClassMap
from streetwatch.training.dataset import Box, DatasetWriter, LabelledImage, assign_splits

if TYPE_CHECKING:
    from sqlalchemy import Engine

logger = logging.getLogger(__name__)

# Confirmed cases give boxes, dismissed ones hard negatives (the groups are central's: case_status.py).
POSITIVE_STATUSES: tuple[str, ...] = tuple(s.value for s in VIOLATION_STATUSES)
NEGATIVE_STATUSES: tuple[str, ...] = tuple(s.value for s in NO_VIOLATION_STATUSES)
DEFAULT_NEGATIVE_REASONS: tuple[str, ...] = ("false_detection",)


class HarvestError(RuntimeError):
    """A case or file that cannot be harvested; the message names the case, alert or file."""


@dataclass(frozen=True)
class AlertEvidence:
    """One alert's evidence: the image hash, its size and the boxes drawn on it."""

    alert_id: str
    evidence_sha256: str
    width: int
    height: int
    objects: tuple[tuple[str, tuple[float, float, float, float]], ...]  # (class name, xyxy)


@dataclass(frozen=True)
class ReviewedCase:
    case_id: int
    status: str
    camera_id: str
    dismiss_reason: str | None
    alerts: tuple[AlertEvidence, ...]


class CaseSource(Protocol):
    def cases(self) -> Iterator[ReviewedCase]: ...

    def evidence(self, case: ReviewedCase, alert: AlertEvidence) -> bytes: ...


def objects_of(payload: dict[str, object], *, where: str) -> tuple[tuple[str, tuple[float, float, float, float]], ...]:
    """The (class, xyxy) list of a stored alert payload's `objects`; errors name the alert and field."""
    raw = payload.get("objects") or []
    if not isinstance(raw, list):
        raise HarvestError(f"{where}: field objects: expected a list, got {type(raw).__name__}")
    out = []
    for i, obj in enumerate(raw):
        try:
            x1, y1, x2, y2 = (float(v) for v in obj["bbox"])
            out.append((str(obj["cls"]), (x1, y1, x2, y2)))
        except (KeyError, TypeError, ValueError):
            raise HarvestError(f"{where}: field objects[{i}]: expected {{cls, bbox: [x1, y1, x2, y2]}}") from None
    return tuple(out)


def evidence_size(payload: dict[str, object], *, where: str) -> tuple[int, int]:
    ev = payload.get("evidence")
    if not isinstance(ev, dict) or "width" not in ev or "height" not in ev:
        raise HarvestError(f"{where}: field evidence: expected {{width, height}} of the evidence image")
    return int(ev["width"]), int(ev["height"])


def to_labelled(case: ReviewedCase, alert: AlertEvidence, jpeg: bytes, class_map: ClassMap) -> LabelledImage:
    """The labelled image of one alert: its boxes for a confirmed case, none for a dismissed one."""
    boxes: list[Box] = []
    if case.status in POSITIVE_STATUSES:
        for cls, xyxy in alert.objects:
            index = class_map.index_of(cls)
            if index is None:
                logger.debug("case %d alert %s: class %r has no training class, box dropped", case.case_id,
                             alert.alert_id, cls)
                continue
            boxes.append(Box(index, xyxy))
    return LabelledImage(
        name=f"case{case.case_id}_{alert.evidence_sha256[:16]}",
        jpeg=jpeg,
        width=alert.width,
        height=alert.height,
        camera_id=case.camera_id,
        boxes=tuple(boxes),
        origin=f"case {case.case_id} alert {alert.alert_id}",
    )


def wanted(case: ReviewedCase, *, negative_reasons: Sequence[str]) -> bool:
    if case.status in POSITIVE_STATUSES:
        return True
    return case.status in NEGATIVE_STATUSES and (case.dismiss_reason or "other") in negative_reasons


def pick_alerts(alerts: Sequence[AlertEvidence], *, per_case: int) -> tuple[AlertEvidence, ...]:
    """Up to `per_case` alerts with distinct images, spread over the case (first, last, between)."""
    distinct = list({a.evidence_sha256: a for a in alerts}.values())
    if len(distinct) <= per_case:
        return tuple(distinct)
    step = (len(distinct) - 1) / max(1, per_case - 1)
    return tuple(distinct[round(i * step)] for i in range(per_case))


class DatabaseSource:
    """Reviewed cases straight from central's database (read-only) and its evidence folder."""

    def __init__(self, url: str, evidence_dir: str | Path, *, per_case: int = 3) -> None:
        self.url = url
        self.evidence_dir = Path(evidence_dir)
        self.per_case = per_case

    def cases(self) -> Iterator[ReviewedCase]:
        from sqlalchemy import select

        from streetwatch.central.models import Alert, AuditLog, Case

        engine = read_only_engine(self.url)
        statuses = POSITIVE_STATUSES + NEGATIVE_STATUSES
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(Case.id, Case.status, Case.camera_id)
                    .where(Case.status.in_(statuses), Case.merged_into_id.is_(None))
                    .order_by(Case.id)
                ).all()
                for case_id, status, camera_id in rows:
                    reason = conn.scalar(
                        select(AuditLog.detail)
                        .where(AuditLog.case_id == case_id, AuditLog.action == "dismiss")
                        .order_by(AuditLog.at.desc())
                        .limit(1)
                    )
                    alerts = conn.execute(
                        select(Alert.alert_id, Alert.evidence_sha256, Alert.payload)
                        .where(Alert.case_id == case_id, Alert.evidence_sha256.is_not(None))
                        .order_by(Alert.observed_at, Alert.alert_id)
                    ).all()
                    evidence = [_alert_evidence(case_id, a, sha, payload) for a, sha, payload in alerts]
                    yield ReviewedCase(
                        case_id=case_id,
                        status=status,
                        camera_id=camera_id,
                        dismiss_reason=(reason or {}).get("reason") if isinstance(reason, dict) else None,
                        alerts=pick_alerts(evidence, per_case=self.per_case),
                    )
        finally:
            engine.dispose()

    def evidence(self, case: ReviewedCase, alert: AlertEvidence) -> bytes:
        from streetwatch.central.evidence_store import EvidenceStore

        path = EvidenceStore(self.evidence_dir).path_for(alert.evidence_sha256)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise HarvestError(
                f"case {case.case_id} alert {alert.alert_id}: evidence file {path}: {exc.strerror} "
                f"(is --evidence-dir central's evidence folder?)"
            ) from None


def _alert_evidence(case_id: int, alert_id: str, sha256: str, payload: dict[str, object]) -> AlertEvidence:
    where = f"case {case_id} alert {alert_id}"
    width, height = evidence_size(payload, where=where)
    return AlertEvidence(alert_id, sha256, width, height, objects_of(payload, where=where))


def read_only_engine(url: str) -> Engine:
    """An engine that cannot write: PostgreSQL read-only transactions, SQLite query_only."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not Path(parsed.database).is_file():
            raise HarvestError(f"--database-url: SQLite file {parsed.database} does not exist")
        engine = create_engine(parsed)

        @event.listens_for(engine, "connect")
        def _query_only(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.execute("PRAGMA query_only=ON")

        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, execution_options={"postgresql_readonly": True})
    return create_engine(parsed)


def _items(document: dict[str, object], key: str, *, where: str) -> list[dict[str, object]]:
    """The list of JSON objects under `key` (missing: empty); anything else is a HarvestError."""
    value = document.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise HarvestError(f"{where}: field {key}: expected a list of objects")
    return value


def _observed_key(alert: dict[str, object], *, case_id: int) -> tuple[datetime, str]:
    """Oldest first, ties by alert id: the order `DatabaseSource` reads alerts in."""
    try:
        at = datetime.fromisoformat(str(alert.get("observed_at")))
    except ValueError:
        where = f"case {case_id} alert {alert.get('alert_id')}"
        raise HarvestError(f"{where}: field observed_at: expected an ISO 8601 time") from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)), str(alert.get("alert_id"))


def _http_detail(exc: urllib.error.HTTPError) -> str:
    """The server's `detail` message of an error response, if it sent one."""
    try:
        body = json.loads(exc.read(2_000) or b"{}")
    except (OSError, ValueError):
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    return f": {str(detail)[:200]}" if detail else ""


_HTTP_HINTS = {
    401: " (is the token an API token of an active user, and not revoked?)",
    404: " (or outside the token user's area)",
}


class ApiSource:
    """Reviewed cases through central's JSON API (bearer token), for when the database is not reachable.

    Requests, all with `Authorization: Bearer <token>`: `/api/cases?status=...` per reviewed status
    (cursor paging), `/api/cases/{id}` (alerts and audit log: the dismissal reason),
    `/api/cases/{id}/alerts` (offset paging) when the detail holds fewer alerts than the case has (it
    shows the newest 100), and `/evidence/{sha256}?case_id=`. Each alert's `objects` and `evidence`
    {width, height} are central's AlertPublic fields, copied from the stored wire alert.
    """

    PAGE = 200  # central's largest page (MAX_PAGE)

    def __init__(self, base_url: str, token: str, *, per_case: int = 3, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.per_case = per_case
        self.timeout_s = timeout_s

    def _url(self, path: str, params: dict[str, str | int] | None = None) -> str:
        return f"{self.base_url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")

    def _get(self, path: str, params: dict[str, str | int] | None = None) -> bytes:
        url = self._url(path, params)
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - http(s) only
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            hint = _HTTP_HINTS.get(exc.code, "")
            raise HarvestError(f"GET {url}: HTTP {exc.code}{_http_detail(exc)}{hint}") from None
        except OSError as exc:
            raise HarvestError(f"GET {url}: {exc}") from None

    def _json(self, path: str, params: dict[str, str | int] | None = None) -> dict[str, object]:
        try:
            data = json.loads(self._get(path, params))
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise HarvestError(f"GET {self._url(path, params)}: expected a JSON object (is --api-url central's?)")
        return data

    def _briefs(self, status: str) -> Iterator[dict[str, object]]:
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"status": status, "limit": self.PAGE}
            if cursor:
                params["after"] = cursor
            page = self._json("/api/cases", params)
            yield from _items(page, "data", where=f"GET {self._url('/api/cases', params)}")
            next_cursor = page.get("next_cursor")
            if not isinstance(next_cursor, str) or not next_cursor:
                return
            cursor = next_cursor

    def cases(self) -> Iterator[ReviewedCase]:
        for status in POSITIVE_STATUSES + NEGATIVE_STATUSES:
            for brief in self._briefs(status):
                if brief.get("merged_into_id"):
                    continue
                yield self._case(int(str(brief["id"])), status)

    def _case(self, case_id: int, status: str) -> ReviewedCase:
        detail = self._json(f"/api/cases/{case_id}")
        where = f"case {case_id} (GET {self._url(f'/api/cases/{case_id}')})"
        audit = [a for a in _items(detail, "audit", where=where) if a.get("action") == "dismiss"]
        last = audit[-1].get("detail") if audit else None
        reason = str(last["reason"]) if isinstance(last, dict) and "reason" in last else None
        alerts = _items(detail, "alerts", where=where)
        if len(alerts) < int(str(detail.get("alert_count") or 0)):
            alerts = list(self._all_alerts(case_id))
        alerts.sort(key=lambda a: _observed_key(a, case_id=case_id))
        evidence = [self._alert_evidence(case_id, a) for a in alerts if a.get("evidence_url")]
        # camera_id of the case (its first alert's) as DatabaseSource has it; older servers lack the field
        camera_id = str(detail.get("camera_id") or (alerts[0].get("camera_id") if alerts else "") or "")
        return ReviewedCase(case_id, status, camera_id or f"case{case_id}", reason,
                            pick_alerts(evidence, per_case=self.per_case))

    def _all_alerts(self, case_id: int) -> Iterator[dict[str, object]]:
        offset = 0
        while True:
            params: dict[str, str | int] = {"limit": self.PAGE, "offset": offset}
            path = f"/api/cases/{case_id}/alerts"
            page = _items(self._json(path, params), "data", where=f"GET {self._url(path, params)}")
            yield from page
            if len(page) < self.PAGE:
                return
            offset += len(page)

    def _alert_evidence(self, case_id: int, alert: dict[str, object]) -> AlertEvidence:
        where = f"case {case_id} alert {alert.get('alert_id')}"
        for field in ("objects", "evidence"):
            if field not in alert:
                raise HarvestError(
                    f"{where}: field {field} missing from the API's alert ({self.base_url} is a central from "
                    "before alerts carried objects and evidence width/height: update it, or use --database-url)"
                )
        width, height = evidence_size(alert, where=where)
        sha = str(alert["evidence_url"]).rstrip("/").split("/")[-1].split("?")[0]
        return AlertEvidence(str(alert["alert_id"]), sha, width, height, objects_of(alert, where=where))

    def evidence(self, case: ReviewedCase, alert: AlertEvidence) -> bytes:
        return self._get(f"/evidence/{alert.evidence_sha256}", {"case_id": case.case_id})


@dataclass(frozen=True)
class HarvestOptions:
    val_fraction: float = 0.2
    val_cameras: tuple[str, ...] = ()
    negative_reasons: tuple[str, ...] = DEFAULT_NEGATIVE_REASONS
    progress: bool = True


def harvest(source: CaseSource, writer: DatasetWriter, *, options: HarvestOptions) -> int:
    """Write every wanted case's images into `writer` (split by camera); returns the cases used."""
    from tqdm import tqdm

    cases = [c for c in source.cases() if wanted(c, negative_reasons=options.negative_reasons) and c.alerts]
    splits = assign_splits((c.camera_id for c in cases), val_fraction=options.val_fraction,
                           val_cameras=options.val_cameras)
    images = [(c, a) for c in cases for a in c.alerts]
    for case, alert in tqdm(images, desc="harvest", unit="image", disable=not options.progress):
        jpeg = source.evidence(case, alert)
        writer.add(to_labelled(case, alert, jpeg, writer.class_map), splits[case.camera_id])
    logger.info("harvest: %d cases, %d images, cameras %s", len(cases), len(images), splits)
    return len(cases)
