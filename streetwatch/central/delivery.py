"""The end-to-end delivery audit: every alert a box numbered is stored, refused, or reported lost.

Why: the broker acknowledges an alert to the box, which then forgets it; if the broker then loses
it (Mosquitto does not restore shared subscriptions from its persistence file; a broker losing its
disk, a bridge dropping its queue), nothing upstream would notice. Each box numbers its alerts
1, 2, 3 ... per outbox file (`outbox_id`, `seq`: edge/outbox.py) and keeps delivered ones for a
retention window (24 h by default). Central keeps, per numbering (`DeliveryStream`), the highest
contiguous number it has accounted for: stored as an alert, stored as a dead letter (refused is
not lost), or reported lost. A number missing below a higher one (or below the box's `last_seq`,
from its retained status) is a gap. A gap open for `resend_after_s` makes central ask the box to
publish that range again (`ResendCommand` on `streetwatch/v1/commands/{edge_id}`), again every
`resend_every_s` while it stays open; the box answers with what it no longer holds, which is
recorded as lost (`DeliveryLoss`: log at ERROR, metric, API) and then counts as accounted for.

The decisions are pure functions (`next_contiguous`, `audit_step`); `DeliveryAuditor` reads and
writes the rows, one transaction per tick, and returns the commands to publish (fleet.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.case_store import note_delivery_streams
from streetwatch.central.config import DeliverySettings
from streetwatch.central.db import session_scope
from streetwatch.central.models import Alert, DeadLetter, DeliveryLoss, DeliveryStream, EdgeBox, utcnow
from streetwatch.edge.alerts import MAX_RESEND_SPAN, EdgeStatus, ResendCommand, ResendReply, new_id

log = logging.getLogger(__name__)

Range = tuple[int, int]


# ---------------------------------------------------------------- pure rules


def next_contiguous(contiguous: int, numbers: Iterable[int], losses: Iterable[Range]) -> int:
    """How far 1..n is accounted for, from `contiguous` on, given the numbers stored above it and
    the ranges recorded as lost (both in any order)."""
    spans = sorted([(n, n) for n in numbers if n > contiguous] + [r for r in losses if r[1] > contiguous])
    for first, last in spans:
        if first > contiguous + 1:
            break
        contiguous = max(contiguous, last)
    return contiguous


def first_gap(contiguous: int, numbers: Sequence[int], highest: int) -> Range | None:
    """The first missing range above `contiguous` (up to the next stored number, or `highest`)."""
    if highest <= contiguous:
        return None
    above = [n for n in numbers if n > contiguous + 1]
    return contiguous + 1, (min(above) - 1 if above else highest)


@dataclass(frozen=True)
class AuditTimes:
    resend_after: timedelta
    resend_every: timedelta

    @classmethod
    def of(cls, settings: DeliverySettings) -> AuditTimes:
        return cls(timedelta(seconds=settings.resend_after_s), timedelta(seconds=settings.resend_every_s))


@dataclass(frozen=True)
class AuditStep:
    """A stream after one look: where it stands, its open gap (None: closed), since when, and the
    range to ask the box for now (None: nothing to send)."""

    contiguous: int
    highest: int
    gap: Range | None
    gap_since: datetime | None
    request: Range | None


def audit_step(
    *,
    contiguous: int,
    highest: int,
    numbers: Sequence[int],
    losses: Sequence[Range],
    gap_since: datetime | None,
    requested_at: datetime | None,
    now: datetime,
    times: AuditTimes,
) -> AuditStep:
    """One stream's audit: advance, find the gap, and decide whether to ask for it now."""
    contiguous = next_contiguous(contiguous, numbers, losses)
    highest = max([highest, contiguous, *numbers])
    gap = first_gap(contiguous, [n for n in numbers if n > contiguous], highest)
    if gap is None:
        return AuditStep(contiguous, highest, None, None, None)
    since = gap_since or now
    due = now - since >= times.resend_after and (requested_at is None or now - requested_at >= times.resend_every)
    request = (gap[0], min(gap[1], gap[0] + MAX_RESEND_SPAN - 1)) if due else None
    return AuditStep(contiguous, highest, gap, since, request)


# ---------------------------------------------------------------- the database side


@dataclass(frozen=True)
class OpenGap:
    edge_id: str
    outbox_id: str
    first_seq: int
    last_seq: int
    since: datetime


@dataclass(frozen=True)
class TickReport:
    commands: list[tuple[str, ResendCommand]]  # (edge_id, command) to publish
    open_gaps: list[OpenGap]
    closed: list[tuple[str, str, float]]  # (edge_id, outbox_id, seconds the gap was open)
    last_alert: dict[str, datetime]  # edge_id: when its newest alert was stored


class DeliveryAuditor:
    """The audit's rows over a session factory; `clock` makes its times testable."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        times: AuditTimes,
        max_scan_rows: int = 200_000,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session_factory = session_factory
        self.times = times
        self.max_scan_rows = max_scan_rows
        self.clock = clock

    def tick(self) -> TickReport:
        """Look at every stream once: advance, open or close gaps, pick the resend commands."""
        now = self.clock()
        report = TickReport([], [], [], {})
        with session_scope(self.session_factory, write_lock=True) as session:
            streams = _lock_streams(session)
            numbers = self._numbers_above(session)
            losses = _losses(session)
            for stream in streams:
                key = (stream.edge_id, stream.outbox_id)
                self._audit(stream, numbers.get(key, ([], None)), losses.get(key, []), now=now, report=report)
        return report

    def _audit(self, stream: DeliveryStream, found: tuple[list[int], datetime | None], losses: list[Range], *,
               now: datetime, report: TickReport) -> None:
        numbers, last_received = found
        step = audit_step(contiguous=stream.contiguous_seq, highest=stream.highest_seq, numbers=numbers,
                          losses=losses, gap_since=stream.gap_since, requested_at=stream.requested_at, now=now,
                          times=self.times)
        if step.gap is None and stream.gap_since is not None:
            open_s = (now - stream.gap_since).total_seconds()
            report.closed.append((stream.edge_id, stream.outbox_id, open_s))
            log.info("edge %s outbox %s: gap closed after %.1f s (%d resend request(s)); all to %d accounted for",
                     stream.edge_id, stream.outbox_id, open_s, stream.requests, step.contiguous)
        elif step.gap is not None and stream.gap_since is None:
            log.warning("edge %s outbox %s: alerts %d..%d missing (the broker may have lost them); asking the box "
                        "in %.0f s", stream.edge_id, stream.outbox_id, *step.gap,
                        self.times.resend_after.total_seconds())
        stream.contiguous_seq, stream.highest_seq, stream.gap_since = step.contiguous, step.highest, step.gap_since
        if step.gap is None:
            stream.requested_at, stream.requests = None, 0
        else:
            report.open_gaps.append(OpenGap(stream.edge_id, stream.outbox_id, *step.gap, since=step.gap_since or now))
        if step.request is not None:
            stream.requested_at, stream.requests = now, stream.requests + 1
            command = ResendCommand(request_id=new_id("rq"), outbox_id=stream.outbox_id, first_seq=step.request[0],
                                    last_seq=step.request[1])
            report.commands.append((stream.edge_id, command))
        if last_received is not None:
            stream.last_alert_at = max(stream.last_alert_at or last_received, last_received)
        if stream.last_alert_at is not None:
            newest = report.last_alert.get(stream.edge_id)
            report.last_alert[stream.edge_id] = max(newest or stream.last_alert_at, stream.last_alert_at)
        stream.updated_at = now

    def _numbers_above(self, session: Session) -> dict[tuple[str, str], tuple[list[int], datetime | None]]:
        """Every stored number above its stream's contiguous mark (alerts and dead letters), with
        the newest receipt time per stream; one query, bounded by max_scan_rows."""
        parts = []
        for table in (Alert, DeadLetter):
            joined = and_(table.edge_id == DeliveryStream.edge_id, table.outbox_id == DeliveryStream.outbox_id,
                          table.seq > DeliveryStream.contiguous_seq)
            parts.append(select(table.edge_id, table.outbox_id, table.seq, table.received_at).join(DeliveryStream,
                                                                                                    joined))
        query = union_all(*parts).limit(self.max_scan_rows)
        found: dict[tuple[str, str], tuple[list[int], datetime | None]] = {}
        for edge_id, outbox_id, seq, received_at in session.execute(query):
            key = (str(edge_id), str(outbox_id))  # the join keeps only rows with both
            numbers, newest = found.get(key, ([], None))
            numbers.append(int(seq or 0))
            found[key] = (numbers, max(newest or received_at, received_at))
        return found

    # -- what the boxes say

    def record_status(self, status: EdgeStatus) -> None:
        """A box's retained status: the fleet row, and the highest number its numbering reached."""
        now = self.clock()
        with session_scope(self.session_factory, write_lock=True) as session:
            box = _edge_box(session, status, now=now)
            if box.state != status.state:
                box.state, box.state_since = status.state, now
            box.last_status_at, box.reason = now, status.reason
            box.outbox_id, box.last_seq = status.outbox_id, status.last_seq
            box.status = status.model_dump(mode="json", by_alias=True, exclude_none=True)
            if status.outbox_id is not None and status.last_seq:
                stream = _stream(session, status.edge_id, status.outbox_id, now=now)
                stream.highest_seq = max(stream.highest_seq, status.last_seq)

    def record_reply(self, reply: ResendReply) -> list[Range]:
        """A box's answer to a resend: the ranges it no longer holds are lost; returns the new ones."""
        now = self.clock()
        with session_scope(self.session_factory, write_lock=True) as session:
            known = set(_losses(session).get((reply.edge_id, reply.outbox_id), []))
            new = [r for r in reply.missing if tuple(r) not in known and 1 <= r[0] <= r[1]]
            for first, last in new:
                session.add(DeliveryLoss(edge_id=reply.edge_id, outbox_id=reply.outbox_id, first_seq=first,
                                         last_seq=last, found_at=now))
                log.error("edge %s outbox %s: alerts %d..%d are lost: the broker lost them and the box no "
                          "longer holds them (past its retention)", reply.edge_id, reply.outbox_id, first, last)
        log.info("edge %s: resend %s answered: %d queued again, %d range(s) gone", reply.edge_id,
                 reply.request_id, reply.requeued, len(reply.missing))
        return [(first, last) for first, last in new]


def _lock_streams(session: Session) -> list[DeliveryStream]:
    """Every stream, row-locked for this tick; on PostgreSQL another worker's tick skips the rows
    this one holds (so one worker asks a box, not all of them). SQLite: BEGIN IMMEDIATE."""
    query = select(DeliveryStream)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def _losses(session: Session) -> dict[tuple[str, str], list[Range]]:
    found: dict[tuple[str, str], list[Range]] = {}
    for loss in session.scalars(select(DeliveryLoss)):
        found.setdefault((loss.edge_id, loss.outbox_id), []).append((loss.first_seq, loss.last_seq))
    return found


def _stream(session: Session, edge_id: str, outbox_id: str, *, now: datetime) -> DeliveryStream:
    """The stream's row, made if new (an insert that skips a row another worker just made)."""
    note_delivery_streams(session, {(edge_id, outbox_id)})
    stream = session.get(DeliveryStream, (edge_id, outbox_id), populate_existing=True)
    assert stream is not None
    return stream


def _edge_box(session: Session, status: EdgeStatus, *, now: datetime) -> EdgeBox:
    """The box's row, made if new; every worker hears every status, so the insert may race."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(EdgeBox).on_conflict_do_nothing(), [{
        "edge_id": status.edge_id, "state": status.state, "state_since": now, "last_status_at": now, "status": {},
    }])
    box = session.get(EdgeBox, status.edge_id, populate_existing=True)
    assert box is not None
    return box




# ---------------------------------------------------------------- the fleet view


@dataclass(frozen=True)
class BoxSummary:
    """One box as the fleet view shows it: online or not since when, what it runs, its numbering."""

    edge_id: str
    state: str
    state_since: datetime
    last_status_at: datetime
    status: dict[str, object]  # the box's last retained status (version, model, cameras ...)
    last_alert_at: datetime | None
    streams: list[StreamSummary]
    lost_alerts: int


@dataclass(frozen=True)
class StreamSummary:
    outbox_id: str
    contiguous_seq: int
    highest_seq: int
    gap: Range | None
    gap_since: datetime | None
    resend_requests: int
    lost: list[Range]

    @property
    def delivered(self) -> int:
        """Numbers up to the contiguous mark that were stored (not recorded lost)."""
        return self.contiguous_seq - sum(last - first + 1 for first, last in self.lost if last <= self.contiguous_seq)


def fleet_summary(session: Session) -> list[BoxSummary]:
    """Every box known from its status or its numbered alerts, by edge id."""
    boxes = {box.edge_id: box for box in session.scalars(select(EdgeBox))}
    losses = _losses(session)
    streams: dict[str, list[DeliveryStream]] = {}
    for stream in session.scalars(select(DeliveryStream).order_by(DeliveryStream.edge_id, DeliveryStream.outbox_id)):
        streams.setdefault(stream.edge_id, []).append(stream)
    summaries = []
    for edge_id in sorted(boxes.keys() | streams.keys()):
        box, own = boxes.get(edge_id), streams.get(edge_id, [])
        lost = [loss for s in own for loss in losses.get((edge_id, s.outbox_id), [])]
        last = max((s.last_alert_at for s in own if s.last_alert_at is not None), default=None)
        summaries.append(BoxSummary(
            edge_id=edge_id,
            state=box.state if box else "unknown",
            state_since=box.state_since if box else min(s.updated_at for s in own),
            last_status_at=box.last_status_at if box else min(s.updated_at for s in own),
            status=dict(box.status) if box else {},
            last_alert_at=last,
            streams=[_stream_summary(s, losses.get((edge_id, s.outbox_id), [])) for s in own],
            lost_alerts=sum(b - a + 1 for a, b in lost),
        ))
    return summaries


def _stream_summary(stream: DeliveryStream, lost: list[Range]) -> StreamSummary:
    gap = (stream.contiguous_seq + 1, stream.highest_seq) if stream.highest_seq > stream.contiguous_seq else None
    return StreamSummary(stream.outbox_id, stream.contiguous_seq, stream.highest_seq, gap, stream.gap_since,
                         stream.requests, sorted(lost))


__all__ = [
    "AuditStep",
    "AuditTimes",
    "BoxSummary",
    "DeliveryAuditor",
    "OpenGap",
    "StreamSummary",
    "TickReport",
    "audit_step",
    "first_gap",
    "fleet_summary",
    "next_contiguous",
]
