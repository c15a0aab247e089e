#!/usr/bin/env python
"""INT8 (onnxruntime static quantisation) against FP32 on this CPU: latency and detection agreement.

Frames are real footage: every 5th frame of car-detection.mp4 and of person-bicycle-car-detection.gif
from the shared assets. Even frames (plus the street photos) calibrate, odd frames evaluate, so the
agreement is measured on frames the calibration never saw. Latency is the bare onnxruntime call,
FP32 and INT8 interleaved call by call on the same tensors (this machine is shared and noisy: read
the ratio). Agreement: FP32 detections (threshold 0.3, class-aware NMS, the edge Detector) that the
INT8 model also finds, same class and IoU >= 0.5.

  python scripts/bench_int8.py                       # the shipped YOLOX-Nano (manifest yolox_nano)
  python scripts/bench_int8.py --onnx models/street_v1.onnx --classes datasets/d1/classes.yaml --imgsz 640
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from bench_common import cpu_model, usable_cores

from streetwatch.edge.detector import Detector, create_session
from streetwatch.edge.manifest import resolve_model
from streetwatch.training.classmap import load_class_map
from streetwatch.training.models import onnx_detector
from streetwatch.training.quantize import agreement, paired_latency_ms, quantize_int8

ASSETS = Path(os.environ.get("STREETWATCH_ASSETS_DIR") or Path(__file__).resolve().parents[2] / "shared" / "assets")
# name -> (ops to quantise (empty: all), keep the head's prediction convs float)
RECIPES: dict[str, tuple[tuple[str, ...], bool]] = {
    "all ops, head float": ((), True),
    "Conv only, head float": (("Conv",), True),
    "all ops": ((), False),
}


def video_frames(path: Path, *, every: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames, index = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % every == 0:
            frames.append(frame)
        index += 1
    capture.release()
    if not frames:
        raise SystemExit(f"{path}: no frames decoded")
    return frames


def open_fp32(args: argparse.Namespace) -> tuple[Detector, Path]:
    if args.onnx:
        detector = onnx_detector(args.onnx, name=args.onnx.stem, class_map=load_class_map(args.classes),
                                 imgsz=args.imgsz, threads=args.threads)
        return detector, args.onnx
    resolved = resolve_model(args.model, model_dir=args.model_dir or ASSETS)
    session = create_session(str(resolved.path), providers=["CPUExecutionProvider"], threads=args.threads)
    return Detector(session, resolved.entry, keep_unmapped=True), resolved.path


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="yolox_nano", help="manifest name (default yolox_nano)")
    p.add_argument("--model-dir", type=Path)
    p.add_argument("--onnx", type=Path, help="an exported ultralytics ONNX instead of a manifest model")
    p.add_argument("--classes", type=Path, help="class map of --onnx")
    p.add_argument("--imgsz", type=int, default=640, help="input size of --onnx")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: default)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    frames = video_frames(ASSETS / "car-detection.mp4", every=5) + video_frames(
        ASSETS / "person-bicycle-car-detection.gif", every=5)
    street = [img for f in sorted((ASSETS / "street").glob("*.jpg")) if (img := cv2.imread(str(f))) is not None]
    calibration, evaluation = frames[0::2] + street, frames[1::2]
    fp32, fp32_path = open_fp32(args)
    print(f"{fp32.entry.name}: {len(calibration)} calibration images, {len(evaluation)} evaluation frames; "
          f"CPU {cpu_model()}, {usable_cores()} cores, threads {args.threads or 'default'}")
    print(f"{'recipe':<24} {'FP32 ms':>8} {'INT8 ms':>8} {'speed-up':>9} {'FP32 dets':>10} {'kept':>6} {'kept %':>7} "
          f"{'extra':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for recipe, (op_types, keep_head_float) in RECIPES.items():
            path = quantize_int8(fp32_path, Path(tmp) / "int8.onnx", detector=fp32, images=calibration,
                                 op_types=op_types, keep_head_float=keep_head_float)
            session = create_session(str(path), providers=["CPUExecutionProvider"], threads=args.threads)
            int8 = Detector(session, fp32.entry, keep_unmapped=True)
            a, b = paired_latency_ms(fp32, int8, evaluation, repeats=args.repeats)
            agree = agreement(fp32, int8, evaluation)
            print(f"{recipe:<24} {a:>8.2f} {b:>8.2f} {a / b:>8.2f}x {agree.reference:>10} {agree.kept:>6} "
                  f"{agree.kept_share:>7.1%} {agree.extra:>6}")
    print("goal: >= 1.5x faster with >= 95 % of FP32's detections kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
