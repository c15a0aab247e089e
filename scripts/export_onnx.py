#!/usr/bin/env python
"""Export a trained model to ONNX, check it, optionally quantise it to INT8, add it to the manifest.

Example:
  python scripts/export_onnx.py --weights runs/train/d1/weights/best.pt --imgsz 640 --name street_v1 \\
      --classes datasets/d1/classes.yaml --int8 --calib-images datasets/d1/images/train --data datasets/d1/data.yaml
Nothing deployed changes until every check passed: the export is written and checked in a temporary
folder (class names, calibration images, onnxruntime, the edge Detector on sample frames, the INT8
gate), then moved into --model-dir (default $STREETWATCH_MODEL_DIR, the edge's model folder) under a
new name, NAME-<sha256[:12]>.onnx, and the entry is appended to --manifest (default
MODEL_DIR/manifest.yaml, started from the packaged manifest so earlier entries stay for rollback).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx

from streetwatch.edge.manifest import DEFAULT_MANIFEST, MODEL_DIR_ENV, Manifest, ModelError, load_manifest
from streetwatch.training.classmap import ClassMap, ClassMapError, load_class_map
from streetwatch.training.manifest_update import add_entries, install_model_file, make_entry, write_atomically
from streetwatch.training.models import onnx_detector
from streetwatch.training.quantize import agreement, int8_gate, paired_latency_ms, quantize_int8

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SAMPLE_FRAMES = 8


class ExportError(RuntimeError):
    """A check failed: nothing in the model folder or the manifest was changed."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, required=True, help="trained best.pt")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--dynamic", action="store_true", help="dynamic batch (the edge batches cameras)")
    p.add_argument("--name", required=True, help="manifest name of the new model")
    p.add_argument("--classes", type=Path, help="class map YAML (the dataset's classes.yaml)")
    p.add_argument("--model-dir", type=Path, default=None,
                   help=f"the edge's model folder (default ${MODEL_DIR_ENV})")
    p.add_argument("--manifest", type=Path, default=None,
                   help="manifest to add the entry to (default MODEL_DIR/manifest.yaml)")
    p.add_argument("--int8", action="store_true", help="also write an INT8 (static, QDQ) model")
    p.add_argument("--calib-images", type=Path, help="folder of real images for INT8 calibration and the checks")
    p.add_argument("--calib-count", type=int, default=64)
    p.add_argument("--data", type=Path, help="data.yaml: report the mAP change FP32 -> INT8")
    p.add_argument("--int8-min-kept", type=float, default=0.95,
                   help="add the INT8 entry only if it keeps this share of FP32's detections (default 0.95)")
    p.add_argument("--force-int8", action="store_true", help="add the INT8 entry whatever its agreement")
    p.add_argument("--replace", action="store_true", help="replace a manifest entry of the same name")
    return p.parse_args(argv)


@dataclass(frozen=True)
class Target:
    model_dir: Path
    manifest: Path
    current: Manifest


def resolve_target(args: argparse.Namespace) -> Target:
    """The deployment folder and manifest (never the checkout's by default); refuses taken names."""
    model_dir = args.model_dir or (Path(os.environ[MODEL_DIR_ENV]) if os.environ.get(MODEL_DIR_ENV) else None)
    if model_dir is None:
        raise ExportError(f"--model-dir: give the edge's model folder (or set ${MODEL_DIR_ENV})")
    manifest = args.manifest or model_dir / "manifest.yaml"
    if not manifest.exists() and args.manifest is not None:
        raise ExportError(f"--manifest {manifest}: no such file")
    try:
        # a deployment folder without a manifest starts from the shipped one (written only on success)
        current = load_manifest(manifest if manifest.exists() else DEFAULT_MANIFEST)
    except ModelError as exc:
        raise ExportError(str(exc)) from None
    names = [args.name] + ([f"{args.name}-int8"] if args.int8 else [])
    taken = [n for n in names if any(m.name == n for m in current.models)]
    if taken and not args.replace:
        raise ExportError(f"--name: {taken} already in {manifest} (choose another --name, or --replace)")
    return Target(model_dir, manifest, current)


def preflight(args: argparse.Namespace) -> tuple[ClassMap, list[np.ndarray]]:
    """Every check that needs no export: class names, calibration images."""
    from streetwatch.training.ultra import class_names

    if args.int8 and args.calib_images is None:
        raise ExportError("--int8: needs --calib-images (real images, e.g. the dataset's images/train)")
    try:
        class_map = load_class_map(args.classes)
    except ClassMapError as exc:
        raise ExportError(str(exc)) from None
    if not args.weights.is_file():
        raise ExportError(f"--weights {args.weights}: no such file")
    names = class_names(args.weights)
    if names != class_map.names:
        raise ExportError(f"--classes {class_map.names} do not match the model's classes {names}")
    images = load_images(args.calib_images, args.calib_count) if args.calib_images else []
    return class_map, images


def check_graph(path: Path, class_map: ClassMap, *, imgsz: int, frames: list[np.ndarray]) -> tuple[int, ...]:
    """onnx checker, onnxruntime load, and the edge Detector end to end on each sample frame."""
    try:
        onnx.checker.check_model(str(path))
        detector = onnx_detector(path, name="check", class_map=class_map, imgsz=imgsz)
        for frame in frames:
            found = detector.detect(frame)
            if found.xyxy.shape[1:] != (4,):
                raise ExportError(f"{path.name}: the edge detector returned boxes of shape {found.xyxy.shape}")
        output = detector.infer_raw(detector.preprocess([frames[0]]).tensor)
    except ExportError:
        raise
    except Exception as exc:  # onnx/onnxruntime raise their own types: all mean "not deployable"
        raise ExportError(f"{path.name}: failed the onnxruntime/edge detector check: {exc}") from None
    expected = (1, 4 + len(class_map.names))
    if tuple(output.shape[:2]) != expected:
        raise ExportError(f"{path.name}: output {tuple(output.shape)}, expected {expected} + anchors")
    return tuple(output.shape)


def load_images(folder: Path, count: int) -> list[np.ndarray]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    images = [img for p in paths if (img := cv2.imread(str(p))) is not None]
    if not images:
        raise ExportError(f"--calib-images: no readable images in {folder}")
    return images


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        target = resolve_target(args)
        class_map, images = preflight(args)
        with tempfile.TemporaryDirectory() as workdir:
            built = build_and_check(args, class_map, images, Path(workdir))
            installed = [(name, install_model_file(path, target.model_dir, name=name, manifest=target.current))
                         for name, path in built]
        entries = [make_entry(path, name=name, class_map=class_map, input_size=(args.imgsz, args.imgsz))
                   for name, path in installed]
        if not target.manifest.exists():  # every check passed: start it from the shipped entries (rollback)
            write_atomically(target.manifest, DEFAULT_MANIFEST.read_bytes(), validate=load_manifest)
            print(f"manifest {target.manifest}: created from {DEFAULT_MANIFEST}")
        add_entries(target.manifest, entries, replace=args.replace)
    except (ExportError, ValueError, ModelError) as exc:
        print(f"export_onnx: {exc} (the manifest and every file it names are unchanged)", file=sys.stderr)
        return 2
    for entry in entries:
        print(f"manifest {target.manifest}: {entry.name} -> {target.model_dir / entry.file} sha256 {entry.sha256} "
              f"roles {entry.roles}")
    print(f"deploy: set `model: {{name: {args.name}, manifest: {target.manifest}, model_dir: {target.model_dir}}}` "
          "in the edge config and restart the edge")
    return 0


def build_and_check(args: argparse.Namespace, class_map: ClassMap, images: list[np.ndarray],
                    workdir: Path) -> list[tuple[str, Path]]:
    """Export (and quantise) inside `workdir` and run every check; returns (name, checked file)."""
    from streetwatch.training.ultra import export_onnx, validate

    copy = workdir / "model.pt"
    copy.write_bytes(args.weights.read_bytes())  # ultralytics writes beside the weights: keep the run clean
    fp32 = export_onnx(copy, imgsz=args.imgsz, dynamic=args.dynamic)
    frames = images[:SAMPLE_FRAMES] or [np.full((args.imgsz, args.imgsz, 3), 114, np.uint8)]
    print(f"FP32 {fp32.name}: graph ok, output {check_graph(fp32, class_map, imgsz=args.imgsz, frames=frames)}, "
          f"edge detector ok on {len(frames)} sample frame(s)")
    built = [(args.name, fp32)]
    if args.int8:
        int8 = quantize_int8(fp32, workdir / "model-int8.onnx",
                             detector=onnx_detector(fp32, name="calib", class_map=class_map, imgsz=args.imgsz),
                             images=images)
        check_graph(int8, class_map, imgsz=args.imgsz, frames=frames)
        kept, reference = report_int8(args, fp32, int8, class_map, images, validate)
        add, why = int8_gate(kept, reference, min_kept=args.int8_min_kept, force=args.force_int8)
        print(f"INT8 {'added' if add else 'not added'}: {why}")
        if add:
            built.append((f"{args.name}-int8", int8))
    return built


def report_int8(args: argparse.Namespace, fp32: Path, int8: Path, class_map: ClassMap,
                images: list[np.ndarray], validate: object) -> tuple[int, int]:
    """Print speed-up, detection agreement and (with --data) the mAP change; return (kept, FP32 total)."""
    a = onnx_detector(fp32, name="fp32", class_map=class_map, imgsz=args.imgsz)
    b = onnx_detector(int8, name="int8", class_map=class_map, imgsz=args.imgsz)
    fp32_ms, int8_ms = paired_latency_ms(a, b, images)
    agree = agreement(a, b, images)
    share = "undefined" if math.isnan(agree.kept_share) else f"{agree.kept_share:.0%}"
    print(f"INT8: {int8_ms:.2f} ms vs FP32 {fp32_ms:.2f} ms (x{fp32_ms / int8_ms:.2f}); "
          f"keeps {agree.kept}/{agree.reference} FP32 detections ({share}), {agree.extra} extra")
    if args.data is not None and callable(validate):
        m32 = validate(fp32, data=args.data, imgsz=args.imgsz)
        m8 = validate(int8, data=args.data, imgsz=args.imgsz)
        print(f"mAP50 {m32.map50:.3f} -> {m8.map50:.3f} ({m8.map50 - m32.map50:+.3f}); "
              f"mAP50-95 {m32.map50_95:.3f} -> {m8.map50_95:.3f} ({m8.map50_95 - m32.map50_95:+.3f})")
    return agree.kept, agree.reference


if __name__ == "__main__":
    sys.exit(main())
