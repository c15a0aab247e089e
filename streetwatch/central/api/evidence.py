"""/evidence/{sha256}: evidence JPEGs, served through the app only (never a static mount).

An image is served to a logged-in user (session cookie or API token) who may see at least one
case that uses it (for an inspector's photo: the inspection's case or merchant); anyone else gets
404 (401 without any login), so the existence of an image in another area is not revealed. Pages
pass `?case_id=` so the check is one indexed lookup; without it the case is found by the image hash.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi import Path as Path_
from fastapi.responses import FileResponse
from sqlalchemy import select

from streetwatch.central.access import AreaScope, case_clause, case_visible, merchant_visible, refine
from streetwatch.central.api.deps import AnyUser, SessionDep, scope_of
from streetwatch.central.evidence_store import evidence_store
from streetwatch.central.media import stored_items
from streetwatch.central.models import Alert, Case, Inspection, Merchant
from streetwatch.central.workflow.ids import MAX_ID
from streetwatch.edge.alerts import ID_PATTERN, MediaKind

router = APIRouter(tags=["evidence"])

SHA256_PATTERN = r"^[0-9a-f]{64}$"
_SHA256 = re.compile(SHA256_PATTERN)


def evidence_file(evidence_dir: Path, sha256: str) -> Path | None:
    """The stored file of an evidence hash, in the layouts the store uses (sharded or flat)."""
    if not _SHA256.match(sha256):
        return None
    for candidate in (
        evidence_dir / sha256[:2] / f"{sha256}.jpg",
        evidence_dir / sha256[:2] / sha256[2:4] / f"{sha256}.jpg",
        evidence_dir / f"{sha256}.jpg",
    ):
        if candidate.is_file():
            return candidate
    return None


def _case_uses(session: SessionDep, case: Case, sha256: str) -> bool:
    if case.evidence_sha256 == sha256:
        return True
    hit = session.scalar(
        select(Alert.alert_id).where(Alert.case_id == case.id, Alert.evidence_sha256 == sha256).limit(1)
    )
    return hit is not None


def _visible_use(session: SessionDep, user: AnyUser, sha256: str, case_id: int | None) -> bool:
    scope = scope_of(session, user)
    if case_id is not None:
        case = session.get(Case, case_id)
        return case is not None and case_visible(scope, case) and _case_uses(session, case, sha256)
    via_alerts = select(Alert.case_id).where(Alert.evidence_sha256 == sha256)
    stmt = select(Case).where((Case.evidence_sha256 == sha256) | Case.id.in_(via_alerts), case_clause(scope)).limit(50)
    return bool(refine([scope], session.scalars(stmt))) or _visible_photo(session, scope, sha256)


def _visible_photo(session: SessionDep, scope: AreaScope | None, sha256: str) -> bool:
    """An inspector's photo: visible with the inspection's case or, for a routine visit, its merchant."""
    for inspection in session.scalars(select(Inspection).where(Inspection.photo_sha256 == sha256).limit(20)):
        case = session.get(Case, inspection.case_id) if inspection.case_id else None
        if case is not None and case_visible(scope, case):
            return True
        merchant = session.get(Merchant, inspection.merchant_id) if inspection.merchant_id else None
        if case is None and merchant is not None and merchant_visible(scope, merchant):
            return True
    return False


@router.get("/evidence/{sha256}", name="evidence", response_class=FileResponse)
def read_evidence(
    request: Request,
    sha256: str,
    session: SessionDep,
    user: AnyUser,
    case_id: Annotated[int | None, Query(gt=0, le=MAX_ID, description="a case that uses the image (faster)")] = None,
) -> FileResponse:
    """The evidence JPEG, if a case the caller may see uses it."""
    not_found = HTTPException(status.HTTP_404_NOT_FOUND, "evidence not found")
    if not _SHA256.match(sha256) or not _visible_use(session, user, sha256, case_id):
        raise not_found
    path = evidence_file(Path(request.app.state.settings.evidence_dir), sha256)
    if path is None:
        raise not_found
    return FileResponse(
        path,
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/media/{alert_id}/{kind}", name="alert_media", response_class=FileResponse)
def read_alert_media(
    request: Request,
    alert_id: Annotated[str, Path_(pattern=ID_PATTERN)],
    kind: MediaKind,
    session: SessionDep,
    user: AnyUser,
) -> FileResponse:
    """One item of an alert's evidence set (wire 1.2: first, confirmed, crop, clip, clean), with the
    same area check as the evidence images: the alert's case must be visible to the caller; anyone
    else, and an item that has not arrived, get 404."""
    not_found = HTTPException(status.HTTP_404_NOT_FOUND, "media not found")
    alert = session.get(Alert, alert_id)
    case = session.get(Case, alert.case_id) if alert is not None and alert.case_id is not None else None
    if alert is None or case is None or not case_visible(scope_of(session, user), case):
        raise not_found
    store = evidence_store(Path(request.app.state.settings.evidence_dir))
    item = stored_items(store, alert).get(kind)
    if item is None:
        raise not_found
    return FileResponse(
        store.path_for(item.ref.sha256, item.suffix),
        media_type=item.ref.content_type,
        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
