"""Merge an existing dataset from disk (Ultralytics YOLO or COCO JSON) into a harvested one.

Classes are matched by name through the class map (a COCO `car` becomes `vehicle`); boxes of
classes the map does not know are dropped, images left without boxes are kept as negatives only
if `keep_empty`. A YOLO dataset keeps its own train/val split; a COCO file goes to one split.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2

from streetwatch.training.dataset import Box, DatasetWriter, LabelledImage, Split, read_data_yaml

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _jpeg(path: Path) -> tuple[bytes, int, int]:
    """The image as JPEG bytes (re-encoded if not a JPEG) and its size; errors name the file."""
    image = cv2.imread(str(path))
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    height, width = image.shape[:2]
    if path.suffix.lower() in (".jpg", ".jpeg"):
        return path.read_bytes(), width, height
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ValueError(f"{path}: could not re-encode as JPEG")
    return buffer.tobytes(), width, height


def merge_yolo(data_yaml: str | Path, writer: DatasetWriter, *, keep_empty: bool = True) -> int:
    """Add a YOLO dataset's images and labels (classes re-mapped by name); returns images added."""
    root, folders, names = read_data_yaml(data_yaml)
    mapping = {i: writer.class_map.index_of(n) for i, n in enumerate(names)}
    added = 0
    for split, folder in folders.items():
        labels_dir = labels_folder(folder)
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            jpeg, width, height = _jpeg(path)
            boxes = _yolo_boxes(labels_dir / path.relative_to(folder).with_suffix(".txt"), mapping,
                                width=width, height=height)
            if not boxes and not keep_empty:
                continue
            writer.add(LabelledImage(f"merge_{root.name}_{split}_{path.stem}", jpeg, width, height,
                                     f"merge:{root.name}", boxes, origin=str(path)), split)
            added += 1
    logger.info("merged %d images from YOLO dataset %s", added, data_yaml)
    return added


def labels_folder(images_folder: Path) -> Path:
    """YOLO's rule: the labels folder is the images folder with its last `images` part renamed `labels`."""
    parts = list(images_folder.parts)
    if "images" not in parts:
        return images_folder
    index = len(parts) - 1 - parts[::-1].index("images")
    parts[index] = "labels"
    return Path(*parts)


def _yolo_boxes(label: Path, mapping: dict[int, int | None], *, width: int, height: int) -> tuple[Box, ...]:
    if not label.is_file():
        return ()
    boxes = []
    for number, line in enumerate(label.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:5])
        except (ValueError, TypeError):
            raise ValueError(f"{label}:{number}: expected 'class cx cy w h', got {line!r}") from None
        target = mapping.get(cls)
        if target is not None:
            boxes.append(Box(target, ((cx - w / 2) * width, (cy - h / 2) * height,
                                      (cx + w / 2) * width, (cy + h / 2) * height)))
    return tuple(boxes)


def merge_coco(annotations: str | Path, images_dir: str | Path, writer: DatasetWriter, *,
               split: Split = "train") -> int:
    """Add a COCO detection file's images (bbox x, y, w, h in pixels) into one split."""
    annotations, images_dir = Path(annotations), Path(images_dir)
    try:
        coco = json.loads(annotations.read_text(encoding="utf-8"))
        categories = {c["id"]: writer.class_map.index_of(c["name"]) for c in coco["categories"]}
        by_image: dict[int, list[Box]] = {img["id"]: [] for img in coco["images"]}
        for ann in coco["annotations"]:
            target = categories.get(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
            if target is not None and not ann.get("iscrowd", 0):
                by_image[ann["image_id"]].append(Box(target, (x, y, x + w, y + h)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{annotations}: not a COCO detection file ({type(exc).__name__}: {exc})") from None
    for img in coco["images"]:
        jpeg, width, height = _jpeg(images_dir / img["file_name"])
        writer.add(LabelledImage(f"coco_{annotations.stem}_{img['id']}", jpeg, width, height,
                                 f"merge:{annotations.stem}", tuple(by_image[img["id"]]),
                                 origin=str(images_dir / img["file_name"])), split)
    logger.info("merged %d images from COCO file %s", len(coco["images"]), annotations)
    return len(coco["images"])
