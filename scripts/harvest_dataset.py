#!/usr/bin/env python
"""Reviewed cases from central -> an Ultralytics YOLO dataset (images/, labels/, data.yaml, classes.yaml).

Examples:
  python scripts/harvest_dataset.py --database-url sqlite:///var/central.sqlite --evidence-dir var/evidence \\
      -o datasets/d1
  python scripts/harvest_dataset.py --api-url https://central.example --token $TOKEN -o datasets/d1 \\
      --merge-yolo /data/extra/data.yaml --merge-coco /data/coco/instances.json:/data/coco/images

Only clean frames are harvested (alerts of older edges, whose evidence has boxes drawn on it, are
skipped and counted). Each frame is labelled completely: the reviewed boxes, plus the deployed
model's detections (--pseudo-model, --pseudo-score) as pseudo-labels marked in meta/. A folder that
is not empty is refused (--overwrite empties it first). dataset.json records how it was made.
Both sources give the same dataset. With --api-url the token's user must see the cases: an admin's or
a city-wide reviewer's token harvests everything, an area reviewer's only that area. Create one with
`central create-token USER`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from streetwatch.edge.manifest import ModelError
from streetwatch.redaction import redact
from streetwatch.training.classmap import ClassMapError, load_class_map
from streetwatch.training.dataset import DATASET_JSON, DatasetWriter
from streetwatch.training.harvest import (
    DEFAULT_NEGATIVE_REASONS,
    ApiSource,
    CaseSource,
    DatabaseSource,
    HarvestError,
    HarvestOptions,
    HarvestReport,
    harvest,
)
from streetwatch.training.merge import merge_coco, merge_yolo

if TYPE_CHECKING:
    from streetwatch.edge.detector import Detector


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
    p.add_argument("--overwrite", action="store_true", help="empty --out first (it must hold a dataset)")
    p.add_argument("--pseudo-model", default="yolox_nano",
                   help="manifest name of the deployed model whose detections label the rest of each frame "
                        "(default yolox_nano; 'none' for reviewed boxes only)")
    p.add_argument("--manifest", type=Path, default=None, help="model manifest for --pseudo-model")
    p.add_argument("--model-dir", type=Path, default=None, help="folder with --pseudo-model's file")
    p.add_argument("--pseudo-score", type=float, default=0.5, help="pseudo-label threshold (default 0.5)")
    p.add_argument("--min-per-split", type=int, default=1, help="refuse a split with fewer images (default 1)")
    p.add_argument("--val-after", type=_utc, default=None,
                   help="UTC ISO time: val cameras keep frames from then on, train cameras frames before")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _utc(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time such as 2026-03-01T00:00Z, got {text!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def pseudo_detector(args: argparse.Namespace) -> tuple[Detector | None, dict[str, object] | None]:
    """The deployed model (sha256-checked by the edge loader) and what dataset.json says about it."""
    if args.pseudo_model == "none":
        return None, None
    from streetwatch.training.models import deployed_detector

    detector = deployed_detector(args.pseudo_model, manifest=args.manifest, model_dir=args.model_dir,
                                 score=min(args.pseudo_score, 0.3))
    ref = detector.model_ref
    return detector, {"name": ref.name, "sha256": ref.sha256, "score": args.pseudo_score}


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
    logging.getLogger("streetwatch.edge.manifest").setLevel(logging.WARNING)
    args = parse_args(argv)
    try:
        pseudo, pseudo_info = pseudo_detector(args)
        writer = DatasetWriter(args.out, load_class_map(args.classes), overwrite=args.overwrite)
        options = HarvestOptions(
            val_fraction=args.val_fraction,
            val_cameras=tuple(args.val_camera),
            negative_reasons=tuple(args.negative_reason or DEFAULT_NEGATIVE_REASONS),
            progress=not args.no_progress,
            pseudo_score=args.pseudo_score,
            min_per_split=args.min_per_split,
            val_after=args.val_after,
        )
        report = harvest(make_source(args), writer, options=options, pseudo=pseudo)
        for data_yaml in args.merge_yolo:
            merge_yolo(data_yaml, writer)
        for spec in args.merge_coco:
            annotations, _, images = spec.partition(":")
            if not images:
                raise SystemExit(f"--merge-coco {spec}: expected ANNOTATIONS.json:IMAGES_DIR")
            merge_coco(annotations, images, writer)
        data_yaml_path = writer.finish(dataset_info(args, report, pseudo_info))
    except (HarvestError, ClassMapError, ModelError, ValueError) as exc:
        print(f"harvest_dataset: {exc}", file=sys.stderr)
        return 2
    print_summary(data_yaml_path, writer, report)
    return 0


def dataset_info(args: argparse.Namespace, report: HarvestReport,
                 pseudo: dict[str, object] | None) -> dict[str, object]:
    source: dict[str, object] = {"api_url": args.api_url}
    if args.database_url:
        source = {"database_url": redact(args.database_url), "evidence_dir": str(args.evidence_dir)}
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "pseudo_label_model": pseudo,
        "options": {"val_fraction": args.val_fraction, "val_cameras": args.val_camera, "per_case": args.per_case,
                    "negative_reasons": args.negative_reason or list(DEFAULT_NEGATIVE_REASONS),
                    "val_after": args.val_after.isoformat() if args.val_after else None},
        "cases": report.cases,
        "skipped": report.skipped,
        "warnings": report.warnings,
    }


def print_summary(data_yaml: Path, writer: DatasetWriter, report: HarvestReport) -> None:
    s = writer.summary
    print(f"{data_yaml}: {len(report.cases)} cases")
    for split in ("train", "val"):
        classes = ", ".join(f"{name} {counts}" for name, counts in sorted(s.per_class[split].items())) or "no boxes"
        print(f"  {split}: {s.images[split]} images, {s.boxes[split]} boxes ({classes}), "
              f"{s.negative_regions[split]} negative regions, cameras {sorted(s.cameras[split])}")
    for reason, count in sorted(report.skipped.items()):
        print(f"  skipped {count}: {reason}")
    for warning in report.warnings:
        print(f"  warning: {warning}")
    print(f"  {writer.root / DATASET_JSON}")


if __name__ == "__main__":
    sys.exit(main())
