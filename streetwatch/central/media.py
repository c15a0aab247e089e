"""An alert's evidence set (wire revision 1.2): which items it announced and where their bytes are.

The alert row's payload keeps the `media` list the box announced (kind, sha256, type, size); the
bytes arrive apart on the media topic (media_ingest.py) and live in the same content-addressed
evidence store as the evidence JPEGs (`<sha[:2]>/<sha256>.jpg|.mp4`). An item whose bytes have not
arrived (yet) is simply missing: every reader here returns None for it, as for an alert from an
edge older than 1.2.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.orm import Session

from streetwatch.central.evidence_store import EvidenceError, EvidenceStore
from streetwatch.central.models import Alert
from streetwatch.edge.alerts import MAX_MEDIA_ITEMS, MediaKind, MediaRef

log = logging.getLogger(__name__)

SUFFIX = {"image/jpeg": "jpg", "video/mp4": "mp4"}
STAGING = ".media-partial"  # under the evidence folder: pieces of items not yet whole (media_ingest.py)


@dataclass(frozen=True)
class StoredMedia:
    """One announced item whose bytes the store holds."""

    ref: MediaRef
    suffix: str


def announced(alert: Alert) -> list[MediaRef]:
    """The evidence-set items the alert's payload announces (none for older edges). The payload was
    validated at ingest; an entry that no longer validates (edited by hand) is skipped, not fatal."""
    raw = (alert.payload or {}).get("media")
    if not isinstance(raw, list):
        return []
    refs = []
    for entry in raw[:MAX_MEDIA_ITEMS]:
        try:
            refs.append(MediaRef.model_validate(entry))
        except ValidationError:
            log.warning("alert %s: media entry %r is not valid; skipped", alert.alert_id, entry)
    return refs


def stored_items(store: EvidenceStore, alert: Alert) -> dict[MediaKind, StoredMedia]:
    """The announced items whose bytes have arrived, by kind."""
    found: dict[MediaKind, StoredMedia] = {}
    for ref in announced(alert):
        suffix = SUFFIX[ref.content_type]
        try:
            if store.exists(ref.sha256, suffix):
                found[ref.kind] = StoredMedia(ref, suffix)
        except EvidenceError:
            continue
    return found


def media_bytes(session: Session, store: EvidenceStore, alert_id: str, kind: MediaKind) -> bytes | None:
    """The bytes of one item of an alert's set, or None (no such alert, not announced, not arrived)."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        return None
    item = stored_items(store, alert).get(kind)
    if item is None:
        return None
    try:
        return store.read(item.ref.sha256, item.suffix)
    except FileNotFoundError:
        return None


def clean_frame(session: Session, store: EvidenceStore, alert_id: str) -> bytes | None:
    """The unannotated JPEG behind an alert's evidence image: the same pixel size as the evidence,
    so the alert's `objects` boxes apply unchanged. None for alerts from edges older than wire 1.2
    (or while its bytes are still on the way)."""
    return media_bytes(session, store, alert_id, "clean")


def promote_staged(store: EvidenceStore, edge_id: str, refs: list[MediaRef]) -> int:
    """Store the items of a just-ingested alert that arrived whole before it (several workers share
    the media subscription, so an item can beat its alert); returns how many."""
    box = Path(store.root) / STAGING / edge_id
    if not refs or not box.exists():
        return 0
    promoted = 0
    for ref in refs:
        complete = box / ref.sha256 / "complete"
        if complete.is_file():
            store.put(complete.read_bytes(), SUFFIX[ref.content_type])
            shutil.rmtree(complete.parent, ignore_errors=True)
            promoted += 1
    return promoted


__all__ = ["STAGING", "SUFFIX", "StoredMedia", "announced", "clean_frame", "media_bytes", "promote_staged",
           "stored_items"]
