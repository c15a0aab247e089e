#!/usr/bin/env python
"""Export a trained model to ONNX, check it, optionally quantise it to INT8, add it to the manifest.

Example:
  python scripts/export_onnx.py --weights runs/train/d1/weights/best.pt --imgsz 640 --name street_v1 \\
      --classes datasets/d1/classes.yaml --int8 --calib-images datasets/d1/images/train --data datasets/d1/data.yaml
The file goes to --model-dir (default models/) as NAME.onnx (and NAME-int8.onnx) and new entries are
appended to the manifest; earlier entries stay, so the edge can roll back by config.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnx

from streetwatch.edge.manifest import DEFAULT_MANIFEST, REPO_MODELS_DIR
from streetwatch.training.classmap import ClassMap, load_class_map
from streetwatch.training.manifest_update import add_entry, install_model_file, make_entry
from streetwatch.training.models import onnx_detector
from streetwatch.training.quantize import agreement, paired_latency_ms, quantize_int8

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, required=True, help="trained best.pt")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--dynamic", action="store_true", help="dynamic batch (the edge batches cameras)")
    p.add_argument("--name", required=True, help="manifest name of the new model")
    p.add_argument("--classes", type=Path, help="class map YAML (the dataset's classes.yaml)")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--model-dir", type=Path, default=REPO_MODELS_DIR)
    p.add_argument("--int8", action="store_true", help="also write an INT8 (static, QDQ) model")
    p.add_argument("--calib-images", type=Path, help="folder of real images for INT8 calibration")
    p.add_argument("--calib-count", type=int, default=64)
    p.add_argument("--data", type=Path, help="data.yaml: report the mAP change FP32 -> INT8")
    p.add_argument("--int8-min-kept", type=float, default=0.95,
                   help="add the INT8 entry only if it keeps this share of FP32's detections (default 0.95)")
    p.add_argument("--force-int8", action="store_true", help="add the INT8 entry whatever its agreement")
    p.add_argument("--replace", action="store_true", help="replace a manifest entry of the same name")
    return p.parse_args(argv)


def check_graph(path: Path, class_map: ClassMap, *, imgsz: int, probe: np.ndarray) -> tuple[int, ...]:
    """onnx checker + onnxruntime: the edge Detector opens it and runs on a real image."""
    onnx.checker.check_model(str(path))
    detector = onnx_detector(path, name="check", class_map=class_map, imgsz=imgsz)
    detector.detect(probe)
    output = detector.infer_raw(detector.preprocess([probe]).tensor)
    return tuple(output.shape)


def load_images(folder: Path, count: int) -> list[np.ndarray]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    images = [img for p in paths if (img := cv2.imread(str(p))) is not None]
    if not images:
        raise SystemExit(f"--calib-images: no readable images in {folder}")
    return images


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from streetwatch.training.ultra import class_names, export_onnx, validate

    class_map = load_class_map(args.classes)
    names = class_names(args.weights)
    if names != class_map.names:
        print(f"export_onnx: --classes {class_map.names} do not match the model's classes {names}", file=sys.stderr)
        return 2
    images = load_images(args.calib_images, args.calib_count) if args.calib_images else []
    with tempfile.TemporaryDirectory() as workdir:
        copy = Path(workdir) / "model.pt"
        copy.write_bytes(args.weights.read_bytes())
        fp32 = export_onnx(copy, imgsz=args.imgsz, dynamic=args.dynamic)
        probe = images[0] if images else np.full((args.imgsz, args.imgsz, 3), 114, np.uint8)
        print(f"FP32 {fp32.name}: graph ok, output {check_graph(fp32, class_map, imgsz=args.imgsz, probe=probe)}")
        installed = [(args.name, install_model_file(fp32, args.model_dir, name=args.name))]
        if args.int8:
            if not images:
                raise SystemExit("--int8: needs --calib-images (real images, e.g. the dataset's images/train)")
            int8 = quantize_int8(fp32, Path(workdir) / "model-int8.onnx",
                                 detector=onnx_detector(fp32, name="calib", class_map=class_map, imgsz=args.imgsz),
                                 images=images)
            check_graph(int8, class_map, imgsz=args.imgsz, probe=probe)
            kept = report_int8(args, fp32, int8, class_map, images, validate)
            if args.force_int8 or kept >= args.int8_min_kept:
                installed.append((f"{args.name}-int8",
                                  install_model_file(int8, args.model_dir, name=f"{args.name}-int8")))
            else:
                print(f"INT8 not added to the manifest: keeps {kept:.0%} of FP32's detections, below "
                      f"--int8-min-kept {args.int8_min_kept:.0%} (--force-int8 adds it anyway)")
    for name, path in installed:
        entry = make_entry(path, name=name, class_map=class_map, input_size=(args.imgsz, args.imgsz))
        add_entry(args.manifest, entry, replace=args.replace)
        print(f"manifest {args.manifest}: {name} -> {path} sha256 {entry.sha256} roles {entry.roles}")
    print(f"deploy: set `model: {{name: {args.name}}}` in the edge config and restart the edge")
    return 0


def report_int8(args: argparse.Namespace, fp32: Path, int8: Path, class_map: ClassMap,
                images: list[np.ndarray], validate: object) -> float:
    """Print speed-up, detection agreement and (with --data) the mAP change; return the kept share."""
    a = onnx_detector(fp32, name="fp32", class_map=class_map, imgsz=args.imgsz)
    b = onnx_detector(int8, name="int8", class_map=class_map, imgsz=args.imgsz)
    fp32_ms, int8_ms = paired_latency_ms(a, b, images)
    agree = agreement(a, b, images)
    print(f"INT8: {int8_ms:.2f} ms vs FP32 {fp32_ms:.2f} ms (x{fp32_ms / int8_ms:.2f}); "
          f"keeps {agree.kept}/{agree.reference} FP32 detections ({agree.kept_share:.0%}), {agree.extra} extra")
    if args.data is not None and callable(validate):
        m32 = validate(fp32, data=args.data, imgsz=args.imgsz)
        m8 = validate(int8, data=args.data, imgsz=args.imgsz)
        print(f"mAP50 {m32.map50:.3f} -> {m8.map50:.3f} ({m8.map50 - m32.map50:+.3f}); "
              f"mAP50-95 {m32.map50_95:.3f} -> {m8.map50_95:.3f} ({m8.map50_95 - m32.map50_95:+.3f})")
    return agree.kept_share if agree.reference else 0.0


if __name__ == "__main__":
    sys.exit(main())
