"""The publisher of a run: a process of its own that publishes every message with QoS 1, as edge
boxes do, and records when each unique alert was first published (for the visibility reader).

Paced (`rate` messages/s) or as fast as a window allows: at most `window` unique alerts published
and not yet visible in the database (Mosquitto drops QoS 1 messages beyond `max_queued_messages`,
1000 by default, per client), so the workers never wait for work and the broker never drops.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized

import paho.mqtt.client as mqtt

from streetwatch.mqtt_common import parse_broker_url


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: its topic, the index of its unique alert, and how to build it."""

    topic: str
    unique: int
    build: Callable[[], bytes]


@dataclass
class Progress:
    """What the publisher and the visibility reader share across the process boundary."""

    sent_at: ctypes.Array[ctypes.c_double]  # unix time each unique alert was first published (0: not yet)
    published: Synchronized[int]  # unique alerts published so far (in first-publish order)
    visible: Synchronized[int]  # unique alerts seen in the database so far (the reader sets it)

    @classmethod
    def for_uniques(cls, ctx: mp.context.BaseContext, count: int) -> Progress:
        return cls(ctx.Array("d", count, lock=False), ctx.Value("q", 0), ctx.Value("q", 0))  # type: ignore[arg-type]


def publish_all(
    messages: Sequence[Outgoing], *, mqtt_url: str, progress: Progress, rate: float | None, window: int,
    login: tuple[str, str] | None = None, connections: int = 1,
) -> None:
    """Publish every message (QoS 1, MQTT 3.1.1): paced at `rate`/s, or as fast as `window` allows;
    `login` (user, password) where the broker asks for one. With several `connections` each topic
    keeps to one of them, as each box has its own (a broker may handle one connection's
    publishes one after the other: the NATS gateway stores each in its stream before the next)."""
    host, port, _tls = parse_broker_url(mqtt_url)
    clients = [_connect(host, port, login) for _ in range(max(1, connections))]
    started = time.time()
    infos = []
    published = 0
    for i, message in enumerate(messages):
        if rate is not None:
            delay = started + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        else:
            while published - progress.visible.value > window:
                time.sleep(0.0005)
        payload = message.build()
        first = progress.sent_at[message.unique] == 0.0
        if first:
            progress.sent_at[message.unique] = time.time()
        client = clients[zlib.crc32(message.topic.encode()) % len(clients)]
        infos.append(client.publish(message.topic, payload, qos=1))
        if first:
            published += 1
            progress.published.value = published
    for info in infos[-200 * len(clients):]:
        info.wait_for_publish(60)
    for client in clients:
        client.disconnect()
        client.loop_stop()


def _connect(host: str, port: int, login: tuple[str, str] | None) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    if login is not None:
        client.username_pw_set(*login)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect(host, port, 30)
    client.loop_start()
    return client
