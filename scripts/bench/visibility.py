"""The visibility reader: when did each published alert's row become visible in the database?

It polls the `alerts` table by alert id for the alerts published and not seen yet, on a connection
of its own, as a reviewer's page would read them. A row first returned by a poll became visible
between the previous poll's start and this one's: its latency (visible - first published) is
counted at this poll's start, an upper bound by at most one poll interval plus one query. Nothing
watches ingest's SQL or its commits, so any revision of the worker is timed the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from bench.publisher import Progress
from streetwatch.central.models import Alert

_VISIBLE = select(Alert.alert_id).where(Alert.alert_id.in_(bindparam("ids", expanding=True)))
MAX_IDS_PER_POLL = 2000


@dataclass
class Visibility:
    """What the reader saw: each unique alert's latency (seconds), the first publish and last sighting."""

    latencies_s: list[float] = field(default_factory=list)
    first_published: float = float("nan")
    last_visible: float = float("nan")
    stalled: bool = False
    polls: int = 0

    @property
    def seconds(self) -> float:
        return self.last_visible - self.first_published


def watch(
    factory: sessionmaker[Session],
    alert_ids: Sequence[str],
    *,
    progress: Progress,
    poll_s: float,
    stall_s: float = 30.0,
) -> Visibility:
    """Poll until every one of `alert_ids` (indexed as `progress.sent_at`, in first-publish order) is
    visible, or nothing new appeared for `stall_s` (the rest is lost)."""
    seen = Visibility()
    outstanding: dict[str, int] = {}
    taken = 0  # alerts (in first-publish order) moved to `outstanding` so far
    last_progress = time.time()
    with factory() as session:
        while len(seen.latencies_s) < len(alert_ids):
            published = progress.published.value
            while taken < published:
                outstanding[alert_ids[taken]] = taken
                taken += 1
            polled_at = time.time()
            found = _poll(session, list(outstanding)[:MAX_IDS_PER_POLL]) if outstanding else []
            seen.polls += 1
            for alert_id in found:
                seen.latencies_s.append(polled_at - progress.sent_at[outstanding.pop(alert_id)])
            if found:
                seen.last_visible, last_progress = polled_at, polled_at
                progress.visible.value = len(seen.latencies_s)
            elif polled_at - last_progress > stall_s:
                seen.stalled = True
                break
            time.sleep(poll_s)
    seen.first_published = min((t for t in progress.sent_at if t > 0), default=float("nan"))
    return seen


def _poll(session: Session, ids: list[str]) -> list[str]:
    found = list(session.scalars(_VISIBLE, {"ids": ids}))
    session.rollback()  # end the read transaction: the next poll sees what committed since
    return found
