"""Central at city scale: ingest rate, publish->commit latency, de-duplication and attribution quality
against a generated ground truth, and the review queue's server time with a million cases.

    python scripts/bench_central.py [--quick] [--workers N] [--mqtt-url URL] [--database-url URL]

What runs, per database backend (SQLite in a temp file; PostgreSQL in a fresh schema, dropped after):
1. 10,000 merchants (scripts/bench_central_data.py) are imported with the real merchant code.
2. Full speed: every alert of the ground truth (50,000 unique + 10 % redelivered, ~20 KB real JPEG
   evidence each) is published by a separate process through the real broker (QoS 1) to N real
   `AlertConsumer` processes on one shared subscription. The publisher keeps at most `--window`
   messages ahead of what the consumers committed (Mosquitto drops QoS 1 messages beyond
   `max_queued_messages`, 1000 by default, per client), so the consumers never wait for work and
   the broker never drops. Rate = messages / (last commit - first publish).
3. Fixed rate: a second ground truth (60 days later, so it never touches the first one's cases) is
   published at `--rate` alerts/s into the same, now loaded database; latency = commit time (a
   SQLAlchemy after_commit hook in the consumer) - `bench_sent_at` (an extra top-level payload field
   the schema allows, set at publish). Same machine clock on both ends.
4. Quality over all ingested alerts: pair precision/recall of "same case" vs "same violation",
   attribution accuracy (case merchant vs the majority violation's merchant), lost alerts (published,
   not stored), double counts (sum of case alert_count - stored alerts), dead letters.
5. Queue: cases are bulk-inserted with one SQL statement (not through ingest) up to `--cases` in all,
   5 % of them `new`; then median server time (the app's Server-Timing header) of GET / for a
   logged-in reviewer and of GET /api/cases (token), via FastAPI's TestClient.

No assertion on times: the tables print measured figures beside the goals.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import logging
import math
import multiprocessing as mp
import os
import pstats
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from sqlalchemy import Engine, Insert, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_central_data as data  # noqa: E402
from bench_common import (  # noqa: E402
    cpu_model,
    cpu_seconds,
    fmt,
    free_port,
    markdown_table,
    percentile,
    usable_cores,
)

from streetwatch.central.config import BrokerSettings, CentralSettings  # noqa: E402
from streetwatch.central.db import make_engine, make_session_factory, migrate, session_scope  # noqa: E402
from streetwatch.central.ingest import AlertConsumer, Message, freeze_startup_objects, ingest_many  # noqa: E402
from streetwatch.central.merchants import MerchantFields, MerchantRecord, store_merchants  # noqa: E402
from streetwatch.central.models import Alert, Case, DeadLetter, User  # noqa: E402
from streetwatch.mqtt_common import parse_broker_url  # noqa: E402

log = logging.getLogger("bench_central")

REPO = Path(__file__).resolve().parents[1]
GOALS = {
    "rate": "≥ 1,000 /s (1 worker)",
    "p50": "—",
    "p99": "≤ 200 ms",
    "precision": "≥ 0.99",
    "recall": "≥ 0.99",
    "attribution": "≥ 0.99",
    "lost": "0",
    "double": "0",
    "dead": "0",
    "queue": "≤ 150 ms",
}
PASSWORD = "bench reviewer password"


# ---------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    alerts: int
    merchants: int
    cases: int
    workers: int
    rate: float
    latency_alerts: int
    window: int
    requests: int
    mqtt_url: str | None
    database_url: str | None
    backends: tuple[str, ...]
    profile: int
    quick: bool
    seed: int
    evidence_root: Path | None = None
    protocol: str | None = None  # MQTT version of the workers; None = 5 on an external broker


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="5,000 alerts and 100,000 cases (a couple of minutes)")
    p.add_argument("--alerts", type=int, help="unique alerts at full speed (default 50,000; quick 5,000)")
    p.add_argument("--merchants", type=int, default=10_000)
    p.add_argument("--cases", type=int, help="cases stored for the queue timing (default 1,000,000; quick 100,000)")
    p.add_argument("--workers", type=int, default=1, help="central consumer processes on the shared subscription")
    p.add_argument("--rate", type=float, default=500.0, help="offered alerts/s for the latency run")
    p.add_argument("--latency-alerts", type=int, help="unique alerts in the latency run (default 10,000; quick 3,000)")
    p.add_argument("--window", type=int, default=600, help="max messages published ahead of commits at full speed")
    p.add_argument("--requests", type=int, default=30, help="timed requests per page")
    p.add_argument(
        "--mqtt-url",
        default=os.environ.get("STREETWATCH_TEST_MQTT_URL"),
        help="broker (default $STREETWATCH_TEST_MQTT_URL, else an embedded broker)",
    )
    p.add_argument(
        "--database-url",
        default=os.environ.get("STREETWATCH_TEST_DATABASE_URL"),
        help="PostgreSQL base URL (default $STREETWATCH_TEST_DATABASE_URL); a fresh schema is used",
    )
    p.add_argument("--backends", default="sqlite,postgresql", help="comma list of sqlite, postgresql")
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also profile N alerts through ingest_many offline (cProfile, no broker) per backend",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--protocol",
        choices=("3.1.1", "5"),
        help="MQTT version of the central workers (default 5; 3.1.1 on the embedded broker). On 3.1.1\n"
        "the broker alone decides how many unacked alerts a worker holds (Mosquitto: 20), and so its batch",
    )
    p.add_argument(
        "--evidence-dir",
        type=Path,
        default=None,
        help="folder in which each run's evidence folder is made (default: the system's temp folder);\n"
        "every alert creates one file there, so its file system's cost per new file is part of ingest",
    )
    a = p.parse_args(argv)
    return Options(
        alerts=a.alerts or (5_000 if a.quick else 50_000),
        merchants=a.merchants,
        cases=a.cases or (100_000 if a.quick else 1_000_000),
        workers=a.workers,
        rate=a.rate,
        latency_alerts=a.latency_alerts or (3_000 if a.quick else 10_000),
        window=a.window,
        requests=a.requests,
        mqtt_url=a.mqtt_url,
        database_url=a.database_url,
        backends=tuple(b.strip() for b in a.backends.split(",") if b.strip()),
        profile=a.profile,
        quick=a.quick,
        seed=a.seed,
        evidence_root=a.evidence_dir,
        protocol=a.protocol,
    )


# ---------------------------------------------------------------- databases


@contextmanager
def database(backend: str, base_url: str | None) -> Iterator[str]:
    """A migrated, empty database URL: SQLite in a temp folder, or a fresh PostgreSQL schema."""
    if backend == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="bench-central-sqlite-"))
        url = f"sqlite:///{folder / 'central.sqlite'}"
        try:
            migrate(url)
            yield url
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    assert base_url is not None
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    rendered = (
        make_url(base_url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    try:
        migrate(rendered)
        yield rendered
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def import_merchants(factory: sessionmaker[Session], merchants: Sequence[data.MerchantTruth]) -> float:
    records = [
        MerchantRecord(
            MerchantFields(id=m.id, name=f"Shop {m.id}", address=f"{m.segment} Bench Road", road=f"road-{m.segment}"),
            m.wkt(),
        )
        for m in merchants
    ]
    started = time.perf_counter()
    with session_scope(factory) as session:
        store_merchants(session, records, source="bench")
    return time.perf_counter() - started


# ---------------------------------------------------------------- consumer processes


@dataclass
class Shared:
    """Counters the consumer processes write and the coordinator and publisher read."""

    processed: list  # one mp.Value('q') per worker: messages acked (summary.total)
    ours: object  # mp.Value('q'): alert rows committed that carry bench_sent_at (this run's, not others')
    last_commit: object  # mp.Value('d')
    first_publish: object  # mp.Value('d')
    ready: object  # mp.Value('i')
    stop: object  # mp.Event
    results: object  # mp.Queue


def new_shared(ctx: mp.context.BaseContext, workers: int) -> Shared:
    return Shared(
        processed=[ctx.Value("q", 0) for _ in range(workers)],
        ours=ctx.Value("q", 0),
        last_commit=ctx.Value("d", 0.0),
        first_publish=ctx.Value("d", 0.0),
        ready=ctx.Value("i", 0),
        stop=ctx.Event(),
        results=ctx.Queue(),
    )


def processed_total(shared: Shared) -> int:
    return sum(v.value for v in shared.processed)  # type: ignore[attr-defined]


def _latency_hooks(
    engine: Engine, factory: sessionmaker[Session], latencies: list[float], shared: Shared, *, prefix: str
) -> None:
    """Record commit time - bench_sent_at for every alert row of this run (id starts with `prefix`)
    a transaction inserted; other publishers' alerts on the same broker are not counted.

    Rows are seen at the INSERT statement (ingest inserts them in bulk, not as ORM objects); one
    ingest thread per worker process, so one list of not yet committed send times suffices."""
    uncommitted: list[float] = []

    @event.listens_for(engine, "after_execute")
    def _executed(
        _conn: object, clause: object, multiparams: object, params: object, _options: object, _result: object
    ) -> None:
        if not isinstance(clause, Insert) or clause.table.name != "alerts":  # type: ignore[attr-defined]
            return
        rows = multiparams if isinstance(multiparams, list) and multiparams else [params]
        for row in rows:
            if isinstance(row, dict) and str(row.get("alert_id", "")).startswith(prefix):
                sent = (row.get("payload") or {}).get("bench_sent_at")
                if sent:
                    uncommitted.append(sent)

    @event.listens_for(factory, "after_commit")
    def _committed(session: Session) -> None:
        now = time.time()
        latencies.extend(now - s for s in uncommitted)
        with shared.ours.get_lock():  # type: ignore[attr-defined]
            shared.ours.value += len(uncommitted)  # type: ignore[attr-defined]
        uncommitted.clear()
        shared.last_commit.value = max(shared.last_commit.value, now)  # type: ignore[attr-defined]

    @event.listens_for(factory, "after_rollback")
    def _rolled_back(session: Session) -> None:
        uncommitted.clear()


def consumer_main(
    index: int,
    *,
    mqtt_url: str,
    protocol: str,
    db_url: str,
    evidence_dir: Path,
    group: str,
    shared: Shared,
    prefix: str,
) -> None:
    """One central worker process: a real AlertConsumer until told to stop, then its figures."""
    logging.basicConfig(level=logging.WARNING)
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    latencies: list[float] = []
    _latency_hooks(engine, factory, latencies, shared, prefix=prefix)
    client_id = f"{group}-w{index}"
    settings = CentralSettings(
        broker=BrokerSettings(
            url=mqtt_url,
            client_id=client_id,
            subscription=f"$share/{group}/streetwatch/v1/alerts/#",
            protocol=protocol,
        ),
        evidence_dir=evidence_dir,
    )
    consumer = AlertConsumer(settings=settings, session_factory=factory)
    consumer.start()
    freeze_startup_objects()  # as `central serve` does (here it also hides the forked-in datasets)
    if not consumer.wait_subscribed(30):
        raise SystemExit(f"worker {index}: not subscribed within 30 s")
    with shared.ready.get_lock():  # type: ignore[attr-defined]
        shared.ready.value += 1  # type: ignore[attr-defined]
    counter = shared.processed[index]
    cpu_start = cpu_seconds()
    while not shared.stop.wait(0.005):  # type: ignore[attr-defined]
        counter.value = consumer.summary.total
    consumer.stop()
    cpu = cpu_seconds() - cpu_start
    counter.value = consumer.summary.total
    forget_session(mqtt_url, client_id)
    s = consumer.summary
    shared.results.put(  # type: ignore[attr-defined]
        (
            index,
            {
                "created": s.created,
                "joined": s.joined,
                "duplicate": s.duplicate,
                "dead_letter": s.dead_letter,
                "db_errors": s.db_errors,
            },
            latencies,
            cpu,
        )
    )
    engine.dispose()


def forget_session(mqtt_url: str, client_id: str) -> None:
    """Connect once with a clean session: the broker drops the worker's persistent session, so it
    does not keep taking a share of the subscription (and queueing) after the benchmark."""
    host, port, _tls = parse_broker_url(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    try:
        client.connect(host, port, 30)
        client.loop_start()
        time.sleep(0.2)
        client.disconnect()
        client.loop_stop()
    except OSError as exc:
        log.warning("could not clear the session of %s: %s", client_id, exc)


# ---------------------------------------------------------------- publisher process


def publisher_main(
    specs: Sequence[data.AlertSpec],
    pool: Sequence[bytes],
    *,
    mqtt_url: str,
    shared: Shared,
    rate: float | None,
    window: int,
) -> None:
    """Publish every spec (QoS 1): paced at `rate`/s, or as fast as the window of uncommitted allows."""
    host, port, _tls = parse_broker_url(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect(host, port, 30)
    client.loop_start()
    started = time.time()
    shared.first_publish.value = started  # type: ignore[attr-defined]
    infos = []
    for i, spec in enumerate(specs):
        if rate is not None:
            due = started + i / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
        else:
            while i - processed_total(shared) > window:
                time.sleep(0.0005)
        payload = data.payload_for(spec, pool[spec.evidence_index], sent_at=time.time())
        infos.append(client.publish(data.topic_for(spec), payload, qos=1))
    for info in infos[-200:]:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


# ---------------------------------------------------------------- one ingest run


@dataclass
class RunResult:
    messages: int
    seconds: float
    summary: dict[str, int]
    latencies_ms: list[float]
    offered_rate: float | None = None
    worker_cpu_s: float = 0.0  # CPU seconds (user + system) of all worker processes while they ran

    @property
    def cpu_ms_per_message(self) -> float:
        return self.worker_cpu_s * 1000 / self.messages if self.messages else float("nan")

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("nan")


def run_ingest(
    dataset: data.Dataset,
    pool: Sequence[bytes],
    *,
    opts: Options,
    mqtt_url: str,
    db_url: str,
    evidence_dir: Path,
    rate: float | None,
) -> RunResult:
    """Start the workers, publish the dataset, wait until every message is acked, stop the workers."""
    ctx = mp.get_context("fork")
    shared = new_shared(ctx, opts.workers)
    group = f"bench{uuid.uuid4().hex[:8]}"
    workers = [
        ctx.Process(
            target=consumer_main,
            args=(i,),
            kwargs={
                "mqtt_url": mqtt_url,
                "protocol": opts.protocol or "3.1.1",
                "db_url": db_url,
                "evidence_dir": evidence_dir,
                "group": group,
                "shared": shared,
                "prefix": dataset.prefix + "-",
            },
            daemon=True,
        )
        for i in range(opts.workers)
    ]
    for w in workers:
        w.start()
    deadline = time.time() + 60
    while shared.ready.value < opts.workers:  # type: ignore[attr-defined]
        if time.time() > deadline or not all(w.is_alive() for w in workers):
            raise SystemExit("central workers did not subscribe (broker reachable?)")
        time.sleep(0.05)
    specs = list(dataset.messages())
    publisher = ctx.Process(
        target=publisher_main,
        args=(specs, pool),
        kwargs={"mqtt_url": mqtt_url, "shared": shared, "rate": rate, "window": opts.window},
        daemon=True,
    )
    publisher.start()
    _wait_for_all(shared, len(dataset.alerts))
    seconds = shared.last_commit.value - shared.first_publish.value  # type: ignore[attr-defined]
    publisher.join(60)
    shared.stop.set()  # type: ignore[attr-defined]
    summary: Counter[str] = Counter()
    latencies: list[float] = []
    cpu = 0.0
    for _ in workers:
        _index, counts, lat, worker_cpu = shared.results.get(timeout=120)  # type: ignore[attr-defined]
        summary.update(counts)
        latencies.extend(lat)
        cpu += worker_cpu
    for w in workers:
        w.join(30)
    return RunResult(len(specs), seconds, dict(summary), [x * 1000 for x in latencies], rate, cpu)


def _wait_for_all(shared: Shared, expected: int, *, stall_s: float = 30.0) -> None:
    """Until every unique alert of this run is committed, or nothing moved for `stall_s` (lost).

    Counted from the commit hook, not from acks: other publishers on a shared broker may add
    messages of their own to the workers' share."""
    last, since = -1, time.time()
    while True:
        done = shared.ours.value  # type: ignore[attr-defined]
        if done >= expected:
            return
        if done != last:
            last, since = done, time.time()
        elif time.time() - since > stall_s:
            print(f"  ! only {done} of {expected} alerts committed; no progress for {stall_s:.0f} s", flush=True)
            return
        time.sleep(0.01)


# ---------------------------------------------------------------- quality against the ground truth


@dataclass
class Quality:
    precision: float
    recall: float
    attribution: float
    attribution_inside: float
    attribution_nearest: float
    cases: int
    expected_cases: int
    stored: int
    published_unique: int
    lost: int
    double_counted: int
    dead_letters: int
    foreign: int
    lost_by_run: dict[str, int] = field(default_factory=dict)
    dead_reasons: list[str] = field(default_factory=list)


def measure_quality(factory: sessionmaker[Session], datasets: Sequence[tuple[str, data.Dataset]]) -> Quality:
    truth: dict[str, int] = {}
    violation_of: dict[int, data.ViolationTruth] = {}
    offset = 0
    for _prefix, ds in datasets:
        for spec in ds.alerts:
            truth[spec.alert_id] = offset + spec.violation_index
        for v in ds.violations:
            violation_of[offset + v.index] = v
        offset += len(ds.violations)
    with factory() as session:
        rows = session.execute(select(Alert.alert_id, Alert.case_id)).all()
        cases = {c.id: c for c in session.scalars(select(Case))}
        dead = session.scalar(select(func.count(DeadLetter.id))) or 0
        reasons = [
            f"{n} x {r[:160]}"
            for r, n in session.execute(
                select(DeadLetter.reason, func.count(DeadLetter.id)).group_by(DeadLetter.reason).limit(5)
            )
        ]
    ours: list[tuple[int, int]] = [(truth[a], c) for a, c in rows if a in truth and c is not None]
    stored_ids = {a for a, _ in rows}
    lost_by_run = {name: sum(1 for s in ds.alerts if s.alert_id not in stored_ids) for name, ds in datasets}
    foreign = len(rows) - len(ours)
    both, pred, true = data.pair_counts([t for t, _ in ours], [c for _, c in ours])
    by_case: dict[int, Counter[int]] = defaultdict(Counter)
    for t, c in ours:
        by_case[c][t] += 1
    correct, per_method = 0, {"inside_zone": [0, 0], "nearest": [0, 0]}
    for case_id, counts in by_case.items():
        v = violation_of[counts.most_common(1)[0][0]]
        ok = cases[case_id].merchant_id == v.merchant_id
        correct += ok
        per_method[v.expected_method][0] += ok
        per_method[v.expected_method][1] += 1
    counted = sum(cases[c].alert_count for c in by_case)
    ratio = lambda a, b: a / b if b else float("nan")  # noqa: E731
    return Quality(
        precision=ratio(both, pred),
        recall=ratio(both, true),
        attribution=ratio(correct, len(by_case)),
        attribution_inside=ratio(*per_method["inside_zone"]),
        attribution_nearest=ratio(*per_method["nearest"]),
        cases=len(by_case),
        expected_cases=offset,
        stored=len(ours),
        published_unique=len(truth),
        lost=len(truth) - len(ours),
        double_counted=counted - len(ours),
        dead_letters=int(dead),
        foreign=foreign,
        lost_by_run=lost_by_run,
        dead_reasons=reasons,
    )


def storage_bytes(factory: sessionmaker[Session], db_url: str) -> int:
    """Bytes the database uses now (PostgreSQL: all relations of the schema; SQLite: file + WAL)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with factory() as session:
        return int(
            session.scalar(
                text(
                    "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')"
                )
            )
            or 0
        )


def folder_bytes(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*.jpg") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


# ---------------------------------------------------------------- queue at scale


CASE_COLUMNS = (
    "violation, status, lat, lon, location_count, camera_id, zone_id, first_seen, last_seen, alert_count, "
    "episode_count, merchant_id, attribution_method, attribution_distance_m, priority, evidence_sha256, area_id, "
    "active, merged_into_id, created_at, updated_at"
)
PG_BULK = f"""
INSERT INTO cases ({CASE_COLUMNS})
SELECT (ARRAY['illegal_parking','street_vending','stacked_goods'])[1 + g % 3],
       CASE WHEN g % 20 = 0 THEN 'new' WHEN g % 20 < 4 THEN 'confirmed' WHEN g % 20 < 8 THEN 'dismissed'
            ELSE 'closed' END,
       :lat0 + (random() - 0.5) * 0.06, :lon0 + (random() - 0.5) * 0.08, 10, 'bulk-cam', 'kerb',
       ts, ts + interval '10 minutes', 10, 2, 'm' || lpad((g % :merchants)::text, 5, '0'), 'inside_zone', 0.0,
       10 + (g * 37) % 60, :sha, NULL, false, NULL, now(), now()
FROM (SELECT g, timestamptz '2025-06-01 00:00+00' + g * interval '13 seconds' AS ts
      FROM generate_series(1, :n) AS g) AS s
"""
SQLITE_BULK = f"""
WITH RECURSIVE seq(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM seq WHERE g < :n)
INSERT INTO cases ({CASE_COLUMNS})
SELECT CASE g % 3 WHEN 0 THEN 'illegal_parking' WHEN 1 THEN 'street_vending' ELSE 'stacked_goods' END,
       CASE WHEN g % 20 = 0 THEN 'new' WHEN g % 20 < 4 THEN 'confirmed' WHEN g % 20 < 8 THEN 'dismissed'
            ELSE 'closed' END,
       :lat0 + ((abs(random()) % 60000) - 30000) / 1000000.0,
       :lon0 + ((abs(random()) % 80000) - 40000) / 1000000.0, 10, 'bulk-cam', 'kerb',
       strftime('%Y-%m-%d %H:%M:%S', '2025-06-01', '+' || (g * 13) || ' seconds') || '.000000',
       strftime('%Y-%m-%d %H:%M:%S', '2025-06-01', '+' || (g * 13 + 600) || ' seconds') || '.000000',
       10, 2, 'm' || printf('%05d', g % :merchants), 'inside_zone', 0.0,
       10 + (g * 37) % 60, :sha, NULL, 0, NULL, '2026-03-01 00:00:00.000000', '2026-03-01 00:00:00.000000'
FROM seq
"""


def bulk_insert_cases(factory: sessionmaker[Session], *, total: int, merchants: int) -> tuple[int, float]:
    """Top the cases table up to `total` rows with one INSERT .. SELECT; (rows added, seconds)."""
    with factory() as session:
        have = session.scalar(select(func.count(Case.id))) or 0
        sha = session.scalar(select(Case.evidence_sha256).where(Case.evidence_sha256.is_not(None)).limit(1))
    n = max(0, total - have)
    started = time.perf_counter()
    with session_scope(factory) as session:
        dialect = session.get_bind().dialect.name
        sql = PG_BULK if dialect == "postgresql" else SQLITE_BULK
        session.execute(text(sql), {"n": n, "lat0": data.LAT0, "lon0": data.LON0, "merchants": merchants, "sha": sha})
    with session_scope(factory) as session:
        session.execute(text("ANALYZE"))
    return n, time.perf_counter() - started


@dataclass
class PageTiming:
    server_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.server_ms) if self.server_ms else float("nan")

    def p90(self) -> float:
        return percentile(self.server_ms, 90)


def time_queue(factory: sessionmaker[Session], settings: CentralSettings, *, requests: int) -> dict[str, PageTiming]:
    """Median server time of the queue page (logged-in reviewer) and of GET /api/cases (token)."""
    from fastapi.testclient import TestClient

    from streetwatch.central.api.tokens import issue_token
    from streetwatch.central.app import build_app
    from streetwatch.central.config import WebSettings
    from streetwatch.central.passwords import hash_password

    with session_scope(factory) as session:
        session.add(User(username="bench-reviewer", password_hash=hash_password(PASSWORD), role="reviewer"))
    token = issue_token(factory, username="bench-reviewer", name="bench").secret
    web = WebSettings(mode="development", secret_key="b" * 40, cookie_secure=False)  # type: ignore[arg-type]
    app = build_app(settings.model_copy(update={"web": web}), factory)
    out: dict[str, PageTiming] = {}
    with TestClient(app) as client:
        login_form = client.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login_form)
        assert csrf, "no CSRF field on /login"
        response = client.post(
            "/login",
            data={"username": "bench-reviewer", "password": PASSWORD, "csrf_token": csrf.group(1)},
            follow_redirects=False,
        )
        assert response.status_code == 303, f"login failed: {response.status_code}"
        pages: dict[str, tuple[str, dict[str, str]]] = {
            "GET / (queue page)": ("/", {}),
            "GET /?violation=street_vending": ("/?violation=street_vending", {}),
            "GET /api/cases": ("/api/cases", {"Authorization": f"Bearer {token}"}),
        }
        for name, (path, headers) in pages.items():
            timing = PageTiming()
            for i in range(requests + 3):
                started = time.perf_counter()
                r = client.get(path, headers=headers, follow_redirects=False)
                wall = (time.perf_counter() - started) * 1000
                assert r.status_code == 200, f"{path}: HTTP {r.status_code}"
                if i < 3:
                    continue  # warm-up: the first map page parses merchant zones
                server = re.search(r"app;dur=([0-9.]+)", r.headers.get("server-timing", ""))
                timing.server_ms.append(float(server.group(1)) if server else wall)
                timing.wall_ms.append(wall)
            out[name] = timing
    return out


# ---------------------------------------------------------------- offline profile


def profile_ingest(db_url: str, dataset: data.Dataset, pool: Sequence[bytes], *, count: int, evidence_dir: Path) -> str:
    """cProfile of `ingest_many` (batches of 100, as the consumer) over `count` messages, no broker."""
    factory = make_session_factory(make_engine(db_url))
    settings = CentralSettings(evidence_dir=evidence_dir)
    from streetwatch.central.attribution import MerchantIndexCache

    cache = MerchantIndexCache(max_distance_m=settings.attribution.max_distance_m)
    specs = list(dataset.messages())[:count]
    messages = [
        Message(data.topic_for(s), data.payload_for(s, pool[s.evidence_index], sent_at=time.time())) for s in specs
    ]
    with session_scope(factory) as session:
        cache.get(session)
    prof = cProfile.Profile()
    started = time.perf_counter()
    prof.enable()
    for i in range(0, len(messages), 100):
        with session_scope(factory, write_lock=True) as session:
            ingest_many(session, messages[i : i + 100], settings=settings, index=cache.get(session))
    prof.disable()
    seconds = time.perf_counter() - started
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(r"streetwatch|sqlalchemy/orm/session|pydantic", 22)
    head = f"{len(messages)} messages in {seconds:.1f} s under cProfile = {len(messages) / seconds:.0f} msg/s\n"
    return head + _trim_profile(buf.getvalue())


def _trim_profile(textual: str) -> str:
    keep = [line.replace(str(REPO) + "/", "").replace(sys.prefix, "<venv>") for line in textual.splitlines()]
    return "\n".join(line for line in keep if line.strip() and "Ordered by" not in line)


# ---------------------------------------------------------------- per backend


@dataclass
class BackendResult:
    backend: str
    merchants_s: float
    full: RunResult
    paced: RunResult
    quality: Quality
    db_bytes: int
    evidence_files: int
    evidence_bytes: int
    stored_alerts: int
    bulk_rows: int
    bulk_s: float
    pages: dict[str, PageTiming]
    total_cases: int
    profile: str = ""


def run_backend(
    backend: str,
    *,
    opts: Options,
    mqtt_url: str,
    worlds: tuple[data.Dataset, data.Dataset],
    pool: Sequence[bytes],
    progress: Callable[[str], None],
) -> BackendResult:
    full_ds, paced_ds = worlds
    with database(backend, opts.database_url) as db_url:
        evidence_dir = Path(tempfile.mkdtemp(prefix="bench-central-evidence-", dir=opts.evidence_root))
        engine = make_engine(db_url)
        factory = make_session_factory(engine)
        merchants_s = import_merchants(factory, full_ds.merchants)
        engine.dispose()  # no pooled connection may be inherited by the worker processes (fork)
        progress(f"{backend}: {len(full_ds.merchants)} merchants imported in {merchants_s:.1f} s; full speed ...")
        full = run_ingest(
            full_ds, pool, opts=opts, mqtt_url=mqtt_url, db_url=db_url, evidence_dir=evidence_dir, rate=None
        )
        progress(
            f"{backend}: {full.messages} messages in {full.seconds:.1f} s ({full.rate:.0f}/s); "
            f"paced at {opts.rate:.0f}/s ..."
        )
        paced = run_ingest(
            paced_ds, pool, opts=opts, mqtt_url=mqtt_url, db_url=db_url, evidence_dir=evidence_dir, rate=opts.rate
        )
        # De-duplication and attribution are judged on the full-speed run (flow-controlled, so the
        # broker never drops); losses are counted for both runs.
        quality = measure_quality(factory, [("full", full_ds)])
        paced_quality = measure_quality(factory, [("paced", paced_ds)])
        quality.lost_by_run["paced"] = paced_quality.lost
        quality.foreign -= paced_quality.stored
        stored_rows = quality.stored + paced_quality.stored + quality.foreign  # what the bytes hold
        db_bytes = storage_bytes(factory, db_url)
        files, ev_bytes = folder_bytes(evidence_dir)
        progress(f"{backend}: quality measured; bulk-inserting cases up to {opts.cases:,} ...")
        bulk_rows, bulk_s = bulk_insert_cases(factory, total=opts.cases, merchants=len(full_ds.merchants))
        with factory() as session:
            total_cases = session.scalar(select(func.count(Case.id))) or 0
        progress(f"{backend}: {bulk_rows:,} cases inserted in {bulk_s:.1f} s; timing the queue ...")
        pages = time_queue(factory, CentralSettings(evidence_dir=evidence_dir), requests=opts.requests)
        engine.dispose()
    profile = ""
    if opts.profile:
        progress(f"{backend}: profiling {opts.profile} alerts through ingest_many ...")
        with database(backend, opts.database_url) as db_url:
            evidence_dir = Path(tempfile.mkdtemp(prefix="bench-central-profile-", dir=opts.evidence_root))
            import_merchants(make_session_factory(make_engine(db_url)), full_ds.merchants)
            profile = profile_ingest(db_url, full_ds, pool, count=opts.profile, evidence_dir=evidence_dir)
    return BackendResult(
        backend,
        merchants_s,
        full,
        paced,
        quality,
        db_bytes,
        files,
        ev_bytes,
        stored_rows,
        bulk_rows,
        bulk_s,
        pages,
        int(total_cases),
        profile,
    )


# ---------------------------------------------------------------- report


def results_table(results: Sequence[BackendResult], opts: Options) -> str:
    def row(name: str, goal: str, cell: Callable[[BackendResult], str]) -> list[str]:
        return [name, goal, *(cell(r) for r in results)]

    def lat(r: RunResult, q: float) -> str:
        return fmt(percentile(r.latencies_ms, q), 0) + " ms"

    w = opts.workers
    rows = [
        row(
            f"ingest rate, {w} worker{'s' if w > 1 else ''} (messages acked/s, full speed)",
            GOALS["rate"],
            lambda r: f"{r.full.rate:,.0f} /s",
        ),
        row(
            "worker CPU per message (user+sys, all worker threads)",
            "≤ 1 ms",
            lambda r: f"{r.full.cpu_ms_per_message:.2f} ms",
        ),
        row(
            "→ CPU-bound rate of one worker on a free core (1000 / CPU ms)",
            GOALS["rate"],
            lambda r: f"{1000 / r.full.cpu_ms_per_message:,.0f} /s",
        ),
        row(
            "… of which new alerts committed/s",
            "—",
            lambda r: (
                f"{(r.full.summary.get('created', 0) + r.full.summary.get('joined', 0)) / r.full.seconds:,.0f} /s"
            ),
        ),
        row(f"publish→commit p50 at {opts.rate:.0f} alerts/s offered", GOALS["p50"], lambda r: lat(r.paced, 50)),
        row(f"publish→commit p99 at {opts.rate:.0f} alerts/s offered", GOALS["p99"], lambda r: lat(r.paced, 99)),
        row(
            "publish→commit max at the offered rate",
            "—",
            lambda r: fmt(max(r.paced.latencies_ms, default=float("nan")), 0) + " ms",
        ),
        row(
            "paced run: acked/s (acked messages / (last commit − first publish))",
            f"{opts.rate:.0f} /s",
            lambda r: f"{sum(r.paced.summary.values()) / r.paced.seconds:,.0f} /s",
        ),
        row("de-duplication precision (pairs)", GOALS["precision"], lambda r: fmt(r.quality.precision, 4)),
        row("de-duplication recall (pairs)", GOALS["recall"], lambda r: fmt(r.quality.recall, 4)),
        row(
            "cases / ground-truth violations (full-speed run)",
            "1.00",
            lambda r: f"{r.quality.cases:,} / {r.quality.expected_cases:,}",
        ),
        row("attribution accuracy (all cases)", GOALS["attribution"], lambda r: fmt(r.quality.attribution, 4)),
        row("… violations inside a zone", "—", lambda r: fmt(r.quality.attribution_inside, 4)),
        row("… violations 2-5 m outside (nearest)", "—", lambda r: fmt(r.quality.attribution_nearest, 4)),
        row(
            "lost alerts (published, not stored): full speed + paced",
            GOALS["lost"],
            lambda r: (
                f"{r.quality.lost:,} ({r.quality.lost_by_run.get('full', 0):,} + "
                f"{r.quality.lost_by_run.get('paced', 0):,})"
            ),
        ),
        row(
            "double-counted (Σ alert_count − stored, full-speed run)",
            GOALS["double"],
            lambda r: f"{r.quality.double_counted:,}",
        ),
        row(
            "redeliveries recognised as duplicates",
            "—",
            lambda r: f"{r.full.summary.get('duplicate', 0) + r.paced.summary.get('duplicate', 0):,}",
        ),
        row("dead letters", GOALS["dead"], lambda r: f"{r.quality.dead_letters:,}"),
    ]
    names = list(results[0].pages) if results else []
    for name in names:
        goal = GOALS["queue"] if name.startswith("GET / ") or name == "GET /api/cases" else "—"
        rows.append(row(f"{name} median server time", goal, _page_cell(name)))
    rows += [
        row("cases stored for the queue timing", "1,000,000", lambda r: f"{r.total_cases:,}"),
        row(
            "database bytes per stored alert (all tables)",
            "—",
            lambda r: f"{r.db_bytes / max(1, r.stored_alerts):,.0f} B",
        ),
        row(
            "evidence bytes per stored alert (files)",
            "—",
            lambda r: f"{r.evidence_bytes / max(1, r.stored_alerts):,.0f} B",
        ),
    ]
    return markdown_table(["Metric", "Goal", *(r.backend for r in results)], rows)


def _page_cell(name: str) -> Callable[[BackendResult], str]:
    def cell(r: BackendResult) -> str:
        return f"{fmt(r.pages[name].median(), 1)} ms (p90 {fmt(r.pages[name].p90(), 1)})"

    return cell


def detail_table(results: Sequence[BackendResult]) -> str:
    rows = []
    for r in results:
        for label, run in (("full speed", r.full), ("paced", r.paced)):
            s = run.summary
            rows.append(
                [
                    r.backend,
                    label,
                    f"{run.messages:,}",
                    f"{run.seconds:.1f}",
                    str(s.get("created", 0)),
                    str(s.get("joined", 0)),
                    str(s.get("duplicate", 0)),
                    str(s.get("dead_letter", 0)),
                    str(s.get("db_errors", 0)),
                ]
            )
    return markdown_table(
        ["backend", "run", "messages", "seconds", "created", "joined", "duplicate", "dead letter", "db errors"], rows
    )


@dataclass(frozen=True)
class CityAssumptions:
    cameras: int = 10_000
    alerts_per_camera_hour: float = 6.0  # first alert + a reminder every 10 min for about one violation an hour
    peak_factor: float = 3.0  # busiest hour vs the daily mean
    evidence_kb: float = 20.0
    retention_days: int = 90
    headroom: float = 0.5  # run workers at most at half their measured rate


def city_arithmetic(results: Sequence[BackendResult], opts: Options, a: CityAssumptions = CityAssumptions()) -> str:
    mean_rate = a.cameras * a.alerts_per_camera_hour / 3600
    peak_rate = mean_rate * a.peak_factor
    per_day = a.cameras * a.alerts_per_camera_hour * 24
    lines = [
        f"Assumptions: {a.cameras:,} cameras x {a.alerts_per_camera_hour:g} alerts/camera/hour (daily mean), "
        f"busiest hour {a.peak_factor:g}x the mean, ~{a.evidence_kb:g} KB evidence per alert, "
        f"{a.retention_days} days retention, workers loaded to at most {a.headroom:.0%} of their measured rate.",
        "",
        f"- mean rate: {a.cameras:,} x {a.alerts_per_camera_hour:g} / 3600 = **{mean_rate:,.1f} alerts/s**; "
        f"peak: x {a.peak_factor:g} = **{peak_rate:,.0f} alerts/s**",
        f"- alerts per day: {a.cameras:,} x {a.alerts_per_camera_hour:g} x 24 = **{per_day:,.0f}**",
    ]
    rows = []
    for r in results:
        per_alert_db = r.db_bytes / max(1, r.stored_alerts)
        per_alert_ev = r.evidence_bytes / max(1, r.stored_alerts)
        db_day = per_day * per_alert_db / 1e9
        ev_day = per_day * per_alert_ev / 1e9
        per_worker = r.full.rate / max(1, opts.workers)
        needed = peak_rate / (per_worker * a.headroom)
        rows.append(
            [
                r.backend,
                f"{per_alert_db:,.0f} B -> {db_day:,.2f} GB/day",
                f"{per_alert_ev:,.0f} B -> {ev_day:,.1f} GB/day",
                f"{(db_day + ev_day) * a.retention_days / 1000:,.2f} TB",
                f"{per_worker:,.0f} /s",
                f"{peak_rate:,.0f} / ({per_worker:,.0f} x {a.headroom:g}) = {needed:.2f} -> **{math.ceil(needed)}**",
            ]
        )
    table = markdown_table(
        [
            "backend",
            "rows (measured B/alert)",
            "evidence files",
            f"{a.retention_days}-day total",
            "measured per worker",
            "workers at peak",
        ],
        rows,
    )
    return "\n".join(lines) + "\n\n" + table


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    backends = [b for b in opts.backends if b in ("sqlite", "postgresql")]
    notes = []
    if "postgresql" in backends and not opts.database_url:
        backends.remove("postgresql")
        notes.append("PostgreSQL skipped: no --database-url and no $STREETWATCH_TEST_DATABASE_URL.")
    broker = None
    mqtt_url = opts.mqtt_url
    if not mqtt_url:
        from streetwatch.embedded_broker import start_embedded_broker

        port = free_port()
        broker = start_embedded_broker(port)
        mqtt_url = f"mqtt://127.0.0.1:{port}"
        notes.append(f"broker: embedded (iotcore) on port {port}")
    opts = dataclasses.replace(opts, protocol=opts.protocol or ("5" if opts.mqtt_url else "3.1.1"))
    # Every evidence folder of the run lives here and is deleted only at the end: on ext4 with
    # `discard`, creating files right after deleting thousands costs 0.5-1 ms of CPU each (measured
    # here, against ~60 us otherwise), which the next backend's ingest would be charged.
    run_root = Path(tempfile.mkdtemp(prefix="bench-central-", dir=opts.evidence_root))
    opts = dataclasses.replace(opts, evidence_root=run_root)
    began = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {message}", file=sys.stderr, flush=True)

    rng = random.Random(opts.seed)
    assets = Path(os.environ.get("STREETWATCH_ASSETS_DIR") or REPO.parent / "shared" / "assets")
    pool = data.evidence_pool(assets / "street", count=256, rng=rng)
    merchants = data.make_merchants(opts.merchants)
    run_id = uuid.uuid4().hex[:5]
    full_ds = data.make_dataset(
        merchants, violations=opts.alerts // 10, seed=opts.seed, prefix=f"b{run_id}f", pool=len(pool)
    )
    paced_ds = data.make_dataset(
        merchants,
        violations=max(1, opts.latency_alerts // 10),
        seed=opts.seed + 1,
        prefix=f"b{run_id}p",
        pool=len(pool),
        time_offset=timedelta(days=60),
    )
    progress(
        f"ground truth: {len(merchants):,} merchants, {len(full_ds.violations):,} + {len(paced_ds.violations):,} "
        f"violations, {len(full_ds.alerts):,} + {len(paced_ds.alerts):,} unique alerts, "
        f"{len(full_ds.order):,} + {len(paced_ds.order):,} messages; evidence pool "
        f"{statistics.mean(len(p) for p in pool) / 1000:.1f} KB mean"
    )
    results = []
    try:
        for backend in backends:
            try:
                results.append(
                    run_backend(
                        backend, opts=opts, mqtt_url=mqtt_url, worlds=(full_ds, paced_ds), pool=pool, progress=progress
                    )
                )
            except Exception as exc:  # report it, keep the other backend's figures
                log.exception("%s: the benchmark failed", backend)
                notes.append(f"{backend}: the benchmark failed ({type(exc).__name__}: {str(exc)[:200]}); no figures.")
    finally:
        if broker is not None:
            broker.stop()
    elapsed = time.perf_counter() - began
    create_us = file_create_cpu_us(run_root)
    shutil.rmtree(run_root, ignore_errors=True)
    kind = "quick" if opts.quick else "full" if (opts.alerts, opts.cases) == (50_000, 1_000_000) else "custom"
    print(f"## Central benchmark ({kind} run: {opts.alerts:,} alerts, {opts.cases:,} cases)\n")
    print(
        f"Machine: {cpu_model()}, {usable_cores()} usable cores; broker {mqtt_url} (MQTT {opts.protocol}); "
        f"{opts.workers} central worker process(es); whole run {elapsed / 60:.1f} min."
    )
    print(
        f"Evidence files under {run_root.parent}: creating an empty file there took {create_us:.0f} us of CPU "
        "after the run (one new file per alert; tmpfs ~5 us, this VM's ext4 20-60 us, 500-1,000 us right "
        "after thousands of files were deleted)."
    )
    print(
        f"Ground truth: {len(merchants):,} merchants on {len(merchants) // 100} street segments "
        f"(~{math_extent(merchants)}); full-speed run {len(full_ds.violations):,} violations -> "
        f"{len(full_ds.alerts):,} unique alerts + {len(full_ds.order) - len(full_ds.alerts):,} redeliveries; "
        f"paced run {len(paced_ds.alerts):,} + {len(paced_ds.order) - len(paced_ds.alerts):,}. Evidence "
        f"{statistics.mean(len(p) for p in pool) / 1000:.1f} KB per alert (real street-photo crops). "
        f"Queue timing: cases bulk-inserted with SQL (not via ingest), 5 % `new`; "
        f"median of {opts.requests} requests via TestClient (server time from Server-Timing)."
    )
    for note in notes:
        print(f"\nNote: {note}")
    if results:
        print()
        print(results_table(results, opts))
        print("\nPer run (consumer summaries):\n")
        print(detail_table(results))
        print("\n### A city of 10,000 cameras, from these figures\n")
        print(city_arithmetic(results, opts))
        for r in results:
            for reason in r.quality.dead_reasons:
                print(f"\nDead letters on {r.backend}: {reason}")
            if r.quality.lost_by_run.get("paced"):
                print(
                    f"\nNote: on {r.backend} the paced run lost {r.quality.lost_by_run['paced']:,} alerts: offered "
                    f"{opts.rate:.0f}/s > the worker's rate, the backlog sat in the broker, and a broker that caps "
                    "each client's queue (Mosquitto `max_queued_messages`, default 1000) drops the excess "
                    "(Mosquitto logs 'Outgoing messages are being dropped for client ...')."
                )
            if r.quality.foreign:
                print(
                    f"\nNote: {r.quality.foreign} alerts on {r.backend} came from other publishers on the broker "
                    "(not counted)."
                )
        for r in results:
            if r.profile:
                print(f"\n### Profile: ingest_many on {r.backend} (offline, no broker)\n\n```\n{r.profile}\n```")
    return 0


def file_create_cpu_us(root: Path, count: int = 1000) -> float:
    """CPU microseconds to create (and close) one empty file in a fresh folder under `root`."""
    folder = Path(tempfile.mkdtemp(prefix="bench-central-fs-", dir=root))
    try:
        started = time.process_time()
        for i in range(count):
            os.close(os.open(folder / f"{i}.jpg", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return (time.process_time() - started) * 1e6 / count
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def math_extent(merchants: Sequence[data.MerchantTruth]) -> str:
    xs = [m.x0 for m in merchants]
    ys = [m.y_kerb for m in merchants]
    return f"{(max(xs) - min(xs)) / 1000:.1f} x {(max(ys) - min(ys)) / 1000:.1f} km"


if __name__ == "__main__":
    raise SystemExit(main())
