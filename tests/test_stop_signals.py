"""The stop-signal handler `edge run` and `central serve --no-web` install (streetwatch/stop_signals.py)."""

from __future__ import annotations

import io
import logging
import signal
import threading

from streetwatch.stop_signals import StopSignals


def test_the_signal_handler_only_asks_for_a_stop_even_while_logging_is_busy() -> None:
    """SIGTERM runs its handler on the main thread between two bytecodes, perhaps in the middle of
    a logging call that holds a handler's lock. Stopping the worker there (joining paho's network
    thread, which logs too) deadlocked an edge until it was killed: the handler must only ask for
    the stop, without logging, and the process stops the worker on its normal path."""
    requested: list[int] = []
    handler = StopSignals(lambda: requested.append(1))
    busy = logging.StreamHandler(io.StringIO())  # a handler another thread is in the middle of
    root = logging.getLogger()
    root.addHandler(busy)
    level = root.level
    root.setLevel(logging.DEBUG)  # so that any log call in the handler would reach `busy`
    held = threading.Event()
    release = threading.Event()

    def hold_the_lock() -> None:
        with busy.lock:  # type: ignore[union-attr]
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock, daemon=True)
    holder.start()
    held.wait(5)
    try:
        call = threading.Thread(target=handler, args=(signal.SIGTERM, None), daemon=True)
        call.start()
        call.join(2)
        assert not call.is_alive(), "the handler blocked on the logging lock"
    finally:
        release.set()
        root.removeHandler(busy)
        root.setLevel(level)
    assert requested == [1] and handler.received == [signal.SIGTERM]


def test_installed_handlers_answer_a_real_signal() -> None:
    requested: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    try:
        handler = StopSignals(lambda: requested.append(1)).install(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # delivered to the main thread, where pytest runs this
        assert requested == [1] and handler.received == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)
