#!/usr/bin/env python
"""Reviewed cases from central -> an Ultralytics YOLO dataset (images/, labels/, data.yaml, classes.yaml).

Examples:
  python scripts/harvest_dataset.py --database-url sqlite:///var/central.sqlite --evidence-dir var/evidence \\
      -o datasets/d1
  python scripts/harvest_dataset.py --api-url https://central.example --token $TOKEN -o datasets/d1 \\
      --merge-yolo /data/extra/data.yaml --merge-coco /data/coco/instances.json:/data/coco/images

Both sources give the same dataset. With --api-url the token's user must see the cases: an admin's or
a city-wide reviewer's token harvests everything, an area reviewer's only that area. Create one with
`central create-token USER`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from streetwatch.training.classmap import ClassMapError, load_class_map
from streetwatch.training.dataset import DatasetWriter
from streetwatch.training.harvest import (
    DEFAULT_NEGATIVE_REASONS,
    ApiSource,
    CaseSource,
    DatabaseSource,
    HarvestError,
    HarvestOptions,
    harvest,
)
from streetwatch.training.merge import merge_coco, merge_yolo


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--database-url", help="central's SQLAlchemy URL (read only)")
    src.add_argument("--api-url", help="central's base URL, e.g. https://central.example (JSON API with --token or "
                     "$STREETWATCH_API_TOKEN; no database or evidence folder needed)")
    p.add_argument("--evidence-dir", type=Path, help="central's evidence folder (with --database-url)")
    p.add_argument("--token", default=os.environ.get("STREETWATCH_API_TOKEN"), help="API bearer token")
    p.add_argument("-o", "--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--classes", type=Path, help="class map YAML (default: vehicle, person, stall, goods)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of cameras in val (default 0.2)")
    p.add_argument("--val-camera", action="append", default=[], help="put this camera in val (repeatable)")
    p.add_argument("--negative-reason", action="append", default=None,
                   help=f"dismissal reasons used as hard negatives (default {', '.join(DEFAULT_NEGATIVE_REASONS)})")
    p.add_argument("--per-case", type=int, default=3, help="evidence images per case (default 3)")
    p.add_argument("--merge-yolo", type=Path, action="append", default=[], help="a YOLO data.yaml to merge in")
    p.add_argument("--merge-coco", action="append", default=[], help="ANNOTATIONS.json:IMAGES_DIR to merge into train")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def make_source(args: argparse.Namespace) -> CaseSource:
    if args.database_url:
        if args.evidence_dir is None:
            raise SystemExit("--evidence-dir: required with --database-url (central's evidence folder)")
        return DatabaseSource(args.database_url, args.evidence_dir, per_case=args.per_case)
    if not args.token:
        raise SystemExit("--token: required with --api-url (or set STREETWATCH_API_TOKEN)")
    return ApiSource(args.api_url, args.token, per_case=args.per_case)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        writer = DatasetWriter(args.out, load_class_map(args.classes))
        options = HarvestOptions(
            val_fraction=args.val_fraction,
            val_cameras=tuple(args.val_camera),
            negative_reasons=tuple(args.negative_reason or DEFAULT_NEGATIVE_REASONS),
            progress=not args.no_progress,
        )
        cases = harvest(make_source(args), writer, options=options)
        for data_yaml in args.merge_yolo:
            merge_yolo(data_yaml, writer)
        for spec in args.merge_coco:
            annotations, _, images = spec.partition(":")
            if not images:
                raise SystemExit(f"--merge-coco {spec}: expected ANNOTATIONS.json:IMAGES_DIR")
            merge_coco(annotations, images, writer)
        data_yaml_path = writer.finish()
    except (HarvestError, ClassMapError, ValueError) as exc:
        print(f"harvest_dataset: {exc}", file=sys.stderr)
        return 2
    s = writer.summary
    print(f"{data_yaml_path}: {cases} cases; train {s.images['train']} images ({s.boxes['train']} boxes, "
          f"{s.negatives['train']} negatives, cameras {sorted(s.cameras['train'])}); val {s.images['val']} images "
          f"({s.boxes['val']} boxes, {s.negatives['val']} negatives, cameras {sorted(s.cameras['val'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
