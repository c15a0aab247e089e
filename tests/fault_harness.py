"""Real processes for the fault-injection suite (tests/faults/) and the soak script.

Everything here is a real process the caller controls: a Mosquitto broker (`mosquitto -c conf`
on a free loopback port, persistence on so a killed broker comes back with its sessions), `edge
run` workers (debug logging, so every alert id the edge hands to the broker is in its log) and
`central serve --no-web` ingest workers on the test database. The ledger compares what the edge
published with what central stored.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from sqlalchemy import create_engine, text

from streetwatch import demo

# Evidence-set pieces go through the same outbox and publish path as `media:<sha256>:<piece>`:
# they are not alerts (central stores them as files), so the ledger leaves them out.
PUBLISHED = re.compile(r"alert (?!media:)(\S+) published \(mid")
REFUSED = re.compile(r"outbox full, alert (\S+) not stored")


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str,
             why: Callable[[], str] | None = None) -> float:
    """Poll until `condition()`; return the seconds it took, fail naming `what` (and `why()`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}" + (f": {why()}" if why else ""))


class Process:
    """One child process with its output in a log file; restartable with the same command."""

    def __init__(self, name: str, command: list[str], log_path: Path, *, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no clean-up, no goodbye to the broker (a crash or a power cut)."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM and wait; the exit status (SIGKILL after the timeout)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Mosquitto(Process):
    """Mosquitto on a free port; persistence written on every change, so a SIGKILL keeps sessions.

    Without persistence a crashed broker comes back without central's session: alerts the edge
    publishes before central has re-subscribed reach no subscriber and are dropped (lost).
    """

    def __init__(self, workdir: Path, port: int, *, conf: str = "") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = port
        path = workdir / "mosquitto.conf"
        path.write_text(conf or (
            f"listener {port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {workdir}/\n"
            "autosave_on_changes true\nautosave_interval 1\n"
            "max_queued_messages 0\nmax_inflight_messages 20\n"
            # Run as root, mosquitto would switch to user 'mosquitto', who cannot write the
            # persistence file under the test's root-owned tmp folder (ignored when not root).
            "user root\n"
        ))
        super().__init__("mosquitto", ["mosquitto", "-c", str(path)], workdir / "mosquitto.log")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        super().start()
        wait_for(lambda: accepts(self.port) or not self.alive, 10, f"mosquitto on port {self.port}")
        if not self.alive:
            raise RuntimeError(f"mosquitto did not start: {self.log()[-2000:]}")


def edge_config(workdir: Path, *, edge_id: str, clip: Path | str, broker_url: str, loop: bool = True,
                extra: dict[str, object] | None = None) -> Path:
    """The demo street camera (a file, looped, or an rtsp:// URL), with short dwells and 10 s
    reminders: a steady alert stream. `extra` adds top-level edge settings (outbox caps, metrics)."""
    config = demo.edge_config(workdir, {"cam-street": clip}, broker_url, "5")  # type: ignore[dict-item]
    config["edge_id"] = edge_id
    config["outbox"] = str(workdir / f"{edge_id}.outbox.sqlite")
    config["rules"] = {"reminder_interval_s": 10, "end_after_s": 30}
    config["evidence"] = {"max_width": 480, "jpeg_quality": 60}
    camera = config["cameras"][0]  # type: ignore[index]
    camera["loop"] = loop
    for zone in camera["zones"]:
        zone["dwell_s"] = 5
    config.update(extra or {})
    path = workdir / f"{edge_id}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def edge_process(workdir: Path, config: Path, model_dir: Path, name: str) -> Process:
    env = {**os.environ, "STREETWATCH_MODEL_DIR": str(model_dir)}
    command = [sys.executable, "-m", "streetwatch.edge.cli", "-v", "run", "--config", str(config)]
    return Process(name, command, workdir / f"{name}.log", env=env)


# The delivery audit at test speed: gaps looked at twice a second, asked for after 2 s.
FAST_DELIVERY = {"audit_interval_s": 0.5, "resend_after_s": 2, "resend_every_s": 5}


def central_process(workdir: Path, *, database_url: str, broker_url: str, client_id: str,
                    subscription: str | None = None, settings: dict[str, object] | None = None,
                    broker_settings: dict[str, object] | None = None) -> Process:
    """`central serve --no-web` with its own persistent session (client id), by default in the
    shared group; `settings` adds top-level sections of central's YAML, `broker_settings` keys of
    its broker section (a JetStream cluster's)."""
    config = workdir / f"{client_id}.yaml"
    broker: dict[str, object] = {"url": broker_url, "protocol": "5", "client_id": client_id}
    if subscription:
        broker["subscription"] = subscription
    broker.update(broker_settings or {})
    config.write_text(yaml.safe_dump({
        "broker": broker,
        "evidence_dir": str(workdir / "evidence"),
        "delivery": FAST_DELIVERY,
        **(settings or {}),
    }))
    command = [sys.executable, "-m", "streetwatch.central.cli", "--database-url", database_url,
               "--config", str(config), "serve", "--no-web"]
    return Process(client_id, command, workdir / f"{client_id}.log")


def published_ids(*logs: str) -> set[str]:
    """Alert ids the edge handed to the broker (its debug log: one line per publish attempt)."""
    return {match for log in logs for match in PUBLISHED.findall(log)}


def refused_ids(*logs: str) -> set[str]:
    """Alert ids the edge could not store because its outbox was full (logged as errors)."""
    return {match for log in logs for match in REFUSED.findall(log)}


def outbox_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
        return {row[0] for row in conn.execute("SELECT alert_id FROM outbox WHERE acked_at IS NULL")}


@dataclass(frozen=True)
class Stored:
    alert_ids: list[str]  # one entry per row: a duplicate would show twice
    episode_cases: dict[str, set[int]]  # episode -> the cases its alerts joined
    cases: int


def stored(database_url: str) -> Stored:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT alert_id, episode_id, case_id FROM alerts")).all()
            cases = int(conn.execute(text("SELECT count(*) FROM cases")).scalar_one())
    finally:
        engine.dispose()
    episodes: dict[str, set[int]] = {}
    for _alert_id, episode_id, case_id in rows:
        if case_id is not None:
            episodes.setdefault(episode_id, set()).add(int(case_id))
    return Stored([row[0] for row in rows], episodes, cases)


@dataclass(frozen=True)
class Ledger:
    published: int
    stored: int
    lost: set[str]
    phantom: set[str]
    duplicated: int
    split_episodes: dict[str, set[int]]
    cases: int


def ledger(database_url: str, published: set[str], *, waiting: set[str] = frozenset()) -> Ledger:  # type: ignore[assignment]
    """Compare published alert ids (minus those still waiting in an outbox) with the database."""
    db = stored(database_url)
    ids = set(db.alert_ids)
    return Ledger(
        published=len(published),
        stored=len(db.alert_ids),
        lost=published - waiting - ids,
        phantom=ids - published,
        duplicated=len(db.alert_ids) - len(ids),
        split_episodes={e: c for e, c in db.episode_cases.items() if len(c) > 1},
        cases=db.cases,
    )


def all_stored(database_url: str, ids: set[str]) -> bool:
    return ids <= set(stored(database_url).alert_ids)


def rss_kib(pid: int) -> int:
    """Resident set size of a live process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
