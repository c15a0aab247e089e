"""A central worker whose ingest thread dies stops the process with a non-zero exit, loudly (issue
17, fault (d)): before, the web went on answering while alerts piled up unacknowledged.

The thread is made to die by the one fault no handler can turn into a dead letter: a child process
replaces the consumer's ingest loop with one that raises at its first message (an injected bug), then
runs `central serve` as the service manager would. The test publishes one alert and times the exit.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from factories import make_alert
from fault_harness import Mosquitto, Process, accepts, wait_for
from support import free_port

from streetwatch.edge.alerts import alert_topic

pytestmark = pytest.mark.slow

# The child: central serve with its ingest loop broken at the first message.
BROKEN_INGEST = """
import sys
from streetwatch.central import consumer

def broken_run(self):
    self._queue.get()  # the first message arrives ...
    raise RuntimeError("injected: the ingest loop has a bug")  # ... and the thread dies

consumer.AlertConsumer._run = broken_run
from streetwatch.central.cli import main
sys.exit(main(sys.argv[1:]))
"""


def serve(workdir: Path, *, db: str, broker: Mosquitto, web_port: int | None) -> Process:
    config = workdir / "central.yaml"
    config.write_text(yaml.safe_dump({
        "broker": {"url": broker.url, "protocol": "5", "client_id": "central-doomed"},
        "evidence_dir": str(workdir / "evidence"),
        "web": {"host": "127.0.0.1", "port": web_port or 8000, "mode": "development"},
    }))
    command = [sys.executable, "-c", BROKEN_INGEST, "--database-url", db, "--config", str(config), "serve"]
    return Process("central", command + ([] if web_port else ["--no-web"]), workdir / "central.log")


@pytest.mark.parametrize("web", [False, True], ids=["ingest-only", "with-web"])
def test_a_dead_ingest_thread_stops_the_process_with_exit_1_within_5_s(
    tmp_path: Path, fault_db: str, broker: Mosquitto, processes: list[Process], web: bool
) -> None:
    port = free_port() if web else None
    central = serve(tmp_path, db=fault_db, broker=broker, web_port=port)
    processes.append(central)
    central.start()
    wait_for(lambda: "subscribed to" in central.log() or not central.alive, 60, "central to subscribe",
             why=lambda: central.log()[-2000:])
    if port is not None:
        wait_for(lambda: accepts(port), 30, "the web app to listen")

    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    publisher.publish(alert_topic("box-01", "cam-1"), make_alert().to_json(), qos=1).wait_for_publish(10)
    sent = time.monotonic()
    publisher.disconnect()
    publisher.loop_stop()

    assert central.process is not None
    code = central.process.wait(30)
    took = time.monotonic() - sent
    log = central.log()
    assert code == 1, f"exit status {code}:\n{log[-3000:]}"
    assert took < 5, f"the process took {took:.1f} s to stop"
    assert "ERROR" in log and "the ingest thread ended unexpectedly" in log, log[-3000:]
    assert "injected: the ingest loop has a bug" in log
    print(f"\nFAULT {{\"fault\": \"ingest_thread_died\", \"web\": {str(web).lower()}, \"exit_s\": {took:.1f}}}")
