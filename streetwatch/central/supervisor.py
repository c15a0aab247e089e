"""The threads `central serve` runs, watched: one that ends unasked stops the process, loudly.

Ingest and the workflow run in threads beside the web app. Before, an ingest thread that died left
the web answering as if nothing happened while alerts piled up unacknowledged at the broker. Now
the supervisor notices within `CHECK_S`, logs at ERROR which thread ended and why, and has the
process stop with exit status 1, so systemd, Docker or Kubernetes restarts it. Since no message
can kill ingest (consumer.py turns every failure into a dead letter), the restart makes progress.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

CHECK_S = 0.5


@dataclass
class Supervisor:
    """Start threads with `start`; `check()` (or `watch()` in the background) stops the process
    through `stop` and `on_failure` when one of them ended while `stop` was not set."""

    stop: threading.Event
    on_failure: Callable[[], None] = lambda: None
    failed: str | None = None
    _threads: dict[str, threading.Thread] = field(default_factory=dict)
    _errors: dict[str, BaseException] = field(default_factory=dict)

    def start(self, name: str, target: Callable[..., object], *args: object) -> threading.Thread:
        """Run `target(*args)` in a daemon thread named `name`, remembering how it ended."""

        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # recorded for the log line; the thread ends either way
                self._errors[name] = exc
                raise

        thread = threading.Thread(target=run, name=f"central-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()
        return thread

    def check(self) -> bool:
        """True while every thread runs (or a stop was asked for); else stop everything, once."""
        if self.failed is not None or self.stop.is_set():
            return self.failed is None
        for name, thread in self._threads.items():
            if not thread.is_alive():
                self._fail(name)
                return False
        return True

    def watch(self) -> threading.Thread:
        """`check` every CHECK_S in a thread of its own, until a stop (for a foreground web server)."""

        def loop() -> None:
            while not self.stop.wait(CHECK_S) and self.check():
                pass

        thread = threading.Thread(target=loop, name="central-supervisor", daemon=True)
        thread.start()
        return thread

    def join(self, timeout_s: float) -> None:
        for thread in self._threads.values():
            thread.join(timeout_s)

    def _fail(self, name: str) -> None:
        self.failed = name
        error = self._errors.get(name)
        cause = f"{type(error).__name__}: {error}" if error is not None else "it returned"
        log.error("central: the %s thread ended unexpectedly (%s); stopping with exit status 1 so the "
                  "service manager restarts the process", name, cause)
        self.stop.set()
        self.on_failure()


__all__ = ["CHECK_S", "Supervisor"]
