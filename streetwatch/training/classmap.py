"""The class map: training classes, the pipeline role of each, and which detector classes feed it.

Alerts carry the deployed detector's class names (COCO names such as `car`, or the edge's
`static_region` for goods). A retrained model has its own, smaller class list (`vehicle`,
`person`, `stall`, `goods`, ...). The class map is the one place that says how the two relate, so
harvesting (label conversion), evaluation (comparing old and new model in the same classes) and
the manifest (class -> role) all agree. It is a small YAML file written beside the dataset.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streetwatch.edge.types import Role

CLASS_MAP_FILE = "classes.yaml"


class ClassMapError(ValueError):
    """An invalid class map; the message names the file and the field."""


class TrainingClass(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$")
    role: Role
    sources: list[str] = Field(default_factory=list, description="detector class names that mean this class")


class ClassMap(BaseModel):
    """Training classes in model output order; `index_of` maps a detector class name to one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: list[TrainingClass] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ClassMap:
        names = [c.name for c in self.classes]
        sources = [s for c in self.classes for s in (c.name, *c.sources)]
        dupes = sorted({n for n in names if names.count(n) > 1} | {s for s in sources if sources.count(s) > 1})
        if dupes:
            raise ValueError(f"class or source name(s) {dupes} appear more than once")
        return self

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def roles(self) -> dict[str, Role]:
        """Training class -> pipeline role, as the manifest's `roles` field wants it."""
        return {c.name: c.role for c in self.classes if c.role != "ignore"}

    def index_of(self, detector_class: str) -> int | None:
        """The training class index a detector class (or a training class name) stands for, or None."""
        for index, cls in enumerate(self.classes):
            if detector_class == cls.name or detector_class in cls.sources:
                return index
        return None


DEFAULT_CLASS_MAP = ClassMap(
    classes=[
        TrainingClass(name="vehicle", role="vehicle", sources=["car", "truck", "bus", "motorcycle"]),
        TrainingClass(name="person", role="person", sources=[]),
        TrainingClass(name="stall", role="vending_prop", sources=["umbrella", "dining table", "chair"]),
        TrainingClass(name="goods", role="goods", sources=["static_region"]),
    ]
)


def load_class_map(path: str | Path | None) -> ClassMap:
    """Read a class map YAML (`classes: [{name, role, sources}]`); None gives the default map."""
    if path is None:
        return DEFAULT_CLASS_MAP
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return ClassMap.model_validate(raw)
    except OSError as exc:
        raise ClassMapError(f"{path}: cannot read the class map: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ClassMapError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ClassMapError(f"{path}: invalid class map: {problems}") from None


def save_class_map(class_map: ClassMap, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(yaml.safe_dump(class_map.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    return path
