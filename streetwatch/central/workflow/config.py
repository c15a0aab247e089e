"""Workflow settings: every number the city's rules use, with the defaults docs/design.md gives.

The `workflow:` section of central's settings (config.py loads it from the file and environment)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator, model_validator


class EventClass(BaseModel):
    """Where a violation files in the city platform's event catalogue (codes differ per city)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=32, description="the platform's event class code")
    category: str = Field(min_length=1, description="major class, e.g. 街面秩序 (street order)")
    name: str = Field(min_length=1, description="minor class, e.g. 占道经营 (business on the road)")


DEFAULT_EVENT_CLASSES: dict[str, EventClass] = {
    # Placeholders in the shape of a city catalogue: set each city's own codes in the YAML.
    # The names are the catalogue's own (Chinese), shown as they are on every page and export.
    "street_vending": EventClass(code="SO-01", category="街面秩序", name="占道经营"),
    "stacked_goods": EventClass(code="SO-02", category="街面秩序", name="店外经营"),
    "illegal_parking": EventClass(code="SO-03", category="街面秩序", name="违规停车"),
}


class WorkflowSettings(BaseModel):
    """The city's rules (docs/design.md, "Where the rules come from"; each setting: docs/central-guide.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rectify_window_min: float = Field(default=30.0, gt=0, le=24 * 60, description="merchant's time to fix it")
    strike_window_days: float = Field(default=90.0, gt=0, description="confirmed cases counted for strikes")
    strikes_count_self_rectified: bool = Field(default=False, description="a self-rectified case is a strike")
    grade_window_days: float = Field(default=90.0, gt=0, description="cases and complaints counted for grades")
    grades_count_self_rectified: bool = Field(default=True, description="a self-rectified case counts to the grade")
    red_at: int = Field(default=5, ge=2, description="cases+complaints from which a merchant is red")
    yellow_at: int = Field(default=3, ge=1, description="cases+complaints from which a merchant is yellow")
    hotspot_window_days: float = Field(default=30.0, gt=0, description="cases counted for hotspots")
    hotspot_threshold: int = Field(default=5, ge=1, description="cases that make an address a hotspot")
    webhook_url: HttpUrl | None = Field(default=None, description="merchant-notification webhook (None: outbox only)")
    webhook_secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key signing webhook bodies")
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=8, ge=1, le=100, description="deliveries tried before a message fails")
    retry_base_s: float = Field(default=30.0, gt=0, description="first retry delay; doubles per attempt")
    retry_max_s: float = Field(default=3600.0, gt=0, description="longest retry delay")
    undo_window_s: float = Field(
        default=30.0, ge=0, le=600,
        description="a reviewer may undo a decision this long; a confirmed case's notice waits for it",
    )
    strike_waits_for_served: bool = Field(
        default=True,
        description="a merchant's next strike starts only once the previous step was served: its notice "
        "delivered (where a channel delivers) and its rectification deadline passed",
    )
    notice_sink: Path | None = Field(
        default=None,
        description="a local merchant-notice sink: every notice is appended to this JSON-lines file (the demo's)",
    )
    tick_interval_s: float = Field(default=5.0, gt=0, le=300, description="how often the worker scans timers")
    recompute_every_s: float = Field(
        default=60.0, ge=0, le=3600, description="grades and hotspots are recomputed at most this often (0: every tick)"
    )
    event_classes: dict[str, EventClass] = Field(default_factory=lambda: dict(DEFAULT_EVENT_CLASSES))

    @field_validator("event_classes", mode="before")
    @classmethod
    def _event_class_defaults(cls, value: object) -> object:
        """A city may set the codes of some violations only; the others keep the placeholders."""
        if isinstance(value, dict):
            return {**DEFAULT_EVENT_CLASSES, **value}
        return value

    @model_validator(mode="after")
    def verify_grade_thresholds(self) -> WorkflowSettings:
        if self.yellow_at >= self.red_at:
            raise ValueError(f"yellow_at ({self.yellow_at}) must be below red_at ({self.red_at})")
        return self
