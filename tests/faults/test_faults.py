"""Fault injection with real processes: while an `edge run` worker replays the demo street footage
(the real kerb photo held still as H.264, looped; dwell 5 s and 10 s reminders give ~2 alerts/s),
parts of the system are killed and brought back.

After each fault the same ledger is checked: every alert id the edge handed to the broker is in the
database exactly once (nothing lost, nothing invented, no row twice), every episode's alerts sit
in one case (no case duplicated), and the edge's outbox drained. The seconds from the end of the
fault to that state are printed as the recovery time (figures for docs/benchmarks.md, not assertions).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_harness import (
    Ledger,
    Mosquitto,
    Process,
    all_stored,
    central_process,
    edge_config,
    edge_process,
    ledger,
    outbox_ids,
    published_ids,
    refused_ids,
    stored,
    wait_for,
)
from rtsp_server import RtspServer
from support import free_port

pytestmark = pytest.mark.slow

WARM_ALERTS = 5  # stored before the fault: the whole path works


class Rig:
    """The processes of one test: edges and central workers on one broker and one database."""

    def __init__(self, workdir: Path, *, db: str, broker: Mosquitto, model_dir: Path,
                 processes: list[Process]) -> None:
        self.workdir = workdir
        self.db = db
        self.broker = broker
        self.model_dir = model_dir
        self.processes = processes
        self.edges: dict[str, Process] = {}

    def central(self, client_id: str, *, subscription: str | None = None) -> Process:
        worker = central_process(self.workdir, database_url=self.db, broker_url=self.broker.url,
                                 client_id=client_id, subscription=subscription)
        self.processes.append(worker)
        worker.start()
        wait_for(lambda: "subscribed to" in worker.log() or not worker.alive, 30, f"{client_id} to subscribe")
        assert worker.alive, worker.log()[-3000:]
        return worker

    def edge(self, edge_id: str, *, clip: Path | str, loop: bool = True, **extra: object) -> Process:
        config = edge_config(self.workdir, edge_id=edge_id, clip=clip, broker_url=self.broker.url, loop=loop,
                             extra=extra)
        worker = edge_process(self.workdir, config, self.model_dir, edge_id)
        self.processes.append(worker)
        self.edges[edge_id] = worker
        worker.start()
        return worker

    def outbox(self, edge_id: str) -> set[str]:
        return outbox_ids(self.workdir / f"{edge_id}.outbox.sqlite")

    def depth(self) -> int:
        return sum(len(self.outbox(edge_id)) for edge_id in self.edges)

    def published(self) -> set[str]:
        return published_ids(*(edge.log() for edge in self.edges.values()))

    def stored_count(self) -> int:
        return len(stored(self.db).alert_ids)

    def missing(self) -> str:
        """What keeps the system from settling (for failure messages)."""
        missing = self.published() - set(stored(self.db).alert_ids)
        return f"outbox depth {self.depth()}, published but not stored: {sorted(missing)[:5]} ({len(missing)})"

    def settled(self) -> bool:
        """Every outbox empty and everything published so far is in the database."""
        return self.depth() == 0 and all_stored(self.db, self.published())

    def finish(self, centrals: list[Process]) -> Ledger:
        """Stop the edges, let central take the last alerts, stop central; the ledger.

        Every process must exit 0 on SIGTERM (what a service manager or `docker stop` sends).
        """
        for edge_id, edge in self.edges.items():
            assert edge.alive, edge.log()[-3000:]
            code = edge.terminate()
            why = f"edge {edge_id} exited {code} on SIGTERM (negative: killed after 30 s)"
            assert code == 0, f"{why}:\n{edge.log()[-3000:]}"
        waiting = set().union(*(self.outbox(edge_id) for edge_id in self.edges))
        published = self.published()
        wait_for(lambda: all_stored(self.db, published - waiting), 30, "the last alerts to be stored")
        for worker in centrals:
            assert worker.alive, worker.log()[-3000:]
            code = worker.terminate()
            # SIGTERM stops ingest cleanly: the batch in hand committed, the consumer disconnected.
            assert code == 0 and ": stopped (" in worker.log(), f"central exited {code}:\n{worker.log()[-3000:]}"
        return ledger(self.db, published, waiting=waiting)


@pytest.fixture()
def rig(tmp_path: Path, fault_db: str, broker: Mosquitto, model_dir: Path, processes: list[Process]) -> Rig:
    return Rig(tmp_path, db=fault_db, broker=broker, model_dir=model_dir, processes=processes)


def assert_whole(book: Ledger, *, at_least: int = WARM_ALERTS) -> None:
    assert not book.lost, f"{len(book.lost)} published alert(s) never reached the database"
    assert not book.phantom, f"alerts in the database that the edge never published: {book.phantom}"
    assert book.duplicated == 0, "an alert stored twice"
    assert not book.split_episodes, f"an episode split over several cases: {book.split_episodes}"
    assert at_least <= book.stored <= book.published


@pytest.fixture()
def figures(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> Iterator[dict[str, object]]:
    """Measured figures of one fault, printed (even without -s) as one `FAULT {json}` line."""
    found: dict[str, object] = {"fault": request.node.name.removeprefix("test_")}
    yield found
    with capsys.disabled():
        print(f"\nFAULT {json.dumps(found)}")


def record(found: dict[str, object], book: Ledger, **more: object) -> None:
    found.update(published=book.published, stored=book.stored, lost=len(book.lost),
                 duplicated=book.duplicated, cases=book.cases, **more)


def settle(rig: Rig, timeout_s: float, what: str) -> float:
    """Seconds until the outboxes are empty and every published alert is stored."""
    return round(wait_for(rig.settled, timeout_s, what, rig.missing), 1)


def warm_up(rig: Rig, edge: Process, count: int = WARM_ALERTS) -> None:
    wait_for(lambda: rig.stored_count() >= count or not edge.alive, 120, f"{count} alerts stored before the fault")
    assert edge.alive, edge.log()[-3000:]


# Mosquitto 2.0 does not restore *shared* subscriptions from its persistence file after a restart
# (plain ones it does): an alert published after a broker restart and before central has
# re-subscribed reaches no subscriber and is dropped, although the edge got its PUBACK. A single
# central worker therefore subscribes without $share/ where the broker may restart (see report).
PLAIN_SUBSCRIPTION = "streetwatch/v1/alerts/#"


def test_broker_killed_and_restarted(rig: Rig, street_clip: Path, figures: dict[str, object]) -> None:
    central = rig.central("central-1", subscription=PLAIN_SUBSCRIPTION)
    edge = rig.edge("box-a", clip=street_clip)
    warm_up(rig, edge)

    rig.broker.kill()  # SIGKILL: the broker crashes with messages in flight
    down = time.monotonic()
    wait_for(lambda: rig.depth() >= 3, 60, "alerts to wait in the edge outbox while the broker is down")
    figures["outage_s"] = round(time.monotonic() - down, 1)
    figures["outbox_peak"] = rig.depth()
    rig.broker.start()  # same port, sessions and queues from its persistence file
    figures["recovery_s"] = settle(rig, 90, "outbox drained and every alert stored")

    before = len(rig.published())
    wait_for(lambda: len(rig.published()) >= before + 3, 60, "new alerts after the broker came back")
    book = rig.finish([central])
    record(figures, book)
    assert_whole(book)
    assert "lost broker connection" in edge.log() and "disconnected" in central.log()


def test_central_sigkilled_mid_ingest_and_restarted(rig: Rig, street_clip: Path, figures: dict[str, object]) -> None:
    central = rig.central("central-1")
    edge = rig.edge("box-b", clip=street_clip)
    warm_up(rig, edge)

    stored_before = rig.stored_count()
    wait_for(lambda: rig.stored_count() > stored_before, 30, "an alert being ingested")
    central.kill()  # SIGKILL while alerts stream in: unacked messages stay with the broker
    down = time.monotonic()
    during = len(rig.published())
    wait_for(lambda: len(rig.published()) >= during + 5, 60, "alerts published while central is dead")
    figures["outage_s"] = round(time.monotonic() - down, 1)
    waiting_for_central = rig.published() - set(stored(rig.db).alert_ids)
    figures["queued_at_broker"] = len(waiting_for_central)
    central.start()
    figures["resubscribed_s"] = round(wait_for(lambda: central.log().count("subscribed to") >= 2, 60, "central up"), 1)
    figures["recovery_s"] = settle(rig, 90, "every alert stored after central restarted")

    book = rig.finish([central])
    record(figures, book)
    assert_whole(book)
    assert len(waiting_for_central) >= 5


def _metric(port: int, name: str) -> float:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    match = re.search(rf'^{name}\{{camera="cam-street"\}} ([0-9.e+]+)$', body, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_rtsp_server_restarted(rig: Rig, street_clip: Path, figures: dict[str, object]) -> None:
    """The camera's RTSP server dies and comes back (the clip plays in real time, 1 fps).

    tests/edge/test_edge_run.py shows the worker reconnects and publishes; this adds the ledger.
    """
    metrics_port = free_port()
    central = rig.central("central-1")
    with RtspServer(street_clip, "/cam-street") as server:
        edge = rig.edge("box-c", clip=server.url, loop=False, metrics_port=metrics_port)
        warm_up(rig, edge, count=3)

        server.stop()  # SIGKILL
        wait_for(lambda: _metric(metrics_port, "streetwatch_stream_connected") == 0, 30, "the dropped stream")
        decoded = _metric(metrics_port, "streetwatch_frames_decoded_total")
        before = len(rig.published())
        server.start()
        back = time.monotonic()
        figures["frames_again_s"] = round(wait_for(
            lambda: _metric(metrics_port, "streetwatch_frames_decoded_total") > decoded + 2, 60, "frames again"), 1)
        wait_for(lambda: len(rig.published()) > before, 60, "an alert after the stream came back")
        settle(rig, 30, "every alert stored")
        figures["recovery_s"] = round(time.monotonic() - back, 1)
        book = rig.finish([central])  # the edge exits 0 on SIGTERM with a live RTSP stream open
    record(figures, book)
    assert_whole(book, at_least=3)
    assert re.search(r"WARNING.*cam-street", edge.log()), "the dropped stream is logged with the camera id"


def test_outbox_full_then_freed(rig: Rig, street_clip: Path, figures: dict[str, object]) -> None:
    """A 10-alert outbox cap while the broker is down: the edge refuses (logs, counts) what does not
    fit, keeps running, and when the broker returns the outbox drains and new alerts flow again.

    The cap leaves room for a burst: the looped file replays as fast as the CPU allows (several
    alerts a second, a frame's reminders arriving together), and with 4 rows a burst could fill
    the outbox again between two broker acknowledgements."""
    central = rig.central("central-1", subscription=PLAIN_SUBSCRIPTION)
    edge = rig.edge("box-d", clip=street_clip, outbox_max_rows=10)
    warm_up(rig, edge)

    rig.broker.kill()
    down = time.monotonic()
    wait_for(lambda: len(refused_ids(edge.log())) >= 3, 60, "the outbox to fill and refuse alerts")
    assert rig.depth() == 10
    figures["outage_s"] = round(time.monotonic() - down, 1)
    rig.broker.start()
    figures["recovery_s"] = settle(rig, 90, "the full outbox to drain")
    refused = refused_ids(edge.log())
    before = len(rig.published())
    wait_for(lambda: len(rig.published()) >= before + 5, 60, "new alerts accepted after the outbox drained")
    assert refused_ids(edge.log()) == refused, "nothing refused once there is room again"

    book = rig.finish([central])
    record(figures, book, refused=len(refused))
    assert_whole(book)
    assert not refused & set(stored(rig.db).alert_ids), "a refused alert was never stored, so never sent"


def test_broker_loses_its_disk_under_two_workers_and_the_boxes_resend(
    rig: Rig, street_clip: Path, figures: dict[str, object]
) -> None:
    """Issue 17 fault (b): the broker acknowledged alerts to the boxes and then lost them. Both
    workers are down, so the broker holds the alerts for their sessions; it is SIGKILLed and comes
    back with its persistence file deleted (sessions, queues and retained statuses gone). The
    boxes' numbering shows central the gap and the boxes publish those alerts again from their
    outboxes: every alert id is stored exactly once."""
    workers = [rig.central("central-1"), rig.central("central-2")]
    edges = [rig.edge("box-f", clip=street_clip), rig.edge("box-g", clip=street_clip)]
    for edge in edges:
        warm_up(rig, edge)
    for worker in workers:
        worker.kill()
    before = len(rig.published())
    wait_for(lambda: len(rig.published()) >= before + 8, 60, "alerts the broker acknowledged and queued")
    held = rig.published() - set(stored(rig.db).alert_ids)
    assert rig.depth() == 0 or len(held) > rig.depth(), "the broker, not the boxes, holds them"
    rig.broker.kill()
    for leftover in (rig.broker.workdir / name for name in ("mosquitto.db", "mosquitto.db.new")):
        leftover.unlink(missing_ok=True)
    figures["held_by_broker_when_lost"] = len(held) - rig.depth()
    rig.broker.start()
    back = time.monotonic()
    for worker in workers:
        worker.start()
    figures["recovery_s"] = settle(rig, 120, "every alert stored again through the resend path")
    figures["resend_requests"] = sum(w.log().count("to resend") for w in workers)
    assert figures["resend_requests"], "the gap was closed by resend commands"
    # The audit notices the gap is filled on its next tick, which may come after the last store.
    wait_for(lambda: "gap closed" in "".join(w.log() for w in workers), 60, "the audit logging the gap closed")
    figures["gap_closed_s"] = round(time.monotonic() - back, 1)
    book = rig.finish(workers)
    record(figures, book)
    assert_whole(book)


def test_two_central_workers_one_killed(rig: Rig, street_clip: Path, figures: dict[str, object]) -> None:
    """Two workers share the subscription; one is SIGKILLed and later restarted (its client id
    keeps its broker session). The survivor keeps ingesting; messages the broker had queued for
    the dead worker's session wait for it and are stored once it returns."""
    first = rig.central("central-1")
    second = rig.central("central-2")
    edge = rig.edge("box-e", clip=street_clip)
    warm_up(rig, edge, count=2 * WARM_ALERTS)
    assert "created" in first.log() or "joined" in first.log()
    assert "created" in second.log() or "joined" in second.log()

    second.kill()
    down = time.monotonic()
    stored_at_kill = rig.stored_count()
    during = len(rig.published())
    wait_for(lambda: len(rig.published()) >= during + 6, 60, "alerts published with one worker dead")
    figures["outage_s"] = round(time.monotonic() - down, 1)
    figures["stored_by_survivor"] = rig.stored_count() - stored_at_kill
    figures["held_for_dead_worker"] = len(rig.published() - set(stored(rig.db).alert_ids))
    assert rig.stored_count() > stored_at_kill, "the surviving worker keeps ingesting"
    second.start()
    figures["resubscribed_s"] = round(wait_for(lambda: second.log().count("subscribed to") >= 2, 60, "worker back"), 1)
    figures["recovery_s"] = settle(rig, 90, "every alert stored once the worker is back")

    book = rig.finish([first, second])
    record(figures, book)
    assert_whole(book)
