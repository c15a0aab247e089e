"""The workflow worker: a periodic scan that starts workflows, resolves due timers, delivers the
outbox and recomputes grades and hotspots. `central serve` runs it in a thread.

Everything it acts on is in the database (timers are rows with `due_at`), so a restart of central
simply resumes: the next tick finds the same pending rows. Several workers may run at once: rows are
claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises writers anyway.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.db import session_scope
from streetwatch.central.workflow.clock import Clock, system_clock
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.grades import GradeChange, recompute_grades
from streetwatch.central.workflow.hotspots import recompute_hotspots
from streetwatch.central.workflow.notify import DeliveryReport, NotificationChannel, channel_from_settings, deliver_due
from streetwatch.central.workflow.timers import cases_to_start, pending_timers, resolve_timer, start_workflow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickReport:
    started: list[int] = field(default_factory=list)
    resolved: dict[int, str] = field(default_factory=dict)
    delivery: DeliveryReport = DeliveryReport()
    grade_changes: list[GradeChange] = field(default_factory=list)
    hotspots: list[str] = field(default_factory=list)


class WorkflowEngine:
    """One tick does all due work at `clock()`; `run` ticks until `stop` is set."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: WorkflowSettings | None = None,
        *,
        clock: Clock = system_clock,
        channel: NotificationChannel | None = None,
    ) -> None:
        self.factory = session_factory
        self.settings = settings or WorkflowSettings()
        self.clock = clock
        self.channel = channel if channel is not None else channel_from_settings(self.settings)
        self._last_recompute: datetime | None = None
        if self.channel is None and self.settings.strike_waits_for_served:
            log.info("workflow: no notification channel; a next strike waits for the previous deadline only")

    def tick(self) -> TickReport:
        now = self.clock()
        with session_scope(self.factory, write_lock=True) as session:
            ready = cases_to_start(session, now=now, settings=self.settings, delivery_known=self.channel is not None)
            started = [start_workflow(session, c, now=now, settings=self.settings).case_id for c in ready]
        with session_scope(self.factory, write_lock=True) as session:
            resolved = {}
            for timer in pending_timers(session):
                outcome = resolve_timer(session, timer, now=now)
                if outcome is not None:
                    resolved[outcome.case_id] = outcome.outcome
        delivery = DeliveryReport()
        if self.channel is not None:
            delivery = deliver_due(self.factory, self.channel, now=now, settings=self.settings)
        changes: list[GradeChange] = []
        hot: list[str] = []
        if self._recompute_due(now, changed=bool(started or resolved)):
            with session_scope(self.factory, write_lock=True) as session:
                changes = recompute_grades(session, now=now, settings=self.settings)
                hot = [h.key for h in recompute_hotspots(session, now=now, settings=self.settings)]
            self._last_recompute = now
        return TickReport(started=started, resolved=resolved, delivery=delivery, grade_changes=changes, hotspots=hot)

    def _recompute_due(self, now: datetime, *, changed: bool) -> bool:
        """Grades and hotspots scan the window's cases: every `recompute_every_s`, or at once after a
        tick that changed a case (complaints and closures recompute in their own transaction)."""
        last = self._last_recompute
        every = timedelta(seconds=self.settings.recompute_every_s)
        return changed or last is None or now < last or now - last >= every

    def run(self, stop: threading.Event) -> None:
        log.info("workflow worker started (tick every %.1f s)", self.settings.tick_interval_s)
        while not stop.is_set():
            try:
                self.tick()
            except SQLAlchemyError as exc:  # the database is away: try again next tick
                log.warning("workflow tick failed: %s", exc)
            stop.wait(self.settings.tick_interval_s)
        log.info("workflow worker stopped")


def start_worker_thread(engine: WorkflowEngine, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=engine.run, args=(stop,), name="central-workflow", daemon=True)
    thread.start()
    return thread
