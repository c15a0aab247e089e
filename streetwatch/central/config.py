"""Central settings: one `CentralSettings`, built once at start-up and handed to everything.

Three layers, each overriding the one before (the web app, the ingest consumer and the workflow
worker all get the same object; nothing reads the environment after start-up):

1. the YAML file: `--config FILE`, else $STREETWATCH_CENTRAL_CONFIG, else none (the defaults);
   every option is shown with a comment in configs/central.example.yaml; every string in it may use
   `${VAR}` / `${VAR:-default}` (streetwatch/config_vars.py: the environment or a VAR_FILE);
2. the environment: the names below, and any setting as STREETWATCH_<SECTION>__<FIELD>
   (e.g. STREETWATCH_WORKFLOW__HOTSPOT_THRESHOLD=3, STREETWATCH_CASES__RADIUS_M__STREET_VENDING=40);
3. command-line flags: `--database-url` (and `central demo --port/--broker-url`).

Environment variables:
- STREETWATCH_CENTRAL_CONFIG: the YAML file when --config is not given;
- STREETWATCH_DATABASE_URL: database_url (default sqlite:///var/central.sqlite);
- STREETWATCH_MQTT_URL: broker.url;  STREETWATCH_MQTT_PROTOCOL: broker.protocol;
- STREETWATCH_EVIDENCE_DIR: evidence_dir;
- STREETWATCH_SECRET_KEY: web.secret_key, signs session cookies (at least 32 characters; secret);
- STREETWATCH_MODE: web.mode, production (default) | development | demo; only development and demo
  run without a secret (a random one per process) and without the Secure cookie flag;
- STREETWATCH_COOKIE_SECURE: web.cookie_secure (1/0, true/false) forces the Secure flag either way;
- STREETWATCH_WEBHOOK_URL: workflow.webhook_url;  STREETWATCH_WEBHOOK_SECRET: workflow.webhook_secret;
- STREETWATCH_RECTIFY_WINDOW_MIN: workflow.rectify_window_min;
- STREETWATCH_OPEN311_PUBLIC: open311.public (1: anonymous Open311 reads see the whole city);
- the variable `broker.password_env` names: the broker password, read once into `broker_password`.

Secrets (web.secret_key, workflow.webhook_secret, the broker password) come only from the
environment: the YAML file is refused if it holds one in plain text (a `${VAR}` reference is
fine). They are SecretStr, never printed.

Validated strictly: a typo or a bad value fails naming where it came from (the file, the variable
or the flag), the field, what was expected and what arrived.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from streetwatch.broker_config import BrokerConfig, ConfigError, StrictModel, TlsConfig
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.config_vars import has_reference, read_variable, substitute
from streetwatch.edge.alerts import (
    ALERTS_SHARED_SUBSCRIPTION,
    MEDIA_SHARED_SUBSCRIPTION,
    TOPIC_PREFIX,
    VIOLATIONS,
    TimeBounds,
    Violation,
)
from streetwatch.redaction import redact

log = logging.getLogger(__name__)

CONFIG_ENV = "STREETWATCH_CENTRAL_CONFIG"
ENV_PREFIX = "STREETWATCH_"
NESTED_DELIMITER = "__"
# The environment variables operators already use, onto the settings they set.
ENV_SETTINGS: dict[str, tuple[str, ...]] = {
    "STREETWATCH_DATABASE_URL": ("database_url",),
    "STREETWATCH_MQTT_URL": ("broker", "url"),
    "STREETWATCH_MQTT_PROTOCOL": ("broker", "protocol"),
    "STREETWATCH_EVIDENCE_DIR": ("evidence_dir",),
    "STREETWATCH_SECRET_KEY": ("web", "secret_key"),
    "STREETWATCH_MODE": ("web", "mode"),
    "STREETWATCH_COOKIE_SECURE": ("web", "cookie_secure"),
    "STREETWATCH_WEBHOOK_URL": ("workflow", "webhook_url"),
    "STREETWATCH_WEBHOOK_SECRET": ("workflow", "webhook_secret"),
    "STREETWATCH_RECTIFY_WINDOW_MIN": ("workflow", "rectify_window_min"),
    "STREETWATCH_OPEN311_PUBLIC": ("open311", "public"),
}
SECRET_SETTINGS: dict[tuple[str, ...], str] = {
    ("web", "secret_key"): "STREETWATCH_SECRET_KEY",
    ("workflow", "webhook_secret"): "STREETWATCH_WEBHOOK_SECRET",
    ("broker_password",): "the variable broker.password_env names",
}
DEFAULT_DATABASE_URL = f"sqlite:///{Path('var') / 'central.sqlite'}"
MIN_SECRET_CHARS = 32
PLACEHOLDER_SECRETS = frozenset({"changethis", "changeme", "change-me", "secret", "secret-key", "dev", "test"})

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


class InsecureSettings(ConfigError):
    """Settings that would run the web queue without a real secret outside development/demo."""


_NATS_URL = r"^(nats|tls)://[^/:\s]+:\d{1,5}$"
_NATS_NAME = r"^[A-Za-z0-9_$-]{1,64}$"


class JetStreamSettings(StrictModel):
    """Where a `broker.kind: jetstream` worker pulls alerts: a durable consumer on the stream the
    NATS server's MQTT gateway stores QoS 1 messages in (docs/cluster.md)."""

    servers: list[str] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1, max_length=16,
        description="NATS client URLs of the cluster's nodes; the client fails over between them",
    )
    stream: str = Field(
        default="$MQTT_msgs", pattern=_NATS_NAME,
        description="the stream the server's MQTT gateway stores QoS 1 messages in (interest retention)",
    )
    durable: str = Field(
        default="central", pattern=_NATS_NAME,
        description="the durable pull consumer every worker shares: it splits the alerts between them",
    )
    media_durable: str = Field(
        default="central-media", pattern=_NATS_NAME,
        description="the durable pull consumer of the evidence-set pieces (media topic), shared the same way; "
                    "unused when media.subscription is ''",
    )
    ack_wait_s: float = Field(
        default=30.0, ge=1, le=3600,
        description="an alert a worker took and did not acknowledge goes to another worker after this",
    )
    max_ack_pending: int = Field(
        default=1000, ge=1, le=100_000, description="alerts out to all workers unacknowledged, at most"
    )
    retry_after_s: float = Field(
        default=5.0, ge=0, le=3600, description="an alert the database could not take is delivered again after this"
    )

    @model_validator(mode="after")
    def _verify_durables_differ(self) -> JetStreamSettings:
        if self.media_durable == self.durable:
            raise ValueError(f"media_durable and durable are both {self.durable!r}: the media pieces need a "
                             "consumer of their own (e.g. media_durable: central-media)")
        return self

    @field_validator("servers", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        """From the environment the servers come as one string: nats://a:4222,nats://b:4222."""
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("servers")
    @classmethod
    def _check_servers(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(_NATS_URL, url):
                raise ValueError(f"expected nats://host:port or tls://host:port, got {url!r}")
        return value


BrokerKind = Literal["mqtt", "jetstream"]


class BrokerSettings(BrokerConfig):
    """The shared broker settings (streetwatch/broker_config.py) plus what only central's consumer needs."""

    kind: BrokerKind = Field(
        default="mqtt",
        description="how workers take alerts: mqtt (a shared subscription: Mosquitto, EMQX) or jetstream "
                    "(a durable consumer on a NATS JetStream cluster's MQTT stream)",
    )
    jetstream: JetStreamSettings = Field(default_factory=JetStreamSettings)

    client_id: str = Field(
        default="central-1",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="fixed per worker: the broker keeps this worker's session (and unacked messages)",
    )
    subscription: str = Field(
        default=ALERTS_SHARED_SUBSCRIPTION,
        description="shared subscription all central workers use, so the broker splits the load",
    )

    @model_validator(mode="after")
    def _verify_one_url(self) -> BrokerSettings:
        """`urls` is the edge boxes' (their publisher moves between nodes); central's MQTT clients
        connect to broker.url, and on a NATS cluster its consumer fails over by jetstream.servers."""
        if self.urls is not None:
            raise ValueError("urls is for the edge boxes: central connects to one MQTT node (broker.url; "
                             "with kind jetstream its consumer fails over between broker.jetstream.servers)")
        return self


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
        description="moving cameras: two passes at least this far apart confirm a spot (sightings.sighting_partners)",
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


class IngestSettings(StrictModel):
    """What central believes of an alert's timestamps (the wire schema bounds everything else)."""

    not_before: datetime = Field(
        default=datetime(2000, 1, 1, tzinfo=UTC),
        description="alerts stamped earlier are refused (a box whose clock never synced says 1970)",
    )
    max_ahead_h: float = Field(
        default=24.0, gt=0, le=24 * 365, description="... and alerts stamped more than this after their receipt"
    )
    episode_owner_check: bool = Field(
        default=True, description="an alert for an episode another box opened is a dead letter (it could end it)"
    )

    @field_validator("not_before")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("expected a time with its zone, e.g. 2000-01-01T00:00:00Z")
        return value

    def time_bounds(self) -> TimeBounds:
        return TimeBounds(not_before=self.not_before, max_ahead=timedelta(hours=self.max_ahead_h))


class DeliverySettings(StrictModel):
    """The end-to-end delivery audit (delivery.py) and the boxes' status (fleet.py)."""

    enabled: bool = Field(default=True, description="follow the boxes' status and ask them for lost alerts")
    audit_interval_s: float = Field(default=10.0, ge=0.2, le=3600, description="how often the numbers are checked")
    resend_after_s: float = Field(
        default=30.0, ge=0, le=86_400, description="a gap open this long is asked for (in-flight alerts fill it before)"
    )
    resend_every_s: float = Field(default=60.0, gt=0, le=86_400, description="... and asked for again this often")
    max_scan_rows: int = Field(default=200_000, ge=1000, le=10_000_000, description="numbers read per check, at most")
    status_subscription: str = Field(
        default=f"{TOPIC_PREFIX}/status/+", description="every worker reads every box's retained status"
    )
    replies_subscription: str = Field(
        default=f"$share/central/{TOPIC_PREFIX}/replies/+", description="the boxes' answers, shared between workers"
    )


class MediaSettings(StrictModel):
    """Evidence sets (wire 1.2) arriving on the media topic (media_ingest.py)."""

    subscription: str = Field(
        default=MEDIA_SHARED_SUBSCRIPTION,
        description="the boxes' evidence-set pieces (every worker; they are idempotent); '' = off",
    )
    staging_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=4 * 1024 * 1024, description="unfinished media one box may have staged"
    )
    staging_max_age_h: float = Field(default=24.0, gt=0, le=24 * 30, description="unfinished media older is removed")


class MetricsSettings(StrictModel):
    host: str = Field(default="127.0.0.1", description="address of /metrics, /healthz and /readyz")
    port: int = Field(default=0, ge=0, le=65535, description="Prometheus metrics and health checks; 0 = off")


class AttributionSettings(StrictModel):
    max_distance_m: float = Field(
        default=10.0,
        ge=0,
        le=1000,
        description="a case outside every zone goes to the nearest zone within this distance",
    )


Mode = Literal["production", "development", "demo"]
# The interface languages the package ships catalogues for (streetwatch/central/web/locale/).
UiLocale = Literal["zh_CN", "en"]


class WebSettings(StrictModel):
    """Where the review queue listens, and its security: the session secret, cookies, login limits."""

    host: str = Field(default="127.0.0.1", description="address the web queue listens on")
    port: int = Field(default=8000, ge=1, le=65535)
    mode: Mode = Field(default="production", description="production refuses a missing or placeholder secret")
    secret_key: SecretStr | None = Field(default=None, description="session signing key ($STREETWATCH_SECRET_KEY)")
    cookie_secure: bool | None = Field(
        default=None, description="Secure flag on the session cookie; default: on in production only"
    )
    session_max_age_s: int = Field(
        default=8 * 3600, ge=60, le=30 * 24 * 3600, description="a login ends this long after it began, used or not"
    )
    session_idle_s: int = Field(
        default=30 * 60, ge=60, le=7 * 24 * 3600, description="... or after this long without a request"
    )
    login_max_failures: int = Field(
        default=5, ge=1, le=1000, description="failed logins per user name, from any address, ..."
    )
    login_max_failures_per_address: int = Field(
        default=20, ge=1, le=10_000, description="failed logins per client address, for any user names, ..."
    )
    login_window_s: float = Field(default=60.0, gt=0, le=86_400, description="... within this many seconds")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="addresses or networks (CIDR) of the reverse proxies whose X-Forwarded-For is believed; "
        "default none: the client address is the TCP peer",
    )
    public_url: str | None = Field(
        default=None,
        max_length=500,
        pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="the address users reach the web app at (https://streetwatch.example.gov/), for absolute "
        "links such as Open311 media_url; default http://{host}:{port}/. Never taken from the Host header",
    )
    default_locale: UiLocale = Field(
        default="zh_CN", description="interface language when neither the user's setting nor Accept-Language picks one"
    )
    time_zone: str = Field(
        default="Asia/Shanghai", min_length=1, max_length=64, description="the city's time zone: every time shown"
    )
    locale_dir: Path | None = Field(
        default=None,
        description="the city's own catalogues (<locale>/LC_MESSAGES/messages.po), read over the shipped ones",
    )

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"expected an IANA time zone such as Asia/Shanghai, got {value!r}") from None
        return value

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_in_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"expected IP addresses or CIDR networks such as 10.0.0.0/8, got {entry!r}") from None
        return value

    @property
    def base_url(self) -> str:
        """The configured public address with one trailing slash (links are built from it)."""
        return (self.public_url or f"http://{self.host}:{self.port}/").rstrip("/") + "/"

    @property
    def secure_cookies(self) -> bool:
        return self.cookie_secure if self.cookie_secure is not None else self.mode == "production"

    def resolved_secret(self) -> str:
        """The signing secret; a random one in development/demo when none is set."""
        value = self.secret_key.get_secret_value() if self.secret_key is not None else ""
        problem = _secret_problem(value)
        if problem is None:
            return value
        if self.mode == "production":
            raise InsecureSettings(
                f"STREETWATCH_SECRET_KEY: {problem}; set it to a random string of at least {MIN_SECRET_CHARS} "
                "characters (python -c 'import secrets; print(secrets.token_urlsafe(48))'), or run with "
                "STREETWATCH_MODE=development"
            )
        log.warning("web: %s in %s mode; using a random per-process secret", problem, self.mode)
        return secrets.token_urlsafe(48)


def _secret_problem(value: str) -> str | None:
    if not value:
        return "no secret key is set"
    if value.strip().lower() in PLACEHOLDER_SECRETS:
        return f"the secret key is a placeholder ({value!r})"
    if len(value) < MIN_SECRET_CHARS:
        return f"the secret key has {len(value)} characters, expected at least {MIN_SECRET_CHARS}"
    return None


class ReviewSettings(StrictModel):
    """The review desk: how the queue pages, when a case is overdue or weak, what may be uploaded."""

    page_size: int = Field(default=20, ge=5, le=100, description="cases per queue page")
    count_cap: int = Field(
        default=10_000, ge=100, le=1_000_000, description="the queue counts at most this many cases (then 'N+')"
    )
    sla_hours: float = Field(default=24.0, gt=0, le=24 * 90, description="a new case waiting longer is overdue")
    low_confidence: float = Field(
        default=0.5, ge=0, le=1, description="a case whose best alert scored below this is flagged as weak"
    )
    candidate_radius_m: float = Field(
        default=100.0, gt=0, le=5_000, description="merge candidates: open cases of the same violation this close"
    )
    bulk_max: int = Field(default=100, ge=1, le=1000, description="cases one bulk confirm or dismiss may decide")
    max_photo_bytes: int = Field(
        default=8 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024, description="largest inspection photo accepted"
    )


class Open311Settings(StrictModel):
    """Open311 GeoReport v2 (api/open311.py): who may read, where links point, what a POST may carry."""

    public: bool = Field(
        default=False,
        description="anonymous GeoReport reads see the city's reviewed cases and their photos (off: an api_key "
        "or a user's token is needed to read)",
    )
    base_url: str | None = Field(
        default=None, max_length=300, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="the public URL of this server (https://311.city.example/): media_url and discovery links "
        "start with it, never with the request's Host header; default: web.public_url",
    )
    jurisdiction_id: str | None = Field(
        default=None, min_length=1, max_length=100,
        description="the city's jurisdiction id: a request naming another one is refused (404)",
    )
    contact: str = Field(
        default="", max_length=300, description="who answers for this endpoint (discovery's contact)"
    )
    max_media_bytes: int = Field(
        default=8 * 1024 * 1024, ge=64 * 1024, le=32 * 1024 * 1024,
        description="the largest photo a citizen report may upload (the whole POST body is bounded by it plus 64 KiB)",
    )
    max_media_pixels: int = Field(
        default=40_000_000, ge=1_000_000, le=200_000_000, description="the largest photo in pixels (width x height)"
    )
    max_posts_per_hour: int = Field(
        default=600, ge=1, le=1_000_000, description="citizen reports one api_key may POST per hour"
    )

    def public_base(self, web: WebSettings) -> str:
        """The base URL links start with, ending in '/': this setting, else the web's public_url."""
        base = self.base_url or web.base_url
        return base if base.endswith("/") else base + "/"


TileDatum = Literal["wgs84", "cgcs2000", "gcj02"]
BBox = tuple[float, float, float, float]


class MapSettings(StrictModel):
    """The city map's base layers: a tile server the city runs (XYZ, or WMTS in its RESTful
    {z}/{x}/{y} form) and/or the vector base map imported with `central import-basemap`."""

    tile_url: str | None = Field(
        default=None,
        max_length=1000,
        description="XYZ tile template with {z}, {x}, {y} (and {s} for subdomains), http(s); "
        "none: the vector base map only (offline boxes, the demo)",
    )
    tile_subdomains: str = Field(default="", max_length=40, description="letters/digits {s} takes, e.g. 01234567")
    tile_attribution: str = Field(default="", max_length=300, description="shown on the map, e.g. © 天地图")
    tile_datum: TileDatum = Field(
        default="wgs84",
        description="coordinate system of the tiles (Web Mercator grid): wgs84 or cgcs2000 (天地图), "
        "gcj02 (most commercial Chinese maps): overlays are converted to it",
    )
    tile_max_zoom: int = Field(default=19, ge=1, le=22, description="deepest zoom level the tile server has")
    basemap_path: Path = Field(
        default=Path("var/basemap.geojson"),
        description="the imported vector base map (roads, kerbs, buildings) the map draws under the overlays",
    )
    basemap_attribution: str = Field(
        default="", max_length=300, description="source of the vector base map, e.g. © OpenStreetMap contributors"
    )
    city_bbox: BBox | None = Field(
        default=None,
        description="lon_min, lat_min, lon_max, lat_max of the city: merchant zones outside it are refused "
        "(and named as lat/lon-swapped when swapping them would fit)",
    )

    @field_validator("tile_url")
    @classmethod
    def _tile_template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"expected an http(s) URL template, got {value!r}")
        missing = [k for k in ("{z}", "{x}", "{y}") if k not in value]
        if missing:
            raise ValueError(f"the template lacks {', '.join(missing)} (got {value!r})")
        return value

    @field_validator("city_bbox")
    @classmethod
    def _bbox_order(cls, value: BBox | None) -> BBox | None:
        if value is None:
            return None
        lon_min, lat_min, lon_max, lat_max = value
        if not (-180 <= lon_min < lon_max <= 180 and -90 <= lat_min < lat_max <= 90):
            raise ValueError(f"expected lon_min, lat_min, lon_max, lat_max within lon/lat range, got {list(value)}")
        return value

    def tile_origin(self) -> str | None:
        """scheme://host of the tile server (the pages' CSP lets images load from there)."""
        if self.tile_url is None:
            return None
        scheme, _, rest = self.tile_url.partition("://")
        host = rest.split("/", 1)[0]
        return f"{scheme}://{host.replace('{s}', '*')}"


class CentralSettings(StrictModel):
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL, min_length=1, repr=False,
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db",
    )
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    broker_password: SecretStr | None = Field(
        default=None, description="read at start-up from the variable broker.password_env names"
    )
    cases: CaseSettings = Field(default_factory=CaseSettings)
    attribution: AttributionSettings = Field(default_factory=AttributionSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    workflow: WorkflowSettings = Field(default_factory=WorkflowSettings)
    open311: Open311Settings = Field(default_factory=Open311Settings)
    map: MapSettings = Field(default_factory=MapSettings)
    evidence_dir: Path = Field(
        default=Path("var/evidence"),
        description="folder of evidence JPEGs, stored by their sha256 (never in database rows)",
    )

    def broker_password_value(self) -> str | None:
        """The broker password for the MQTT client (None: the broker takes no password)."""
        if self.broker_password is not None:
            return self.broker_password.get_secret_value()
        if self.broker.password_env:
            raise ConfigError(
                f"broker.password_env: {self.broker.password_env} was not read at start-up "
                "(load_settings(..., broker_password=True) reads it)"
            )
        return None


# ---------------------------------------------------------------- loading


@dataclass(frozen=True)
class Override:
    """One setting from the environment or a flag: its path in the settings, its value, its source."""

    path: tuple[str, ...]
    value: object
    source: str  # e.g. "$STREETWATCH_MQTT_URL" or "--database-url"


def load_settings(
    path: Path | None = None,
    *,
    environ: Mapping[str, str],
    flags: Sequence[Override] = (),
    broker_password: bool = True,
) -> CentralSettings:
    """The file (`path`, else $STREETWATCH_CENTRAL_CONFIG, else none), then `environ`, then `flags`.
    `broker_password`: read the password broker.password_env names (commands that connect to the
    broker; the others need not have it)."""
    if path is None and environ.get(CONFIG_ENV):
        path = Path(environ[CONFIG_ENV])
    where = str(path) if path is not None else "settings"
    data = _read_yaml(path) if path is not None else {}
    _refuse_secrets_in_file(data, where)
    data = substitute(data, environ, where=where)
    sources: dict[tuple[str, ...], str] = {}
    for override in [*environment_overrides(environ), *flags]:
        _put(data, override, where)
        sources[override.path] = override.source
    password = _broker_password(data, environ, where) if broker_password else None
    if password is not None:
        data["broker_password"] = password
    try:
        return CentralSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where, sources)) from None


def environment_overrides(environ: Mapping[str, str]) -> list[Override]:
    """The settings `environ` sets: the named variables, then STREETWATCH_<SECTION>__<FIELD> ones."""
    found = [Override(p, environ[name], f"${name}") for name, p in ENV_SETTINGS.items() if environ.get(name)]
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and NESTED_DELIMITER in name and environ[name]:
            parts = name.removeprefix(ENV_PREFIX).lower().split(NESTED_DELIMITER)
            found.append(Override(tuple(parts), environ[name], f"${name}"))
    return found


def _put(data: dict[str, object], override: Override, where: str) -> None:
    node = data
    for depth, key in enumerate(override.path[:-1]):
        child = node.get(key)
        if child is None:  # absent, or an empty section in the file (`broker:`)
            child = node[key] = {}
        if not isinstance(child, dict):
            field = ".".join(override.path[: depth + 1])
            raise ConfigError(f"{where}: {field}: expected a mapping, got {type(child).__name__}")
        node = child
    node[override.path[-1]] = override.value


def _lookup(data: Mapping[str, object], path: tuple[str, ...]) -> object:
    node: object = data
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _refuse_secrets_in_file(data: Mapping[str, object], where: str) -> None:
    for secret_path, variable in SECRET_SETTINGS.items():
        value = _lookup(data, secret_path)
        if value is not None and not has_reference(value):
            field = ".".join(secret_path)
            raise ConfigError(f"{where}: {field}: secrets do not belong in the file; set {variable} instead")


def _broker_password(data: Mapping[str, object], environ: Mapping[str, str], where: str) -> str | None:
    variable = _lookup(data, ("broker", "password_env"))
    if not variable:
        return None
    value = read_variable(str(variable), environ, where=where, field="broker.password_env", secret=True)
    if value is None:
        raise ConfigError(
            f"{where}: broker.password_env: environment variable {variable} is not set (nor {variable}_FILE)"
        )
    return value


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


def _describe(exc: ValidationError, where: str, sources: Mapping[tuple[str, ...], str]) -> str:
    """One line per problem: source (file, $VARIABLE or --flag), field, what was wrong, what arrived."""
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        field = ".".join(loc) or "<root>"
        source = next((sources[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in sources), where)
        lines.append(f"{source}: {field}: {err['msg']}{_shown_input(loc, err.get('input'))}")
    return redact("\n".join(lines))  # URL passwords and ${VAR} secrets, even inside a message


def _shown_input(loc: tuple[str, ...], got: object) -> str:
    """What arrived, unless it is a secret or a whole section (which may hold one)."""
    if isinstance(got, dict | list) or any(loc[:n] in SECRET_SETTINGS for n in (1, 2)):
        return ""
    return f" (got {got!r})"
