"""Offline ingest: a file of one alert JSON per line, through the same path as the MQTT consumer.

`central ingest-jsonl alerts.jsonl` runs it. Each line is a message without a topic; a line that
cannot be used becomes a dead letter labelled `file:<path>:<line number>`, and the rest goes on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.attribution import MerchantIndexCache
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import IngestSummary, Message, ingest_many


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.rstrip(b"\r\n")


def ingest_jsonl(
    path: Path,
    *,
    session_factory: sessionmaker[Session],
    settings: CentralSettings,
    batch_size: int = 200,
) -> IngestSummary:
    """Ingest a file of one alert JSON per line, `batch_size` lines per transaction."""
    summary = IngestSummary()
    cache = MerchantIndexCache(max_distance_m=settings.attribution.max_distance_m)
    batch: list[Message] = []
    for number, line in _lines(path):
        batch.append(Message(topic=None, payload=line, origin=f"file:{path}:{number}"))
        if len(batch) >= batch_size:
            _ingest_file_batch(batch, session_factory=session_factory, settings=settings, cache=cache, summary=summary)
            batch = []
    if batch:
        _ingest_file_batch(batch, session_factory=session_factory, settings=settings, cache=cache, summary=summary)
    return summary


def _ingest_file_batch(
    batch: Sequence[Message],
    *,
    session_factory: sessionmaker[Session],
    settings: CentralSettings,
    cache: MerchantIndexCache,
    summary: IngestSummary,
) -> None:
    with session_scope(session_factory, write_lock=True) as session:
        results = ingest_many(session, batch, settings=settings, index=cache.get(session))
    for result in results:
        summary.add(result)


__all__ = ["ingest_jsonl"]
