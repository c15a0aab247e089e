"""Central worker processes of a run: started from a chosen checkout, told to stop, their figures read.

Each worker is `bench/central_worker.py` in a fresh interpreter whose PYTHONPATH starts with the
checkout under test (`code`), so a run can time two revisions side by side on the same broker,
database server and data. Its stdout speaks a two-line protocol: `ready`, then one JSON line.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

WORKER_SCRIPT = Path(__file__).resolve().with_name("central_worker.py")


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker of a run shares."""

    code: Path  # the checkout whose `streetwatch` the workers import
    db_url: str
    mqtt_url: str
    protocol: str
    evidence_dir: Path
    jetstream: tuple[str, ...] = ()  # NATS servers: the workers pull from JetStream (broker.kind: jetstream)
    amqp: tuple[str, ...] = ()  # RabbitMQ nodes: the workers consume the quorum queue over AMQP
    username: str | None = None  # the workers' broker login; the password goes in $SW_BENCH_BROKER_PASSWORD
    password: str | None = None


@dataclass
class WorkerFigures:
    """The workers' outcome counts and the CPU seconds they used while subscribed."""

    summary: Counter[str]
    cpu_s: float


class Worker:
    def __init__(self, spec: WorkerSpec, *, client_id: str, subscription: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(spec.code), os.environ.get("PYTHONPATH", "")]))
        command = [
            sys.executable, str(WORKER_SCRIPT), "--db", spec.db_url, "--mqtt", spec.mqtt_url,
            "--protocol", spec.protocol, "--client-id", client_id, "--subscription", subscription,
            "--evidence-dir", str(spec.evidence_dir),
        ]
        if spec.jetstream:
            command += ["--jetstream", ",".join(spec.jetstream)]
        if spec.amqp:
            command += ["--amqp", ",".join(spec.amqp)]
        if spec.username:
            command += ["--username", spec.username]
            env["SW_BENCH_BROKER_PASSWORD"] = spec.password or ""
        self.client_id = client_id
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=spec.code
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.strip())
        self._lines.put("")  # end of output

    def next_line(self, timeout_s: float) -> str:
        try:
            return self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise SystemExit(f"worker {self.client_id}: no answer within {timeout_s:.0f} s") from None

    def stop(self) -> dict[str, object]:
        assert self.process.stdin is not None
        self.process.stdin.write("stop\n")
        self.process.stdin.close()
        line = self.next_line(120)
        self.process.wait(30)
        if not line.startswith("{"):
            raise SystemExit(f"worker {self.client_id}: exited with {self.process.returncode} and no figures")
        figures: dict[str, object] = json.loads(line)
        return figures


class WorkerGroup:
    """`count` workers on one shared subscription, as a city runs several `central serve --no-web`."""

    def __init__(self, spec: WorkerSpec, *, count: int, group: str) -> None:
        subscription = f"$share/{group}/streetwatch/v1/alerts/#"
        self.workers = [Worker(spec, client_id=f"{group}-w{i}", subscription=subscription) for i in range(count)]

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        for worker in self.workers:
            line = worker.next_line(max(1.0, deadline - time.monotonic()))
            if line != "ready":
                raise SystemExit(f"worker {worker.client_id}: {line or 'exited'} (broker and database reachable?)")

    def terminate(self) -> None:
        """End every worker at once (a run that could not start)."""
        for worker in self.workers:
            worker.process.kill()
            worker.process.wait(10)

    def stop(self) -> WorkerFigures:
        summary: Counter[str] = Counter()
        cpu = 0.0
        for worker in self.workers:
            figures = worker.stop()
            summary.update(figures["summary"])  # type: ignore[arg-type]
            cpu += float(figures["cpu_s"])  # type: ignore[arg-type]
        return WorkerFigures(summary, cpu)
