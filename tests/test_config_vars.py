"""`${VAR}` / `${VAR:-default}` in every string of the edge and central YAML (config_vars.py), the
VAR_FILE convention for secrets files, and what substitution hides (redaction.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from streetwatch.broker_config import ConfigError
from streetwatch.central.config import load_settings
from streetwatch.config_vars import substitute
from streetwatch.edge.config import load_edge_config
from streetwatch.redaction import RedactingFilter, redact


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("rtsp://u:${PW}@h/s", {"PW": "p4ss"}, "rtsp://u:p4ss@h/s"),
        ("${A}-${B}", {"A": "1", "B": "2"}, "1-2"),
        ("mqtt://${HOST:-127.0.0.1}:1883", {}, "mqtt://127.0.0.1:1883"),
        ("mqtt://${HOST:-127.0.0.1}:1883", {"HOST": ""}, "mqtt://127.0.0.1:1883"),  # empty counts as unset
        ("mqtt://${HOST:-127.0.0.1}:1883", {"HOST": "broker"}, "mqtt://broker:1883"),
        ("${EMPTY}", {"EMPTY": ""}, ""),  # set but empty, no default: empty
        ("${X:-}", {}, ""),
        ("$${NOT_A_VAR}", {}, "${NOT_A_VAR}"),  # the escape
        ("pa$$word$1", {}, "pa$$word$1"),  # a bare $ is just a $
        ("plain", {}, "plain"),
    ],
)
def test_substitution_table(text: str, environ: dict[str, str], expected: str) -> None:
    assert substitute({"k": [text]}, environ, where="f.yaml") == {"k": [expected]}


def test_only_strings_change_and_keys_stay() -> None:
    data = {"${K}": {"n": 5, "b": True, "none": None, "list": ["${V}", 1.5]}}
    assert substitute(data, {"V": "v", "K": "k"}, where="f") == {"${K}": {"n": 5, "b": True, "none": None,
                                                                         "list": ["v", 1.5]}}


def test_unset_variable_names_file_field_and_both_ways_to_set_it() -> None:
    with pytest.raises(ConfigError) as err:
        substitute({"cameras": [{"url": "rtsp://u:${CAM_PW}@h"}]}, {}, where="edge.yaml")
    message = str(err.value)
    assert message.startswith("edge.yaml: cameras.0.url: environment variable CAM_PW is not set")
    assert "CAM_PW_FILE" in message and "${CAM_PW:-value}" in message


@pytest.mark.parametrize("text", ["${1BAD}", "${UNCLOSED", "x ${} y", "${A B}"])
def test_a_malformed_reference_is_an_error_not_left_in_place(text: str) -> None:
    with pytest.raises(ConfigError, match=r"f.yaml: k: a '\$\{' without a valid"):
        substitute({"k": text}, {"A": "1"}, where="f.yaml")


def test_file_convention_reads_the_secrets_file_and_hides_its_value(tmp_path: Path) -> None:
    secret = tmp_path / "cam_pw"
    secret.write_text("s3cr3t-from-file\n")
    got = substitute({"url": "rtsp://u:${CAM_PW}@h"}, {"CAM_PW_FILE": str(secret)}, where="f")
    assert got == {"url": "rtsp://u:s3cr3t-from-file@h"}  # one trailing newline dropped
    assert redact("token s3cr3t-from-file leaked") == "token *** leaked"


def test_file_convention_errors_name_the_variable_and_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"f: url: \$CAM_PW_FILE names .*missing: cannot read it"):
        substitute({"url": "${CAM_PW}"}, {"CAM_PW_FILE": str(tmp_path / "missing")}, where="f")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 70_000)
    with pytest.raises(ConfigError, match="larger than"):
        substitute({"url": "${CAM_PW}"}, {"CAM_PW_FILE": str(big)}, where="f")


def test_variables_named_like_secrets_are_hidden_and_others_are_not() -> None:
    environ = {"MY_API_TOKEN": "tok-9f8e7d", "CAMERA_HOST": "cam-gate-7"}
    substitute({"a": "${MY_API_TOKEN}", "b": "${CAMERA_HOST}"}, environ, where="f")
    assert redact("tok-9f8e7d at cam-gate-7") == "*** at cam-gate-7"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("opened rtsp://viewer:hunter2@10.0.0.5:554/s1", "opened rtsp://viewer:***@10.0.0.5:554/s1"),
        ("rtsp://:pw@h/x and mqtts://u:p@b:8883", "rtsp://:***@h/x and mqtts://u:***@b:8883"),
        ("rtsp://viewer@h/x (no password)", "rtsp://viewer@h/x (no password)"),
        ("postgresql+psycopg://postgres:pw@db/sw", "postgresql+psycopg://postgres:***@db/sw"),
    ],
)
def test_url_passwords_are_masked_whatever_their_source(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_log_filter_masks_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction")
    caplog.handler.addFilter(RedactingFilter())
    try:
        raise OSError("cannot open rtsp://u:topsecret@h/s")
    except OSError:
        logger.exception("camera %s: %s", "cam-1", "rtsp://u:topsecret@h/s")
    assert "topsecret" not in caplog.text and "rtsp://u:***@h/s" in caplog.text


def test_edge_config_substitutes_every_string(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump({
        "edge_id": "${EDGE_ID:-box-01}",
        "broker": {"url": "mqtt://${BROKER_HOST}:1883", "username": "${EDGE_ID:-box-01}"},
        "metrics_port": "${METRICS_PORT:-9108}",
        "cameras": [{"id": "cam-1", "url": "rtsp://viewer:${CAM_1_PASSWORD}@10.0.0.5/s1"}],
    }))
    config = load_edge_config(path, environ={"BROKER_HOST": "broker.local", "CAM_1_PASSWORD": "pw-cam-1"})
    assert (config.edge_id, config.broker.url, config.metrics_port) == ("box-01", "mqtt://broker.local:1883", 9108)
    assert config.cameras[0].url == "rtsp://viewer:pw-cam-1@10.0.0.5/s1"
    with pytest.raises(ConfigError, match=rf"{path}: cameras.0.url: environment variable CAM_1_PASSWORD"):
        load_edge_config(path, environ={"BROKER_HOST": "b"})


def test_edge_config_error_never_shows_a_substituted_secret(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump({"edge_id": "box-01", "broker": {"url": "${BROKER_URL}"},
                                    "cameras": [{"id": "cam-1", "url": "x.mp4"}]}))
    with pytest.raises(ConfigError) as err:  # an invalid URL that carries a password
        load_edge_config(path, environ={"BROKER_URL": "http://u:pw-in-url@b"})
    assert "broker.url" in str(err.value) and "pw-in-url" not in str(err.value)


def test_central_settings_substitute_and_take_secret_references(tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("k" * 40)
    path = tmp_path / "central.yaml"
    path.write_text(yaml.safe_dump({
        "database_url": "postgresql+psycopg://postgres:${PG_PASSWORD}@db:5432/sw",
        "broker": {"url": "mqtt://${BROKER_HOST:-mosquitto}:1883"},
        "web": {"secret_key": "${WEB_SECRET_KEY}", "port": "${WEB_PORT:-8000}"},
    }))
    settings = load_settings(path, environ={"PG_PASSWORD": "pg-pw-1", "WEB_SECRET_KEY_FILE": str(secret_file)})
    assert settings.database_url == "postgresql+psycopg://postgres:pg-pw-1@db:5432/sw"
    assert settings.broker.url == "mqtt://mosquitto:1883" and settings.web.port == 8000
    assert settings.web.secret_key is not None and settings.web.secret_key.get_secret_value() == "k" * 40


def test_central_still_refuses_a_plain_secret_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(yaml.safe_dump({"web": {"secret_key": "x" * 40}}))
    with pytest.raises(ConfigError, match="secrets do not belong in the file"):
        load_settings(path, environ={})


def test_broker_password_from_a_file_on_both_sides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password = tmp_path / "mqtt_password"
    password.write_text("mqtt-pw-from-file\n")
    monkeypatch.delenv("BOX_MQTT_PASSWORD", raising=False)
    monkeypatch.setenv("BOX_MQTT_PASSWORD_FILE", str(password))
    edge = tmp_path / "edge.yaml"
    edge.write_text(yaml.safe_dump({"edge_id": "box-01", "broker": {"password_env": "BOX_MQTT_PASSWORD"},
                                    "cameras": [{"id": "cam-1", "url": "x.mp4"}]}))
    assert load_edge_config(edge).broker.password() == "mqtt-pw-from-file"
    central = tmp_path / "central.yaml"
    central.write_text(yaml.safe_dump({"broker": {"password_env": "BOX_MQTT_PASSWORD"}}))
    settings = load_settings(central, environ={"BOX_MQTT_PASSWORD_FILE": str(password)})
    assert settings.broker_password_value() == "mqtt-pw-from-file"
