"""Central at city scale: ingest rate, publish->visible latency, de-duplication and attribution quality
against a generated ground truth, and the review queue's server time with a million cases.

    python scripts/bench_central.py [--quick] [--workers N] [--baseline DIR [--rounds R]]
                                    [--mqtt-url URL] [--database-url URL]
    python scripts/bench_central.py --quick --brokers [--broker-kinds mosquitto,nats,rabbitmq] [--connections N]
    python scripts/bench_central.py --quick --node-loss N     # RabbitMQ: the quorum queue's leader killed

What runs, per database backend (SQLite in a temp file; PostgreSQL in a fresh schema, dropped after),
each on a database the project's migrations built:
1. 10,000 merchants (bench/central_truth.py) are imported with the real merchant code.
2. Full speed: every alert of the ground truth (50,000 unique + 10 % redelivered, ~20 KB real JPEG
   evidence each) is published by a separate process through a real broker (QoS 1) to N real
   `AlertConsumer` processes on one shared subscription. The publisher keeps at most `--window`
   alerts ahead of what is visible in the database, so the workers never wait for work and the
   broker never drops. Rate = messages / (last row visible - first publish).
3. Fixed rate: a second ground truth (60 days later, so it never touches the first one's cases) is
   published at `--rate` alerts/s into the same, now loaded database; latency = when the alert's row
   became visible to a reader polling the database by alert id - when it was published.
4. Quality over all ingested alerts: pair precision/recall of "same case" vs "same violation",
   attribution accuracy (case merchant vs the majority violation's merchant), lost alerts (published,
   not stored), double counts (sum of case alert_count - stored alerts), dead letters.
5. Queue: the cases table is topped up to `--cases` rows through the ORM table (Core bulk inserts),
   5 % of them `new`; then the median server time (the app's Server-Timing header) of GET / for a
   logged-in reviewer and of GET /api/cases (token), via FastAPI's TestClient.

`--baseline DIR` (a checkout of another revision, e.g. `git worktree add /tmp/base main`) runs steps
2-4 with that checkout's workers too, alternating with this checkout's `--rounds` times on the same
broker and data, and prints the ratios. The broker is `--mqtt-url`, else a Mosquitto started for
the run on a free port (else the embedded broker). No assertion on times: the tables print figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import central_truth as truth  # noqa: E402
from bench.broker import Broker, broker_for_run  # noqa: E402
from bench.central_profile import profile_ingest  # noqa: E402
from bench.central_quality import measure_quality  # noqa: E402
from bench.central_queue import bulk_insert_cases, time_queue  # noqa: E402
from bench.central_report import (  # noqa: E402
    CURRENT,
    BackendResult,
    VariantRun,
    ab_table,
    city_arithmetic,
    results_table,
    runs_table,
)
from bench.databases import BACKENDS, migrated_database, storage_bytes  # noqa: E402
from bench.ingest_run import Pace, run_ingest  # noqa: E402
from bench.workers import WorkerSpec  # noqa: E402
from bench_common import cpu_model, usable_cores  # noqa: E402

from streetwatch.central.config import CentralSettings  # noqa: E402
from streetwatch.central.db import make_engine, make_session_factory, session_scope  # noqa: E402
from streetwatch.central.merchants import MerchantFields, MerchantRecord, store_merchants  # noqa: E402
from streetwatch.central.models import Case  # noqa: E402

log = logging.getLogger("bench_central")
BROKER_KINDS = ("mosquitto", "nats", "rabbitmq")
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Options:
    alerts: int
    merchants: int
    cases: int
    workers: int
    rate: float
    latency_alerts: int
    window: int
    poll_ms: float
    requests: int
    mqtt_url: str | None
    database_url: str | None
    backends: tuple[str, ...]
    profile: int
    quick: bool
    seed: int
    baseline: Path | None
    rounds: int
    evidence_root: Path | None = None
    protocol: str | None = None  # MQTT version of the workers; None = the broker's (5; embedded 3.1.1)
    brokers: bool = False  # only the broker comparison (bench/central_brokers.py)
    broker_kinds: tuple[str, ...] = BROKER_KINDS  # which brokers --brokers compares
    connections: int = 8  # --brokers: publisher connections
    node_loss: int = 0  # runs of the RabbitMQ node-loss measurement (bench/rabbit_node_loss.py)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="5,000 alerts and 100,000 cases (a couple of minutes)")
    p.add_argument("--alerts", type=int, help="unique alerts at full speed (default 50,000; quick 5,000)")
    p.add_argument("--merchants", type=int, default=10_000)
    p.add_argument("--cases", type=int, help="cases stored for the queue timing (default 1,000,000; quick 100,000)")
    p.add_argument("--workers", type=int, default=1, help="central consumer processes on the shared subscription")
    p.add_argument("--rate", type=float, default=500.0, help="offered alerts/s for the latency run")
    p.add_argument("--latency-alerts", type=int, help="unique alerts in the latency run (default 10,000; quick 3,000)")
    p.add_argument("--window", type=int, default=600, help="max alerts published ahead of visible at full speed")
    p.add_argument("--poll-ms", type=float, default=5.0, help="how often the paced run's reader polls for rows")
    p.add_argument("--requests", type=int, default=30, help="timed requests per page")
    p.add_argument("--mqtt-url", help="a broker to use (default: a Mosquitto started for the run on a free port)")
    p.add_argument(
        "--database-url",
        default=os.environ.get("STREETWATCH_TEST_DATABASE_URL"),
        help="PostgreSQL base URL (default $STREETWATCH_TEST_DATABASE_URL); a fresh schema is used",
    )
    p.add_argument("--backends", default="sqlite,postgresql", help="comma list of sqlite, postgresql")
    p.add_argument("--baseline", type=Path, help="a checkout of another revision to time side by side (steps 2-4)")
    p.add_argument("--rounds", type=int, default=1, help="with --baseline: runs of each checkout, alternating")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N alerts through ingest_many offline (cProfile, no broker) per backend")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--protocol", choices=("3.1.1", "5"),
                   help="MQTT version of the central workers (default 5; 3.1.1 on the embedded broker). On 3.1.1\n"
                   "the broker alone decides how many unacked alerts a worker holds (Mosquitto: 20), and so its batch")
    p.add_argument("--evidence-dir", type=Path, default=None,
                   help="folder in which each run's evidence folder is made (default: the system's temp folder);\n"
                   "every alert creates one file there, so its file system's cost per new file is part of ingest")
    p.add_argument("--brokers", action="store_true",
                   help="run only the broker comparison: Mosquitto beside a three-node NATS JetStream cluster\n"
                   "and a three-node RabbitMQ cluster (processes on this machine), 1 and 2 workers, on the\n"
                   "first of --backends")
    p.add_argument("--broker-kinds", default=",".join(BROKER_KINDS),
                   help="with --brokers: comma list of the brokers to compare (default all: %(default)s)")
    p.add_argument("--connections", type=int, default=8,
                   help="with --brokers: publisher connections, each topic on one (default 8; a city has one per box)")
    p.add_argument("--node-loss", type=int, default=0, metavar="N",
                   help="only the RabbitMQ node-loss measurement, N times: SIGKILL the node leading the quorum\n"
                   "queue while 2 workers ingest the paced ground truth at --rate, restart it 10 s later")
    return p


def parse_args(argv: Sequence[str] | None) -> Options:
    p = _parser()
    a = p.parse_args(argv)
    if a.baseline is not None and not (a.baseline / "streetwatch" / "central").is_dir():
        p.error(f"--baseline {a.baseline}: expected a checkout with streetwatch/central in it")
    return Options(
        alerts=a.alerts or (5_000 if a.quick else 50_000),
        merchants=a.merchants,
        cases=a.cases or (100_000 if a.quick else 1_000_000),
        workers=a.workers,
        rate=a.rate,
        latency_alerts=a.latency_alerts or (3_000 if a.quick else 10_000),
        window=a.window,
        poll_ms=a.poll_ms,
        requests=a.requests,
        mqtt_url=a.mqtt_url,
        database_url=a.database_url,
        backends=tuple(b.strip() for b in a.backends.split(",") if b.strip() in BACKENDS),
        profile=a.profile,
        quick=a.quick,
        seed=a.seed,
        baseline=a.baseline.resolve() if a.baseline else None,
        rounds=max(1, a.rounds),
        evidence_root=a.evidence_dir,
        protocol=a.protocol,
        brokers=a.brokers,
        node_loss=a.node_loss,
        connections=max(1, a.connections),
        broker_kinds=tuple(k.strip() for k in a.broker_kinds.split(",") if k.strip() in BROKER_KINDS),
    )


@dataclass(frozen=True)
class World:
    """What every run of the benchmark ingests: the two ground truths and the evidence photos."""

    full: truth.Dataset
    paced: truth.Dataset
    pool: list[bytes]


@dataclass(frozen=True)
class Bench:
    """One benchmark run's options, broker, data and progress line."""

    opts: Options
    broker: Broker
    world: World
    progress: Callable[[str], None]


def import_merchants(factory: sessionmaker[Session], merchants: Sequence[truth.MerchantTruth]) -> float:
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


def run_variant(bench: Bench, code: tuple[str, Path], *, backend: str, result: BackendResult) -> None:
    """One checkout's full-speed and paced runs on a fresh database; the queue timing too on this
    checkout's first run. Adds a VariantRun to `result`."""
    label, root = code
    opts, world = bench.opts, bench.world
    with migrated_database(backend, opts.database_url) as db_url:
        evidence_dir = Path(tempfile.mkdtemp(prefix="bench-central-evidence-", dir=opts.evidence_root))
        engine = make_engine(db_url, checkpoint_interval_s=3600)  # the workers checkpoint their WAL
        factory = make_session_factory(engine)
        merchants_s = import_merchants(factory, world.full.merchants)
        spec = WorkerSpec(root, db_url, bench.broker.url, opts.protocol or bench.broker.protocol, evidence_dir)
        bench.progress(f"{backend} / {label}: merchants imported in {merchants_s:.1f} s; full speed ...")
        runs = {}
        for name, ds, pace in (
            ("full", world.full, Pace(rate=None, window=opts.window, poll_s=0.05)),
            ("paced", world.paced, Pace(rate=opts.rate, poll_s=opts.poll_ms / 1000)),
        ):
            messages, alert_ids = truth.outgoing(ds, world.pool)
            runs[name] = run_ingest(messages, alert_ids, spec=spec, workers=opts.workers, pace=pace, reader=factory)
            bench.progress(f"{backend} / {label}: {name}: {runs[name].messages:,} messages in "
                           f"{runs[name].seconds:.1f} s ({runs[name].rate:,.0f}/s)")
        # De-duplication and attribution are judged on the full-speed run (flow-controlled, so the
        # broker never drops); losses are counted for both runs.
        quality = measure_quality(factory, [("full", world.full)])
        paced_quality = measure_quality(factory, [("paced", world.paced)])
        quality.lost_by_run["paced"] = paced_quality.lost
        quality.foreign -= paced_quality.stored
        stored = quality.stored + paced_quality.stored + quality.foreign  # what the bytes hold
        evidence = sum(p.stat().st_size for p in evidence_dir.rglob("*.jpg"))
        result.runs.append(VariantRun(label, runs["full"], runs["paced"], quality, storage_bytes(factory, db_url),
                                      evidence, stored))
        if label == CURRENT and not result.pages:
            _time_the_queue(bench, factory, evidence_dir=evidence_dir, result=result)
        engine.dispose()


def _time_the_queue(
    bench: Bench, factory: sessionmaker[Session], *, evidence_dir: Path, result: BackendResult
) -> None:
    opts, merchants = bench.opts, len(bench.world.full.merchants)
    bench.progress(f"{result.backend}: bulk-inserting cases up to {opts.cases:,} ...")
    result.bulk_rows, result.bulk_s = bulk_insert_cases(factory, total=opts.cases, merchants=merchants)
    with factory() as session:
        result.total_cases = int(session.scalar(select(func.count(Case.id))) or 0)
    bench.progress(f"{result.backend}: {result.bulk_rows:,} cases inserted in {result.bulk_s:.1f} s; timing the queue")
    result.pages = time_queue(factory, CentralSettings(evidence_dir=evidence_dir), requests=opts.requests)


def run_backend(bench: Bench, backend: str) -> BackendResult:
    opts, world = bench.opts, bench.world
    result = BackendResult(backend, [])
    codes: list[tuple[str, Path]] = [(CURRENT, REPO)]
    if opts.baseline is not None:
        codes.insert(0, (f"baseline {opts.baseline.name}", opts.baseline))
    for round_no in range(opts.rounds):
        for code in codes if round_no % 2 == 0 else codes[::-1]:  # alternate, so drift hits both
            run_variant(bench, code, backend=backend, result=result)
    if opts.profile:
        bench.progress(f"{backend}: profiling {opts.profile} alerts through ingest_many ...")
        with migrated_database(backend, opts.database_url) as db_url:
            evidence_dir = Path(tempfile.mkdtemp(prefix="bench-central-profile-", dir=opts.evidence_root))
            import_merchants(make_session_factory(make_engine(db_url)), world.full.merchants)
            result.profile = profile_ingest(db_url, world.full, world.pool, count=opts.profile,
                                            evidence_dir=evidence_dir)
    return result


def make_world(opts: Options) -> World:
    rng = random.Random(opts.seed)
    assets = Path(os.environ.get("STREETWATCH_ASSETS_DIR") or REPO.parent / "shared" / "assets")
    pool = truth.evidence_pool(assets / "street", count=256, rng=rng)
    merchants = truth.make_merchants(opts.merchants)
    run_id = uuid.uuid4().hex[:5]
    full = truth.make_dataset(merchants, violations=opts.alerts // 10, seed=opts.seed, prefix=f"b{run_id}f",
                              pool=len(pool))
    paced = truth.make_dataset(merchants, violations=max(1, opts.latency_alerts // 10), seed=opts.seed + 1,
                               prefix=f"b{run_id}p", pool=len(pool), time_offset=timedelta(days=60))
    return World(full, paced, pool)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    notes = []
    backends = list(opts.backends)
    if "postgresql" in backends and not opts.database_url:
        backends.remove("postgresql")
        notes.append("PostgreSQL skipped: no --database-url and no $STREETWATCH_TEST_DATABASE_URL.")
    # Every evidence folder of the run lives here and is deleted only at the end: on ext4 with
    # `discard`, creating files right after deleting thousands costs 0.5-1 ms of CPU each (measured
    # here, against ~60 us otherwise), which the next run's ingest would be charged.
    run_root = Path(tempfile.mkdtemp(prefix="bench-central-", dir=opts.evidence_root))
    opts = dataclasses.replace(opts, evidence_root=run_root)
    began = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {message}", file=sys.stderr, flush=True)

    world = make_world(opts)
    if opts.node_loss:
        return node_loss(opts, world, backends[0] if backends else "sqlite", progress)
    if opts.brokers:
        return compare_brokers(opts, world, backends[0] if backends else "sqlite", progress, began)
    progress(
        f"ground truth: {len(world.full.merchants):,} merchants, {len(world.full.violations):,} + "
        f"{len(world.paced.violations):,} violations, {len(world.full.alerts):,} + {len(world.paced.alerts):,} "
        f"unique alerts, {len(world.full.order):,} + {len(world.paced.order):,} messages"
    )
    results = []
    with broker_for_run(opts.mqtt_url, protocol=opts.protocol) as broker:
        bench = Bench(opts, broker, world, progress)
        for backend in backends:
            try:
                results.append(run_backend(bench, backend))
            except Exception as exc:  # report it, keep the other backend's figures
                log.exception("%s: the benchmark failed", backend)
                notes.append(f"{backend}: the benchmark failed ({type(exc).__name__}: {str(exc)[:200]}); no figures.")
    create_us = file_create_cpu_us(run_root)
    shutil.rmtree(run_root, ignore_errors=True)
    print_report(results, opts=opts, world=world, broker=broker, notes=notes,
                 facts={"minutes": (time.perf_counter() - began) / 60, "create_us": create_us})
    return 0


def compare_brokers(opts: Options, world: World, backend: str, progress: Callable[[str], None],
                    began: float) -> int:
    """Mosquitto, the NATS cluster and the RabbitMQ cluster, 1 and 2 workers each, on one backend; one table."""
    from bench.central_brokers import (
        brokers_table,
        mosquitto_target,
        nats_cluster_target,
        rabbit_cluster_target,
        run_target,
    )

    targets = {"mosquitto": lambda: mosquitto_target(opts.protocol), "nats": nats_cluster_target,
               "rabbitmq": rabbit_cluster_target}
    rows = []
    for make_target in (targets[kind] for kind in opts.broker_kinds):
        with make_target() as target:
            for workers in (1, 2):
                progress(f"{target.name}, {workers} worker(s), {backend} ...")
                rows.append(run_target(target, backend=backend, database_url=opts.database_url,
                                       world_full=world.full, world_paced=world.paced, pool=world.pool,
                                       workers=workers, pace_rate=opts.rate, import_merchants=import_merchants,
                                       evidence_root=opts.evidence_root, connections=opts.connections))
                progress(f"  {rows[-1].full.rate:,.0f} /s at full speed; paced p99 "
                         f"{statistics.quantiles(rows[-1].paced.latencies_ms, n=100)[98]:.0f} ms")
    if opts.evidence_root is not None:
        shutil.rmtree(opts.evidence_root, ignore_errors=True)
    print(f"## Central on Mosquitto, a NATS JetStream cluster and a RabbitMQ cluster ({backend}; "
          f"{len(world.full.order):,} + {len(world.paced.order):,} messages per run)\n")
    print(f"Machine: {cpu_model()}, {usable_cores()} usable cores; all brokers, workers and the publisher on it; "
          f"whole run {(time.perf_counter() - began) / 60:.1f} min. Latency: publish -> the row visible to a reader "
          f"polling by alert id every 5 ms, at {opts.rate:.0f} alerts/s offered; {opts.connections} publisher "
          f"connections.\n")
    print(brokers_table(rows, rate=opts.rate))
    return 0


def node_loss(opts: Options, world: World, backend: str, progress: Callable[[str], None]) -> int:
    """The RabbitMQ cluster losing the node that leads the quorum queue, `opts.node_loss` times."""
    from bench.rabbit_node_loss import measure_node_loss, node_loss_table

    rows = []
    for run in range(opts.node_loss):
        progress(f"RabbitMQ node loss, run {run + 1} of {opts.node_loss}, {backend} ...")
        rows.append(measure_node_loss(world.paced, world.pool, backend=backend, database_url=opts.database_url,
                                      import_merchants=import_merchants, rate=opts.rate))
    if opts.evidence_root is not None:
        shutil.rmtree(opts.evidence_root, ignore_errors=True)
    print(f"## RabbitMQ 3.10, 3 nodes: the quorum queue's leader SIGKILLed for 10 s ({backend}; "
          f"{len(world.paced.order):,} messages at {opts.rate:.0f}/s, 2 workers)\n")
    print(node_loss_table(rows))
    return 0


def print_report(
    results: Sequence[BackendResult], *, opts: Options, world: World, broker: Broker, notes: list[str],
    facts: dict[str, float],
) -> None:
    kind = "quick" if opts.quick else "full" if (opts.alerts, opts.cases) == (50_000, 1_000_000) else "custom"
    full, paced, merchants = world.full, world.paced, world.full.merchants
    print(f"## Central benchmark ({kind} run: {opts.alerts:,} alerts, {opts.cases:,} cases)\n")
    print(f"Machine: {cpu_model()}, {usable_cores()} usable cores; broker: {broker.description} (workers on MQTT "
          f"{opts.protocol or broker.protocol}); {opts.workers} central worker process(es); whole run "
          f"{facts['minutes']:.1f} min.")
    print(f"Evidence files under {opts.evidence_root.parent if opts.evidence_root else '?'}: creating an empty file "
          f"there took {facts['create_us']:.0f} us of CPU after the run (one new file per alert).")
    print(
        f"Ground truth: {len(merchants):,} merchants on {len(merchants) // 100} street segments "
        f"(~{math_extent(merchants)}); full-speed run {len(full.violations):,} violations -> "
        f"{len(full.alerts):,} unique alerts + {len(full.order) - len(full.alerts):,} redeliveries; "
        f"paced run {len(paced.alerts):,} + {len(paced.order) - len(paced.alerts):,}. Evidence "
        f"{statistics.mean(len(p) for p in world.pool) / 1000:.1f} KB per alert (real street-photo crops). "
        f"Latency: publish -> the row visible to a reader polling by alert id every {opts.poll_ms:g} ms "
        f"(an upper bound by at most one poll). Queue timing: cases bulk-inserted through the ORM table "
        f"(not via ingest), 5 % `new`; median of {opts.requests} requests via TestClient (Server-Timing)."
    )
    for note in notes:
        print(f"\nNote: {note}")
    if not results:
        return
    print("\n" + results_table(results, workers=opts.workers, rate=opts.rate))
    if opts.baseline is not None:
        print(f"\n### This checkout against {opts.baseline} ({opts.rounds} round(s) each, alternating)\n")
        print(ab_table(results, baseline=f"baseline {opts.baseline.name}"))
    print("\nEvery run (workers' outcome counts):\n\n" + runs_table(results))
    print("\n### A city of 10,000 cameras, from these figures\n\n" + city_arithmetic(results, workers=opts.workers))
    for r in results:
        v = r.headline
        for reason in v.quality.dead_reasons:
            print(f"\nDead letters on {r.backend}: {reason}")
        if v.quality.lost_by_run.get("paced"):
            print(f"\nNote: on {r.backend} the paced run lost {v.quality.lost_by_run['paced']:,} alerts: offered "
                  f"{opts.rate:.0f}/s > the worker's rate, the backlog sat in the broker, and a broker that caps "
                  "each client's queue (Mosquitto `max_queued_messages`, default 1000) drops the excess.")
        if r.profile:
            print(f"\n### Profile: ingest_many on {r.backend} (offline, no broker)\n\n```\n{r.profile}\n```")


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


def math_extent(merchants: Sequence[truth.MerchantTruth]) -> str:
    xs = [m.x0 for m in merchants]
    ys = [m.y_kerb for m in merchants]
    return f"{(max(xs) - min(xs)) / 1000:.1f} x {(max(ys) - min(ys)) / 1000:.1f} km"


if __name__ == "__main__":
    raise SystemExit(main())
