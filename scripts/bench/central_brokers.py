"""Central on Mosquitto, on a three-node NATS JetStream cluster and on a three-node RabbitMQ cluster,
in one run (`--brokers`).

For each broker and for 1 and 2 workers: a fresh database with the merchants, then the same two
runs as the main benchmark (full speed: the ingest rate; paced at `--rate`: publish -> row visible,
p50 and p99) with the real workers (`AlertConsumer` on a shared subscription for Mosquitto,
`JetStreamConsumer` on the shared durable consumer for NATS, bench/amqp_consumer.py on a quorum
queue for RabbitMQ). The NATS cluster is tests/nats_cluster.py: three `nats-server` processes from
configs/nats/node.conf on this machine, logins from scripts/nats_accounts.py; the RabbitMQ cluster
is tests/rabbit_cluster.py: three `rabbitmq-server` nodes with the MQTT plugin. The publisher speaks
MQTT 3.1.1 QoS 1 to every broker alike, over 8 connections (each topic on one of them), and logs in
as one user allowed every alert topic (the benchmark's ground truth has ~300 edge ids; what a box
may publish is the ACL test's subject).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from bench_common import fmt, percentile
from sqlalchemy.orm import Session, sessionmaker

from bench import central_truth as truth
from bench.broker import broker_for_run
from bench.databases import migrated_database
from bench.ingest_run import Pace, RunResult, run_ingest
from bench.workers import WorkerSpec
from streetwatch.central.db import make_engine, make_session_factory

REPO = Path(__file__).resolve().parents[2]
PUBLISHER = "bench-publisher"
# Publisher connections, for both brokers: a city's alerts come over many box connections, and the
# NATS gateway stores one connection's QoS 1 publishes one after the other (one R3 commit each).
CONNECTIONS = 8


@dataclass(frozen=True)
class Target:
    """One broker of the comparison: where workers and the publisher connect, and as whom."""

    name: str
    mqtt_url: str
    protocol: str
    jetstream: tuple[str, ...] = ()
    amqp: tuple[str, ...] = ()  # RabbitMQ nodes: the workers consume the quorum queue
    worker_login: tuple[str, str] | None = None
    publisher_login: tuple[str, str] | None = None
    pids: tuple[int, ...] = ()  # the broker's processes, for their CPU time


@dataclass(frozen=True)
class BrokerRow:
    broker: str
    workers: int
    full: RunResult
    paced: RunResult
    lost: int  # unique alerts published and never visible, both runs
    broker_cpu_s: float  # CPU seconds (user + system) of the broker's processes in the full-speed run


@contextmanager
def nats_cluster_target() -> Iterator[Target]:
    """The three-node cluster, with the shipped permissions for central and one publisher login."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))  # the process harness is shared with tests/faults
    from nats_cluster import NatsCluster  # type: ignore[import-not-found]

    folder = Path(tempfile.mkdtemp(prefix="bench-nats-"))
    permissions = yaml.safe_load((REPO / "configs" / "nats" / "permissions.yaml").read_text())
    permissions["box"]["publish"] = ["streetwatch.v1.alerts.>"]  # the one publisher stands for every box
    (folder / "permissions.yaml").write_text(yaml.safe_dump(permissions))
    cluster = NatsCluster(folder / "cluster", ["central", PUBLISHER], permissions=folder / "permissions.yaml")
    cluster.start()
    try:
        creds = cluster.credentials
        yield Target("NATS 2.9 JetStream, 3 nodes (R3)", cluster.nodes[0].mqtt_url, "3.1.1",
                     jetstream=tuple(cluster.nats_urls), worker_login=("central", creds["central"]),
                     publisher_login=(PUBLISHER, creds[PUBLISHER]),
                     pids=tuple(node.pid for node in cluster.nodes))
    finally:
        cluster.stop()


@contextmanager
def rabbit_cluster_target() -> Iterator[Target]:
    """Three RabbitMQ nodes (tests/rabbit_cluster.py), the MQTT plugin on each; the workers on the
    quorum queue over AMQP (bench/amqp_consumer.py); the publisher on node 1's MQTT listener."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from rabbit_cluster import RabbitCluster  # type: ignore[import-not-found]

    folder = Path(tempfile.mkdtemp(prefix="bench-rabbit-"))
    cluster = RabbitCluster(folder)
    try:
        cluster.start()
        login = (cluster.user, cluster.password)
        amqp = tuple(f"amqp://127.0.0.1:{node.ports.amqp}/%2F" for node in cluster.nodes)
        yield Target("RabbitMQ 3.10 quorum queue, 3 nodes", cluster.nodes[0].mqtt_url, "3.1.1", amqp=amqp,
                     worker_login=login, publisher_login=login, pids=tuple(node.pid for node in cluster.nodes))
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)  # the quorum queue's logs: ~1 GB a run


@contextmanager
def mosquitto_target(protocol: str | None) -> Iterator[Target]:
    with broker_for_run(None, protocol=protocol) as broker:
        yield Target(broker.description.split(" on port")[0], broker.url, protocol or broker.protocol,
                     pids=broker.pids)


def run_target(target: Target, *, backend: str, database_url: str | None, world_full: truth.Dataset,
               world_paced: truth.Dataset, pool: list[bytes], workers: int, pace_rate: float,
               import_merchants: Callable[[sessionmaker[Session], list[truth.MerchantTruth]], float],
               evidence_root: Path | None, connections: int = CONNECTIONS) -> BrokerRow:
    """Full speed and paced on a fresh database, `workers` workers on `target`."""
    with migrated_database(backend, database_url) as db_url:
        engine = make_engine(db_url, checkpoint_interval_s=3600)
        factory = make_session_factory(engine)
        import_merchants(factory, list(world_full.merchants))
        evidence = Path(tempfile.mkdtemp(prefix="bench-brokers-evidence-", dir=evidence_root))
        login = target.worker_login
        spec = WorkerSpec(REPO, db_url, target.mqtt_url, target.protocol, evidence, jetstream=target.jetstream,
                          amqp=target.amqp,
                          username=login[0] if login else None, password=login[1] if login else None)
        runs, lost, cpu = [], 0, []
        for dataset, pace in ((world_full, Pace(rate=None, window=600, poll_s=0.05, connections=connections)),
                              (world_paced, Pace(rate=pace_rate, poll_s=0.005, connections=connections))):
            messages, alert_ids = truth.outgoing(dataset, pool)
            cpu.append(cpu_seconds(target.pids))
            runs.append(run_ingest(messages, alert_ids, spec=spec, workers=workers, pace=pace, reader=factory,
                                   login=target.publisher_login))
            lost += len(alert_ids) - len(runs[-1].visibility.latencies_s)
            cpu[-1] = cpu_seconds(target.pids) - cpu[-1]
        engine.dispose()
    return BrokerRow(target.name, workers, runs[0], runs[1], lost, cpu[0])


def cpu_seconds(pids: tuple[int, ...]) -> float:
    """User + system CPU seconds the processes used so far (/proc, Linux)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def brokers_table(rows: list[BrokerRow], *, rate: float) -> str:
    lines = [f"| broker | workers | ingest rate (full speed) | publish→visible p50 at {rate:.0f}/s | "
             f"p99 at {rate:.0f}/s | max | broker CPU / message | workers' CPU / message | lost | "
             "duplicates recognised |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        paced = row.paced.latencies_ms
        duplicates = row.full.summary.get("duplicate", 0) + row.paced.summary.get("duplicate", 0)
        lines.append(f"| {row.broker} | {row.workers} | {row.full.rate:,.0f} /s | {fmt(percentile(paced, 50), 0)} ms "
                     f"| {fmt(percentile(paced, 99), 0)} ms | {fmt(max(paced, default=float('nan')), 0)} ms | "
                     f"{1000 * row.broker_cpu_s / row.full.messages:.2f} ms | {row.full.cpu_ms_per_message:.2f} ms | "
                     f"{row.lost:,} | {duplicates:,} |")
    return "\n".join(lines)


__all__ = ["BrokerRow", "Target", "brokers_table", "mosquitto_target", "nats_cluster_target", "rabbit_cluster_target",
           "run_target"]
