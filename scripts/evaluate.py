#!/usr/bin/env python
"""Evaluate a trained model: mAP per class on the val split, and the operational table against the
deployed model (dismissed cases still alerted on, confirmed cases missed), side by side.

Example:
  python scripts/evaluate.py --data datasets/d1/data.yaml --weights runs/train/d1/weights/best.pt \\
      --imgsz 640 --deployed yolox_nano --database-url sqlite:///var/central.sqlite --evidence-dir var/evidence
Both models also run on the same val frames (the dataset's clean frames), box by box. The operational
cases are those of the dataset's val cameras (--all-cases: every reviewed case), detector-class cases
apart from the background model's, on clean frames only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import cv2

from streetwatch.training.classmap import CLASS_MAP_FILE, ClassMap, load_class_map
from streetwatch.training.dataset import META, read_cameras
from streetwatch.training.harvest import DEFAULT_NEGATIVE_REASONS, ApiSource, CaseSource, DatabaseSource, wanted
from streetwatch.training.models import deployed_detector, onnx_detector
from streetwatch.training.operational import (
    LabelledFrame,
    compare,
    format_frame_scores,
    format_table,
    frame_scores,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the dataset's data.yaml")
    p.add_argument("--weights", type=Path, required=True, help="trained best.pt (or an exported .onnx)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--deployed", help="manifest name of the deployed model to compare with (e.g. yolox_nano)")
    p.add_argument("--manifest", type=Path, help="model manifest (default: streetwatch/models/manifest.yaml)")
    p.add_argument("--model-dir", type=Path, help="folder with the deployed model file")
    p.add_argument("--database-url", help="central's database (cases for the operational table)")
    p.add_argument("--evidence-dir", type=Path)
    p.add_argument("--api-url")
    p.add_argument("--token", default=os.environ.get("STREETWATCH_API_TOKEN"))
    p.add_argument("--all-cases", action="store_true", help="use every reviewed case, not only val cameras")
    p.add_argument("--score", type=float, default=0.3, help="detection threshold for both models (edge default)")
    p.add_argument("--iou", type=float, default=0.5, help="IoU for a detection to match an alert's box")
    p.add_argument("--device", help="ultralytics device for val (default: GPU 0 if present, else cpu)")
    return p.parse_args(argv)


def print_map(args: argparse.Namespace) -> None:
    from streetwatch.training.ultra import validate

    result = validate(args.weights, data=args.data, imgsz=args.imgsz, device=args.device)
    print(f"{'class':<16} {'mAP50':>8} {'mAP50-95':>9}")
    for row in result.per_class:
        print(f"{row.name:<16} {row.map50:>8.3f} {row.map50_95:>9.3f}")
    print(f"{'all':<16} {result.map50:>8.3f} {result.map50_95:>9.3f}")


def case_source(args: argparse.Namespace) -> CaseSource | None:
    if args.database_url:
        if args.evidence_dir is None:
            raise SystemExit("--evidence-dir: required with --database-url")
        return DatabaseSource(args.database_url, args.evidence_dir)
    if args.api_url:
        return ApiSource(args.api_url, args.token or "")
    return None


def print_operational(args: argparse.Namespace, source: CaseSource | None, workdir: Path) -> None:
    from streetwatch.training.ultra import export_onnx

    class_map = load_class_map(args.data.parent / CLASS_MAP_FILE)
    onnx = args.weights
    if onnx.suffix != ".onnx":
        copy = workdir / args.weights.name
        copy.write_bytes(args.weights.read_bytes())  # export writes beside the weights: keep the run clean
        onnx = export_onnx(copy, imgsz=args.imgsz)
    detectors = {f"candidate ({args.weights.name})": onnx_detector(
        onnx, name="candidate", class_map=class_map, imgsz=args.imgsz, score=args.score)}
    if args.deployed:
        detectors = {f"deployed ({args.deployed})": deployed_detector(
            args.deployed, manifest=args.manifest, model_dir=args.model_dir, score=args.score), **detectors}
    frames = val_frames(args.data.parent, class_map)
    print(f"\nsame val frames ({len(frames)} clean frames of the dataset, boxes matched at IoU >= {args.iou}; "
          "pseudo-labels came from the deployed model, so 'confirmed found' is the unbiased column):")
    print(format_frame_scores(frame_scores(detectors, frames, class_map=class_map, iou=args.iou)))
    if source is None:
        return
    val_cameras = set(read_cameras(args.data.parent)["val"])
    cases = [
        c for c in source.cases()
        if wanted(c, negative_reasons=DEFAULT_NEGATIVE_REASONS) and (args.all_cases or c.camera_id in val_cameras)
    ]
    result = compare(detectors, cases, source, class_map=class_map, iou=args.iou)
    scope = "all reviewed cases" if args.all_cases else f"cases of val cameras {sorted(val_cameras)}"
    print(f"\noperational ({scope}, detector-class cases on clean frames; detection threshold {args.score}, "
          f"box IoU >= {args.iou}):")
    print(format_table(result.detector_rows))
    if any(r.confirmed_total or r.dismissed_total for r in result.background_rows):
        print("\nbackground-model cases (stacked goods found by the edge's background model, not a detector; "
              "only a model with a goods class can match them):")
        print(format_table(result.background_rows))
    if result.no_clean_frame:
        print(f"\nleft out, no clean frame (evidence with boxes drawn on it): cases {result.no_clean_frame}")
    if result.no_boxes:
        print(f"left out, no box of a trained class to match: cases {result.no_boxes}")


def val_frames(root: Path, class_map: ClassMap) -> list[LabelledFrame]:
    """The dataset's val images with their labels and each box's source (from the meta/ sidecars)."""
    frames: list[LabelledFrame] = []
    for meta in sorted((root / META / "val").glob("*.json")):
        image = cv2.imread(str(root / "images" / "val" / f"{meta.stem}.jpg"))
        if image is None:
            continue
        record = json.loads(meta.read_text(encoding="utf-8"))
        labels = [(class_map.names.index(b["class"]), tuple(b["xyxy"]), str(b["source"])) for b in record["boxes"]]
        frames.append((image, labels))  # type: ignore[arg-type]
    return frames


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    logging.getLogger("streetwatch.edge.manifest").setLevel(logging.WARNING)
    print_map(args)
    with tempfile.TemporaryDirectory() as workdir:
        print_operational(args, case_source(args), Path(workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
