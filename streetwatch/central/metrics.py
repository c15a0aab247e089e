"""Prometheus metrics of one central process, and its health for a load balancer or orchestrator.

Served on `metrics.port` (0 = off) at /metrics, with /healthz (the process answers) and /readyz
(the database answers, the broker is connected, the ingest, workflow and fleet threads are alive
and not stalled: 200, else 503 with the failing checks). The web app serves /healthz and /readyz
too (api/health.py), from the same `Health`.

Everything lives in the object's own CollectorRegistry (as edge/metrics.py does), so tests and
several processes' objects never collide. Label values are bounded: dead letters by a small set
of kinds, boxes by their edge id (a city has thousands, not millions).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.models import CaseTimer, DeliveryStream, EdgeBox, utcnow

log = logging.getLogger(__name__)

NAMESPACE = "streetwatch_central"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
# The reason of a dead letter, by what it starts with: a bounded label (reasons themselves vary).
DEAD_LETTER_KINDS: tuple[tuple[str, str], ...] = (
    ("not JSON", "not_json"),
    ("not an alert", "not_json"),
    ("payload too large", "too_large"),
    ("unknown schema", "schema_version"),
    ("expected a JSON object", "not_json"),
    ("schema violation", "schema"),
    ("edge_id mismatch", "topic"),
    ("topic ", "topic"),
    ("episode_id: episode", "episode_owner"),
    ("evidence", "evidence"),
    ("database refused", "database"),
    ("internal error", "internal"),
)


def dead_letter_kind(reason: str) -> str:
    for prefix, kind in DEAD_LETTER_KINDS:
        if reason.startswith(prefix):
            return kind
    return "other"


class CentralMetrics:
    """alerts_ingested{outcome}, dead_letters{kind}, receive_to_commit_seconds,
    observed_to_commit_seconds, delivery_gaps_open{edge_id}, alerts_unrecoverable{edge_id},
    edge_online{edge_id}, edge_last_alert_timestamp_seconds{edge_id}, and from the database at
    each scrape: workflow_timers_due, edges_online/offline."""

    def __init__(self, session_factory: sessionmaker[Session] | None = None) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r, ns = self.registry, NAMESPACE
        self.alerts_ingested = Counter("alerts_ingested", "messages ingested, by outcome", ["outcome"],
                                       namespace=ns, registry=r)
        self.dead_letters = Counter("dead_letters", "messages refused, by kind of reason", ["kind"],
                                    namespace=ns, registry=r)
        self.receive_to_commit = Histogram("receive_to_commit_seconds", "from a message's arrival to its commit",
                                           namespace=ns, registry=r, buckets=LATENCY_BUCKETS)
        self.observed_to_commit = Histogram(
            "observed_to_commit_seconds", "from the alert's observed_at (the box queues it then) to its commit",
            namespace=ns, registry=r, buckets=LATENCY_BUCKETS)
        self.delivery_gaps_open = Gauge("delivery_gaps_open", "numberings of the box with alerts missing",
                                        ["edge_id"], namespace=ns, registry=r)
        self.alerts_unrecoverable = Counter("alerts_unrecoverable", "alerts lost for good (past the box's retention)",
                                            ["edge_id"], namespace=ns, registry=r)
        self.edge_online = Gauge("edge_online", "1 while the box's retained status says online", ["edge_id"],
                                 namespace=ns, registry=r)
        self.edge_last_alert = Gauge("edge_last_alert_timestamp_seconds", "when the box's newest alert was stored",
                                     ["edge_id"], namespace=ns, registry=r)
        for kind in {kind for _, kind in DEAD_LETTER_KINDS} | {"other"}:
            self.dead_letters.labels(kind=kind)  # every series exists from the start, at 0
        for outcome in ("created", "joined", "pending", "duplicate", "dead_letter"):
            self.alerts_ingested.labels(outcome=outcome)
        if session_factory is not None:
            self.registry.register(_DatabaseGauges(session_factory))

    def observe_ingest(self, *, outcome: str, reason: str | None, received_at: float, observed_at: datetime | None,
                       committed_at: float) -> None:
        """One message after its commit (`received_at`, `committed_at`: time.monotonic())."""
        self.alerts_ingested.labels(outcome=outcome).inc()
        if outcome == "dead_letter":
            self.dead_letters.labels(kind=dead_letter_kind(reason or "")).inc()
            return
        self.receive_to_commit.observe(max(0.0, committed_at - received_at))
        if observed_at is not None:
            self.observed_to_commit.observe(max(0.0, (utcnow() - observed_at).total_seconds()))

    def observe_audit(self, report: object) -> None:
        """The delivery audit's open gaps per box (delivery.TickReport)."""
        gaps: dict[str, int] = {}
        for gap in getattr(report, "open_gaps", []):
            gaps[gap.edge_id] = gaps.get(gap.edge_id, 0) + 1
        for edge_id, _outbox, _open_s in getattr(report, "closed", []):
            gaps.setdefault(edge_id, 0)
        for edge_id, count in gaps.items():
            self.delivery_gaps_open.labels(edge_id=edge_id).set(count)
        for edge_id, at in getattr(report, "last_alert", {}).items():
            self.edge_last_alert.labels(edge_id=edge_id).set(at.timestamp())


class _DatabaseGauges(Collector):
    """Gauges read from the database at scrape time (cheap, indexed counts)."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.session_factory() as session:
                due = session.scalar(select(func.count()).select_from(CaseTimer).where(
                    CaseTimer.status == "pending", CaseTimer.due_at <= utcnow())) or 0
                states = dict(session.execute(select(EdgeBox.state, func.count()).group_by(EdgeBox.state)).all())
                gaps = session.scalar(select(func.count()).select_from(DeliveryStream).where(
                    DeliveryStream.gap_since.is_not(None))) or 0
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("metrics: database gauges unavailable (%s)", exc)
            return
        yield GaugeMetricFamily(f"{NAMESPACE}_workflow_timers_due", "workflow timers past their deadline",
                                value=float(due))
        boxes = GaugeMetricFamily(f"{NAMESPACE}_edges", "boxes by their retained status", labels=["state"])
        for state in ("online", "offline"):
            boxes.add_metric([state], float(states.get(state, 0)))
        yield boxes
        yield GaugeMetricFamily(f"{NAMESPACE}_delivery_streams_with_gaps", "box numberings with a gap open",
                                value=float(gaps))


# ---------------------------------------------------------------- health


Check = Callable[[], str | None]  # None: fine; else what is wrong


@dataclass
class Health:
    """Named readiness checks; `ready()` runs them all."""

    checks: dict[str, Check] = field(default_factory=dict)

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    def ready(self) -> tuple[bool, dict[str, str]]:
        results: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                problem = check()
            except Exception as exc:  # a check that fails to run is a failed check
                problem = f"{type(exc).__name__}: {exc}"
            results[name] = "ok" if problem is None else problem
        return all(value == "ok" for value in results.values()), results


def database_check(session_factory: sessionmaker[Session]) -> Check:
    def check() -> str | None:
        with session_factory() as session:
            session.execute(text("SELECT 1"))
        return None

    return check


def beat_check(beat: Callable[[], float | None], *, alive: Callable[[], bool], stall_s: float, what: str) -> Check:
    """A thread that must be alive and have beaten (time.monotonic()) within `stall_s`."""

    def check() -> str | None:
        if not alive():
            return f"the {what} thread is not running"
        last = beat()
        if last is None or time.monotonic() - last > stall_s:
            return f"the {what} thread has not made progress for more than {stall_s:.0f} s"
        return None

    return check


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """Scrapes every few seconds would flood the log; errors still reach it."""


def serve_metrics(metrics: CentralMetrics, health: Health, *, host: str, port: int) -> WSGIServer:
    """/metrics, /healthz and /readyz on `port`, in a daemon thread."""
    metrics_app = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            ok, results = health.ready()
            body = "".join(f"{name}: {value}\n" for name, value in results.items()).encode()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [body]
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]

    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="central-metrics", daemon=True).start()
    log.info("metrics, /healthz and /readyz on http://%s:%d", host, server.server_port)
    return server


__all__ = ["CentralMetrics", "Health", "beat_check", "database_check", "dead_letter_kind", "serve_metrics"]
