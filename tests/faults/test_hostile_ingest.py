"""A running `central serve --no-web` on a real Mosquitto against hostile edge boxes (issue 17,
faults (a) and (c)), and its health endpoints.

(a) Each hostile payload of the corpus is published, followed by a valid alert; the valid one must
be stored within 10 s, the process must stay up, and every hostile one must be a dead letter with
a reason. (c) A box sends `ended` for another box's episode: a dead letter, the case unchanged.
Then /readyz says ready, and says why not once the broker is gone.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from factories import make_alert
from fault_harness import Mosquitto, Process, central_process, wait_for
from sqlalchemy import create_engine, text
from support import free_port

from streetwatch.edge.alerts import alert_topic

pytestmark = pytest.mark.slow

BOX = "box-h"


def corpus() -> list[tuple[str, bytes]]:
    """Hostile payloads: every one once stopped ingest or could have; (name, payload)."""
    now = datetime.now(UTC)
    good = json.loads(make_alert(edge_id=BOX, observed_at=now).to_json())

    def variant(**fields: object) -> bytes:
        return json.dumps({**good, **fields, "alert_id": f"al-hostile-{len(fields)}-{time.monotonic_ns()}"}).encode()

    deep = b"[" * 100_000 + b"]" * 100_000
    return [
        ("year-1-plus-14h", variant(started_at="0001-01-01T00:00:00+14:00")),
        ("year-9999-minus-14h", variant(observed_at="9999-12-31T23:59:59-14:00")),
        ("year-9999-utc", variant(observed_at="9999-12-31T23:59:59Z")),
        ("clock-never-set", variant(started_at="1970-01-01T00:00:00Z", observed_at="1970-01-01T00:01:00Z")),
        ("nested-brackets-200kb", deep),
        ("nested-in-every-field", variant(zone_id=[[[[[[[[[[[1]]]]]]]]]]], location=[[[[[[[[[0]]]]]]]]],
                                          extra={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}})),
        ("huge-string", variant(zone_id="z" * 400_000)),
        ("nan-and-infinity", variant(dwell_s=1.5).replace(b"1.5", b"NaN").replace(b'"confidence": 0.82',
                                                                                  b'"confidence": Infinity')),
        ("wrong-types", variant(location="here", objects={"cls": 1}, track_id=[1], dwell_s="long")),
        ("nul-bytes", variant(camera_id="cam\x00", zone_id="z\u0000")),
        ("bbox-out-of-range", variant(objects=[{"cls": "car", "score": 2, "bbox": [9e300, -9e300, 1, 1]}])),
        ("not-json", b"\xff\xfe\x00garbage"),
        ("empty", b""),
        ("json-array", b"[1, 2, 3]"),
        ("track-id-2^80", variant(track_id=2**80)),
        ("seq-without-outbox", variant(seq=7)),
    ]


def count(db: str, sql: str) -> int:
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


class Box:
    """An edge box publishing raw payloads with QoS 1 on its own alert topic."""

    def __init__(self, broker: Mosquitto, edge_id: str = BOX) -> None:
        self.edge_id = edge_id
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def send(self, payload: bytes) -> None:
        self.client.publish(alert_topic(self.edge_id, "cam-1"), payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_no_hostile_message_stops_ingest_and_a_box_cannot_end_another_box_episode(
    tmp_path: Path, fault_db: str, broker: Mosquitto, processes: list[Process]
) -> None:
    metrics_port = free_port()
    central = central_process(tmp_path, database_url=fault_db, broker_url=broker.url, client_id="central-h",
                              settings={"metrics": {"port": metrics_port}})
    processes.append(central)
    central.start()
    wait_for(lambda: "subscribed to" in central.log() or not central.alive, 60, "central to subscribe")
    box = Box(broker)
    try:
        hostile = corpus()
        slowest = 0.0
        for name, payload in hostile:
            box.send(payload)
            valid = make_alert(edge_id=BOX, observed_at=datetime.now(UTC))
            box.send(valid.to_json())
            stored = f"SELECT count(*) FROM alerts WHERE alert_id = '{valid.alert_id}'"
            took = wait_for(lambda q=stored: count(fault_db, q) == 1, 10,  # type: ignore[misc]
                            f"the valid alert after the hostile '{name}' to be stored",
                            why=lambda: central.log()[-2000:])
            slowest = max(slowest, took)
            assert central.alive, f"central died on '{name}':\n{central.log()[-3000:]}"
        assert count(fault_db, "SELECT count(*) FROM dead_letters") == len(hostile)
        assert count(fault_db, "SELECT count(*) FROM dead_letters WHERE reason = ''") == 0

        # (c) another box's 'ended' for this box's episode
        opened = make_alert(edge_id=BOX, observed_at=datetime.now(UTC) - timedelta(minutes=3))
        box.send(opened.to_json())
        wait_for(lambda: count(fault_db, f"SELECT count(*) FROM alerts WHERE alert_id = '{opened.alert_id}'") == 1,
                 10, "the episode's first alert")
        case_before = count(fault_db, f"SELECT alert_count FROM cases WHERE id = (SELECT case_id FROM alerts "
                                      f"WHERE alert_id = '{opened.alert_id}')")
        intruder = Box(broker, "box-intruder")
        try:
            intruder.send(make_alert(edge_id="box-intruder", episode_id=opened.episode_id, state="ended",
                                     observed_at=datetime.now(UTC)).to_json())
        finally:
            intruder.close()
        wait_for(lambda: count(fault_db, "SELECT count(*) FROM dead_letters WHERE reason LIKE '%belongs to box%'") == 1,
                 10, "the forged 'ended' to be a dead letter")
        assert count(fault_db, f"SELECT count(*) FROM episodes WHERE id = '{opened.episode_id}' "
                               "AND ended_at IS NOT NULL") == 0
        assert count(fault_db, f"SELECT alert_count FROM cases WHERE id = (SELECT case_id FROM alerts "
                               f"WHERE alert_id = '{opened.alert_id}')") == case_before

        status, body = readyz(metrics_port)
        assert status == 200 and "ingest: ok" in body and "broker: ok" in body, body
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert 'streetwatch_central_dead_letters_total{kind="schema"}' in metrics
        print(f'\nFAULT {{"fault": "hostile_payloads", "hostile": {len(hostile)}, "dead_letters": {len(hostile)}, '
              f'"slowest_valid_after_hostile_s": {slowest:.2f}, "process_up": true}}')
    finally:
        box.close()
    broker.kill()
    wait_for(lambda: readyz(metrics_port)[0] == 503, 30, "/readyz to report the broker gone")
    assert "broker: not subscribed" in readyz(metrics_port)[1]
    broker.start()
    wait_for(lambda: readyz(metrics_port)[0] == 200, 60, "/readyz ready again after the broker came back")
    assert central.terminate() == 0, central.log()[-3000:]
