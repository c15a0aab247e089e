"""One central ingest worker of a benchmark run, in a process of its own (run by bench/workers.py).

    python scripts/bench/central_worker.py --db URL --mqtt URL --protocol 5 --client-id ID \
        --subscription TOPIC --evidence-dir DIR

It imports `streetwatch` from wherever the process's path finds it (PYTHONPATH: the checkout under
test, so one run can compare two revisions side by side), runs the real `AlertConsumer` as
`central serve` does, prints `ready` once subscribed, and on a `stop` line on stdin (or stdin
closed) stops the consumer and prints one JSON line: its outcome counts and the CPU seconds it used.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.config import BrokerSettings, CentralSettings
from streetwatch.central.db import make_engine, make_session_factory
from streetwatch.mqtt_common import parse_broker_url

if TYPE_CHECKING:
    from amqp_consumer import AmqpQuorumConsumer

    from streetwatch.central.consumer_jetstream import JetStreamConsumer

try:
    from streetwatch.central.consumer import AlertConsumer, freeze_startup_objects
except ImportError:  # a revision from before the consumer had a module of its own (a --baseline)
    from streetwatch.central.ingest import AlertConsumer, freeze_startup_objects  # type: ignore[attr-defined,no-redef]


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def forget_session(url: str, client_id: str) -> None:
    """Connect once with a clean session: the broker drops the worker's persistent session, so it
    does not keep taking a share of the subscription (and queueing) after the run."""
    host, port, _tls = parse_broker_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    try:
        client.connect(host, port, 30)
        client.loop_start()
        time.sleep(0.2)
        client.disconnect()
        client.loop_stop()
    except OSError as exc:
        logging.warning("could not clear the session of %s: %s", client_id, exc)


def jetstream_settings(servers: str | None) -> dict[str, object]:
    if not servers:
        return {}
    return {"kind": "jetstream", "jetstream": {"servers": servers.split(",")}}


def make_consumer(
    settings: CentralSettings, factory: sessionmaker[Session], *, amqp: str | None = None
) -> AlertConsumer | JetStreamConsumer | AmqpQuorumConsumer:
    """The consumer `central serve` would run for these settings (or, with `amqp` nodes, the
    benchmark's RabbitMQ quorum-queue consumer)."""
    if amqp:
        from amqp_consumer import AmqpQuorumConsumer

        return AmqpQuorumConsumer(settings=settings, session_factory=factory, urls=amqp.split(","))
    if settings.broker.kind == "jetstream":
        from streetwatch.central.consumer_jetstream import JetStreamConsumer

        return JetStreamConsumer(settings=settings, session_factory=factory)
    return AlertConsumer(settings=settings, session_factory=factory)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", required=True)
    p.add_argument("--mqtt", required=True)
    p.add_argument("--protocol", default="5")
    p.add_argument("--client-id", required=True)
    p.add_argument("--subscription", required=True)
    p.add_argument("--evidence-dir", type=Path, required=True)
    p.add_argument("--jetstream", help="comma list of NATS servers: pull from JetStream (broker.kind: jetstream)")
    p.add_argument("--amqp", help="comma list of RabbitMQ AMQP URLs: consume the quorum queue (bench/amqp_consumer.py)")
    p.add_argument("--username", help="broker login (the password in $SW_BENCH_BROKER_PASSWORD)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    engine = make_engine(args.db)
    settings = CentralSettings(
        broker=BrokerSettings(
            url=args.mqtt, client_id=args.client_id, subscription=args.subscription, protocol=args.protocol,
            username=args.username, **jetstream_settings(args.jetstream),
        ),
        broker_password=os.environ.get("SW_BENCH_BROKER_PASSWORD") if args.username else None,
        evidence_dir=args.evidence_dir,
    )
    consumer = make_consumer(settings, make_session_factory(engine), amqp=args.amqp)
    consumer.start()
    freeze_startup_objects()  # as `central serve` does
    if not consumer.wait_subscribed(30):
        print(json.dumps({"error": "not subscribed within 30 s"}), flush=True)
        return 1
    cpu_start = cpu_seconds()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    consumer.stop()
    cpu = cpu_seconds() - cpu_start
    if not (args.jetstream or args.amqp):  # the durable consumer or queue is shared by design: it stays
        forget_session(args.mqtt, args.client_id)
    s = consumer.summary
    counts = {"created": s.created, "joined": s.joined, "pending": s.pending, "duplicate": s.duplicate,
              "dead_letter": s.dead_letter, "db_errors": s.db_errors}
    print(json.dumps({"summary": counts, "cpu_s": cpu}), flush=True)
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
