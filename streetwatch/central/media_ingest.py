"""Evidence-set pieces off the media topic (wire 1.2) into the evidence store, bounded and resumable.

A box sends each item of an alert's set (`Alert.media`) after the alert, cut into `MediaChunk`s
(alerts.MEDIA_CHUNK_BYTES each) on `streetwatch/v1/media/{edge_id}/{camera_id}`. Here each piece is
checked (size, schema, the topic's box, the piece's length), kept in a staging folder
(`<evidence_dir>/.media-partial/<edge_id>/<sha256>/<n>.part`), and once all are there the item is
joined, its sha256 and type checked (JPEG or MP4 by their magic bytes) and stored by hash beside the
evidence JPEGs. So:

- resumable: a transfer cut off (box restart, broker outage) goes on with the pieces still waiting in
  the box's outbox; the ones already here are kept;
- deduplicated: a piece or an item already held costs one file check; the same frame announced by two
  alerts is stored once;
- bounded: at most `media.staging_max_bytes` per box wait in staging (a piece beyond is refused), and
  staging older than `media.staging_max_age_h` is removed;
- only announced items are kept: the item's alert must come from the same box and list its sha256. If
  that alert has not arrived yet (several workers share the subscription), the joined item waits in
  staging and the alert's ingest promotes it (`media.promote_staged`).

A refused piece is a dead letter (with the reason) and acknowledged, like a refused alert. Nothing here
can stop ingest: the consumer handles each media message alone and acknowledges it whatever happens
(an evidence set is worth less than the queue behind it).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError
from sqlalchemy.orm import Session

from streetwatch.central.config import CentralSettings
from streetwatch.central.evidence_store import JPEG_MAGIC, evidence_store
from streetwatch.central.ingest import dead_letter
from streetwatch.central.media import STAGING, SUFFIX, announced
from streetwatch.central.models import Alert
from streetwatch.edge.alerts import MAX_PAYLOAD_BYTES, MEDIA_CHUNK_BYTES, MediaChunk, edge_id_from_media_topic

log = logging.getLogger(__name__)

_PART = re.compile(r"^(\d+)\.part$")
MediaOutcome = Literal["stored", "partial", "waiting", "duplicate", "dead_letter"]


@dataclass(frozen=True)
class MediaResult:
    """What one media message did: stored its item (the last piece), kept a piece (`partial`), joined an
    item whose alert has not arrived (`waiting`), changed nothing (`duplicate`), or was refused."""

    outcome: MediaOutcome
    sha256: str | None = None
    reason: str | None = None


class MediaRefused(ValueError):
    """A media message that can never be used; the reason names the field."""


def ingest_media(session: Session, payload: bytes, *, topic: str, settings: CentralSettings) -> MediaResult:
    """One media message: checked, staged, and stored once its item is whole. Refusals become dead
    letters in `session` (the caller commits)."""
    try:
        chunk = _parse(payload, topic)
        return _accept(session, chunk, settings=settings)
    except MediaRefused as exc:
        dead_letter(session, topic=topic, reason=str(exc), payload=payload[:4096])
        return MediaResult("dead_letter", reason=str(exc))


def _parse(payload: bytes, topic: str) -> MediaChunk:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MediaRefused(f"media: payload too large: {len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    topic_edge = edge_id_from_media_topic(topic)
    if topic_edge is None:
        raise MediaRefused(f"media: topic {topic!r} is not a media topic "
                           "(streetwatch/v1/media/{edge_id}/{camera_id})")
    try:
        chunk = MediaChunk.model_validate_json(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])
        raise MediaRefused(f"media: schema violation: {problems}") from None
    if chunk.edge_id != topic_edge:
        raise MediaRefused(f"media: edge_id mismatch: topic names {topic_edge!r}, payload has {chunk.edge_id!r}")
    return chunk


def _piece(chunk: MediaChunk) -> bytes:
    try:
        data = base64.b64decode(chunk.data_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaRefused(f"media: data_b64: expected base64 ({exc})") from None
    last = chunk.chunk == chunk.chunks - 1
    expected = chunk.size - (chunk.chunks - 1) * MEDIA_CHUNK_BYTES if last else MEDIA_CHUNK_BYTES
    if len(data) != expected:
        raise MediaRefused(f"media: chunk {chunk.chunk} of {chunk.chunks} has {len(data)} bytes, expected {expected}")
    return data


def _accept(session: Session, chunk: MediaChunk, *, settings: CentralSettings) -> MediaResult:
    store = evidence_store(settings.evidence_dir)
    suffix = SUFFIX[chunk.content_type]
    if store.exists(chunk.sha256, suffix):
        return MediaResult("duplicate", chunk.sha256)
    alert = session.get(Alert, chunk.alert_id)
    if alert is not None:
        _verify_announced(alert, chunk)
    data = _piece(chunk)
    root = staging_root(settings)
    folder = root / chunk.edge_id / chunk.sha256
    part = folder / f"{chunk.chunk}.part"
    if not part.exists():
        _check_quota(root / chunk.edge_id, len(data), settings=settings, edge_id=chunk.edge_id)
        _write_atomically(part, data)
    whole = _join(folder, chunk)
    if whole is None:
        return MediaResult("partial", chunk.sha256)
    if alert is None:  # the alert is still on its way: the alert's ingest stores it (promote_staged)
        _write_atomically(folder / "complete", whole)
        return MediaResult("waiting", chunk.sha256)
    store.put(whole, suffix)
    shutil.rmtree(folder, ignore_errors=True)
    log.info("media %s (%s, %d bytes) of alert %s stored", chunk.sha256[:12], chunk.content_type, len(whole),
             chunk.alert_id)
    return MediaResult("stored", chunk.sha256)


def _verify_announced(alert: Alert, chunk: MediaChunk) -> None:
    if alert.edge_id != chunk.edge_id:
        raise MediaRefused(f"media: alert {chunk.alert_id} belongs to box {alert.edge_id!r}, not {chunk.edge_id!r}")
    refs = {ref.sha256: ref for ref in announced(alert)}
    ref = refs.get(chunk.sha256)
    if ref is None:
        raise MediaRefused(f"media: alert {chunk.alert_id} does not announce {chunk.sha256}")
    if (ref.size, ref.content_type) != (chunk.size, chunk.content_type):
        raise MediaRefused(f"media: {chunk.sha256} announced as {ref.content_type} of {ref.size} bytes, "
                           f"sent as {chunk.content_type} of {chunk.size}")


def _join(folder: Path, chunk: MediaChunk) -> bytes | None:
    """The whole item if every piece is staged (sha256, size and type checked), else None."""
    parts = [folder / f"{i}.part" for i in range(chunk.chunks)]
    if not all(p.exists() for p in parts):
        return None
    whole = b"".join(p.read_bytes() for p in parts)
    if len(whole) != chunk.size or hashlib.sha256(whole).hexdigest() != chunk.sha256:
        shutil.rmtree(folder, ignore_errors=True)  # a bad piece: start again from what the box sends
        raise MediaRefused(f"media: {chunk.sha256}: the joined {len(whole)} bytes do not match the sha256 and size")
    _verify_type(whole, chunk)
    return whole


def _verify_type(data: bytes, chunk: MediaChunk) -> None:
    if chunk.content_type == "image/jpeg" and not data.startswith(JPEG_MAGIC):
        raise MediaRefused(f"media: {chunk.sha256}: expected a JPEG (starts with FFD8), got {data[:4].hex()!r}")
    if chunk.content_type == "video/mp4" and data[4:8] != b"ftyp":
        raise MediaRefused(f"media: {chunk.sha256}: expected an MP4 (ftyp box first), got {data[:8].hex()!r}")


def _check_quota(box_folder: Path, size: int, *, settings: CentralSettings, edge_id: str) -> None:
    _expire(box_folder, max_age_s=settings.media.staging_max_age_h * 3600)
    used = sum(p.stat().st_size for p in box_folder.rglob("*") if p.is_file()) if box_folder.exists() else 0
    if used + size > settings.media.staging_max_bytes:
        raise MediaRefused(f"media: box {edge_id!r} has {used} bytes of unfinished media staged "
                           f"(limit media.staging_max_bytes {settings.media.staging_max_bytes})")


def _expire(box_folder: Path, *, max_age_s: float) -> None:
    if not box_folder.exists():
        return
    cutoff = time.time() - max_age_s
    for item in box_folder.iterdir():
        with contextlib.suppress(OSError):
            if item.stat().st_mtime < cutoff:
                shutil.rmtree(item, ignore_errors=True)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def staging_root(settings: CentralSettings) -> Path:
    return Path(settings.evidence_dir) / STAGING


__all__ = ["MediaRefused", "MediaResult", "ingest_media", "staging_root"]
