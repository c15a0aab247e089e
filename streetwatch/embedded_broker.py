"""The embedded MQTT broker (iotcore: rumqttd in a child process) for the demo and for tests.

It speaks MQTT 3.1.1 only (an MQTT 5 connect is closed), so nothing may depend on a v5 feature.
Its default payload limit (20 KiB) is below an alert with evidence, so it is raised above the wire
limit: an oversized alert then reaches central and is dead-lettered there with its reason.
"""

from __future__ import annotations

from iotcore import Broker

from streetwatch.edge.alerts import MAX_PAYLOAD_BYTES

EMBEDDED_PROTOCOL = "3.1.1"


def start_embedded_broker(port: int, *, host: str = "127.0.0.1") -> Broker:
    """Start a broker on host:port and return it once it accepts connections; `stop()` ends it."""
    return Broker(port=port, listen=host, max_payload_size=2 * MAX_PAYLOAD_BYTES).start()
