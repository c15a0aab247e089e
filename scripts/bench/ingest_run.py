"""One ingest run: central workers from a chosen checkout, a publisher, and the visibility reader.

Workers start and subscribe first; then the publisher (a forked process) sends every message and
the reader (this process) polls the database until every unique alert is visible, which gives the
rate (messages / (last row visible - first publish)) and each alert's publish->visible latency.
Then the workers are stopped and report their outcome counts and CPU time.
"""

from __future__ import annotations

import multiprocessing as mp
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from bench.publisher import Outgoing, Progress, publish_all
from bench.visibility import Visibility, watch
from bench.workers import WorkerGroup, WorkerSpec


@dataclass(frozen=True)
class Pace:
    """How a run publishes: `rate` messages/s (None: as fast as `window` allows) and how often the
    reader polls (paced runs need a fine one for latency; full speed only needs the end)."""

    rate: float | None
    window: int = 600
    poll_s: float = 0.005
    connections: int = 1  # publisher connections (each topic keeps to one)


@dataclass
class RunResult:
    messages: int
    visibility: Visibility
    summary: dict[str, int] = field(default_factory=dict)
    worker_cpu_s: float = 0.0  # CPU seconds (user + system) of all worker processes while subscribed
    offered_rate: float | None = None

    @property
    def seconds(self) -> float:
        return self.visibility.seconds

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("nan")

    @property
    def latencies_ms(self) -> list[float]:
        return [s * 1000 for s in self.visibility.latencies_s]

    @property
    def cpu_ms_per_message(self) -> float:
        return self.worker_cpu_s * 1000 / self.messages if self.messages else float("nan")


def run_ingest(
    messages: Sequence[Outgoing],
    alert_ids: Sequence[str],
    *,
    spec: WorkerSpec,
    workers: int,
    pace: Pace,
    reader: sessionmaker[Session],
    login: tuple[str, str] | None = None,
) -> RunResult:
    """Publish `messages` (whose `unique` index `alert_ids`) to `workers` fresh workers and wait
    until every alert is visible through `reader`, or progress stalls; the publisher logs in with
    `login` where the broker asks for one."""
    group = WorkerGroup(spec, count=workers, group=f"bench{uuid.uuid4().hex[:8]}")
    try:
        group.wait_ready()
    except SystemExit:
        group.terminate()
        raise
    try:
        ctx = mp.get_context("fork")
        progress = Progress.for_uniques(ctx, len(alert_ids))
        publisher = ctx.Process(
            target=publish_all,
            args=(messages,),
            kwargs={"mqtt_url": spec.mqtt_url, "progress": progress, "rate": pace.rate, "window": pace.window,
                    "login": login, "connections": pace.connections},
            daemon=True,
        )
        publisher.start()
        seen = watch(reader, alert_ids, progress=progress, poll_s=pace.poll_s)
        publisher.join(60)
    finally:
        figures = group.stop()
    if seen.stalled:
        print(f"  ! {len(seen.latencies_s)} of {len(alert_ids)} alerts visible; no progress for 30 s", flush=True)
    return RunResult(len(messages), seen, dict(figures.summary), figures.cpu_s, pace.rate)
