"""Writing an Ultralytics YOLO dataset: images/, labels/, data.yaml, the class map, split by camera.

Layout (what `ultralytics` expects): `images/{train,val}/<name>.jpg` with a label file of the same
stem in `labels/{train,val}/<name>.txt`, one `class cx cy w h` line per box, normalised to 0..1.
An empty label file marks a hard negative (an image with nothing to find).

The split is by camera: every image of one camera lands in the same split, so val frames are not
near-copies of train frames (a fixed camera's frames differ by a few pixels and would make val
mAP meaningless). A camera's split depends only on its id (a hash), so re-harvesting with more
cases keeps cameras where they were.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from streetwatch.training.classmap import CLASS_MAP_FILE, ClassMap, save_class_map

logger = logging.getLogger(__name__)

Split = Literal["train", "val"]
SPLITS: tuple[Split, ...] = ("train", "val")
DATA_YAML = "data.yaml"
CAMERAS_YAML = "cameras.yaml"  # split -> cameras, so evaluation can keep to the val cameras
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Box:
    """One labelled box in image pixels (x1, y1, x2, y2) with its training class index."""

    class_index: int
    xyxy: tuple[float, float, float, float]


@dataclass(frozen=True)
class LabelledImage:
    """An image to write: its JPEG bytes, size, camera, boxes (empty for a hard negative)."""

    name: str
    jpeg: bytes
    width: int
    height: int
    camera_id: str
    boxes: tuple[Box, ...] = ()
    origin: str = ""  # e.g. "case 12 alert al-..": named in errors and the manifest of the dataset


@dataclass
class DatasetSummary:
    """Counts written per split (images, boxes, hard negatives) and the cameras in each split."""

    images: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    boxes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    negatives: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    cameras: dict[str, set[str]] = field(default_factory=lambda: {s: set() for s in SPLITS})


def yolo_line(box: Box, *, width: int, height: int) -> str | None:
    """`class cx cy w h` normalised to the image; None for a box with no area inside the image."""
    x1, y1, x2, y2 = box.xyxy
    x1, x2 = max(0.0, min(x1, x2)), min(float(width), max(x1, x2))
    y1, y2 = max(0.0, min(y1, y2)), min(float(height), max(y1, y2))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
    return f"{box.class_index} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"


def camera_split(camera_id: str, *, val_fraction: float) -> Split:
    """A camera's split from a hash of its id: stable across harvests, about val_fraction in val."""
    bucket = int.from_bytes(hashlib.sha256(camera_id.encode()).digest()[:4], "big") / 2**32
    return "val" if bucket < val_fraction else "train"


def assign_splits(cameras: Iterable[str], *, val_fraction: float, val_cameras: Sequence[str] = ()) -> dict[str, Split]:
    """Split per camera; explicit `val_cameras` win. With 2+ cameras both splits get at least one."""
    unique = sorted(set(cameras))
    if val_cameras:
        return {c: ("val" if c in val_cameras else "train") for c in unique}
    splits = {c: camera_split(c, val_fraction=val_fraction) for c in unique}
    if len(unique) >= 2 and val_fraction > 0:
        ranked = sorted(unique, key=lambda c: hashlib.sha256(c.encode()).digest())
        if "val" not in splits.values():
            splits[ranked[0]] = "val"
        if "train" not in splits.values():
            splits[ranked[-1]] = "train"
    return splits


def safe_name(text: str) -> str:
    """A file-name-safe stem (ids may contain ':' and the like)."""
    return _UNSAFE.sub("_", text).strip("_") or "image"


class DatasetWriter:
    """Writes LabelledImages into a YOLO dataset folder and finishes it with data.yaml."""

    def __init__(self, root: str | Path, class_map: ClassMap) -> None:
        self.root = Path(root)
        self.class_map = class_map
        self.summary = DatasetSummary()
        for split in SPLITS:
            (self.root / "images" / split).mkdir(parents=True, exist_ok=True)
            (self.root / "labels" / split).mkdir(parents=True, exist_ok=True)

    def add(self, image: LabelledImage, split: Split) -> Path:
        """Write the image and its label file; returns the image path."""
        stem = safe_name(image.name)
        image_path = self.root / "images" / split / f"{stem}.jpg"
        lines = [line for b in image.boxes if (line := yolo_line(b, width=image.width, height=image.height))]
        image_path.write_bytes(image.jpeg)
        label_path = self.root / "labels" / split / f"{stem}.txt"
        label_path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        self.summary.images[split] += 1
        self.summary.boxes[split] += len(lines)
        self.summary.negatives[split] += 0 if lines else 1
        self.summary.cameras[split].add(image.camera_id)
        return image_path

    def finish(self) -> Path:
        """Write data.yaml (absolute `path`, so ultralytics finds it from any working folder) and the class map."""
        data = {
            "path": str(self.root.resolve()),
            "train": "images/train",
            "val": "images/val",
            "names": dict(enumerate(self.class_map.names)),
        }
        path = self.root / DATA_YAML
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        save_class_map(self.class_map, self.root / CLASS_MAP_FILE)
        cameras = {split: sorted(self.summary.cameras[split]) for split in SPLITS}
        (self.root / CAMERAS_YAML).write_text(yaml.safe_dump(cameras), encoding="utf-8")
        logger.info(
            "dataset %s: train %d images (%d boxes, %d negatives), val %d images (%d boxes, %d negatives)",
            self.root,
            self.summary.images["train"],
            self.summary.boxes["train"],
            self.summary.negatives["train"],
            self.summary.images["val"],
            self.summary.boxes["val"],
            self.summary.negatives["val"],
        )
        return path


def read_data_yaml(path: str | Path) -> tuple[Path, dict[Split, Path], list[str]]:
    """(root, {split: images folder}, class names) of a YOLO data.yaml; errors name the file and field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the YOLO data.yaml: {exc}") from None
    if not isinstance(raw, dict) or "names" not in raw:
        raise ValueError(f"{path}: field names: expected a mapping with 'names' (class list or index->name)")
    names_raw = raw["names"]
    if isinstance(names_raw, dict):
        names = [str(names_raw[k]) for k in sorted(names_raw)]
    else:
        names = [str(n) for n in names_raw]
    root = Path(raw.get("path") or path.parent)
    root = root if root.is_absolute() else (path.parent / root)
    folders: dict[Split, Path] = {}
    for split in SPLITS:
        value = raw.get(split)
        if isinstance(value, str):
            folders[split] = root / value
    if not folders:
        raise ValueError(f"{path}: fields train/val: expected at least one images folder")
    return root, folders, names


def read_cameras(dataset_root: str | Path) -> dict[str, list[str]]:
    """split -> camera ids of a harvested dataset (empty lists if the file is absent)."""
    path = Path(dataset_root) / CAMERAS_YAML
    if not path.is_file():
        return {split: [] for split in SPLITS}
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {split: [str(c) for c in raw.get(split, [])] for split in SPLITS}
