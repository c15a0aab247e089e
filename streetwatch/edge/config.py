"""Edge configuration: one YAML file per edge box, validated strictly at load.

A typo or a bad value fails at start with the file, the field, what was expected and what arrived.
Every string may use `${VAR}` / `${VAR:-default}` (streetwatch/config_vars.py), so camera and
broker credentials stay out of the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from streetwatch.broker_config import BrokerConfig, ConfigError, StrictModel, TlsConfig
from streetwatch.config_vars import substitute
from streetwatch.edge.alerts import ID_PATTERN, VIOLATIONS, SourceKind, Violation
from streetwatch.edge.yaml_file import read_yaml_mapping, shown_input
from streetwatch.redaction import redact

DEFAULT_DWELL_S: dict[str, float] = {"illegal_parking": 120, "street_vending": 180, "stacked_goods": 300}
_WINDOW = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")


class ModelConfig(StrictModel):
    name: str = Field(default="yolox_nano", description="an entry of streetwatch/models/manifest.yaml")
    manifest: Path | None = Field(default=None, description="default: the manifest shipped in the package")
    model_dir: Path | None = Field(default=None, description="default: $STREETWATCH_MODEL_DIR, then models/")
    providers: list[str] = Field(
        default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        description="onnxruntime execution providers in order of preference; unavailable ones are skipped",
    )
    score_threshold: float = Field(default=0.3, ge=0.01, le=1)
    nms_iou: float = Field(default=0.45, ge=0.05, le=1)
    batch_size: int = Field(default=4, ge=1, le=64, description="frames from several cameras per inference")
    threads: int = Field(
        default=0, ge=0, le=64, description="intra-op threads per session; 0 = all cores, shared between loops"
    )
    detection_loops: int = Field(
        default=0,
        ge=0,
        le=64,
        description="detection loops (threads), each with its own session, splitting the cameras; "
        "0 = one per core on a CPU-only box (at most one per camera), 1 with a GPU",
    )


class CalibrationConfig(StrictModel):
    points: list[tuple[tuple[float, float], tuple[float, float]]] = Field(
        description="image (x, y) pixel <-> (lat, lon) pairs; at least 4, not collinear",
    )

    @field_validator("points")
    @classmethod
    def _at_least_four(cls, value: list) -> list:
        if len(value) < 4:
            raise ValueError(f"a homography needs at least 4 point pairs, got {len(value)}")
        return value


class ZoneConfig(StrictModel):
    id: str = Field(pattern=ID_PATTERN)
    violations: list[Violation] = Field(min_length=1)
    polygon_px: list[tuple[float, float]] | None = Field(default=None, description="(x, y) image pixels")
    polygon_geo: list[tuple[float, float]] | None = Field(default=None, description="(lat, lon) pairs")
    dwell_s: float | None = Field(default=None, ge=0, le=86_400, description="default per violation")
    allowed_windows: list[str] = Field(
        default_factory=list, description="local times when the violation is allowed, e.g. '18:00-22:00'"
    )

    @field_validator("allowed_windows")
    @classmethod
    def _check_windows(cls, value: list[str]) -> list[str]:
        for window in value:
            if not _WINDOW.match(window):
                raise ValueError(f"expected 'HH:MM-HH:MM', got {window!r}")
        return value

    @model_validator(mode="after")
    def _one_polygon(self) -> ZoneConfig:
        polygons = [p for p in (self.polygon_px, self.polygon_geo) if p is not None]
        if len(polygons) != 1:
            raise ValueError("give exactly one of polygon_px or polygon_geo")
        if len(polygons[0]) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(polygons[0])}")
        return self

    def dwell_for(self, violation: str) -> float:
        return self.dwell_s if self.dwell_s is not None else DEFAULT_DWELL_S[violation]


TelemetrySource = Literal["nmea_file", "nmea_serial", "nmea_tcp", "nmea_udp", "gpx", "srt", "klv", "mqtt"]
FILE_TELEMETRY: tuple[str, ...] = ("nmea_file", "gpx", "srt", "klv")


class CameraModelConfig(StrictModel):
    """A moving camera's lens and mounting (see edge/geo.py, section 3)."""

    hfov_deg: float | None = Field(default=None, gt=1, lt=179, description="horizontal field of view")
    matrix: list[list[float]] | None = Field(default=None, description="3x3 calibration matrix [[fx,0,cx],...]")
    matrix_image_size: tuple[int, int] | None = Field(default=None, description="(w, h) the matrix was measured at")
    mount_height_m: float | None = Field(default=None, gt=0, le=10, description="vehicles: lens above the road")
    ground_alt_m: float | None = Field(
        default=None, ge=-500, le=9000, description="drones without relative altitude: ground altitude (MSL)"
    )
    yaw_deg: float = Field(default=0.0, ge=-180, le=360, description="camera yaw relative to the platform nose")
    pitch_deg: float = Field(default=0.0, ge=-90, le=90, description="camera pitch relative to the platform")
    roll_deg: float = Field(default=0.0, ge=-180, le=180, description="camera roll relative to the platform")
    position_sigma_m: float = Field(default=2.0, ge=0, le=100, description="GPS 1-sigma for accuracy_m")
    attitude_sigma_deg: float = Field(default=1.0, ge=0, le=45, description="measured attitude 1-sigma")
    assumed_attitude_sigma_deg: float = Field(
        default=3.0, ge=0, le=45, description="1-sigma when pitch/roll are assumed level (GPS-only telemetry)"
    )
    height_sigma_m: float = Field(default=0.2, ge=0, le=100, description="height above ground 1-sigma")
    gimbal_pitch_deg: float | None = Field(
        default=None, ge=-90, le=30,
        description="drones whose telemetry has a position but no camera attitude (most DJI sidecars): the "
        "gimbal pitch flown, degrees from the horizon (-90 = straight down); the heading then comes from the "
        "flight path and the accuracy uses assumed_attitude_sigma_deg",
    )

    @model_validator(mode="after")
    def _one_lens(self) -> CameraModelConfig:
        if (self.hfov_deg is None) == (self.matrix is None):
            raise ValueError("give exactly one of hfov_deg or matrix")
        if self.matrix is not None:
            if len(self.matrix) != 3 or any(len(row) != 3 for row in self.matrix):
                raise ValueError(f"matrix must be 3x3, got {self.matrix}")
            if not (self.matrix[0][0] > 0 and self.matrix[1][1] > 0):
                fx, fy = self.matrix[0][0], self.matrix[1][1]
                raise ValueError(f"matrix focal lengths fx, fy must be > 0, got {fx}, {fy}")
            if self.matrix_image_size is None:
                raise ValueError("matrix needs matrix_image_size: the (w, h) it was measured at")
        return self


class TelemetryConfig(StrictModel):
    """Where a moving camera's poses come from (see edge/telemetry)."""

    source: TelemetrySource
    path: Path | None = Field(
        default=None, description="file sources (default: the video's sidecar in a replay); nmea_serial: the device"
    )
    host: str | None = Field(default=None, description="nmea_tcp: the GPS host; nmea_udp: address to bind")
    port: int | None = Field(default=None, ge=1, le=65535)
    baud: int | None = Field(
        default=None, ge=1200, le=921_600, description="nmea_serial: line speed set at open (default: as stty left it)"
    )
    max_gap_s: float = Field(default=2.0, gt=0, le=60, description="frames further from a pose are not geo-matched")
    clock_offset_s: float = Field(
        default=0.0, ge=-86_400, le=86_400, description="telemetry time = frame time + this"
    )
    clock_tz: str | None = Field(default=None, description="srt: IANA zone of the drone's local clock")
    # klv: `path` may be a raw ST 0601 dump (.klv/.bin) or a media file with a KLV data stream; the
    # first bytes tell which (edge/telemetry/files.py), so there is no format field to get wrong.

    @model_validator(mode="after")
    def _fields_for_source(self) -> TelemetryConfig:
        if self.source in ("nmea_tcp", "nmea_udp"):
            if self.port is None:
                raise ValueError(f"source {self.source} needs port")
            if self.source == "nmea_tcp" and self.host is None:
                raise ValueError("source nmea_tcp needs host")
            if self.path is not None:
                raise ValueError(f"source {self.source} reads a socket: remove path")
        elif self.host is not None or self.port is not None:
            raise ValueError(f"source {self.source} takes no host/port")
        if self.source == "nmea_serial" and self.path is None:
            raise ValueError("source nmea_serial needs path: the receiver's device, e.g. /dev/ttyUSB0")
        if self.baud is not None and self.source != "nmea_serial":
            raise ValueError(f"baud applies to nmea_serial only, not {self.source}")
        if self.source == "mqtt" and self.path is not None:
            raise ValueError("source mqtt reads streetwatch/v1/telemetry/{edge_id}/{camera_id}: remove path")
        if self.clock_tz is not None and self.source != "srt":
            raise ValueError(f"clock_tz applies to srt only, not {self.source}")
        return self


class MovingRulesConfig(StrictModel):
    """Rules of moving cameras (ground positions instead of pixels)."""

    pass_gap_s: float = Field(
        default=30, ge=1, le=3600, description="unseen this long: the next sighting is a new pass"
    )
    min_frames: int = Field(default=2, ge=1, le=100, description="frames an object needs in a pass to be reported")
    still_tolerance_m: float = Field(
        default=1.0, gt=0, le=50, description="ground drift (beyond the accuracy) that still counts as still"
    )
    match_radius_m: float = Field(default=3.0, gt=0, le=50, description="minimum gate to join an object")
    prop_reach_m: float = Field(default=3.0, gt=0, le=50, description="street vending: prop within this of a person")


class CameraConfig(StrictModel):
    id: str = Field(pattern=ID_PATTERN)
    kind: SourceKind = "fixed"
    url: str = Field(description="rtsp://... URL or a video file path; with detect_url: the main stream, for evidence")
    detect_url: str | None = Field(
        default=None,
        description="the camera's low-resolution sub-stream (rtsp://... or a file): detection, tracking, rules "
        "and the background model run on it; `url` is then only demuxed and decoded for full-resolution evidence",
    )
    pixel_size: tuple[int, int] | None = Field(
        default=None,
        description="(w, h) of the picture polygon_px and the calibration's pixels were measured on; required "
        "with detect_url (usually the main stream's resolution); default: the decoded stream's own",
    )
    # Off by default: a detection repeated over skipped frames counts as seen, so where a track's
    # presence or median score sits at its bar, skipping can tip it (docs/operator-guide.md, "Skip
    # what did not change").
    max_skip_s: float = Field(
        default=0.0, ge=0, le=600,
        description="skip the detector on frames where nothing changed in the zones, but detect at least this "
        "often (stream s); 0 (default) = detect every sampled frame",
    )
    change_threshold: float = Field(
        default=0.002, gt=0, le=1,
        description="share of the zones' pixels (detector view) that must differ from the last detected "
        "frame for the frame to count as changed",
    )
    sample_fps: float = Field(default=1.0, gt=0, le=60, description="frames analysed per second of stream")
    keyframes_only: bool = Field(default=False, description="decode key frames only (cheap; fixed cameras)")
    loop: bool = Field(default=False, description="video files only: start again at the end (demos, soak)")
    timezone: str = Field(default="UTC", description="IANA zone for allowed_windows, e.g. Asia/Shanghai")
    score_threshold: float | None = Field(
        default=None, ge=0.01, le=1, description="this camera's detector score threshold; default model.score_threshold"
    )
    rules: RulesConfig | None = Field(
        default=None, description="this camera's rules: only the fields given here differ from the box-wide rules"
    )
    calibration: CalibrationConfig | None = None
    zones: list[ZoneConfig] = Field(default_factory=list)
    camera_model: CameraModelConfig | None = Field(default=None, description="vehicle/drone cameras only")
    telemetry: TelemetryConfig | None = Field(default=None, description="vehicle/drone cameras only")


class ForegroundConfig(StrictModel):
    """The static-foreground (background) model that finds goods no detector class covers
    (edge/foreground.py). Defaults suit real CCTV sampled at 1 fps and updated every
    static_check_interval_s; times are stream seconds."""

    work_width: int = Field(default=384, ge=64, le=1920, description="the model works on the view scaled to this width")
    fast_tau_s: float = Field(
        default=20.0, gt=0, le=600, description="fast background: absorbs what stops moving in about 1.4x this"
    )
    slow_tau_s: float = Field(default=600.0, gt=0, le=86_400, description="slow background: the empty scene")
    warmup_s: float = Field(
        default=60.0, ge=0, le=3600,
        description="the slow background forms (the median of the frames seen) and nothing is reported",
    )
    min_static_s: float = Field(default=10.0, ge=0, le=3600, description="foreground this long before it is static")
    absorb_after_s: float = Field(
        default=7200.0, gt=0, le=7 * 86_400, description="static longer than this becomes background"
    )
    diff_threshold: float = Field(default=25.0, gt=0, le=255, description="grey levels of colour change")
    noise_k: float = Field(default=4.0, gt=0, le=20, description="threshold at least this many noise sigmas")
    texture: bool = Field(
        default=True, description="shape evidence (edges, pattern) beside colour: dark-on-light, same-colour goods"
    )
    texture_threshold: float = Field(
        default=0.3, gt=0, le=10, description="change of the log-brightness gradient that is a change of shape"
    )
    shade_min_ratio: float = Field(
        default=0.45, gt=0, le=1, description="darkest a shadow makes the ground (brightness ratio)"
    )

    @model_validator(mode="after")
    def _fast_below_slow(self) -> ForegroundConfig:
        if self.fast_tau_s >= self.slow_tau_s:
            raise ValueError(f"fast_tau_s ({self.fast_tau_s}) must be below slow_tau_s ({self.slow_tau_s})")
        return self


class RulesConfig(StrictModel):
    reminder_interval_s: float = Field(default=900, ge=10, description="repeat an active episode's alert")
    end_after_s: float = Field(default=60, ge=1, description="absence that ends an episode")
    min_median_score: float = Field(default=0.35, ge=0, le=1, description="track score history to confirm")
    still_tolerance: float = Field(
        default=0.25, gt=0, le=2, description="max ground-point drift, in box heights, to count as still"
    )
    static_min_area_px: int = Field(
        default=300, ge=16,
        description="smallest static region for goods, camera-frame px (a 20 cm bag on a 640x360 street view "
        "is ~500); scale it with the pixel count of the camera",
    )
    presence_share: float = Field(
        default=0.7, gt=0, le=1,
        description="share of the sampled frames of a dwell the same object (place and appearance) must be seen in",
    )
    static_check_interval_s: float = Field(
        default=5.0, ge=0, le=60,
        description="update the goods background model this often (stream s); goods dwell is minutes",
    )
    foreground: ForegroundConfig = Field(default_factory=ForegroundConfig)
    moving: MovingRulesConfig = Field(default_factory=MovingRulesConfig)


class EvidenceSetConfig(StrictModel):
    """The evidence set beside each alert's photo (wire 1.2, docs/operator-guide.md): the frame the
    object was first seen in, the frame that confirmed it, a full-resolution crop of the subject,
    a short H.264 clip up to the confirmation, and the unannotated frame behind the photo."""

    enabled: bool = Field(default=True, description="false: alerts carry only the photo, as before wire 1.2")
    clip_s: float = Field(
        default=8.0, ge=0, le=60, description="clip length up to the confirmation (stream s); 0 = no clip"
    )
    clip_width: int = Field(default=640, ge=160, le=1920, description="clip frame width (never upscaled)")
    clip_max_frames: int = Field(default=16, ge=2, le=240, description="at most this many frames per clip")
    clip_max_bytes: int = Field(
        default=1_500_000, ge=50_000, le=4 * 1024 * 1024, description="a larger clip is not sent"
    )
    crop_max_px: int = Field(default=1024, ge=64, le=4096, description="the crop's longest side (downscaled if larger)")
    crop_margin: float = Field(default=0.15, ge=0, le=2, description="space around the subject, in box sizes")
    first_seen_every_s: float = Field(
        default=5.0, gt=0, le=300, description="a frame is kept this often for `first seen` (stream s)"
    )
    first_seen_keep_s: float = Field(
        default=900.0, ge=0, le=86_400,
        description="how far back `first seen` frames are kept; for a longer dwell, the oldest kept is shown",
    )
    history_max_bytes: int = Field(
        default=48 * 1024 * 1024, ge=1024 * 1024, le=1024 * 1024 * 1024,
        description="memory per camera for the frames kept (first seen and clip); the oldest go first",
    )
    outbox_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024 * 1024,
        description="evidence-set bytes waiting to be sent; beyond it new sets are dropped (alerts never are)",
    )


class EvidenceConfig(StrictModel):
    max_width: int = Field(default=1280, ge=160, le=4096)
    jpeg_quality: int = Field(default=80, ge=30, le=95)
    max_bytes: int = Field(default=250_000, ge=10_000, le=290_000)
    media: EvidenceSetConfig = Field(default_factory=EvidenceSetConfig)


class EdgeConfig(StrictModel):
    edge_id: str = Field(pattern=ID_PATTERN)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    outbox: Path = Field(default=Path("var/outbox.sqlite"))
    outbox_max_rows: int = Field(
        default=10_000, ge=1, description="at most this many alerts wait; more are refused (logged, counted)"
    )
    outbox_max_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1, description="bytes of alerts the outbox may hold (caps its disk use)"
    )
    outbox_retention_h: float = Field(
        default=24, ge=0, le=24 * 30,
        description="delivered alerts are kept this long (within the caps) so central can ask for any the broker lost",
    )
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Prometheus /metrics; 0 = off")
    rules: RulesConfig = Field(default_factory=RulesConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    cameras: list[CameraConfig] = Field(min_length=1)

    def rules_for(self, camera: CameraConfig) -> RulesConfig:
        """The rules `camera` runs: its own (merged over the box-wide ones at load) or the box's."""
        return camera.rules if camera.rules is not None else self.rules

    def score_threshold_for(self, camera: CameraConfig) -> float:
        return camera.score_threshold if camera.score_threshold is not None else self.model.score_threshold

    def model_for(self, cameras: Sequence[CameraConfig]) -> ModelConfig:
        """Detector settings for a session serving `cameras`: the lowest of their thresholds (each
        camera's own is then applied to its detections: edge.detector.above_threshold)."""
        lowest = min(self.score_threshold_for(camera) for camera in cameras)
        return self.model.model_copy(update={"score_threshold": lowest})

    @model_validator(mode="before")
    @classmethod
    def _camera_rules_over_box_rules(cls, data: Any) -> Any:
        return merge_camera_rules(data)

    @model_validator(mode="after")
    def _cross_checks(self) -> EdgeConfig:
        verify_unique_ids(self)
        for camera in self.cameras:
            verify_geo_zones_have_calibration(camera)
            verify_detect_url(camera)
            verify_moving_camera(camera)
        return self


def merge_camera_rules(data: Any) -> Any:
    """A camera's `rules` are the box-wide `rules` with the camera's fields laid over them, so each
    camera that has any ends up with a whole, validated RulesConfig (errors at cameras.N.rules.X)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("cameras"), list):
        return data
    rules = data.get("rules")
    box_rules: Mapping[str, Any] = rules if isinstance(rules, Mapping) else {}
    cameras = [
        {**camera, "rules": _deep_merge(box_rules, camera["rules"])}
        if isinstance(camera, Mapping) and isinstance(camera.get("rules"), Mapping) else camera
        for camera in data["cameras"]
    ]
    return {**data, "cameras": cameras}


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        merged[key] = _deep_merge(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return merged


def verify_unique_ids(config: EdgeConfig) -> None:
    seen: set[str] = set()
    for camera in config.cameras:
        if camera.id in seen:
            raise ValueError(f"camera id {camera.id!r} appears twice; camera ids must be unique")
        seen.add(camera.id)
        zone_ids = [z.id for z in camera.zones]
        if len(zone_ids) != len(set(zone_ids)):
            raise ValueError(f"camera {camera.id!r} has duplicate zone ids {zone_ids}")


def verify_detect_url(camera: CameraConfig) -> None:
    """Zones and calibration are pixels of one stated picture: with two streams of different sizes
    the edge must know which, before either stream has connected."""
    if camera.detect_url is not None and camera.pixel_size is None:
        raise ValueError(
            f"camera {camera.id!r}: detect_url needs pixel_size: the (w, h) of the picture polygon_px and the "
            "calibration points were measured on (usually the main stream's resolution, e.g. [1920, 1080])"
        )
    if camera.pixel_size is not None and min(camera.pixel_size) < 16:
        raise ValueError(f"camera {camera.id!r}: pixel_size: expected (w, h) of at least 16 px, "
                         f"got {camera.pixel_size}")
    if camera.detect_url is not None and camera.kind != "fixed":
        raise ValueError(f"camera {camera.id!r}: detect_url is for fixed cameras only, not kind {camera.kind}")


def verify_geo_zones_have_calibration(camera: CameraConfig) -> None:
    for zone in camera.zones:
        if zone.polygon_geo is not None and camera.kind == "fixed" and camera.calibration is None:
            raise ValueError(
                f"camera {camera.id!r} zone {zone.id!r} is given in polygon_geo but the camera has no "
                "calibration; add calibration.points or give the zone as polygon_px"
            )


def verify_moving_camera(camera: CameraConfig) -> None:
    """Vehicle/drone cameras need telemetry and a camera model and zones in polygon_geo; fixed ones none of it."""
    where = f"camera {camera.id!r} (kind {camera.kind})"
    if camera.kind == "fixed":
        for name in ("camera_model", "telemetry"):
            if getattr(camera, name) is not None:
                raise ValueError(f"{where}: {name} is for vehicle/drone cameras; remove it or set kind")
        return
    if camera.telemetry is None or camera.camera_model is None:
        missing = " and ".join(n for n in ("telemetry", "camera_model") if getattr(camera, n) is None)
        raise ValueError(f"{where}: a moving camera needs {missing} (its pose comes from telemetry)")
    if camera.calibration is not None:
        raise ValueError(f"{where}: calibration.points are for fixed cameras; a moving camera uses camera_model")
    for zone in camera.zones:
        if zone.polygon_geo is None:
            raise ValueError(f"{where} zone {zone.id!r}: a moving camera's zones must be polygon_geo (lat, lon); "
                             "pixel polygons move with the camera")
    _verify_platform(camera, where, camera.camera_model, camera.telemetry)


def _verify_platform(camera: CameraConfig, where: str, model: CameraModelConfig, telemetry: TelemetryConfig) -> None:
    if camera.kind == "vehicle":
        if model.mount_height_m is None:
            raise ValueError(f"{where}: camera_model.mount_height_m is required (lens height above the road)")
        if model.gimbal_pitch_deg is not None:
            raise ValueError(f"{where}: camera_model.gimbal_pitch_deg is for drones; a vehicle camera's tilt is "
                             "camera_model.pitch_deg")
        if telemetry.source in ("srt", "klv"):
            raise ValueError(f"{where}: telemetry.source {telemetry.source} is a drone format; use nmea_*, gpx or mqtt")
        return
    if model.mount_height_m is not None:
        raise ValueError(f"{where}: mount_height_m is for vehicles; a drone's height comes from its telemetry")
    if telemetry.source in ("nmea_file", "nmea_serial", "nmea_tcp", "nmea_udp", "gpx") and model.ground_alt_m is None:
        raise ValueError(f"{where}: telemetry.source {telemetry.source} has no height above ground; "
                         "set camera_model.ground_alt_m")
    if telemetry.source == "klv" and model.ground_alt_m is None:
        raise ValueError(f"{where}: KLV gives altitude above sea level; set camera_model.ground_alt_m")
    if telemetry.source == "srt" and telemetry.clock_tz is None:
        raise ValueError(f"{where}: telemetry.clock_tz is required for srt (the drone clock's IANA zone)")


def load_edge_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> EdgeConfig:
    """Read an edge YAML file, substitute `${VAR}` references from `environ` (default: the process
    environment) and validate; raise ConfigError naming the file and field."""
    path = Path(path)
    raw = read_yaml_mapping(path, ConfigError, what="the edge config", expected="a mapping at the top level")
    raw = substitute(raw, os.environ if environ is None else environ, where=str(path))
    try:
        return EdgeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None


def format_validation_error(path: Path, exc: ValidationError) -> str:
    """One line per problem: file, dotted field path, message, and what arrived."""
    lines = [f"{path}: {exc.error_count()} configuration error(s)"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<top level>"
        lines.append(f"  {field}: {err['msg']} (got {shown_input(err)})")
    return redact("\n".join(lines))  # a validator's message may quote the value too


__all__ = [
    "VIOLATIONS",
    "BrokerConfig",
    "CameraConfig",
    "CameraModelConfig",
    "ConfigError",
    "EdgeConfig",
    "ForegroundConfig",
    "StrictModel",
    "TelemetryConfig",
    "TlsConfig",
    "ZoneConfig",
    "load_edge_config",
]
