"""What losing a RabbitMQ node costs central, measured (`bench_central.py --node-loss`).

Three nodes (tests/rabbit_cluster.py), two workers on the quorum queue (bench/amqp_consumer.py), a
publisher at a fixed rate over MQTT QoS 1 on a node that does not lead the queue (a box on the node
that dies would wait in its outbox; the bench publisher has none). Some seconds in, the node leading
the queue is SIGKILLed; it is started again `down_s` later (same data folder, as a crashed node
comes back). Printed: alerts lost (published, never stored), redelivered (duplicates recognised
beyond the ground truth's own redeliveries), how long after the kill the first alert published
after it was stored, the worst publish->stored latency, and when the latency was back under 1 s.
NATS's figures for the same faults are tests/faults/test_cluster.py's (docs/cluster.md).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bench import central_truth as truth
from bench.amqp_consumer import QUEUE
from bench.databases import migrated_database
from bench.publisher import Progress, publish_all
from bench.visibility import _poll
from bench.workers import WorkerGroup, WorkerSpec
from streetwatch.central.db import make_engine, make_session_factory

REPO = Path(__file__).resolve().parents[2]
CALM_S = 1.0  # latency under which ingest counts as caught up


@dataclass(frozen=True)
class NodeLoss:
    replicas: int  # nodes holding the quorum queue before the kill
    killed: str
    leader_after: str | None
    published: int
    lost: int
    redelivered: int
    first_stored_after_kill_s: float  # kill -> the first alert published after the kill is stored
    worst_latency_s: float
    calm_after_kill_s: float  # kill -> every later alert stored within CALM_S
    node_back_s: float  # restart -> its ports answer


def measure_node_loss(dataset: truth.Dataset, pool: list[bytes], *, backend: str, database_url: str | None,
                      import_merchants: Callable[[sessionmaker[Session], list[truth.MerchantTruth]], float],
                      rate: float, kill_at_s: float = 8.0, down_s: float = 10.0) -> NodeLoss:
    sys.path.insert(0, str(REPO / "tests"))
    from rabbit_cluster import RabbitCluster  # type: ignore[import-not-found]

    folder = Path(tempfile.mkdtemp(prefix="bench-rabbit-loss-"))
    evidence = Path(tempfile.mkdtemp(prefix="bench-rabbit-loss-evidence-"))
    cluster = RabbitCluster(folder)
    try:
        cluster.start()
        with migrated_database(backend, database_url) as db_url:
            factory = make_session_factory(make_engine(db_url, checkpoint_interval_s=3600))
            import_merchants(factory, list(dataset.merchants))
            amqp = tuple(f"amqp://127.0.0.1:{node.ports.amqp}/%2F" for node in cluster.nodes)
            spec = WorkerSpec(REPO, db_url, cluster.nodes[0].mqtt_url, "3.1.1",
                              evidence, amqp=amqp,
                              username=cluster.user, password=cluster.password)
            group = WorkerGroup(spec, count=2, group=f"loss{uuid.uuid4().hex[:6]}")
            try:
                group.wait_ready()
                replicas = len(cluster.queue_members(QUEUE))
                victim = cluster.node(cluster.queue_leader(QUEUE))
                publish_to = next(node for node in cluster.nodes if node is not victim)
                run = _fault_run(dataset, pool, victim=victim, mqtt_url=publish_to.mqtt_url, factory=factory,
                                 login=(cluster.user, cluster.password), rate=rate, kill_at_s=kill_at_s,
                                 down_s=down_s)
                leader_after = cluster.queue_leader(QUEUE)
            finally:
                figures = group.stop()
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)  # the quorum queue's logs
        shutil.rmtree(evidence, ignore_errors=True)
    expected = len(dataset.order) - len(dataset.alerts)  # the ground truth's own redeliveries
    return dataclasses.replace(run, replicas=replicas, leader_after=leader_after,
                               redelivered=int(figures.summary.get("duplicate", 0)) - expected)


def _fault_run(dataset: truth.Dataset, pool: list[bytes], *, victim: Any, mqtt_url: str,
               factory: sessionmaker[Session], login: tuple[str, str], rate: float, kill_at_s: float,
               down_s: float) -> NodeLoss:
    """Publish at `rate` while `victim` (a RabbitNode) is killed and started again; the figures."""
    messages, alert_ids = truth.outgoing(dataset, pool)
    ctx = mp.get_context("fork")
    progress = Progress.for_uniques(ctx, len(alert_ids))
    publisher = ctx.Process(target=publish_all, args=(messages,), daemon=True, kwargs={
        "mqtt_url": mqtt_url, "progress": progress, "rate": rate, "window": 600, "login": login,
        "connections": 8})
    events: dict[str, float] = {}

    def fault() -> None:
        time.sleep(kill_at_s)
        events["kill"] = time.time()
        victim.kill()
        time.sleep(down_s)
        events["restart"] = time.time()
        victim.start()
        events["back"] = time.time()

    publisher.start()
    threading.Thread(target=fault, daemon=True).start()
    visible = _watch(factory, alert_ids, progress)
    publisher.join(60)
    while "back" not in events:
        time.sleep(0.5)
    sent = [progress.sent_at[i] for i in range(len(alert_ids))]
    return _figures(victim.node_name, sent, visible, events)


def _watch(factory: sessionmaker[Session], alert_ids: list[str], progress: Progress,
           stall_s: float = 45.0) -> dict[int, float]:
    """Each alert's index -> when its row was first seen; ends when all are seen, or when none
    appeared for `stall_s` while some were outstanding (those are lost)."""
    seen: dict[int, float] = {}
    index = {alert_id: i for i, alert_id in enumerate(alert_ids)}
    last = time.time()
    with factory() as session:
        while len(seen) < len(alert_ids) and time.time() - last < stall_s:
            wanted = [alert_ids[i] for i in range(progress.published.value) if i not in seen][:500]
            now = time.time()
            if not wanted:
                last = now
            for alert_id in _poll(session, wanted) if wanted else []:
                seen[index[alert_id]] = now
                last = now
            progress.visible.value = len(seen)
            time.sleep(0.01)
    return seen


def _figures(killed: str, sent: list[float], visible: dict[int, float], events: dict[str, float]) -> NodeLoss:
    kill = events["kill"]
    published = sum(1 for t in sent if t > 0)
    latencies = {i: at - sent[i] for i, at in visible.items()}
    first_after = min((at for i, at in visible.items() if sent[i] >= kill), default=float("nan"))
    last_late = max((visible[i] for i, lat in latencies.items() if lat > CALM_S), default=kill)
    return NodeLoss(replicas=0, killed=killed, leader_after=None, published=published, lost=published - len(visible),
                    redelivered=0, first_stored_after_kill_s=first_after - kill,
                    worst_latency_s=max(latencies.values(), default=float("nan")),
                    calm_after_kill_s=max(0.0, last_late - kill), node_back_s=events["back"] - events["restart"])


def node_loss_table(rows: list[NodeLoss]) -> str:
    lines = ["| replicas | node killed (led the quorum queue) | leader after | published | lost | redelivered | "
             "first alert published after the kill stored | worst publish→stored | every alert within 1 s again "
             "| node restarted: ports answer |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r.replicas} | {r.killed} | {r.leader_after} | {r.published:,} | {r.lost} | {r.redelivered} | "
                     f"{r.first_stored_after_kill_s:.1f} s | {r.worst_latency_s:.1f} s | "
                     f"{r.calm_after_kill_s:.1f} s after the kill | {r.node_back_s:.1f} s |")
    return "\n".join(lines)


__all__ = ["NodeLoss", "measure_node_loss", "node_loss_table"]
