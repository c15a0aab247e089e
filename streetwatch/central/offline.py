"""Offline ingest: a file of one alert JSON per line, through the same path as the MQTT consumer.

`central ingest-jsonl alerts.jsonl` runs it. Each line is a message without a topic; a line that
cannot be used becomes a dead letter labelled `file:<path>:<line number>`, and the rest goes on.
A batch that fails for any reason but an unreachable database is stored again line by line, so one
bad line costs only itself (the summary counts each outcome). An unreachable database stops the
run: `DatabaseUnavailable` says how many lines were stored before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.attribution import MerchantIndexCache
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import IngestResult, IngestSummary, Message, dead_letter, failure_reason, ingest_many

log = logging.getLogger(__name__)


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached mid-file; the message says how far the file got."""


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
    try:
        for number, line in _lines(path):
            batch.append(Message(topic=None, payload=line, origin=f"file:{path}:{number}"))
            if len(batch) >= batch_size:
                _ingest_file_batch(batch, session_factory=session_factory, settings=settings, cache=cache,
                                   summary=summary)
                batch = []
        if batch:
            _ingest_file_batch(batch, session_factory=session_factory, settings=settings, cache=cache, summary=summary)
    except OperationalError as exc:
        first = batch[0].origin if batch else path
        raise DatabaseUnavailable(f"database unavailable at {first}: {exc.orig}; {summary.total} lines were "
                                  "stored before (running the file again skips them as duplicates)") from None
    return summary


def _ingest_file_batch(
    batch: Sequence[Message],
    *,
    session_factory: sessionmaker[Session],
    settings: CentralSettings,
    cache: MerchantIndexCache,
    summary: IngestSummary,
) -> None:
    try:
        with session_scope(session_factory, write_lock=True) as session:
            results = ingest_many(session, batch, settings=settings, index=cache.get(session))
    except OperationalError:
        raise
    except Exception as exc:  # any other failure: line by line, each alone
        log.warning("%s: batch of %d lines failed (%r); storing them one by one", batch[0].origin, len(batch), exc)
        results = [_ingest_line(message, session_factory=session_factory, settings=settings, cache=cache)
                   for message in batch]
    for result in results:
        summary.add(result)


def _ingest_line(
    message: Message, *, session_factory: sessionmaker[Session], settings: CentralSettings, cache: MerchantIndexCache
) -> IngestResult:
    """One line in its own transaction; if storing it fails (but not the database), a dead letter."""
    try:
        with session_scope(session_factory, write_lock=True) as session:
            return ingest_many(session, [message], settings=settings, index=cache.get(session))[0]
    except OperationalError:
        raise
    except Exception as exc:  # the line's own fault: kept with its reason
        log.warning("%s: %s", message.origin, failure_reason(exc))
        with session_scope(session_factory, write_lock=True) as session:
            return dead_letter(session, topic=message.origin or "", reason=failure_reason(exc), payload=message.payload)


__all__ = ["DatabaseUnavailable", "ingest_jsonl"]
