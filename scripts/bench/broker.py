"""The MQTT broker of a benchmark run: one given by URL, or a Mosquitto started on a free port, or
the embedded broker when Mosquitto is not installed.

A Mosquitto of the run's own (temporary config, no persistence, Mosquitto's default queue limits)
keeps the benchmark off a broker that others share: test consumers on the same shared subscription
would take a share of the alerts.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench_common import free_port

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Broker:
    url: str
    protocol: str  # the MQTT version central workers speak to it: "5" or "3.1.1"
    description: str
    pids: tuple[int, ...] = ()  # the broker's processes when the run started it (for its CPU time)


@contextmanager
def broker_for_run(url: str | None, *, protocol: str | None) -> Iterator[Broker]:
    """The broker at `url`, else a Mosquitto of our own, else the embedded one (MQTT 3.1.1 only)."""
    if url:
        yield Broker(url, protocol or "5", f"{url} (given)")
        return
    if shutil.which("mosquitto"):
        with _mosquitto() as (port, version, pid):
            description = f"Mosquitto {version} on port {port}, started for this run"
            yield Broker(f"mqtt://127.0.0.1:{port}", protocol or "5", description, (pid,))
        return
    from streetwatch.embedded_broker import start_embedded_broker

    port = free_port()
    embedded = start_embedded_broker(port)
    try:
        yield Broker(f"mqtt://127.0.0.1:{port}", "3.1.1", f"embedded broker (iotcore) on port {port}")
    finally:
        embedded.stop()


@contextmanager
def _mosquitto() -> Iterator[tuple[int, str, int]]:
    folder = Path(tempfile.mkdtemp(prefix="bench-mosquitto-"))
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n")
    log_file = (folder / "mosquitto.log").open("wb")
    process = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process)
        version = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.split("\n")[0]
        yield port, version.removeprefix("mosquitto version ").strip(), process.pid
    finally:
        process.terminate()
        process.wait(10)
        log_file.close()
        dropped = "Outgoing messages are being dropped" in (folder / "mosquitto.log").read_text(errors="replace")
        if dropped:
            log.warning("Mosquitto dropped messages (max_queued_messages): see the lost alerts row")
        shutil.rmtree(folder, ignore_errors=True)


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mosquitto exited with {process.returncode} before listening on port {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"mosquitto did not listen on port {port} within {timeout_s:.0f} s")
