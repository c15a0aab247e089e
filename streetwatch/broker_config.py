"""MQTT broker and TLS settings, one definition for the edge config and central's settings.

Both sides read the same YAML block (`broker: {url, username, password_env, protocol,
keepalive_s, tls: {ca_file, cert_file, key_file}}`; an edge box may give `urls`, the nodes of a
clustered broker, instead of `url`: its publisher moves to the next node when a connection fails or
drops); central's `BrokerSettings` subclasses
`BrokerConfig` with its own fields (client_id, subscription). Imports only pydantic, the
standard library and config_vars (the password's VAR_FILE): central's settings stay free of
paho, OpenCV and onnxruntime, and nothing here belongs to either side (`edge` never imports
`central`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from streetwatch.config_vars import ConfigError, read_variable

_BROKER_URL = re.compile(r"^mqtts?://[^/:]+(:\d{1,5})?/?$")


class StrictModel(BaseModel):
    """A frozen settings model that refuses unknown keys, so a YAML typo fails at load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(StrictModel):
    ca_file: Path | None = Field(default=None, description="CA bundle to verify the broker")
    cert_file: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    key_file: Path | None = Field(default=None, description="client key (mutual TLS)")


class BrokerConfig(StrictModel):
    url: str = Field(default="mqtt://127.0.0.1:1883", description="mqtt://host:port or mqtts://host:port")
    urls: list[str] | None = Field(
        default=None, min_length=1, max_length=16,
        description="instead of url: the nodes of one clustered broker (edge boxes), tried in turn; the box "
                    "moves to the next when its connection fails or drops. One scheme for all",
    )
    username: str | None = Field(
        default=None, description="MQTT user: an edge box's is by convention its edge_id"
    )
    password_env: str | None = Field(
        default=None, description="environment variable holding the password (or VAR_FILE naming a file with it)"
    )
    protocol: Literal["3.1.1", "5"] = Field(default="3.1.1", description="5 for Mosquitto/EMQX")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    tls: TlsConfig | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not _BROKER_URL.match(value):
            raise ValueError(f"expected mqtt://host:port or mqtts://host:port, got {value!r}")
        return value

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for i, url in enumerate(value):
            if not _BROKER_URL.match(url):
                raise ValueError(f"urls[{i}]: expected mqtt://host:port or mqtts://host:port, got {url!r}")
        if len({url.split("://", 1)[0] for url in value}) > 1:
            raise ValueError(f"urls mixes mqtt:// and mqtts:// ({value}): one broker, one scheme (tls applies to "
                             "every node)")
        if len(set(value)) != len(value):
            raise ValueError(f"urls names a node twice: {value}")
        return value

    @model_validator(mode="after")
    def _verify_url_or_urls(self) -> BrokerConfig:
        if self.urls is not None and "url" in self.model_fields_set:
            raise ValueError(f"give url (one node) or urls (several), not both: url {self.url!r}, urls {self.urls}")
        return self

    def endpoints(self) -> list[str]:
        """The broker's node URLs in the order they are tried: `urls`, or `url` alone."""
        return list(self.urls) if self.urls is not None else [self.url]

    def password(self) -> str | None:
        """The password from `password_env`, or the file `<password_env>_FILE` names (read now, never
        stored in the config); ConfigError if neither is set."""
        if self.password_env is None:
            return None
        value = read_variable(self.password_env, os.environ, where="broker", field="password_env", secret=True)
        if value is None:
            raise ConfigError(f"broker.password_env: environment variable {self.password_env} is not set "
                              f"(nor {self.password_env}_FILE)")
        return value


__all__ = ["BrokerConfig", "ConfigError", "StrictModel", "TlsConfig"]
