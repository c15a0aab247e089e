"""Stopping a long-running process on SIGTERM/SIGINT without doing the stopping in the handler.

A Python signal handler runs on the main thread between two bytecodes of whatever it was doing,
perhaps in the middle of a log line that holds the logging handler's lock. Stopping a worker there
(joining paho's network thread, which logs too) deadlocked an edge until it was killed. So the
handler only records the signal and calls `request_stop` (which must just set a flag or an event);
the main thread sees the flag, returns from its loop and stops the worker on its normal path.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType


class StopSignals:
    """A signal handler that asks for a stop and remembers which signals came (no joins, no logging)."""

    def __init__(self, request_stop: Callable[[], None]) -> None:
        self.request_stop = request_stop
        self.received: list[int] = []

    def install(self, *signums: int) -> StopSignals:
        for signum in signums or (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self)
        return self

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        self.request_stop()
