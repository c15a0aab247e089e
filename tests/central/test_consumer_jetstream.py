"""The JetStream consumer's pure parts: NATS subjects of MQTT topics, its filter, its settings.

Its behaviour on a real cluster (a node, the stream leader, a worker killed) is
tests/faults/test_cluster.py; its permissions tests/faults/test_nats_acl.py.
"""

from __future__ import annotations

import pytest

from streetwatch.broker_config import ConfigError
from streetwatch.central.config import CentralSettings, load_settings
from streetwatch.central.consumer_jetstream import (
    alerts_filter,
    media_filter,
    message_topic,
    subject_to_topic,
    topic_to_subject,
)
from streetwatch.central.fleet import replies_subscription
from streetwatch.edge.alerts import alert_topic, media_topic


@pytest.mark.parametrize(("topic", "subject"), [
    ("streetwatch/v1/alerts/box-01/cam-1", "streetwatch.v1.alerts.box-01.cam-1"),
    ("streetwatch/v1/alerts/box.01/cam.2", "streetwatch.v1.alerts.box//01.cam//2"),  # '.' is legal in an id
    ("streetwatch/v1/status/box-01", "streetwatch.v1.status.box-01"),
])
def test_topics_and_subjects_map_both_ways(topic: str, subject: str) -> None:
    assert topic_to_subject(topic) == subject
    assert subject_to_topic(subject) == topic


def test_the_filter_takes_every_alert_topic_and_nothing_else() -> None:
    assert alerts_filter() == "$MQTT.msgs.streetwatch.v1.alerts.>"
    stored = "$MQTT.msgs." + topic_to_subject(alert_topic("box.01", "cam-1"))
    assert message_topic(stored) == "streetwatch/v1/alerts/box.01/cam-1"


def test_the_media_filter_takes_every_piece_and_no_alert() -> None:
    assert media_filter() == "$MQTT.msgs.streetwatch.v1.media.>"
    stored = "$MQTT.msgs." + topic_to_subject(media_topic("box.01", "cam-1"))
    assert stored.startswith(media_filter()[:-1]) and not stored.startswith(alerts_filter()[:-1])
    assert message_topic(stored) == "streetwatch/v1/media/box.01/cam-1"


def test_the_media_consumer_must_not_share_the_alerts_durable() -> None:
    with pytest.raises(ConfigError, match="broker.jetstream: .*media_durable and durable are both 'central'"):
        load_settings(None, environ={"STREETWATCH_BROKER__KIND": "jetstream",
                                     "STREETWATCH_BROKER__JETSTREAM__MEDIA_DURABLE": "central"})


@pytest.mark.parametrize(("kind", "expected"), [
    ("mqtt", "$share/central/streetwatch/v1/replies/+"),
    ("jetstream", "streetwatch/v1/replies/+"),  # NATS's MQTT gateway has no shared subscriptions
])
def test_replies_are_read_without_share_on_jetstream(kind: str, expected: str) -> None:
    settings = CentralSettings.model_validate({"broker": {"kind": kind}})
    assert replies_subscription(settings) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("http://127.0.0.1:4222", "expected nats://host:port or tls://host:port, got 'http://127.0.0.1:4222'"),
    ("nats://127.0.0.1", "expected nats://host:port or tls://host:port, got 'nats://127.0.0.1'"),
])
def test_a_bad_server_url_names_the_field_and_the_value(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(None, environ={"STREETWATCH_BROKER__KIND": "jetstream",
                                     "STREETWATCH_BROKER__JETSTREAM__SERVERS": f"nats://127.0.0.1:4222,{value}"})
    assert "broker.jetstream.servers" in str(error.value) and message in str(error.value)


def test_the_servers_come_from_the_environment_as_a_comma_list() -> None:
    settings = load_settings(None, environ={"STREETWATCH_BROKER__KIND": "jetstream",
                                            "STREETWATCH_BROKER__JETSTREAM__SERVERS": "nats://a:4222, nats://b:4222"})
    assert (settings.broker.kind, settings.broker.jetstream.servers) == ("jetstream", ["nats://a:4222", "nats://b:4222"])


def test_an_unknown_kind_is_refused() -> None:
    expected = r"\$STREETWATCH_BROKER__KIND: broker.kind: Input should be 'mqtt' or 'jetstream'"
    with pytest.raises(ConfigError, match=expected):
        load_settings(None, environ={"STREETWATCH_BROKER__KIND": "kafka"})
