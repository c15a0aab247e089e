"""One message stored alone, with retries: what every consumer falls back to when a batch fails.

Shared by the MQTT consumer (consumer.py) and the JetStream consumer (consumer_jetstream.py), so
both treat a failing message the same way: a database or storage error is retried with back-off
and, if it persists, the message is left unacknowledged (None) for the broker to deliver again; a
message the database refuses, or one that raises anything else, becomes a dead letter, so no
message can stop ingest.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.attribution import MerchantIndexCache
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import IngestResult, dead_letter, failure_reason, ingest_payload

log = logging.getLogger(__name__)


@dataclass
class MessageStore:
    """Stores one (topic, payload) in its own transaction; `stopping` cuts the back-off short."""

    name: str  # the worker's, for the log
    settings: CentralSettings
    session_factory: sessionmaker[Session]
    index_cache: MerchantIndexCache
    stopping: threading.Event
    db_retries: int = 2
    retry_delay_s: float = 0.5

    def store_with_retries(self, topic: str, payload: bytes) -> IngestResult | None:
        """Ingest in one transaction; on database errors retry, then give up (None = do not ack)."""
        for attempt in range(self.db_retries + 1):
            try:
                return self._store(topic, payload)
            except DataError as exc:  # the database refuses this content: retrying cannot help
                log.warning("consumer %s: database refused the message on %s: %s", self.name, topic, exc.orig)
                return self.dead_letter(topic, payload, failure_reason(exc))
            except (SQLAlchemyError, OSError) as exc:  # transient: the database, or the evidence folder
                log.warning("consumer %s: database or storage error on %s (attempt %d): %s",
                            self.name, topic, attempt + 1, exc)
                if self.stopping.wait(self.retry_delay_s * (2**attempt)):
                    return None
            except Exception as exc:  # any other type: a bug must not stop ingest nor loop on one message
                log.exception("consumer %s: unexpected error on %s", self.name, topic)
                return self.dead_letter(topic, payload, failure_reason(exc))
        return None

    def _store(self, topic: str, payload: bytes) -> IngestResult:
        with session_scope(self.session_factory, write_lock=True) as session:
            return ingest_payload(session, payload, topic=topic, settings=self.settings,
                                  index=self.index_cache.get(session))

    def dead_letter(self, topic: str, payload: bytes, reason: str) -> IngestResult | None:
        """Store the message as a dead letter; None if the database failed (not acked, delivered again)."""
        try:
            with session_scope(self.session_factory, write_lock=True) as session:
                return dead_letter(session, topic=topic, reason=reason, payload=payload)
        except SQLAlchemyError:
            return None
        except Exception:  # cannot even be kept: acked (else it comes back for ever), logged whole
            log.exception("consumer %s: message on %s (%d bytes) could not be stored even as a dead letter; "
                          "dropped: %r", self.name, topic, len(payload), payload[:300])
            return IngestResult("dead_letter", reason=reason)


__all__ = ["MessageStore"]
