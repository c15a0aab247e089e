#!/usr/bin/env python
"""Train or fine-tune a YOLO detector on a harvested dataset (ultralytics; CPU here, GPU if present).

Examples:
  python scripts/train.py --data datasets/d1/data.yaml --model yolov8n.yaml --epochs 100   # from scratch
  python scripts/train.py --data datasets/d1/data.yaml --model /models/yolov8n.pt --epochs 30  # fine-tune
  python scripts/train.py --project runs --name d1 --resume                                   # continue
Weights come from a path or a model YAML: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from streetwatch.training.ultra import TrainOptions, train


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="the dataset's data.yaml (not needed with --resume)")
    p.add_argument("--model", default="yolov8n.yaml", help="base weights (.pt path) or model YAML (scratch)")
    p.add_argument("--project", type=Path, default=Path("runs/train"), help="folder of runs")
    p.add_argument("--name", default="run", help="run folder name inside --project")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", help="cpu, 0, 0,1 ... (default: GPU 0 if present, else cpu)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--amp", action="store_true", help="mixed precision on GPU (skips the AMP self-check)")
    p.add_argument("--plots", action="store_true", help="write training plots")
    p.add_argument("--resume", action="store_true", help="continue the run from its last.pt")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if not args.resume and args.data is None:
        print("train: --data is required (the dataset's data.yaml)", file=sys.stderr)
        return 2
    options = TrainOptions(
        data=args.data or Path(), model=args.model, project=args.project, name=args.name, epochs=args.epochs,
        imgsz=args.imgsz, batch=args.batch, device=args.device, workers=args.workers, resume=args.resume,
        amp=args.amp, plots=args.plots,
    )
    try:
        run_dir = train(options)
    except FileNotFoundError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    print(f"run folder: {run_dir}  (best weights: {run_dir / 'weights' / 'best.pt'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
