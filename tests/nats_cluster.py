"""A three-node NATS JetStream cluster on this machine, from the committed configuration.

Each node is `nats-server -c node.conf` (configs/nats/node.conf, copied with the accounts that
scripts/nats_accounts.py makes) with its own ports and store folder from the environment, routes to
the other two and an MQTT gateway. Used by tests/faults (the ACL and the node-loss tests) and by
scripts/bench_central.py (`--brokers ... nats`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fault_harness import Process, accepts, wait_for
from support import free_port

REPO = Path(__file__).resolve().parents[1]
ACCOUNT = "STREETWATCH"
MQTT_STREAM = "$MQTT_msgs"


@dataclass(frozen=True)
class NodePorts:
    client: int
    mqtt: int
    cluster: int
    http: int


class NatsNode(Process):
    """One nats-server; SIGKILL and start again keep its store folder (what a crashed node has)."""

    def __init__(self, name: str, folder: Path, ports: NodePorts, routes: list[str]) -> None:
        self.node_name = name
        self.ports = ports
        store = folder / f"store-{name}"
        env = {**os.environ, "SW_NATS_NAME": name, "SW_NATS_HOST": "127.0.0.1",
               "SW_NATS_PORT": str(ports.client), "SW_NATS_MQTT_PORT": str(ports.mqtt),
               "SW_NATS_CLUSTER_PORT": str(ports.cluster), "SW_NATS_HTTP_PORT": str(ports.http),
               "SW_NATS_STORE_DIR": str(store),
               **{f"SW_NATS_ROUTE_{i + 1}": route for i, route in enumerate(routes)}}
        super().__init__(f"nats-{name}", ["nats-server", "-c", str(folder / "node.conf")],
                         folder / f"{name}.log", env=env)

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.ports.mqtt}"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.ports.client}"

    def start(self) -> None:
        super().start()
        wait_for(lambda: (accepts(self.ports.client) and accepts(self.ports.mqtt)) or not self.alive, 20,
                 f"nats node {self.node_name}")
        if not self.alive:
            raise RuntimeError(f"nats-server {self.node_name} did not start: {self.log()[-2000:]}")

    def monitor(self, path: str) -> dict[str, object]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports.http}{path}", timeout=2) as response:
            return dict(json.loads(response.read()))


class NatsCluster:
    """Three nodes n1..n3 with the accounts of `users` ('central' and edge ids), with the committed
    permissions or those of `permissions`."""

    def __init__(self, folder: Path, users: list[str], *, permissions: Path | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        extra = ["--permissions", str(permissions)] if permissions is not None else []
        subprocess.run([sys.executable, str(REPO / "scripts" / "nats_accounts.py"), str(folder), *users, *extra],
                       check=True, capture_output=True)
        lines = (folder / "credentials").read_text().split()
        self.credentials = dict(line.split(":", 1) for line in lines)
        ports = [NodePorts(free_port(), free_port(), free_port(), free_port()) for _ in range(3)]
        routes = [f"nats://127.0.0.1:{p.cluster}" for p in ports]
        self.nodes = [NatsNode(f"n{i + 1}", folder, p, routes) for i, p in enumerate(ports)]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        wait_for(self.ready, 30, "the cluster's JetStream meta leader", lambda: self.nodes[0].log()[-1500:])

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def ready(self) -> bool:
        """Every live node says JetStream is healthy (a meta leader, its streams current)."""
        try:
            return all(node.monitor("/healthz").get("status") == "ok" for node in self.nodes if node.alive)
        except OSError:
            return False

    @property
    def nats_urls(self) -> list[str]:
        return [node.nats_url for node in self.nodes]

    def node(self, name: str) -> NatsNode:
        return next(node for node in self.nodes if node.node_name == name)

    def stream_leader(self, stream: str = MQTT_STREAM, *, consumer: str | None = None) -> str | None:
        """The node leading `stream`'s replicas, or its durable `consumer`'s (None while none is
        elected), as a live node reports it."""
        for node in self.nodes:
            if not node.alive:
                continue
            try:
                found = node.monitor(f"/jsz?acc={ACCOUNT}&streams=true&consumers=true")
            except OSError:
                continue
            for account in found.get("account_details", []) or []:  # type: ignore[union-attr]
                for detail in account.get("stream_detail", []) or []:
                    if detail.get("name") != stream:
                        continue
                    if consumer is not None:
                        detail = next((c for c in detail.get("consumer_detail", []) or []
                                       if c.get("name") == consumer), {})
                    leader = (detail.get("cluster") or {}).get("leader")
                    return str(leader) if leader else None
        return None


__all__ = ["NatsCluster", "NatsNode", "NodePorts"]
