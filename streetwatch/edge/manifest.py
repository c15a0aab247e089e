"""The model manifest (streetwatch/models/manifest.yaml, shipped in the wheel) and the checked model file it points to.

A manifest entry says which ONNX file a detector name stands for, how to feed it (format, input
size), what its classes are and which pipeline role each class plays. Weights are never committed:
`resolve_model` finds the file on disk and checks its sha256 before anything loads it, so a
truncated download or a swapped file fails at start with a message that says how to fix it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from streetwatch.edge.alerts import ModelRef
from streetwatch.edge.types import Role
from streetwatch.edge.yaml_file import read_yaml_mapping, shown_input

logger = logging.getLogger(__name__)

# The manifest is package data, so an installed wheel finds it; the weights are not (too big, and
# never committed): they come from model_dir, $STREETWATCH_MODEL_DIR, or a checkout's models/.
DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / "models" / "manifest.yaml"
REPO_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
MODEL_DIR_ENV = "STREETWATCH_MODEL_DIR"

ModelFormat = Literal["yolox", "ultralytics"]


class ManifestError(ValueError):
    """The manifest file is unreadable or invalid; the message names the file, model and field."""


class ModelError(RuntimeError):
    """A model file is missing or is not the file the manifest describes."""


class ModelEntry(BaseModel):
    """One detector: its ONNX file, how to feed it and what its classes mean to the pipeline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="name used in edge config")
    file: str = Field(min_length=1, description="file name inside the model folder")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="lower-case hex sha256 of the file")
    format: ModelFormat = Field(description="output layout: yolox (raw grid) or ultralytics (v8/11)")
    input_size: tuple[int, int] = Field(description="network input (width, height) in pixels")
    classes: list[str] = Field(min_length=1, description="class names in model output order")
    roles: dict[str, Role] = Field(default_factory=dict, description="class name -> pipeline role")
    license: str = Field(min_length=1)
    source: str = Field(pattern=r"^(https?|file)://", description="public URL the file is fetched from")

    @field_validator("file")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        if Path(value).name != value:
            raise ValueError(f"expected a plain file name without folders, got {value!r}")
        return value

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 32 or max(value) > 4096:
            raise ValueError(f"expected (width, height) between 32 and 4096, got {value}")
        return value

    @field_validator("roles")
    @classmethod
    def _roles_name_known_classes(cls, value: dict[str, Role], info: ValidationInfo) -> dict[str, Role]:
        classes = info.data.get("classes")  # absent when classes itself failed validation
        unknown = sorted(set(value) - set(classes)) if classes is not None else []
        if unknown:
            raise ValueError(f"class(es) {unknown} are not in this model's classes")
        return value

    def role_of(self, class_name: str) -> Role:
        """The pipeline role of a class; classes without a role are ignored."""
        return self.roles.get(class_name, "ignore")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[ModelEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Manifest:
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model name(s) {duplicates} appear more than once")
        return self

    def entry(self, name: str) -> ModelEntry:
        for model in self.models:
            if model.name == name:
                return model
        known = ", ".join(m.name for m in self.models)
        raise ModelError(f"model {name!r} is not in the manifest; known models: {known}")


@dataclass(frozen=True)
class ResolvedModel:
    """A manifest entry together with the on-disk file whose sha256 has been checked."""

    entry: ModelEntry
    path: Path

    @property
    def ref(self) -> ModelRef:
        """What an alert's `model` field carries."""
        return ModelRef(name=self.entry.name, sha256=self.entry.sha256)


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Read and validate a manifest; errors name the file, the model and the field."""
    path = Path(path) if path is not None else DEFAULT_MANIFEST
    raw = read_yaml_mapping(
        path, ManifestError, what="the model manifest", expected="a mapping with a 'models' list"
    )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(_format_manifest_errors(path, raw, exc)) from None


def _format_manifest_errors(path: Path, raw: dict[str, object], exc: ValidationError) -> str:
    """One line per problem: `file: model 'name': field.path: message (got ...)`."""
    models = raw.get("models")
    lines = [f"{path}: {exc.error_count()} manifest error(s)"]
    for err in exc.errors():
        loc = list(err["loc"])
        where = "manifest"
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
            index = loc[1]
            item = models[index] if isinstance(models, list) and index < len(models) else None
            name = item.get("name") if isinstance(item, dict) else None
            where = f"model {name!r}" if name else f"models[{index}]"
            loc = loc[2:]
        field = ".".join(str(p) for p in loc) or "<entry>"
        lines.append(f"  {where}: field {field}: {err['msg']} (got {shown_input(err)})")
    return "\n".join(lines)


def candidate_dirs(model_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for model files, in order: the argument, $STREETWATCH_MODEL_DIR, and a
    checkout's models/ (only where it exists: an installed package has none beside it)."""
    dirs = [Path(model_dir)] if model_dir is not None else []
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        dirs.append(Path(env))
    if REPO_MODELS_DIR.is_dir():
        dirs.append(REPO_MODELS_DIR)
    unique: list[Path] = []
    for folder in dirs:
        if folder not in unique:
            unique.append(folder)
    return unique


def resolve_model(
    name: str, *, manifest_path: str | Path | None = None, model_dir: str | Path | None = None
) -> ResolvedModel:
    """Find `name`'s file in the first folder that has it and check its sha256.

    Raises ModelError if no folder has the file or if the first file found has the wrong hash
    (a wrong file is never silently skipped in favour of a later folder).
    """
    entry = load_manifest(manifest_path).entry(name)
    tried = [folder / entry.file for folder in candidate_dirs(model_dir)]
    path = next((p for p in tried if p.is_file()), None)
    if path is None:
        raise ModelError(
            f"model {entry.name!r}: file {entry.file} not found; tried {', '.join(map(str, tried))}. "
            f"Fix: run `python scripts/fetch_models.py` (downloads {entry.source}), or set "
            f"{MODEL_DIR_ENV} to a folder that holds {entry.file}."
        )
    actual = file_sha256(path)
    if actual != entry.sha256:
        raise ModelError(
            f"model {entry.name!r}: {path} has the wrong sha256: expected {entry.sha256}, "
            f"got {actual}. The file is corrupt, truncated or a different version. Fix: delete it "
            f"and run `python scripts/fetch_models.py`, or point {MODEL_DIR_ENV} at a correct copy."
        )
    logger.info("model %s: using %s (sha256 %s verified)", entry.name, path, actual[:12])
    return ResolvedModel(entry=entry, path=path)


_sha_cache: dict[tuple[str, int, int], str] = {}
_sha_lock = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """Streamed sha256 of a file, cached per (path, size, mtime) so repeated start-ups stay fast."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _sha_lock:
        cached = _sha_cache.get(key)
    if cached is not None:
        return cached
    with path.open("rb") as handle:
        value = hashlib.file_digest(handle, "sha256").hexdigest()
    with _sha_lock:
        _sha_cache[key] = value
    return value
