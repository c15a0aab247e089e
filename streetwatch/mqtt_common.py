"""MQTT client helpers shared by edge and central: broker URLs, client factory, credentials, TLS.

Imports only the standard library and paho-mqtt (v2 callback API), never OpenCV or onnxruntime,
so central can use it. Nothing here depends on an MQTT 5-only feature: the embedded broker
(iotcore) speaks 3.1.1 only, so every behaviour must work on both protocol versions.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

MqttProtocol = Literal["3.1.1", "5"]
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# How long a broker keeps a persistent MQTT 5 session after a disconnect. 3.1.1 has no expiry:
# a clean_session=False session lives until the broker forgets it.
SESSION_EXPIRY_S = 7 * 24 * 3600
_PROTOCOLS: dict[str, mqtt.MQTTProtocolVersion] = {"3.1.1": mqtt.MQTTv311, "5": mqtt.MQTTv5}


class TlsFiles(Protocol):
    """The TLS file settings a client needs; `broker_config.TlsConfig` (edge and central) fits.

    A structural type, so this module needs no pydantic model to be handed one.
    """

    @property
    def ca_file(self) -> Path | None: ...

    @property
    def cert_file(self) -> Path | None: ...

    @property
    def key_file(self) -> Path | None: ...


class MqttSetupError(ValueError):
    """A broker URL or client setting that cannot work; the message names the field."""


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    """`mqtt://host[:port]` or `mqtts://host[:port]` -> (host, port, tls).

    Default ports: 1883 for mqtt, 8883 for mqtts.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise MqttSetupError(f"broker.url: expected mqtt://host:port or mqtts://host:port, got {url!r} "
                             f"({exc})") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise MqttSetupError(f"broker.url: scheme must be mqtt or mqtts, got {parts.scheme!r} in {url!r}")
    if not parts.hostname:
        raise MqttSetupError(f"broker.url: no host in {url!r}; expected mqtt://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MqttSetupError(f"broker.url: expected no path or query, got {url!r}")
    if port == 0:
        raise MqttSetupError(f"broker.url: port must be 1-65535, got 0 in {url!r}")
    return parts.hostname, port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts"


class BrokerNodes:
    """The nodes of one clustered broker (`broker.urls`), tried in turn by one paho client.

    paho-mqtt v2 connects to one host at a time and reconnects to the one it was given. Wire
    `lost()` to on_connect_fail and to an unasked on_disconnect, and `before_connect(client)` to
    on_pre_connect: after a failed or dropped connection, the next (re)connect goes to the next node.
    A connection that works stays where it is; one URL behaves as before. Used from paho's network
    thread only (those callbacks), so it needs no lock.
    """

    def __init__(self, urls: Sequence[str]) -> None:
        parsed = [parse_broker_url(url) for url in urls]
        if not parsed:
            raise MqttSetupError("broker.urls: give at least one mqtt://host:port")
        if len({tls for _host, _port, tls in parsed}) > 1:
            raise MqttSetupError(f"broker.urls: one scheme for every node, got {list(urls)}")
        self.nodes = [(host, port) for host, port, _tls in parsed]
        self.tls = parsed[0][2]
        self._index = 0
        self._move_on = False

    @property
    def current(self) -> tuple[str, int]:
        return self.nodes[self._index]

    def lost(self) -> None:
        """The connection to the current node failed or dropped: the next attempt goes to the next."""
        self._move_on = True

    def before_connect(self, client: mqtt.Client) -> bool:
        """Point `client` at the next node if the last connection was lost; True if it moved."""
        moved = self._move_on and len(self.nodes) > 1
        self._move_on = False
        if moved:
            self._index = (self._index + 1) % len(self.nodes)
            # paho's host/port setters refuse while it is CONNECTING, which is where on_pre_connect
            # runs; reconnect() reads these two right after it (socket, and TLS server name).
            client._host, client._port = self.current
        return moved


def make_client(
    *,
    client_id: str,
    protocol: MqttProtocol,
    username: str | None = None,
    password: str | None = None,
    tls: TlsFiles | bool | None = None,
    persistent_session: bool = False,
) -> mqtt.Client:
    """A paho-mqtt v2 client, configured but not connected (see `connect_async`).

    tls: None/False = plain TCP; True = TLS verified against the system CAs; TlsFiles = TLS with
    that CA bundle and, if given, a client certificate (mutual TLS).
    persistent_session: keep the broker-side session (subscriptions, queued QoS 1 messages) across
    reconnects; needs a stable client_id. For 3.1.1 this is `clean_session=False`; for 5 it is
    chosen at connect time (`clean_start=False` plus a session expiry), see `connect_async`.
    """
    if protocol not in _PROTOCOLS:
        raise MqttSetupError(f"broker.protocol: expected '3.1.1' or '5', got {protocol!r}")
    if persistent_session and not client_id:
        raise MqttSetupError("a persistent MQTT session needs a stable, non-empty client_id")
    version = _PROTOCOLS[protocol]
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=version,
        # paho refuses clean_session for MQTT 5 (it is a connect-time option there).
        clean_session=(not persistent_session) if version == mqtt.MQTTv311 else None,
    )
    client.enable_logger(logging.getLogger("paho.mqtt"))
    if username is not None:
        client.username_pw_set(username, password)
    elif password is not None:
        raise MqttSetupError("broker.password_env is set but broker.username is not; MQTT needs both")
    if tls:
        _configure_tls(client, None if tls is True else tls)
    return client


def _configure_tls(client: mqtt.Client, files: TlsFiles | None) -> None:
    """TLS with certificate verification always on: a broker we cannot verify is refused."""
    ca, cert, key = (None, None, None) if files is None else (files.ca_file, files.cert_file, files.key_file)
    for field, path in (("ca_file", ca), ("cert_file", cert), ("key_file", key)):
        if path is not None and not Path(path).is_file():
            raise MqttSetupError(f"broker.tls.{field}: file {path} does not exist")
    if (cert is None) != (key is None):
        raise MqttSetupError("broker.tls: give both cert_file and key_file for mutual TLS, or neither")
    client.tls_set(
        ca_certs=str(ca) if ca else None,
        certfile=str(cert) if cert else None,
        keyfile=str(key) if key else None,
        cert_reqs=ssl.CERT_REQUIRED,
    )


def connect_async(
    client: mqtt.Client,
    *,
    host: str,
    port: int,
    keepalive_s: int,
    persistent_session: bool = False,
    receive_maximum: int | None = None,
) -> None:
    """Start connecting in the background (pair with `loop_start()`, which also reconnects).

    Uses each protocol's own way to ask for a clean or a resumed session.
    receive_maximum: how many unacknowledged QoS 1 messages the broker may send at once (MQTT 5;
    a 3.1.1 client gets the broker's own limit, Mosquitto's `max_inflight_messages`, default 20).
    """
    if client.protocol == mqtt.MQTTv5:
        props = None
        if persistent_session or receive_maximum is not None:
            props = Properties(PacketTypes.CONNECT)
            if persistent_session:
                props.SessionExpiryInterval = SESSION_EXPIRY_S
            if receive_maximum is not None:
                props.ReceiveMaximum = receive_maximum
        client.connect_async(host, port, keepalive_s, clean_start=not persistent_session, properties=props)
    else:
        client.connect_async(host, port, keepalive_s)


def describe_reason(reason_code: mqtt.ReasonCode | int) -> str:
    """A readable reason code for logs on both protocol versions: 'Not authorized (135)'."""
    if isinstance(reason_code, mqtt.ReasonCode):
        return f"{reason_code.getName()} ({reason_code.value})"
    return f"{mqtt.connack_string(reason_code)} ({reason_code})"


__all__ = [
    "DEFAULT_PORTS",
    "BrokerNodes",
    "MqttProtocol",
    "MqttSetupError",
    "TlsFiles",
    "connect_async",
    "describe_reason",
    "make_client",
    "parse_broker_url",
]
