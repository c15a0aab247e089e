"""INT8 static quantisation of a detector ONNX with onnxruntime, and its comparison with FP32.

Calibration feeds real images through the edge `Detector.preprocess`, so the activation ranges are
those of the tensors the model sees in production (letterbox, colour order and scaling differ
between YOLOX and Ultralytics; calibrating on differently prepared tensors gives wrong ranges).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from streetwatch.edge.detector import Detector
from streetwatch.training.operational import iou_matrix

logger = logging.getLogger(__name__)

QUANTIZED_OPS: tuple[str, ...] = ()  # () = every op onnxruntime can quantise (SiLU too: Conv alone is not faster)
MIN_QDQ_OPSET = 13


class DetectorCalibrationReader(CalibrationDataReader):
    """Yields one {input name: (1, 3, H, W) tensor} per calibration image, prepared by the detector."""

    def __init__(self, detector: Detector, images: Sequence[np.ndarray], input_name: str) -> None:
        self._detector = detector
        self._images = list(images)
        self._input_name = input_name
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._images):
            return None
        prepared = self._detector.preprocess([self._images[self._next]])
        self._next += 1
        return {self._input_name: prepared.tensor.copy()}  # the detector reuses its buffer

    def rewind(self) -> None:
        self._next = 0


def quantize_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    *,
    detector: Detector,
    images: Sequence[np.ndarray],
    per_channel: bool = True,
    op_types: Sequence[str] = QUANTIZED_OPS,
    keep_head_float: bool = True,
) -> Path:
    """Static INT8 (QDQ, signed weights, unsigned activations, MinMax calibration) of `fp32_path`.

    `op_types` limits the quantised ops (default: all). The prediction convs of the head stay float
    (`linear_convs`), and so does the decode tail, which mixes pixel coordinates and 0..1 scores in
    one tensor (one 8-bit scale over both would round scores to steps of ~0.05).
    """
    if not images:
        raise ValueError("calibration images: expected at least one image")
    input_name = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    reader = DetectorCalibrationReader(detector, images, input_name)
    source = with_min_opset(fp32_path, Path(int8_path).with_suffix(".fp32-opset13.onnx"))
    with _quiet_preprocess_advice():
        _quantize(source, int8_path, reader, per_channel=per_channel, op_types=op_types,
                  exclude=linear_convs(source) if keep_head_float else [])
    if source != Path(fp32_path):
        source.unlink(missing_ok=True)
    logger.info("quantised %s -> %s on %d calibration images", fp32_path, int8_path, len(images))
    return Path(int8_path)


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider")


@contextmanager
def _quiet_preprocess_advice() -> Iterator[None]:
    """onnxruntime warns on the root logger to "consider pre-processing" (shape inference) before every
    quantisation; the graph here is an ultralytics export with shapes, so that advice is expected noise."""
    advice = _DropAdvice()
    logging.getLogger().addFilter(advice)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(advice)


def _quantize(source: Path, int8_path: str | Path, reader: CalibrationDataReader, *, per_channel: bool,
              op_types: Sequence[str], exclude: list[str]) -> None:
    quantize_static(
        str(source),
        str(int8_path),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=list(op_types) or None,
        nodes_to_exclude=exclude,
    )


def linear_convs(path: str | Path) -> list[str]:
    """Conv nodes not followed by a SiLU (Sigmoid + Mul): the prediction convs of the head (box, objectness,
    class logits) and Ultralytics' DFL. Quantising them costs most of the accuracy and little of the time."""
    import onnx

    graph = onnx.load(str(path)).graph
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    return [
        node.name
        for node in graph.node
        if node.op_type == "Conv" and sorted(consumers.get(node.output[0], [])) != ["Mul", "Sigmoid"]
    ]


def with_min_opset(path: str | Path, upgraded: Path, *, opset: int = MIN_QDQ_OPSET) -> Path:
    """The model itself if its opset is new enough for per-channel QDQ, else an upgraded copy."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(path))
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return Path(path)
    logger.info("%s: opset %d -> %d (per-channel DequantizeLinear needs its axis attribute)", path, current, opset)
    onnx.save(version_converter.convert_version(model, opset), str(upgraded))
    return upgraded


def paired_latency_ms(
    first: Detector, second: Detector, images: Sequence[np.ndarray], *, repeats: int = 3
) -> tuple[float, float]:
    """Median ms of the bare inference call (no pre/post-processing) of two detectors on the same
    tensors, interleaved call by call so machine load hits both alike."""
    prepared = [first.preprocess([img]).tensor.copy() for img in images]
    first.infer_raw(prepared[0])  # warm-up (allocations, thread pools)
    second.infer_raw(prepared[0])
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for tensor in prepared:
            for detector, sink in ((first, times[0]), (second, times[1])):
                start = time.perf_counter()
                detector.infer_raw(tensor)
                sink.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


@dataclass(frozen=True)
class Agreement:
    """How many of the reference model's detections the other model keeps (same class, IoU >= 0.5)."""

    reference: int
    kept: int
    extra: int

    @property
    def kept_share(self) -> float:
        return self.kept / self.reference if self.reference else float("nan")


def agreement(reference: Detector, other: Detector, images: Sequence[np.ndarray], *, iou: float = 0.5) -> Agreement:
    kept = total = extra = 0
    for image in images:
        ref, oth = reference.detect(image), other.detect(image)
        total += len(ref)
        matrix = iou_matrix(ref.xyxy, oth.xyxy)
        ref_cls = np.asarray(ref.class_id if ref.class_id is not None else np.zeros(len(ref), int))
        oth_cls = np.asarray(oth.class_id if oth.class_id is not None else np.zeros(len(oth), int))
        same = ref_cls[:, None] == oth_cls[None, :]
        hit = (matrix >= iou) & same
        kept += int(hit.any(axis=1).sum())
        extra += int((~hit.any(axis=0)).sum()) if len(oth) else 0
    return Agreement(reference=total, kept=kept, extra=extra)


def int8_gate(kept: int, reference: int, *, min_kept: float, force: bool) -> tuple[bool, str]:
    """Whether the INT8 model is added, and why. With no FP32 detection to compare there is no
    agreement to measure: the gate fails (the result is not "0 %" nor "100 %", it is undefined)."""
    if force:
        return True, "--force-int8"
    if reference == 0:
        return False, ("FP32 found nothing on the calibration images, so agreement is undefined; give images "
                       "with objects (--calib-images) or --force-int8")
    share = kept / reference
    if share >= min_kept:
        return True, f"keeps {share:.0%} of FP32's detections (>= {min_kept:.0%})"
    return False, f"keeps {share:.0%} of FP32's detections, below --int8-min-kept {min_kept:.0%}"
