"""Central on a three-node NATS JetStream cluster losing a node, then a worker (issue 25).

Real processes: three `nats-server` nodes from configs/nats (routes, JetStream, the MQTT gateway,
the logins of scripts/nats_accounts.py), two `edge run` boxes replaying the demo street footage
over MQTT (box-a on n1, box-b on n2) and two `central serve --no-web` workers on the shared durable
pull consumer (`broker.kind: jetstream`, 5 s ack wait). One node is SIGKILLed mid-flow and started
again later; then one central worker is SIGKILLed. After both, every alert id the boxes published is
in the database exactly once, every episode in one case, and the delivery audit has every box's
numbering accounted for with no gap and no loss. Run twice: the node killed is a follower of the
MQTT stream, or its leader. The recovery times are printed as a `FAULT {json}` line.

Cheaper, in this process on the same three nodes (seconds each): an alert with its evidence set (the
edge's own builder on the real footage) sent by the edge's outbox and publisher through the cluster
has every item stored by the JetStream worker's media consumer; and a box given every node's URL
(`broker.urls`) whose node is SIGKILLed moves to another and loses no alert.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from factories import make_alert
from fault_harness import (
    Ledger,
    Process,
    all_stored,
    central_process,
    edge_config,
    edge_process,
    ledger,
    outbox_ids,
    published_ids,
    stored,
    wait_for,
)
from media_seed import real_sets
from nats_cluster import REPO, NatsCluster, NatsNode
from pydantic import SecretStr
from sqlalchemy import create_engine, select, text

from streetwatch.central.config import BrokerSettings, CentralSettings, JetStreamSettings
from streetwatch.central.consumer_jetstream import JetStreamConsumer
from streetwatch.central.db import make_engine, make_session_factory
from streetwatch.central.evidence_store import EvidenceStore
from streetwatch.central.media import announced, stored_items
from streetwatch.central.models import Alert
from streetwatch.edge.alerts import TOPIC_PREFIX, ResendCommand, command_topic, new_id
from streetwatch.edge.config import BrokerConfig, CameraConfig, EdgeConfig
from streetwatch.edge.outbox import Outbox
from streetwatch.edge.publisher import Publisher

pytestmark = pytest.mark.slow

if shutil.which("nats-server") is None:
    pytest.fail("the cluster tests run their own nats-server nodes: install it (scripts/setup.sh does)",
                pytrace=False)

BOXES = {"box-a": "n1", "box-b": "n2"}  # each box's MQTT gateway node
WORKERS = {"central-1": "n1", "central-2": "n2"}  # each worker's fleet (MQTT) node; JetStream: all three
ACK_WAIT_S = 5
PASSWORD_ENV = "SW_TEST_NATS_PASSWORD_{}"
NATS_CONFIGS = REPO / "configs" / "nats"


@pytest.fixture()
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NatsCluster]:
    own = NatsCluster(tmp_path / "nats", ["central", *BOXES])
    for user, password in own.credentials.items():  # the children read their password from here
        monkeypatch.setenv(password_env(user), password)
    own.start()
    try:
        yield own
    finally:
        own.stop()


def password_env(user: str) -> str:
    return PASSWORD_ENV.format(user.replace("-", "_").upper())


class ClusterRig:
    def __init__(self, workdir: Path, *, db: str, cluster: NatsCluster, model_dir: Path,
                 processes: list[Process]) -> None:
        self.workdir, self.db, self.cluster, self.model_dir = workdir, db, cluster, model_dir
        self.processes = processes
        self.edges: dict[str, Process] = {}

    def central(self, client_id: str) -> Process:
        node = self.cluster.node(WORKERS[client_id])
        worker = central_process(self.workdir, database_url=self.db, broker_url=node.mqtt_url, client_id=client_id,
                                 broker_settings={
                                     "kind": "jetstream", "protocol": "3.1.1", "username": "central",
                                     "password_env": password_env("central"),
                                     "jetstream": {"servers": self.cluster.nats_urls, "ack_wait_s": ACK_WAIT_S,
                                                   "retry_after_s": 1},
                                 })
        self.processes.append(worker)
        worker.start()
        wait_for(lambda: "subscribed to" in worker.log() or not worker.alive, 60, f"{client_id} to bind")
        assert worker.alive, worker.log()[-3000:]
        return worker

    def edge(self, edge_id: str, *, clip: Path) -> Process:
        node = self.cluster.node(BOXES[edge_id])
        broker = {"url": node.mqtt_url, "protocol": "3.1.1", "username": edge_id, "password_env": password_env(edge_id)}
        config = edge_config(self.workdir, edge_id=edge_id, clip=clip, broker_url=node.mqtt_url,
                             extra={"broker": broker})
        worker = edge_process(self.workdir, config, self.model_dir, edge_id)
        self.processes.append(worker)
        self.edges[edge_id] = worker
        worker.start()
        return worker

    def depth(self) -> int:
        return sum(len(outbox_ids(self.workdir / f"{edge_id}.outbox.sqlite")) for edge_id in self.edges)

    def published(self) -> set[str]:
        return published_ids(*(edge.log() for edge in self.edges.values()))

    def stored_count(self) -> int:
        return len(stored(self.db).alert_ids)

    def settled(self) -> bool:
        return self.depth() == 0 and all_stored(self.db, self.published())

    def missing(self) -> str:
        missing = self.published() - set(stored(self.db).alert_ids)
        return f"outbox depth {self.depth()}, published but not stored: {sorted(missing)[:5]} ({len(missing)})"

    def settle(self, timeout_s: float, what: str) -> float:
        return round(wait_for(self.settled, timeout_s, what, self.missing), 1)

    def finish(self, centrals: list[Process]) -> Ledger:
        """Stop the boxes (exit 0 on SIGTERM), let central take the last alerts, stop central."""
        for edge_id, edge in self.edges.items():
            assert edge.alive, edge.log()[-3000:]
            assert edge.terminate() == 0, f"edge {edge_id}:\n{edge.log()[-3000:]}"
        waiting = set().union(*(outbox_ids(self.workdir / f"{e}.outbox.sqlite") for e in self.edges))
        published = self.published()
        wait_for(lambda: all_stored(self.db, published - waiting), 60, "the last alerts to be stored", self.missing)
        for worker in centrals:
            assert worker.alive, worker.log()[-3000:]
            code = worker.terminate()
            assert code == 0 and ": stopped (" in worker.log(), f"central exited {code}:\n{worker.log()[-3000:]}"
        return ledger(self.db, published, waiting=waiting)


def audit_accounts_for_everything(db: str) -> str | None:
    """None when the delivery audit has every box's numbering contiguous to its highest number and
    records no loss; else what it still sees."""
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            streams = conn.execute(text("SELECT edge_id, contiguous_seq, highest_seq FROM delivery_streams")).all()
            losses = int(conn.execute(text("SELECT count(*) FROM delivery_losses")).scalar_one())
    finally:
        engine.dispose()
    open_gaps = [row for row in streams if row[1] < row[2]]
    if {row[0] for row in streams} != set(BOXES) or open_gaps or losses:
        return f"streams {streams}, losses {losses}"
    return None


def outbox_of(db: str, edge_id: str) -> str:
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT outbox_id FROM delivery_streams WHERE edge_id = :e"),
                                    {"e": edge_id}).scalar_one())
    finally:
        engine.dispose()


def command_round_trip(cluster: NatsCluster, db: str) -> float:
    """Seconds for a resend command from central (MQTT, through the one node no box uses) to reach
    every box and its answer to come back: the commands still reach the edges after the faults."""
    node = cluster.node("n3")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="central-probe", protocol=mqtt.MQTTv311)
    client.username_pw_set("central", cluster.credentials["central"])
    replies: list[bytes] = []
    subscribed = threading.Event()
    client.on_message = lambda _c, _u, message: replies.append(bytes(message.payload))
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect("127.0.0.1", node.ports.mqtt)
    client.loop_start()
    try:
        client.subscribe(f"{TOPIC_PREFIX}/replies/+", qos=1)
        assert subscribed.wait(10), "no SUBACK"
        started = time.monotonic()
        asked = {}
        for edge_id in BOXES:
            command = ResendCommand(request_id=new_id("rq"), outbox_id=outbox_of(db, edge_id), first_seq=1, last_seq=1)
            asked[edge_id] = command.request_id
            client.publish(command_topic(edge_id), command.to_json(), qos=1)
        wait_for(lambda: all(any(rq.encode() in r for r in replies) for rq in asked.values()), 60,
                 "every box to answer a resend command", lambda: f"replies {replies}")
        return round(time.monotonic() - started, 1)
    finally:
        client.loop_stop()
        client.disconnect()


def victim(cluster: NatsCluster, which: str) -> NatsNode:
    leader = cluster.stream_leader()
    assert leader is not None, "the MQTT stream has a leader"
    if which == "leader":
        return cluster.node(leader)
    # a follower that some box and worker use, so the loss is felt
    return next(node for node in cluster.nodes if node.node_name != leader and node.node_name in BOXES.values())


@pytest.mark.parametrize("which", ["follower", "leader"])
def test_node_then_worker_killed_every_alert_stored_once(
    which: str, tmp_path: Path, fault_db: str, cluster: NatsCluster, model_dir: Path, street_clip: Path,
    processes: list[Process], capsys: pytest.CaptureFixture[str],
) -> None:
    rig = ClusterRig(tmp_path, db=fault_db, cluster=cluster, model_dir=model_dir, processes=processes)
    workers = [rig.central(name) for name in WORKERS]
    edges = [rig.edge(edge_id, clip=street_clip) for edge_id in BOXES]
    wait_for(lambda: rig.stored_count() >= 10 or not all(e.alive for e in edges), 180, "10 alerts stored")
    assert all(e.alive for e in edges), [e.log()[-2000:] for e in edges]
    assert all("created" in w.log() or "joined" in w.log() for w in workers), "both workers take alerts"
    figures: dict[str, object] = {"fault": f"nats_{which}_node_then_worker"}

    node = victim(cluster, which)
    figures["killed_node"], figures["stream_leader_before"] = node.node_name, cluster.stream_leader()
    figures["consumer_leader_before"] = cluster.stream_leader(consumer="central")
    at_kill = rig.stored_count()
    node.kill()  # SIGKILL mid-flow: its boxes' alerts wait in their outboxes, the others go on
    down = time.monotonic()
    figures["ingest_resumed_s"] = round(wait_for(lambda: rig.stored_count() >= at_kill + 3, 60,
                                                 "ingest to go on with a node down", rig.missing), 1)
    wait_for(lambda: cluster.stream_leader() not in (None, node.node_name), 30, "a new stream leader")
    figures["stream_leader_after"] = cluster.stream_leader()
    figures["consumer_leader_after"] = cluster.stream_leader(consumer="central")
    wait_for(lambda: time.monotonic() - down >= 10, 15, "10 s with a node down")
    figures["outbox_peak"] = rig.depth()
    figures["node_down_s"] = round(time.monotonic() - down, 1)
    node.start()  # its store folder as it was: it catches up from the others
    figures["node_recovery_s"] = rig.settle(120, "every alert stored once the node is back")

    before = rig.stored_count()
    wait_for(lambda: rig.stored_count() >= before + 3, 60, "alerts flowing before the worker is killed")
    dead, survivor = workers[1], workers[0]
    dead.kill()  # SIGKILL with a batch possibly in hand: its unacknowledged alerts go to the survivor
    killed = time.monotonic()
    during = len(rig.published())
    wait_for(lambda: len(rig.published()) >= during + 4, 60, "alerts published with one worker dead")
    rig.settle(60 + ACK_WAIT_S, "the survivor to store everything")
    figures["worker_recovery_s"] = round(time.monotonic() - killed, 1)
    figures["command_round_trip_s"] = command_round_trip(cluster, fault_db)

    book = rig.finish([survivor])
    wait_for(lambda: audit_accounts_for_everything(fault_db) is None, 30,
             "the delivery audit to account for every number", lambda: str(audit_accounts_for_everything(fault_db)))
    figures.update(published=book.published, stored=book.stored, lost=len(book.lost), duplicated=book.duplicated,
                   cases=book.cases, redelivered_duplicates=survivor.log().count("duplicate delivery"))
    with capsys.disabled():
        print(f"\nFAULT {json.dumps(figures)}")
    assert not book.lost, f"{len(book.lost)} published alert(s) never reached the database"
    assert not book.phantom, f"alerts in the database that no box published: {book.phantom}"
    assert book.duplicated == 0, "an alert stored twice"
    assert not book.split_episodes, f"an episode split over several cases: {book.split_episodes}"
    assert book.stored >= 20


# -- in this process: the evidence set, and a box with every node's URL


@contextlib.contextmanager
def in_process_worker(cluster: NatsCluster, workdir: Path, db: str) -> Iterator[JetStreamConsumer]:
    """One central worker (`broker.kind: jetstream`) in this process, bound to its alerts durable."""
    settings = CentralSettings(
        broker=BrokerSettings(kind="jetstream", url=cluster.nodes[2].mqtt_url, protocol="3.1.1", username="central",
                              client_id="central-in-process",
                              jetstream=JetStreamSettings(servers=cluster.nats_urls, ack_wait_s=ACK_WAIT_S,
                                                          retry_after_s=1)),
        broker_password=SecretStr(cluster.credentials["central"]), evidence_dir=workdir / "evidence",
    )
    engine = make_engine(db)
    consumer = JetStreamConsumer(settings=settings, session_factory=make_session_factory(engine))
    consumer.start()
    try:
        assert consumer.wait_subscribed(60), "the worker did not bind to its alerts durable"
        yield consumer
    finally:
        consumer.stop()
        engine.dispose()


@pytest.fixture()
def worker(tmp_path: Path, fault_db: str, cluster: NatsCluster) -> Iterator[JetStreamConsumer]:
    """The in-process worker bound to both durables (a piece sent before its durable exists is not kept)."""
    with in_process_worker(cluster, tmp_path, fault_db) as consumer:
        assert consumer.media_subscribed.wait(30), "the worker did not bind to its media durable"
        yield consumer


def box_publisher(edge_id: str, outbox: Outbox, urls: list[str]) -> Publisher:
    broker = BrokerConfig(urls=urls, protocol="3.1.1", username=edge_id, password_env=password_env(edge_id))
    config = EdgeConfig(edge_id=edge_id, cameras=[CameraConfig(id="cam-kerb", url="street.mp4")], broker=broker)
    return Publisher(config, outbox)


def whole_sets(worker: JetStreamConsumer) -> dict[str, set[str]]:
    """alert_id -> the kinds of its set whose bytes central holds, for every alert stored."""
    store = EvidenceStore(worker.settings.evidence_dir)
    with worker.session_factory() as session:
        return {alert.alert_id: set(stored_items(store, alert)) for alert in session.query(Alert)}


def test_an_evidence_set_sent_through_the_cluster_is_stored(
    tmp_path: Path, cluster: NatsCluster, worker: JetStreamConsumer, assets_dir: Path
) -> None:
    sets = real_sets(assets_dir, lat=31.3002, lon=120.5851, edge_id="box-a")
    outbox = Outbox(tmp_path / "box-a.outbox.sqlite")
    for made in sets:
        outbox.put(made.alert)
        outbox.put_media(made.alert, [(item.ref, item.data) for item in made.media if item.data is not None])
    pieces = outbox.media_depth()
    publisher = box_publisher("box-a", outbox, [cluster.node("n1").mqtt_url])
    publisher.start()
    kinds = {"first", "confirmed", "crop", "clip", "clean"}
    try:
        wait_for(lambda: whole_sets(worker) == {m.alert.alert_id: kinds for m in sets}, 60,
                 "every alert and its whole evidence set at central",
                 lambda: f"{whole_sets(worker)}, pieces waiting {outbox.media_depth()}, {worker.summary}")
    finally:
        publisher.stop()
        outbox.close()
    store = EvidenceStore(worker.settings.evidence_dir)
    with worker.session_factory() as session:
        alert = session.get(Alert, sets[0].alert.alert_id)
        assert alert is not None
        clip = next(ref for ref in announced(alert) if ref.kind == "clip")
        assert hashlib.sha256(store.read(clip.sha256, "mp4")).hexdigest() == clip.sha256
    assert pieces > len(kinds)  # the clip alone is several 256 KiB pieces
    assert worker.summary.media.get("dead_letter", 0) == 0 and "lost" not in worker.summary.media
    assert worker.summary.media.get("stored", 0) + worker.summary.media.get("waiting", 0) >= len(kinds)


def stored_ids(worker: JetStreamConsumer) -> set[str]:
    with worker.session_factory() as session:
        return set(session.scalars(select(Alert.alert_id)))


def test_a_box_with_every_node_keeps_publishing_when_its_node_is_killed(
    tmp_path: Path, cluster: NatsCluster, worker: JetStreamConsumer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`broker.urls` lists the three nodes: the box's node is SIGKILLed (not restarted) while alerts
    keep coming; the publisher moves to the next node and every alert reaches central."""
    first = cluster.node("n1")
    outbox = Outbox(tmp_path / "box-a.outbox.sqlite")
    publisher = box_publisher("box-a", outbox, [node.mqtt_url for node in cluster.nodes])
    publisher.start()
    put: list[str] = []

    def alerts(count: int) -> None:
        for _ in range(count):
            alert = make_alert(edge_id="box-a", camera_id="cam-kerb", observed_at=datetime.now(UTC))
            outbox.put(alert)
            put.append(alert.alert_id)
            publisher.notify()
            time.sleep(0.1)

    try:
        assert publisher.wait_connected(15) and publisher.port == first.ports.mqtt
        alerts(5)
        wait_for(lambda: set(put) <= stored_ids(worker), 30, "the first alerts at central")
        first.kill()  # SIGKILL: the box's connection drops with no goodbye
        killed = time.monotonic()
        alerts(20)  # 2 s of alerts while the box has no node: they wait in its outbox
        # an election, and paho's back-off (1, 2, 4 s ...) between nodes: 8-25 s seen here
        wait_for(lambda: set(put) <= stored_ids(worker) and outbox.depth() == 0, 90,
                 "every alert at central through another node",
                 lambda: f"outbox {outbox.depth()}, missing {len(set(put) - stored_ids(worker))}")
        recovered = round(time.monotonic() - killed, 1)
        moved_to = next(node.node_name for node in cluster.nodes if node.ports.mqtt == publisher.port)
        acked = publisher.stats().acked
    finally:
        publisher.stop()
        outbox.close()
    with capsys.disabled():
        figures = {"fault": "nats_box_node_killed_urls", "moved_to": moved_to, "all_stored_after_kill_s": recovered,
                   "alerts": len(put)}
        print(f"\nFAULT {json.dumps(figures)}")
    assert moved_to != "n1" and acked >= len(put)
    assert stored_ids(worker) == set(put), "an alert lost or one no box sent"


def test_alerts_flow_when_the_permissions_predate_the_media_consumer(
    tmp_path: Path, fault_db: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A cluster whose accounts were made before the media durable existed refuses it: the worker
    still binds and stores alerts (the media durable is bound beside them, not before them)."""
    committed = (NATS_CONFIGS / "permissions.yaml").read_text().splitlines()
    old = tmp_path / "permissions-before-media.yaml"
    old.write_text("\n".join(line for line in committed if "central-media" not in line) + "\n")
    own = NatsCluster(tmp_path / "nats", ["central", "box-a"], permissions=old)
    monkeypatch.setenv(password_env("box-a"), own.credentials["box-a"])
    own.start()
    outbox = Outbox(tmp_path / "box-a.outbox.sqlite")
    try:
        with in_process_worker(own, tmp_path, fault_db) as consumer:
            publisher = box_publisher("box-a", outbox, [own.nodes[0].mqtt_url])
            publisher.start()
            try:
                alerts = [make_alert(edge_id="box-a", camera_id="cam-kerb", observed_at=datetime.now(UTC))
                          for _ in range(3)]
                for alert in alerts:
                    outbox.put(alert)
                publisher.notify()
                wait_for(lambda: stored_ids(consumer) == {a.alert_id for a in alerts}, 30, "the alerts at central")
            finally:
                publisher.stop()
            assert not consumer.media_subscribed.is_set() and consumer.alive
    finally:
        outbox.close()
        own.stop()
    assert "cannot create the durable consumer central-media yet" in caplog.text  # said, and retried
