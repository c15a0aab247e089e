"""Helpers shared by tests (importable as `support`; conftest files are not modules to import)."""

from __future__ import annotations

import socket
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class BrokerEndpoint:
    url: str
    host: str
    port: int
    protocol: str  # "5" for Mosquitto, "3.1.1" for the embedded broker
    embedded: bool
