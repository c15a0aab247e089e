"""Central settings: one YAML file (configs/central.example.yaml) plus a few environment overrides.

Validated strictly at load: a typo or a bad value fails with the file, the field, what was expected
and what arrived. The database URL is not here: it comes from `--database-url` or
$STREETWATCH_DATABASE_URL (see db.default_database_url), so secrets stay out of the file.

Environment overrides (applied after the file):
- STREETWATCH_CENTRAL_CONFIG: the YAML file to load when no path is given;
- STREETWATCH_MQTT_URL: broker.url;
- STREETWATCH_EVIDENCE_DIR: evidence_dir.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, field_validator

from streetwatch.broker_config import BrokerConfig, ConfigError, StrictModel, TlsConfig
from streetwatch.edge.alerts import ALERTS_SHARED_SUBSCRIPTION, VIOLATIONS, Violation

CONFIG_ENV = "STREETWATCH_CENTRAL_CONFIG"
MQTT_URL_ENV = "STREETWATCH_MQTT_URL"
EVIDENCE_DIR_ENV = "STREETWATCH_EVIDENCE_DIR"

DEFAULT_RADIUS_M: dict[Violation, float] = {
    "illegal_parking": 15.0,
    "street_vending": 25.0,
    "stacked_goods": 15.0,
}
DEFAULT_MAX_GAP_S: dict[Violation, float] = {v: 2 * 3600.0 for v in VIOLATIONS}
# Parking blocks traffic, vending and goods block pavements: see cases.priority_of.
DEFAULT_PRIORITY_WEIGHT: dict[Violation, int] = {
    "illegal_parking": 30,
    "street_vending": 20,
    "stacked_goods": 10,
}


TlsSettings = TlsConfig  # one TLS model for edge and central; central's name for it


class BrokerSettings(BrokerConfig):
    """The shared broker settings (streetwatch/broker_config.py) plus what only central's consumer needs."""

    client_id: str = Field(
        default="central-1",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="fixed per worker: the broker keeps this worker's session (and unacked messages)",
    )
    subscription: str = Field(
        default=ALERTS_SHARED_SUBSCRIPTION,
        description="shared subscription all central workers use, so the broker splits the load",
    )


def _merge_defaults(defaults: Mapping[Violation, float], value: object) -> object:
    """A per-violation table may name only some violations; the rest keep their defaults."""
    if isinstance(value, Mapping):
        return {**defaults, **value}
    return value


class CaseSettings(StrictModel):
    radius_m: dict[Violation, float] = Field(
        default_factory=lambda: dict(DEFAULT_RADIUS_M),
        description="an alert joins an open case of its violation within this many metres",
    )
    max_gap_s: dict[Violation, float] = Field(
        default_factory=lambda: dict(DEFAULT_MAX_GAP_S),
        description="... and at most this many seconds after the case was last seen",
    )
    priority_weight: dict[Violation, int] = Field(
        default_factory=lambda: dict(DEFAULT_PRIORITY_WEIGHT),
        description="base priority of a case by violation (see cases.priority_of)",
    )
    sighting_interval_s: float = Field(
        default=300, ge=1, le=86_400,
        description="moving cameras: two passes at least this far apart confirm a spot (cases.decide_sighting)",
    )
    sighting_min_radius_m: float = Field(
        default=5.0, gt=0, le=1000,
        description="two sightings are the same spot within max(this, their accuracies), capped at radius_m",
    )

    @field_validator("radius_m", mode="before")
    @classmethod
    def _radius_defaults(cls, value: object) -> object:
        return _merge_defaults(DEFAULT_RADIUS_M, value)

    @field_validator("max_gap_s", mode="before")
    @classmethod
    def _gap_defaults(cls, value: object) -> object:
        return _merge_defaults(DEFAULT_MAX_GAP_S, value)

    @field_validator("priority_weight", mode="before")
    @classmethod
    def _weight_defaults(cls, value: object) -> object:
        return _merge_defaults(DEFAULT_PRIORITY_WEIGHT, value)

    @field_validator("radius_m", "max_gap_s")
    @classmethod
    def _positive(cls, value: dict[Violation, float]) -> dict[Violation, float]:
        for violation, number in value.items():
            if not 0 < number <= 1_000_000:
                raise ValueError(f"{violation}: expected a number > 0 and <= 1000000, got {number}")
        return value


class AttributionSettings(StrictModel):
    max_distance_m: float = Field(
        default=10.0,
        ge=0,
        le=1000,
        description="a case outside every zone goes to the nearest zone within this distance",
    )


class WebSettings(StrictModel):
    host: str = Field(default="127.0.0.1", description="address the web queue listens on")
    port: int = Field(default=8000, ge=1, le=65535)


class CentralSettings(StrictModel):
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    cases: CaseSettings = Field(default_factory=CaseSettings)
    attribution: AttributionSettings = Field(default_factory=AttributionSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    evidence_dir: Path = Field(
        default=Path("var/evidence"),
        description="folder of evidence JPEGs, stored by their sha256 (never in database rows)",
    )


def load_settings(path: Path | None = None, *, environ: Mapping[str, str] | None = None) -> CentralSettings:
    """Settings from `path` (or $STREETWATCH_CENTRAL_CONFIG, or defaults) plus environment overrides."""
    env = os.environ if environ is None else environ
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    data = _read_yaml(path) if path is not None else {}
    if env.get(MQTT_URL_ENV):
        broker = data.get("broker") or {}
        if not isinstance(broker, dict):
            raise ConfigError(f"{path}: broker: expected a mapping, got {type(broker).__name__}")
        data["broker"] = {**broker, "url": env[MQTT_URL_ENV]}
    if env.get(EVIDENCE_DIR_ENV):
        data["evidence_dir"] = env[EVIDENCE_DIR_ENV]
    try:
        return CentralSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


def _read_yaml(path: Path) -> dict[str, object]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read settings: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = str(path) if path is not None else "settings"
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        lines.append(f"{where}: {field}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)
