"""Writing an Ultralytics YOLO dataset: images/, labels/, data.yaml, the class map, split by camera.

Layout (what `ultralytics` expects): `images/{train,val}/<name>.jpg` with a label file of the same
stem in `labels/{train,val}/<name>.txt`, one `class cx cy w h` line per box, normalised to 0..1.
Beside each label file, `meta/{split}/<name>.json` (the sidecar) says where each box came from
(`confirmed` by a reviewer or a `pseudo`-label of the deployed model, with its score) and lists the
frame's negative regions, so labels can be audited and weighted. `dataset.json` records how the
dataset was made (source, cases and decisions, the pseudo-label model, counts per class and split,
warnings) and a content hash over every image, label and sidecar.

The split is by camera: every image of one camera lands in the same split, so val frames are not
near-copies of train frames (a fixed camera's frames differ by a few pixels and would make val
mAP meaningless). Cameras are ranked by a hash of their id (stable across harvests) and taken into
val until val holds about `val_fraction` of the images; a split that ends up far from it, or below
the minimum, is a warning or a refusal, never silent.

A dataset folder is written once: a non-empty folder is refused (images of an earlier harvest
would stay and leak between splits) unless `overwrite`, which empties it first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
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
DATASET_JSON = "dataset.json"
META = "meta"
CAMERAS_YAML = "cameras.yaml"  # split -> cameras, so evaluation can keep to the val cameras
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class DatasetError(ValueError):
    """A dataset that cannot be written as asked; the message names the folder and the fix."""


@dataclass(frozen=True)
class Box:
    """One labelled box in image pixels (x1, y1, x2, y2) with its training class index."""

    class_index: int
    xyxy: tuple[float, float, float, float]
    source: str = "confirmed"  # confirmed | pseudo | merged
    score: float | None = None


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
    negative_regions: tuple[tuple[float, float, float, float], ...] = ()
    extra: dict[str, object] = field(default_factory=dict)  # written into the sidecar (case, decision, ...)


@dataclass
class DatasetSummary:
    """Counts written per split (images, boxes, hard negatives) and the cameras in each split."""

    images: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    boxes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    negatives: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    negative_regions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    cameras: dict[str, set[str]] = field(default_factory=lambda: {s: set() for s in SPLITS})
    per_class: dict[str, dict[str, dict[str, int]]] = field(default_factory=lambda: {s: {} for s in SPLITS})

    def count_box(self, split: str, class_name: str, source: str) -> None:
        by_source = self.per_class[split].setdefault(class_name, {})
        by_source[source] = by_source.get(source, 0) + 1


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
    """Split per camera, each camera counted once (see split_by_images to weigh by image count)."""
    return split_by_images({c: 1 for c in cameras}, val_fraction=val_fraction, val_cameras=val_cameras).splits


@dataclass(frozen=True)
class SplitPlan:
    splits: dict[str, Split]
    warnings: tuple[str, ...] = ()


def split_by_images(
    images_per_camera: dict[str, int], *, val_fraction: float, val_cameras: Sequence[str] = (), min_per_split: int = 0
) -> SplitPlan:
    """Cameras into train/val so val holds about `val_fraction` of the images.

    A camera's split comes from a hash of its id (stable across harvests). When that leaves a split
    empty or val with more than twice its share, cameras are instead taken into val in hash order
    while val stays at or under its share; with 2+ cameras each split gets at least one. `val_cameras` pins
    cameras to val (the rest to train). Warns when the result is far from `val_fraction`, and raises
    DatasetError when a split holds fewer than `min_per_split` images."""
    unique = sorted(images_per_camera)
    total = sum(images_per_camera.values())
    if val_cameras:
        splits: dict[str, Split] = {c: ("val" if c in val_cameras else "train") for c in unique}
    else:
        splits = {c: camera_split(c, val_fraction=val_fraction) for c in unique}  # stable across harvests
        if len(unique) >= 2 and val_fraction > 0 and lopsided(splits, images_per_camera, val_fraction):
            splits = pick_val_cameras(images_per_camera, val_fraction=val_fraction)
    counts = {s: sum(n for c, n in images_per_camera.items() if splits[c] == s) for s in SPLITS}
    warnings = []
    if total and val_fraction > 0:
        share = counts["val"] / total
        if share > 2 * val_fraction or share < val_fraction / 2:
            warnings.append(
                f"val holds {counts['val']} of {total} images ({share:.0%}, asked {val_fraction:.0%}): the split is "
                f"by camera and there are {len(unique)} camera(s) {dict(sorted(images_per_camera.items()))}; "
                "add cameras or pin them with --val-camera"
            )
    short = [s for s in SPLITS if counts[s] < min_per_split]
    if short:
        raise DatasetError(
            f"split(s) {short} would hold {[counts[s] for s in short]} image(s), fewer than --min-per-split "
            f"{min_per_split} (cameras {dict(sorted(images_per_camera.items()))}); harvest more cameras or cases"
        )
    return SplitPlan(splits, tuple(warnings))


def lopsided(splits: dict[str, Split], images_per_camera: dict[str, int], val_fraction: float) -> bool:
    """A split without images, or val holding more than twice its share."""
    total = sum(images_per_camera.values())
    val = sum(n for c, n in images_per_camera.items() if splits[c] == "val")
    return val == 0 or val == total or val > 2 * val_fraction * total


def pick_val_cameras(images_per_camera: dict[str, int], *, val_fraction: float) -> dict[str, Split]:
    """In hash order, each camera that still fits under val's share of the images goes to val; if none
    fits, the smallest one does. One camera at least stays in train."""
    unique = sorted(images_per_camera)
    splits: dict[str, Split] = dict.fromkeys(unique, "train")
    if val_fraction <= 0 or len(unique) < 2:
        return splits
    target = val_fraction * sum(images_per_camera.values())
    ranked = sorted(unique, key=lambda c: hashlib.sha256(c.encode()).digest())
    in_val = 0
    for camera in ranked:
        if in_val + images_per_camera[camera] <= target and list(splits.values()).count("train") > 1:
            splits[camera] = "val"
            in_val += images_per_camera[camera]
    if in_val == 0:
        splits[min(ranked, key=lambda c: images_per_camera[c])] = "val"
    return splits


def safe_name(text: str) -> str:
    """A file-name-safe stem (ids may contain ':' and the like)."""
    return _UNSAFE.sub("_", text).strip("_") or "image"


class DatasetWriter:
    """Writes LabelledImages into a YOLO dataset folder and finishes it with data.yaml and dataset.json."""

    def __init__(self, root: str | Path, class_map: ClassMap, *, overwrite: bool = False) -> None:
        self.root = Path(root)
        self.class_map = class_map
        self.summary = DatasetSummary()
        prepare_folder(self.root, overwrite=overwrite)
        for split in SPLITS:
            for kind in ("images", "labels", META):
                (self.root / kind / split).mkdir(parents=True, exist_ok=True)

    def add(self, image: LabelledImage, split: Split) -> Path:
        """Write the image, its label file and its sidecar; returns the image path."""
        stem = safe_name(image.name)
        image_path = self.root / "images" / split / f"{stem}.jpg"
        if image_path.exists():
            raise DatasetError(f"{image_path}: written twice ({image.origin}); image names must be unique")
        kept = [(b, line) for b in image.boxes if (line := yolo_line(b, width=image.width, height=image.height))]
        image_path.write_bytes(image.jpeg)
        label_path = self.root / "labels" / split / f"{stem}.txt"
        label_path.write_text("".join(f"{line}\n" for _, line in kept), encoding="utf-8")
        sidecar = {
            "origin": image.origin,
            "camera_id": image.camera_id,
            "size": [image.width, image.height],
            **image.extra,
            "boxes": [{"class": self.class_map.names[b.class_index], "xyxy": [round(v, 2) for v in b.xyxy],
                       "source": b.source, "score": b.score} for b, _ in kept],
            "negative_regions": [[round(v, 2) for v in r] for r in image.negative_regions],
        }
        (self.root / META / split / f"{stem}.json").write_text(json.dumps(sidecar, indent=1), encoding="utf-8")
        self.summary.images[split] += 1
        self.summary.boxes[split] += len(kept)
        self.summary.negatives[split] += 0 if kept else 1
        self.summary.negative_regions[split] += len(image.negative_regions)
        self.summary.cameras[split].add(image.camera_id)
        for box, _ in kept:
            self.summary.count_box(split, self.class_map.names[box.class_index], box.source)
        return image_path

    def finish(self, info: dict[str, object] | None = None) -> Path:
        """Write data.yaml (absolute `path`, so ultralytics finds it from any working folder), the class
        map, cameras.yaml and dataset.json (with `info` and the content hash)."""
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
        s = self.summary
        record = {
            **(info or {}),
            "classes": self.class_map.names,
            "counts": {split: {"images": s.images[split], "boxes": s.boxes[split],
                               "empty_images": s.negatives[split], "negative_regions": s.negative_regions[split],
                               "per_class": s.per_class[split], "cameras": cameras[split]} for split in SPLITS},
            "content_sha256": content_hash(self.root),
        }
        (self.root / DATASET_JSON).write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
        logger.info(
            "dataset %s: train %d images (%d boxes), val %d images (%d boxes), content sha256 %s",
            self.root, s.images["train"], s.boxes["train"], s.images["val"], s.boxes["val"],
            str(record["content_sha256"])[:12],
        )
        return path


def prepare_folder(root: Path, *, overwrite: bool) -> None:
    """Refuse a non-empty folder; with `overwrite` empty it first, but only if it holds a dataset."""
    if not root.exists() or not any(root.iterdir()):
        return
    if not overwrite:
        raise DatasetError(
            f"{root}: not empty (an earlier harvest's images would stay and could land in both splits); "
            "choose a new folder, or --overwrite to empty it first"
        )
    if not ((root / DATASET_JSON).is_file() or (root / DATA_YAML).is_file()):
        raise DatasetError(f"{root}: --overwrite empties only a dataset folder (one with {DATA_YAML}); not this one")
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    logger.info("dataset %s: emptied (--overwrite)", root)


def content_hash(root: Path) -> str:
    """sha256 over (relative path, sha256 of the bytes) of every image, label and sidecar, sorted."""
    digest = hashlib.sha256()
    for kind in ("images", "labels", META):
        for path in sorted((root / kind).rglob("*")):
            if path.is_file():
                digest.update(f"{path.relative_to(root).as_posix()}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


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
