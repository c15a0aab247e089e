"""The broker block (streetwatch/broker_config.py): one definition, so edge and central read it alike.

The same `broker:` YAML goes through the edge's loader and central's; each row says what both must
make of it. Before issue 16 the two sides had a copy each, free to drift apart.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streetwatch.central.config import BrokerSettings, load_settings
from streetwatch.edge.config import BrokerConfig, load_edge_config
from streetwatch.edge.config import ConfigError as EdgeConfigError
from streetwatch.mqtt_common import BrokerNodes, make_client

SHARED_FIELDS = ("url", "username", "password_env", "protocol", "keepalive_s", "tls")


def load_both(tmp_path: Path, broker: dict[str, object]) -> tuple[BrokerConfig, BrokerSettings]:
    """The broker block as the edge config and as central's settings read it from their YAML files."""
    edge_file = tmp_path / "edge.yaml"
    edge_file.write_text(yaml.safe_dump({"edge_id": "box-1", "broker": broker,
                                         "cameras": [{"id": "cam-1", "url": "street.mp4"}]}))
    central_file = tmp_path / "central.yaml"
    central_file.write_text(yaml.safe_dump({"broker": broker}))
    # broker_password=False: central reads the password at start-up; these rows compare the block itself
    return load_edge_config(edge_file).broker, load_settings(central_file, environ={}, broker_password=False).broker


@pytest.mark.parametrize("broker", [
    {},
    {"url": "mqtts://broker.city:8883", "username": "box-1", "password_env": "SW_PW", "protocol": "5",
     "keepalive_s": 60, "tls": {"ca_file": "/etc/ca.pem", "cert_file": "/etc/c.pem", "key_file": "/etc/k.pem"}},
], ids=["defaults", "every-field"])
def test_edge_and_central_read_the_same_broker_block_alike(tmp_path: Path, broker: dict[str, object]) -> None:
    edge, central = load_both(tmp_path, broker)
    assert {f: getattr(edge, f) for f in SHARED_FIELDS} == {f: getattr(central, f) for f in SHARED_FIELDS}
    assert central.client_id == "central-1"  # central's own extras stay central's


@pytest.mark.parametrize(("broker", "field", "message"), [
    ({"url": "http://broker:1883"}, "broker.url", "expected mqtt://host:port or mqtts://host:port"),
    ({"protocol": "4"}, "broker.protocol", "Input should be '3.1.1' or '5'"),
    ({"keepalive_s": 1}, "broker.keepalive_s", "greater than or equal to 5"),
    ({"tls": {"ca": "/etc/ca.pem"}}, "broker.tls.ca", "Extra inputs are not permitted"),
], ids=["url", "protocol", "keepalive", "tls-typo"])
def test_a_bad_broker_block_fails_alike_on_both_sides(
    tmp_path: Path, broker: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(EdgeConfigError) as edge:
        load_both(tmp_path, {**broker})
    central_file = tmp_path / "central.yaml"
    with pytest.raises(EdgeConfigError) as central:  # central's ConfigError is the same class
        load_settings(central_file, environ={})
    for error, path in ((edge, tmp_path / "edge.yaml"), (central, central_file)):
        assert str(path) in str(error.value) and field in str(error.value) and message in str(error.value)


def test_an_unset_password_variable_is_a_config_error_on_both_sides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edge reads the password when it connects, central once at start-up: both name the variable."""
    monkeypatch.delenv("SW_TEST_UNSET_BROKER_PW", raising=False)
    unset = "broker.password_env: environment variable SW_TEST_UNSET_BROKER_PW is not set"
    edge, _ = load_both(tmp_path, {"username": "u", "password_env": "SW_TEST_UNSET_BROKER_PW"})
    with pytest.raises(EdgeConfigError, match=unset):
        edge.password()
    with pytest.raises(EdgeConfigError, match="SW_TEST_UNSET_BROKER_PW"):
        load_settings(tmp_path / "central.yaml", environ={})
    environ = {"SW_TEST_UNSET_BROKER_PW": "s3cret"}
    monkeypatch.setenv("SW_TEST_UNSET_BROKER_PW", "s3cret")
    assert edge.password() == load_settings(tmp_path / "central.yaml", environ=environ).broker_password_value()


NODES = ["mqtt://n1:1883", "mqtt://n2:1883", "mqtt://n3:1883"]


@pytest.mark.parametrize(("broker", "endpoints"), [
    ({}, ["mqtt://127.0.0.1:1883"]),
    ({"url": "mqtt://n1:1883"}, ["mqtt://n1:1883"]),  # one URL: as before
    ({"urls": NODES}, NODES),  # a clustered broker's nodes, tried in this order
    ({"urls": ["mqtts://n1:8883"]}, ["mqtts://n1:8883"]),
], ids=["default", "url", "urls", "one-url-in-urls"])
def test_an_edge_box_takes_one_url_or_several(tmp_path: Path, broker: dict[str, object], endpoints: list[str]) -> None:
    edge_file = tmp_path / "edge.yaml"
    edge_file.write_text(yaml.safe_dump({"edge_id": "box-1", "broker": broker,
                                         "cameras": [{"id": "cam-1", "url": "street.mp4"}]}))
    assert load_edge_config(edge_file).broker.endpoints() == endpoints


@pytest.mark.parametrize(("urls", "field", "message"), [
    (["mqtt://n1:1883", "http://n2:1883"], "broker.urls",
     "urls[1]: expected mqtt://host:port or mqtts://host:port, got 'http://n2:1883'"),
    (["mqtt://n1:1883", "mqtts://n2:8883"], "broker.urls", "urls mixes mqtt:// and mqtts://"),
    (["mqtt://n1:1883", "mqtt://n1:1883"], "broker.urls", "urls names a node twice"),
    ([], "broker.urls", "List should have at least 1 item"),
    ("mqtt://n1:1883", "broker.urls", "Input should be a valid list"),
], ids=["scheme", "mixed", "twice", "empty", "not-a-list"])
def test_bad_urls_name_the_field_and_the_value(tmp_path: Path, urls: object, field: str, message: str) -> None:
    edge_file = tmp_path / "edge.yaml"
    edge_file.write_text(yaml.safe_dump({"edge_id": "box-1", "broker": {"urls": urls},
                                         "cameras": [{"id": "cam-1", "url": "street.mp4"}]}))
    with pytest.raises(EdgeConfigError) as error:
        load_edge_config(edge_file)
    assert f"{field}: " in str(error.value) and message in str(error.value)


def test_url_and_urls_together_are_refused(tmp_path: Path) -> None:
    edge_file = tmp_path / "edge.yaml"
    edge_file.write_text(yaml.safe_dump({"edge_id": "box-1", "broker": {"url": NODES[0], "urls": NODES},
                                         "cameras": [{"id": "cam-1", "url": "street.mp4"}]}))
    with pytest.raises(EdgeConfigError, match=r"broker: .*give url \(one node\) or urls \(several\), not both"):
        load_edge_config(edge_file)


def test_central_refuses_urls_and_says_what_it_uses(tmp_path: Path) -> None:
    """Central's MQTT clients connect to broker.url; urls is the edge boxes' (silently ignoring it
    would leave central on the default 127.0.0.1)."""
    central_file = tmp_path / "central.yaml"
    central_file.write_text(yaml.safe_dump({"broker": {"urls": NODES}}))
    with pytest.raises(EdgeConfigError, match=r"broker: .*urls is for the edge boxes.*broker\.jetstream\.servers"):
        load_settings(central_file, environ={}, broker_password=False)


def test_broker_nodes_move_on_only_after_a_lost_connection() -> None:
    """mqtt_common.BrokerNodes with a real (unconnected) paho client: the reconnect after a failure
    goes to the next node, round the list; a reconnect without one stays."""
    client = make_client(client_id="t-nodes", protocol="3.1.1")
    nodes = BrokerNodes(NODES)
    seen = []
    for lost in (False, True, False, True, True):
        if lost:
            nodes.lost()
        nodes.before_connect(client)
        seen.append(nodes.current[0])
    assert seen == ["n1", "n2", "n2", "n3", "n1"]
    assert (client._host, client._port) == ("n1", 1883)
    single = BrokerNodes(NODES[:1])
    single.lost()
    assert not single.before_connect(client) and single.current == ("n1", 1883)
