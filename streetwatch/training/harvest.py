"""Reviewed cases from central -> labelled images: the reviewers' decisions are the labels.

Two sources give the same `ReviewedCase` records:
- `DatabaseSource`: central's database through SQLAlchemy, read-only (PostgreSQL read-only
  transactions, SQLite `query_only`), evidence JPEGs read from central's evidence folder;
- `ApiSource`: central's JSON API with a bearer token (`/api/cases`, `/api/cases/{id}` and its
  `/alerts`, `/evidence/{sha256}`); each alert there carries its `objects` and evidence size.

Both read a case's alerts oldest first (ties by alert id), so both pick the same images.

Images: only the clean frame behind each evidence image (wire 1.2, `central.media.clean_frame`: the
same pixel size as the evidence JPEG, so the alert's `objects` apply unchanged). The evidence JPEG has
boxes and labels drawn on it, and a model trained on it learns the overlay: an alert without a clean
frame is skipped and counted, never harvested.

Labels (labels.py): every object of the trained classes in a frame. The boxes of a confirmed case's
alerts are `confirmed`; the deployed model's other detections on the clean frame are `pseudo`. A case
dismissed for a reason that says the detection was wrong (default: `false_detection`) gives negative
regions (its boxes), with the rest of the frame labelled the same way; a case dismissed as
`allowed_time_window` or `duplicate` shows real objects and is left out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from streetwatch.central.case_status import NO_VIOLATION_STATUSES, VIOLATION_STATUSES
from streetwatch.central.review import reason_code
from streetwatch.training.classmap import ClassMap
from streetwatch.training.dataset import Box, DatasetWriter, LabelledImage, Split, split_by_images
from streetwatch.training.labels import FrameLabels, complete_labels

if TYPE_CHECKING:
    import numpy as np
    from sqlalchemy import Engine

    from streetwatch.edge.detector import Detector

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
    clean: str | None = None  # the announced clean frame (wire 1.2): its sha256, or the API's URL path
    observed_at: datetime | None = None


@dataclass(frozen=True)
class ReviewedCase:
    case_id: int
    status: str
    camera_id: str
    dismiss_reason: str | None
    alerts: tuple[AlertEvidence, ...]
    violation: str = ""


class CaseSource(Protocol):
    def cases(self) -> Iterator[ReviewedCase]: ...

    def evidence(self, case: ReviewedCase, alert: AlertEvidence) -> bytes: ...

    def clean_frame(self, case: ReviewedCase, alert: AlertEvidence) -> bytes | None: ...


def announced_clean(payload: dict[str, object]) -> str | None:
    """The sha256 of the clean frame an alert announces in its `media` list, if any."""
    media = payload.get("media")
    if not isinstance(media, list):
        return None
    for item in media:
        if isinstance(item, dict) and item.get("kind") == "clean" and isinstance(item.get("sha256"), str):
            return str(item["sha256"])
    return None


def observed(payload: dict[str, object]) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(payload.get("observed_at")))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


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


def to_labelled(case: ReviewedCase, alert: AlertEvidence, jpeg: bytes, labels: FrameLabels) -> LabelledImage:
    """The labelled image of one alert's clean frame."""
    return LabelledImage(
        name=f"case{case.case_id}_{alert.evidence_sha256[:16]}",
        jpeg=jpeg,
        width=alert.width,
        height=alert.height,
        camera_id=case.camera_id,
        boxes=tuple(Box(b.class_index, b.xyxy, b.source, b.score) for b in labels.boxes),
        origin=f"case {case.case_id} alert {alert.alert_id}",
        negative_regions=labels.negative_regions,
        extra={"case_id": case.case_id, "alert_id": alert.alert_id, "violation": case.violation,
               "decision": decision(case), "clean_sha256": hashlib.sha256(jpeg).hexdigest(),
               "observed_at": alert.observed_at.isoformat() if alert.observed_at else None,
               "pseudo_dropped": labels.pseudo_dropped},
    )


def decision(case: ReviewedCase) -> str:
    """`confirmed`, or `dismissed:<reason>` with the reason read onto the closed list."""
    if case.status in POSITIVE_STATUSES:
        return case.status
    return f"dismissed:{reason_code(case.dismiss_reason or '') or 'other'}"


def wanted(case: ReviewedCase, *, negative_reasons: Sequence[str]) -> bool:
    """Confirmed cases, and dismissed ones whose reason (free text stored before the list was closed is
    read onto it: "False detection" is false_detection) says the detection was wrong."""
    if case.status in POSITIVE_STATUSES:
        return True
    return case.status in NEGATIVE_STATUSES and (reason_code(case.dismiss_reason or "") or "other") in negative_reasons


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
        self._engine: Engine | None = None

    def cases(self) -> Iterator[ReviewedCase]:
        from sqlalchemy import select

        from streetwatch.central.models import Alert, AuditLog, Case

        engine = read_only_engine(self.url)
        statuses = POSITIVE_STATUSES + NEGATIVE_STATUSES
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(Case.id, Case.status, Case.camera_id, Case.violation)
                    .where(Case.status.in_(statuses), Case.merged_into_id.is_(None))
                    .order_by(Case.id)
                ).all()
                for case_id, status, camera_id, violation in rows:
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
                        violation=violation,
                    )
        finally:
            engine.dispose()

    def clean_frame(self, case: ReviewedCase, alert: AlertEvidence) -> bytes | None:
        """The unannotated frame behind the alert's evidence (central.media), None if there is none."""
        from sqlalchemy.orm import Session

        from streetwatch.central.evidence_store import EvidenceStore
        from streetwatch.central.media import clean_frame

        if self._engine is None:
            self._engine = read_only_engine(self.url)
        with Session(self._engine) as session:
            return clean_frame(session, EvidenceStore(self.evidence_dir), alert.alert_id)

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
    return AlertEvidence(alert_id, sha256, width, height, objects_of(payload, where=where),
                         announced_clean(payload), observed(payload))


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
                            pick_alerts(evidence, per_case=self.per_case), str(detail.get("violation") or ""))

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
        for name in ("objects", "evidence"):
            if name not in alert:
                raise HarvestError(
                    f"{where}: field {name} missing from the API's alert ({self.base_url} is a central from "
                    "before alerts carried objects and evidence width/height: update it, or use --database-url)"
                )
        width, height = evidence_size(alert, where=where)
        sha = str(alert["evidence_url"]).rstrip("/").split("/")[-1].split("?")[0]
        clean_url = alert.get("clean_frame_url")
        return AlertEvidence(str(alert["alert_id"]), sha, width, height, objects_of(alert, where=where),
                             str(clean_url) if clean_url else None, observed(alert))

    def evidence(self, case: ReviewedCase, alert: AlertEvidence) -> bytes:
        return self._get(f"/evidence/{alert.evidence_sha256}", {"case_id": case.case_id})

    def clean_frame(self, case: ReviewedCase, alert: AlertEvidence) -> bytes | None:
        """The clean frame behind the evidence (`clean_frame_url`: the API's path to it), None without one."""
        if alert.clean is None:
            return None
        return self._get(alert.clean)


@dataclass(frozen=True)
class HarvestOptions:
    val_fraction: float = 0.2
    val_cameras: tuple[str, ...] = ()
    negative_reasons: tuple[str, ...] = DEFAULT_NEGATIVE_REASONS
    progress: bool = True
    pseudo_score: float = 0.5
    min_per_split: int = 1
    val_after: datetime | None = None  # val: frames from then on; train: frames before (by time too)


@dataclass
class HarvestReport:
    """What a harvest used and skipped, and why: printed and written into dataset.json."""

    cases: list[dict[str, object]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count


Frame = tuple[ReviewedCase, AlertEvidence, bytes]


def collect_frames(source: CaseSource, *, options: HarvestOptions, report: HarvestReport) -> list[Frame]:
    """The clean frames of the wanted cases; annotated-only alerts and other cases skipped with a reason."""
    frames = []
    for case in source.cases():
        if not wanted(case, negative_reasons=options.negative_reasons):
            report.skip(f"case {decision(case)}: shows real objects, neither a label nor a negative")
            continue
        used = 0
        for alert in case.alerts:
            jpeg = source.clean_frame(case, alert)
            if jpeg is None:
                report.skip("alert without a clean frame (the evidence JPEG has boxes drawn on it: refused)")
                continue
            frames.append((case, alert, jpeg))
            used += 1
        if used:
            report.cases.append({"case_id": case.case_id, "camera_id": case.camera_id,
                                 "violation": case.violation, "decision": decision(case), "frames": used})
        else:
            report.skip("case with no clean frame at all")
    return frames


def time_filter(frames: list[Frame], splits: dict[str, Split], *, val_after: datetime | None,
                report: HarvestReport) -> list[Frame]:
    """With `val_after`: train keeps frames before it, val frames from it on (the rest is dropped)."""
    if val_after is None:
        return frames
    kept = []
    for frame in frames:
        at = frame[1].observed_at
        in_val = splits[frame[0].camera_id] == "val"
        if at is not None and (at >= val_after) == in_val:
            kept.append(frame)
        else:
            report.skip(f"frame on the wrong side of --val-after {val_after.isoformat()} for its camera's split")
    return kept


def harvest(source: CaseSource, writer: DatasetWriter, *, options: HarvestOptions,
            pseudo: Detector | None = None) -> HarvestReport:
    """Write every wanted case's clean frames, completely labelled, split by camera (and time)."""
    from tqdm import tqdm

    report = HarvestReport()
    frames = collect_frames(source, options=options, report=report)
    per_camera: dict[str, int] = {}
    for case, _, _ in frames:
        per_camera[case.camera_id] = per_camera.get(case.camera_id, 0) + 1
    plan = split_by_images(per_camera, val_fraction=options.val_fraction, val_cameras=options.val_cameras,
                           min_per_split=options.min_per_split)
    report.warnings.extend(plan.warnings)
    for warning in plan.warnings:
        logger.warning("harvest: %s", warning)
    frames = time_filter(frames, plan.splits, val_after=options.val_after, report=report)
    for case, alert, jpeg in tqdm(frames, desc="harvest", unit="image", disable=not options.progress):
        detections = pseudo_labels(pseudo, jpeg, writer.class_map, score=options.pseudo_score, where=alert.alert_id)
        labels = complete_labels(positive=case.status in POSITIVE_STATUSES, violation=case.violation,
                                 objects=alert.objects, detections=detections, class_map=writer.class_map)
        writer.add(to_labelled(case, alert, jpeg, labels), plan.splits[case.camera_id])
    logger.info("harvest: %d cases, %d images, cameras %s, skipped %s", len(report.cases), len(frames),
                plan.splits, report.skipped)
    return report


def pseudo_labels(detector: Detector | None, jpeg: bytes, class_map: ClassMap, *, score: float,
                  where: str) -> list[tuple[int, tuple[float, float, float, float], float]]:
    """The deployed model's detections on a clean frame at or above `score`, in training classes."""
    if detector is None:
        return []
    image = decode(jpeg, where=where)
    found = detector.detect(image)
    out = []
    scores = found.confidence if found.confidence is not None else [1.0] * len(found)
    for name, conf, box in zip(found.data["class_name"], scores, found.xyxy, strict=True):
        index = class_map.index_of(str(name))
        if index is not None and float(conf) >= score:
            out.append((index, (float(box[0]), float(box[1]), float(box[2]), float(box[3])), float(conf)))
    return out


def decode(jpeg: bytes, *, where: str) -> np.ndarray:
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise HarvestError(f"alert {where}: the clean frame is not a decodable JPEG")
    return np.asarray(image)
