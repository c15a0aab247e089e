"""The evidence set on central: an alert announces its items, their bytes land in the evidence
store, and `media.clean_frame` finds the unannotated frame (None for alerts of older edges)."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
from factories import make_alert
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.evidence_store import EvidenceStore
from streetwatch.central.ingest import ingest_payload
from streetwatch.central.media import clean_frame, media_bytes


def _jpeg(value: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), value, np.uint8))
    assert ok
    return bytes(buf.tobytes())


def test_clean_frame_is_the_announced_unannotated_jpeg_and_none_for_an_older_edge(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    clean = _jpeg(90)
    ref = {"kind": "clean", "sha256": hashlib.sha256(clean).hexdigest(), "content_type": "image/jpeg",
           "size": len(clean), "width": 64, "height": 48}
    new = make_alert(media=[ref])
    old = make_alert()  # wire 1.1: no media field at all
    with session_scope(session_factory, write_lock=True) as session:
        for alert in (new, old):
            assert ingest_payload(session, alert.to_json(), topic=None, settings=central_settings,
                                  index=None).outcome in ("created", "joined")
    store = EvidenceStore(central_settings.evidence_dir)
    with session_scope(session_factory) as session:
        assert clean_frame(session, store, new.alert_id) is None  # announced, bytes not arrived yet
        store.put(clean)
        assert clean_frame(session, store, new.alert_id) == clean
        assert clean_frame(session, store, old.alert_id) is None
        assert clean_frame(session, store, "al-nosuchalert") is None
        assert media_bytes(session, store, new.alert_id, "clip") is None
