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
from streetwatch.central.models import Alert


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


# ------------------------------------------------------------------ media pieces off the wire

import base64 as _b64  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from streetwatch.central.media import announced  # noqa: E402
from streetwatch.central.media_ingest import ingest_media, staging_root  # noqa: E402
from streetwatch.central.models import DeadLetter  # noqa: E402
from streetwatch.edge.alerts import MEDIA_CHUNK_BYTES, MediaRef, media_chunks, media_topic  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _clip_like(size: int) -> bytes:
    """Bytes shaped like an MP4 (an ftyp box first) of `size`, spread over several pieces."""
    body = bytes(np.random.default_rng(5).integers(0, 256, size - 12, dtype=np.uint8))
    return b"\x00\x00\x00\x18ftypisom" + body


def _announce(factory: sessionmaker[Session], settings: CentralSettings, data: bytes, *, kind: str = "clip",
              content_type: str = "video/mp4", edge_id: str = "box-01") -> tuple[MediaRef, str]:
    ref = MediaRef(kind=kind, sha256=hashlib.sha256(data).hexdigest(), content_type=content_type,  # type: ignore[arg-type]
                   size=len(data), width=64, height=48)
    alert = make_alert(edge_id=edge_id, media=[ref.model_dump(mode="json")])
    with session_scope(factory, write_lock=True) as session:
        assert ingest_payload(session, alert.to_json(), topic=None, settings=settings, index=None).case_id
    return ref, alert.alert_id


def _send(factory: sessionmaker[Session], settings: CentralSettings, payload: bytes, *, edge_id: str = "box-01") -> str:
    with session_scope(factory, write_lock=True) as session:
        return ingest_media(session, payload, topic=media_topic(edge_id, "cam-1"), settings=settings).outcome


def test_pieces_in_any_order_with_repeats_make_one_stored_clip(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    data = _clip_like(2 * MEDIA_CHUNK_BYTES + 1000)
    ref, alert_id = _announce(session_factory, central_settings, data)
    pieces = [c.to_json() for c in media_chunks(alert_id, "box-01", ref, data)]
    assert len(pieces) == 3
    # a transfer cut off after the last piece, resumed (a repeat and the missing ones) after a restart
    outcomes = [_send(session_factory, central_settings, p) for p in (pieces[2], pieces[2], pieces[0], pieces[1])]
    assert outcomes == ["partial", "partial", "partial", "stored"]
    assert _send(session_factory, central_settings, pieces[1]) == "duplicate"  # already held: costs a file check
    store = EvidenceStore(central_settings.evidence_dir)
    with session_scope(session_factory) as session:
        assert media_bytes(session, store, alert_id, "clip") == data
    assert not any(staging_root(central_settings).rglob("*.part")), "staging is cleared once stored"


@pytest.mark.parametrize(("change", "reason"), [
    (lambda c: {**c, "edge_id": "box-02"}, "edge_id mismatch"),  # a box speaking for another
    (lambda c: {**c, "sha256": "0" * 64}, "does not announce"),  # an item the alert never announced
    (lambda c: {**c, "data_b64": c["data_b64"][:-8]}, "bytes, expected"),  # a piece cut short
    (lambda c: {**c, "data_b64": "%%%%" + c["data_b64"][4:]}, "data_b64: expected base64"),
    (lambda c: {**c, "chunks": 9}, "chunks"),  # a count that does not fit the size
    (lambda c: {**c, "size": 99_999_999}, "size"),  # over the wire bound
    (lambda c: {**c, "extra": 1}, "extra"),  # an unknown key
])
def test_a_bad_piece_is_a_dead_letter_naming_the_field(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, change: object, reason: str
) -> None:
    data = _clip_like(MEDIA_CHUNK_BYTES + 10)
    ref, alert_id = _announce(session_factory, central_settings, data)
    piece = json.loads(media_chunks(alert_id, "box-01", ref, data)[0].to_json())
    assert _send(session_factory, central_settings, json.dumps(change(piece)).encode()) == "dead_letter"  # type: ignore[operator]
    with session_scope(session_factory) as session:
        letters = session.query(DeadLetter).all()
    assert len(letters) == 1 and reason in letters[0].reason and letters[0].reason.startswith("media: ")


def test_a_piece_of_the_wrong_type_or_hash_is_refused_and_not_stored(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    data = b"GIF89a" + b"\x00" * 200  # announced as a JPEG, it is not one
    ref, alert_id = _announce(session_factory, central_settings, data, kind="crop", content_type="image/jpeg")
    piece = media_chunks(alert_id, "box-01", ref, data)[0].to_json()
    assert _send(session_factory, central_settings, piece) == "dead_letter"
    with session_scope(session_factory) as session:
        assert "expected a JPEG" in session.query(DeadLetter).one().reason
        assert media_bytes(session, EvidenceStore(central_settings.evidence_dir), alert_id, "crop") is None


def test_a_box_cannot_stage_more_than_its_quota(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    settings = CentralSettings(evidence_dir=tmp_path / "ev", media={"staging_max_bytes": 4 * 1024 * 1024})  # type: ignore[arg-type]
    first = _clip_like(12 * MEDIA_CHUNK_BYTES)  # 11 of its 12 pieces stay staged: 2.75 MiB
    ref, alert_id = _announce(session_factory, settings, first)
    pieces = media_chunks(alert_id, "box-01", ref, first)[:11]
    assert [_send(session_factory, settings, c.to_json()) for c in pieces] == ["partial"] * 11
    second = _clip_like(8 * MEDIA_CHUNK_BYTES + 5)
    ref2, alert2 = _announce(session_factory, settings, second)
    outcomes = [_send(session_factory, settings, c.to_json()) for c in media_chunks(alert2, "box-01", ref2, second)]
    assert outcomes[:5] == ["partial"] * 5 and outcomes[5] == "dead_letter"  # 4 MiB staged: the sixth is refused
    with session_scope(session_factory) as session:
        assert "media.staging_max_bytes" in session.query(DeadLetter).first().reason  # type: ignore[union-attr]
    # another box is not held up by this one's unfinished transfers
    third = _clip_like(MEDIA_CHUNK_BYTES + 5)
    ref3, alert3 = _announce(session_factory, settings, third, edge_id="box-02")
    sent = [_send(session_factory, settings, c.to_json(), edge_id="box-02")
            for c in media_chunks(alert3, "box-02", ref3, third)]
    assert sent == ["partial", "stored"]


def test_an_item_that_beats_its_alert_waits_and_is_stored_with_the_alert(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    clean = _jpeg(120)
    ref = MediaRef(kind="clean", sha256=hashlib.sha256(clean).hexdigest(), content_type="image/jpeg",
                   size=len(clean), width=64, height=48)
    alert = make_alert(media=[ref.model_dump(mode="json")])
    piece = media_chunks(alert.alert_id, "box-01", ref, clean)[0].to_json()
    assert _send(session_factory, central_settings, piece) == "waiting"
    store = EvidenceStore(central_settings.evidence_dir)
    assert not store.exists(ref.sha256)
    with session_scope(session_factory, write_lock=True) as session:
        ingest_payload(session, alert.to_json(), topic=None, settings=central_settings, index=None)
    with session_scope(session_factory) as session:
        assert clean_frame(session, store, alert.alert_id) == clean
        assert [r.kind for r in announced(session.get(Alert, alert.alert_id))] == ["clean"]  # type: ignore[arg-type]


def test_a_central_of_wire_1_1_accepts_a_1_2_alert_and_keeps_its_set_as_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compatibility rule: 1.2 only adds optional fields. main's alerts.py (wire 1.1, as git has
    it at the commit before 1.2) parses a 1.2 alert with media, subjects and the zone, keeping them as
    unknown fields. (0233de0: main before wire 1.2.)"""
    old_source = subprocess.run(["git", "show", "0233de0:streetwatch/edge/alerts.py"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout
    assert "media" not in old_source.split("class Alert(")[1].split("def _verify_consistent")[0]
    path = tmp_path / "alerts_1_1.py"
    path.write_text(old_source)
    spec = importlib.util.spec_from_file_location("alerts_1_1", path)
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "alerts_1_1", old)  # dataclasses look their module up
    spec.loader.exec_module(old)
    clean = _jpeg(60)
    ref = {"kind": "clean", "sha256": hashlib.sha256(clean).hexdigest(), "content_type": "image/jpeg",
           "size": len(clean), "width": 64, "height": 48}
    new = make_alert(media=[ref], subjects=[0], zone_polygon_px=[[1, 2], [30, 2], [30, 40]])
    parsed = old.parse_alert(new.to_json())
    assert parsed.alert_id == new.alert_id and parsed.model_extra["media"][0]["sha256"] == ref["sha256"]
    assert parsed.model_extra["subjects"] == [0]
    assert _b64.b64decode(parsed.evidence.jpeg_b64) == _b64.b64decode(new.evidence.jpeg_b64)  # type: ignore[union-attr]
