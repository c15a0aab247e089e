"""A three-node RabbitMQ cluster on this machine (MQTT plugin on every node), for the benchmark.

Each node is Debian's `rabbitmq-server` run as a child process with its own node name
(`sw<N>-<tag>@localhost`), AMQP, MQTT and distribution ports, and data and log folders under
`folder`; all three share an Erlang cookie kept in `folder` (HOME points there), so neither the
machine's own RabbitMQ nor its cookie is touched. Nodes 2 and 3 join node 1 with
`rabbitmqctl stop_app / join_cluster / start_app`. One user (administrator on `/`) is made for
the workers and the publisher. A node killed with SIGKILL and started again keeps its data folder
(what a crashed node has) and rejoins by itself. Used by scripts/bench_central.py (`--brokers`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fault_harness import Process, accepts, wait_for
from support import free_port

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the plain script: /usr/sbin's switches user
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
QUEUES = "/usr/lib/rabbitmq/bin/rabbitmq-queues"


@dataclass(frozen=True)
class RabbitPorts:
    amqp: int
    mqtt: int
    dist: int


def node_config(ports: RabbitPorts) -> str:
    """rabbitmq.conf of one node: loopback listeners only, MQTT logins required, MQTT publishes
    routed through `amq.topic` (topic `a/b/c` -> routing key `a.b.c`)."""
    return (f"listeners.tcp.default = 127.0.0.1:{ports.amqp}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{ports.mqtt}\n"
            "mqtt.allow_anonymous = false\n"
            "mqtt.vhost = /\n"
            "mqtt.exchange = amq.topic\n"
            "loopback_users = none\n"
            "log.file.level = warning\n"
            "cluster_partition_handling = pause_minority\n")


class RabbitNode(Process):
    """One rabbitmq-server (an Erlang VM) with its own name, ports and folders."""

    def __init__(self, name: str, folder: Path, ports: RabbitPorts) -> None:
        self.node_name = name
        self.ports = ports
        self.folder = folder
        self.pid_file = folder / f"{name.split('@')[0]}.pid"
        config = folder / f"{name.split('@')[0]}.conf"
        config.write_text(node_config(ports))
        self.env = {**os.environ, "HOME": str(folder), "RABBITMQ_NODENAME": name,
                    "RABBITMQ_NODE_PORT": str(ports.amqp), "RABBITMQ_DIST_PORT": str(ports.dist),
                    "RABBITMQ_CONFIG_FILE": str(config.with_suffix("")),
                    "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"), "RABBITMQ_LOG_BASE": str(folder / "log"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
                    "RABBITMQ_PID_FILE": str(self.pid_file)}
        super().__init__(f"rabbit-{name}", [SERVER], folder / f"{name.split('@')[0]}.log", env=self.env)

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.ports.mqtt}"

    def amqp_url(self, user: str, password: str) -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.ports.amqp}/%2F"

    def start(self) -> None:
        super().start()
        wait_for(lambda: (accepts(self.ports.amqp) and accepts(self.ports.mqtt)) or not self.alive, 90,
                 f"rabbitmq node {self.node_name}", lambda: self.log()[-2000:])
        if not self.alive:
            raise RuntimeError(f"rabbitmq-server {self.node_name} did not start: {self.log()[-2000:]}")

    @property
    def pid(self) -> int:
        """The Erlang VM's pid (the start script does not exec it, so it is not our child's)."""
        return int(self.pid_file.read_text().split()[0])

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except (OSError, ValueError):
            return super().alive  # not written yet: as long as the script runs, it is starting
        return True

    def kill(self) -> None:
        """SIGKILL the VM (a crash), then its start script."""
        with contextlib.suppress(OSError, ValueError):
            os.kill(self.pid, signal.SIGKILL)
        wait_for(lambda: not _running(self.pid_file), 10, f"rabbitmq node {self.node_name} to die")
        self.pid_file.unlink(missing_ok=True)
        super().kill()

    def ctl(self, *args: str, tool: str = CTL, timeout_s: float = 60) -> str:
        """rabbitmqctl (or `tool`) against this node; its output; raises on failure."""
        done = subprocess.run([tool, "-n", self.node_name, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(tool).name} {' '.join(args)} on {self.node_name}: {done.stderr[-1500:]}")
        return done.stdout


def _running(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
    except (OSError, ValueError):
        return False
    return True


class RabbitCluster:
    """Three nodes sw1..sw3 (suffixed with a random tag, so runs never collide) and one login."""

    def __init__(self, folder: Path, *, user: str = "streetwatch") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        cookie = folder / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        (folder / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        tag = secrets.token_hex(3)
        self.nodes = [RabbitNode(f"sw{i + 1}-{tag}@localhost", folder,
                                 RabbitPorts(free_port(), free_port(), free_port())) for i in range(3)]
        self.user = user
        self.password = secrets.token_hex(12)

    def start(self) -> None:
        first = self.nodes[0]
        first.start()
        for node in self.nodes[1:]:
            node.start()
            node.ctl("stop_app")
            node.ctl("join_cluster", first.node_name)
            node.ctl("start_app")
        first.ctl("await_online_nodes", "3")
        first.ctl("add_user", self.user, self.password)
        first.ctl("set_user_tags", self.user, "administrator")
        first.ctl("set_permissions", "-p", "/", self.user, ".*", ".*", ".*")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def amqp_urls(self) -> list[str]:
        return [node.amqp_url(self.user, self.password) for node in self.nodes]

    def node(self, name: str) -> RabbitNode:
        return next(node for node in self.nodes if node.node_name == name)

    def queue_leader(self, queue: str) -> str | None:
        """The node leading quorum queue `queue`, as a live node reports it (None if none answers)."""
        fields = self._queue_info(queue, "leader")
        return fields[0] if fields else None

    def queue_members(self, queue: str) -> list[str]:
        """The nodes holding a replica of quorum queue `queue`."""
        fields = self._queue_info(queue, "members")
        return [m.strip("[],'\"") for m in fields if m.strip("[],'\"")]

    def _queue_info(self, queue: str, item: str) -> list[str]:
        for node in self.nodes:
            if not node.alive:
                continue
            try:
                out = node.ctl("list_queues", "name", item, "--quiet", "--no-table-headers", timeout_s=20)
            except (RuntimeError, subprocess.TimeoutExpired):
                continue
            for line in out.splitlines():
                fields = line.split(None, 1)
                if len(fields) == 2 and fields[0] == queue:
                    return fields[1].replace(",", " ").split()
        return []


__all__ = ["RabbitCluster", "RabbitNode", "RabbitPorts", "node_config"]
