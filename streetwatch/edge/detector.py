"""Object detector: an ONNX model run by onnxruntime, returning `supervision.Detections`.

The model file and its meaning come from the manifest (`streetwatch.edge.manifest`). Two output
layouts are understood, each with its own pre-processing, because getting these wrong does not
crash, it silently ruins detection:

- `yolox` (YOLOX >= 0.1.1rc0 export, decode not in graph): BGR uint8 values 0..255 as float, no
  normalisation, resized and pasted at the top-left of a 114-grey canvas; output (B, N, 5 + nc)
  on the stride 8/16/32 grids with sigmoid-ed objectness and class scores.
- `ultralytics` (YOLOv8 / YOLO11 ONNX export without NMS): RGB float 0..1, centred letterbox on
  114 grey; output (B, 4 + nc, N) of cx, cy, w, h in input pixels and class scores.

Pre-processing is one `cv2.resize` and one copy into a preallocated canvas and tensor; decoding is
vectorised numpy and the class-aware NMS is OpenCV's, so the per-frame overhead over the raw
onnxruntime call stays small. A Detector is not re-entrant: its buffers are reused, so calls are
serialised by a lock (one detector serves all cameras of an edge box, in batches).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort
import supervision as sv

from streetwatch.edge.alerts import ModelRef
from streetwatch.edge.config import ModelConfig
from streetwatch.edge.manifest import ModelEntry, ModelError, resolve_model
from streetwatch.edge.picture import Picture

logger = logging.getLogger(__name__)

PAD_VALUE = 114
FALLBACK_PROVIDER = "CPUExecutionProvider"
YOLOX_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class Letterbox:
    """How one original image maps into the network input: input = original * scale + pad."""

    scale: float
    pad_x: int
    pad_y: int
    width: int
    height: int

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) boxes in input pixels -> float32 boxes in original pixels, clipped to the image."""
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)
        boxes = (xyxy.astype(np.float32, copy=False) - offset) / np.float32(self.scale)
        limits = np.array([self.width, self.height, self.width, self.height], dtype=np.float32)
        return np.clip(boxes, 0, limits, out=boxes)

    def to_input(self, xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) boxes in original pixels -> input pixels (the inverse of `to_original`)."""
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)
        return xyxy.astype(np.float32) * np.float32(self.scale) + offset


def fit_size(width: int, height: int, canvas_size: tuple[int, int], *, centred: bool) -> tuple[int, int]:
    """The (width, height) a width x height frame is resized to inside a canvas_size input.

    centred=False truncates like YOLOX (`int(w * r)`); centred=True rounds like Ultralytics' LetterBox.
    """
    canvas_w, canvas_h = canvas_size
    scale = min(canvas_h / height, canvas_w / width)
    size = (width * scale, height * scale)
    new_w, new_h = (round(v) for v in size) if centred else (int(v) for v in size)
    return max(1, min(new_w, canvas_w)), max(1, min(new_h, canvas_h))


def letterbox_into(
    image: np.ndarray,
    out: np.ndarray,
    fmt: OutputFormat,
    *,
    original_size: tuple[int, int] | None = None,
    padded: bool = False,
) -> Letterbox:
    """Resize `image` (H, W, 3) BGR to fit the (3, H, W) input tensor `out` keeping its aspect, write
    it there as `fmt` wants its pixels, and fill the rest with the 114-grey pad.

    fmt.centred=False places it top-left (YOLOX); True centres it (Ultralytics).
    original_size: (width, height) of the frame `image` was already shrunk from (a Picture's view
    at `fit_size`); boxes then map back to that frame. padded=True: `out` already holds the pad
    around this same placement (the previous frame of the same size), so only the image is written.
    """
    width, height = original_size or (image.shape[1], image.shape[0])
    input_h, input_w = out.shape[1:]
    scale = min(input_h / height, input_w / width)
    new_w, new_h = fit_size(width, height, (input_w, input_h), centred=fmt.centred)
    pad_x = (input_w - new_w) // 2 if fmt.centred else 0
    pad_y = (input_h - new_h) // 2 if fmt.centred else 0
    if not padded:
        out.fill(fmt.pad_value)
    resized = (
        image
        if (new_w, new_h) == (image.shape[1], image.shape[0])
        else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    fmt.write_pixels(resized, out[:, pad_y : pad_y + new_h, pad_x : pad_x + new_w])
    return Letterbox(scale=scale, pad_x=pad_x, pad_y=pad_y, width=width, height=height)


@dataclass(frozen=True)
class Candidates:
    """Decoded boxes of one image before NMS: xyxy (N, 4) in input pixels, scores (N,), class_id (N,)."""

    xyxy: np.ndarray
    scores: np.ndarray
    class_id: np.ndarray


class OutputFormat(Protocol):
    """A model family: how to fill the input tensor and how to read one image's output."""

    centred: bool
    pad_value: float  # the letterbox's 114 grey in tensor units

    def write_pixels(self, image: np.ndarray, out: np.ndarray) -> None:
        """Write a (h, w, 3) uint8 BGR image into the (3, h, w) float32 tensor region `out`."""
        ...

    def decode(self, output: np.ndarray, *, threshold: float, wanted: np.ndarray) -> Candidates: ...


class YoloxFormat:
    """YOLOX raw-grid output; see /work/shared/assets/SOURCES.md for the exact recipe."""

    centred = False
    pad_value = float(PAD_VALUE)

    def __init__(self, input_size: tuple[int, int]) -> None:
        self.grid, self.stride = yolox_grid(input_size)

    def write_pixels(self, image: np.ndarray, out: np.ndarray) -> None:
        # BGR, 0..255, no normalisation. Plane by plane: a strided transposing copy costs 2-3x more.
        for channel, plane in enumerate(cv2.split(image)):
            np.copyto(out[channel], plane)

    def decode(self, output: np.ndarray, *, threshold: float, wanted: np.ndarray) -> Candidates:
        """output (N, 5 + nc): tx, ty, tw, th, obj, cls...; `wanted` (nc,) bool masks classes."""
        if output.shape[0] != self.grid.shape[0]:
            raise ModelError(f"yolox output has {output.shape[0]} rows, expected {self.grid.shape[0]}")
        rows = np.flatnonzero(output[:, 4] > threshold)  # score = obj * cls <= obj
        scores_all = output[rows, 5:] * output[rows, 4:5]
        class_id = scores_all.argmax(axis=1)
        scores = scores_all[np.arange(rows.size), class_id]
        keep = (scores > threshold) & wanted[class_id]
        rows, class_id, scores = rows[keep], class_id[keep], scores[keep]
        stride = self.stride[rows]
        centre = (output[rows, 0:2] + self.grid[rows]) * stride
        half = np.exp(output[rows, 2:4]) * stride / 2
        return Candidates(np.hstack((centre - half, centre + half)), scores, class_id)


class UltralyticsFormat:
    """YOLOv8 / YOLO11 ONNX export (no NMS in graph): output (4 + nc, N), no objectness."""

    centred = True
    pad_value = PAD_VALUE / 255
    _scale = np.float32(1 / 255)

    def write_pixels(self, image: np.ndarray, out: np.ndarray) -> None:
        for channel, plane in enumerate(cv2.split(image)):  # BGR -> RGB, 0..1
            np.multiply(plane, self._scale, out=out[2 - channel])

    def decode(self, output: np.ndarray, *, threshold: float, wanted: np.ndarray) -> Candidates:
        """output (4 + nc, N): cx, cy, w, h in input pixels, then class scores."""
        class_scores = output[4:]
        class_id = class_scores.argmax(axis=0)
        scores = class_scores[class_id, np.arange(class_scores.shape[1])]
        cols = np.flatnonzero((scores > threshold) & wanted[class_id])
        centre = output[0:2, cols].T
        half = output[2:4, cols].T / 2
        return Candidates(np.hstack((centre - half, centre + half)), scores[cols], class_id[cols])


def yolox_grid(input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets (N, 2) as (gx, gy) and strides (N, 1), strides 8/16/32, row-major per level."""
    width, height = input_size
    grids, strides = [], []
    for stride in YOLOX_STRIDES:
        ys, xs = np.mgrid[0 : height // stride, 0 : width // stride]
        grids.append(np.stack((xs.ravel(), ys.ravel()), axis=1))
        strides.append(np.full((xs.size, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)


def make_format(entry: ModelEntry) -> OutputFormat:
    if entry.format == "yolox":
        return YoloxFormat(entry.input_size)
    return UltralyticsFormat()


def nms_class_aware(candidates: Candidates, *, iou: float) -> np.ndarray:
    """Indices kept by per-class NMS (OpenCV), highest score first."""
    if candidates.scores.size == 0:
        return np.empty(0, dtype=np.int64)
    xywh = candidates.xyxy.copy()
    xywh[:, 2:] -= xywh[:, :2]
    kept = cv2.dnn.NMSBoxesBatched(  # numpy arrays are accepted; the stubs only name sequences
        xywh.astype(np.float64),  # type: ignore[arg-type]
        candidates.scores.astype(np.float32),  # type: ignore[arg-type]
        candidates.class_id.astype(np.int32),  # type: ignore[arg-type]
        0.0,
        iou,
    )
    return np.asarray(kept, dtype=np.int64).reshape(-1)


def select_providers(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """The requested providers onnxruntime offers here, in the requested order; never empty."""
    chosen = [p for p in dict.fromkeys(requested) if p in available]
    if not chosen or (FALLBACK_PROVIDER not in chosen and FALLBACK_PROVIDER in available):
        chosen.append(FALLBACK_PROVIDER)  # ORT needs CPU as the fallback for unsupported ops
    return chosen


def create_session(model: str | bytes, *, providers: Sequence[str], threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime session with full graph optimisation and the usable providers."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
    available = ort.get_available_providers()
    usable = select_providers(providers, available)
    skipped = [p for p in providers if p not in available]
    if skipped:
        logger.info("onnxruntime: providers %s are not available here, skipped; using %s", skipped, usable)
    return ort.InferenceSession(model, sess_options=options, providers=usable)


@dataclass(frozen=True)
class PreparedBatch:
    """An input tensor (B, 3, H, W) float32 and the letterbox of each image in it."""

    tensor: np.ndarray
    letterboxes: tuple[Letterbox, ...]


def above_threshold(detections: sv.Detections, threshold: float) -> sv.Detections:
    """The detections scoring at least `threshold` (a camera's own, above its session's lowest)."""
    if detections.confidence is None or not len(detections) or detections.confidence.min() >= threshold:
        return detections
    kept = detections[detections.confidence >= threshold]
    assert isinstance(kept, sv.Detections)  # a boolean mask selects Detections (an int would not)
    return kept


class Detector:
    """Runs one manifest model on BGR frames; returns Detections in original frame pixels.

    Each output carries data["class_name"] and data["role"] (the manifest role, "ignore" for
    classes without one). Classes without a role are dropped unless keep_unmapped=True, since
    the pipeline only needs roles and dropping them before NMS saves work.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        entry: ModelEntry,
        *,
        config: ModelConfig | None = None,
        keep_unmapped: bool = False,
    ) -> None:
        config = config or ModelConfig(name=entry.name)
        self.entry = entry
        self.model_ref = ModelRef(name=entry.name, sha256=entry.sha256)
        self.input_size: tuple[int, int] = entry.input_size
        self.score_threshold = config.score_threshold
        self.nms_iou = config.nms_iou
        self._session = session
        self._input_name = session.get_inputs()[0].name
        self._format = make_format(entry)
        self.max_batch = _check_model_io(session, entry, config.batch_size)
        self._class_names = np.array(entry.classes)
        self._roles = np.array([entry.role_of(c) for c in entry.classes])
        self._wanted = np.ones(len(entry.classes), bool) if keep_unmapped else self._roles != "ignore"
        width, height = self.input_size
        self._tensor = np.empty((self.max_batch, 3, height, width), dtype=np.float32)
        self._placed: list[tuple[int, int] | None] = [None] * self.max_batch  # frame size per slot
        self._lock = threading.Lock()
        logger.info(
            "model %s: onnxruntime providers %s, input %dx%d, batch up to %d",
            entry.name,
            self.providers,
            width,
            height,
            self.max_batch,
        )

    @classmethod
    def from_config(cls, config: ModelConfig, *, keep_unmapped: bool = False) -> Detector:
        """Resolve the model by manifest (sha256-checked) and open it with the configured providers."""
        resolved = resolve_model(config.name, manifest_path=config.manifest, model_dir=config.model_dir)
        session = create_session(str(resolved.path), providers=config.providers, threads=config.threads)
        return cls(session, resolved.entry, config=config, keep_unmapped=keep_unmapped)

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, in priority order."""
        return list(self._session.get_providers())

    def view_size(self, width: int, height: int) -> tuple[int, int]:
        """The size a width x height frame takes inside the network input (the frame's detector view)."""
        return fit_size(width, height, self.input_size, centred=self._format.centred)

    def view(self, picture: Picture) -> np.ndarray:
        """The picture at `view_size`, sampled like the letterbox the model was trained with (cached
        on the picture, so the decode thread can render it ahead of the detection loop). A picture
        smaller than the model input (a 320x240 thermal camera) is rendered at its own size: pictures
        only shrink, and the letterbox enlarges it into the input."""
        size = self.view_size(picture.width, picture.height)
        if size[0] > picture.width or size[1] > picture.height:
            return picture.bgr(fast=True)
        return picture.bgr(size, fast=True)

    def detect(self, image: np.ndarray | Picture) -> sv.Detections:
        """Detect objects in one frame: a BGR uint8 (H, W, 3) array or a Picture."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray | Picture]) -> list[sv.Detections]:
        """Detect in frames from several cameras; stacks them when the model's batch is dynamic."""
        results: list[sv.Detections] = []
        with self._lock:
            for start in range(0, len(images), self.max_batch):
                prepared = self.preprocess(images[start : start + self.max_batch])
                results.extend(self.postprocess(self.infer_raw(prepared.tensor), prepared.letterboxes))
        return results

    def preprocess(self, images: Sequence[np.ndarray | Picture]) -> PreparedBatch:
        """Letterbox up to max_batch frames into the shared input tensor (valid until the next call).

        A Picture is asked for its view at `view_size` (rendered once, often already by the
        decode thread), so a 1080p frame is never converted to BGR at full size for detection.
        """
        if not 0 < len(images) <= self.max_batch:
            raise ValueError(f"expected 1..{self.max_batch} images, got {len(images)}")
        letterboxes = []
        for slot, image in enumerate(images):
            if isinstance(image, np.ndarray):
                _check_image(image)
                view, original = image, None
            else:
                view, original = self.view(image), (image.width, image.height)
            size = original or (view.shape[1], view.shape[0])
            letterboxes.append(
                letterbox_into(
                    view, self._tensor[slot], self._format, original_size=original, padded=self._placed[slot] == size
                )
            )
            self._placed[slot] = size
        return PreparedBatch(self._tensor[: len(images)], tuple(letterboxes))

    def infer_raw(self, tensor: np.ndarray) -> np.ndarray:
        """The bare onnxruntime call on a prepared (B, 3, H, W) tensor; the benchmark times this."""
        return np.asarray(self._session.run(None, {self._input_name: tensor})[0])

    def postprocess(self, output: np.ndarray, letterboxes: Sequence[Letterbox]) -> list[sv.Detections]:
        """Decode, threshold, NMS and map back to original pixels, one Detections per image."""
        results = []
        for index, letterbox in enumerate(letterboxes):
            candidates = self._format.decode(
                output[index], threshold=self.score_threshold, wanted=self._wanted
            )
            kept = nms_class_aware(candidates, iou=self.nms_iou)
            results.append(self._to_detections(candidates, kept, letterbox))
        return results

    def _to_detections(self, candidates: Candidates, kept: np.ndarray, letterbox: Letterbox) -> sv.Detections:
        class_id = candidates.class_id[kept].astype(int)
        return sv.Detections(
            xyxy=letterbox.to_original(candidates.xyxy[kept].reshape(-1, 4)),
            confidence=candidates.scores[kept].astype(np.float32),
            class_id=class_id,
            data={"class_name": self._class_names[class_id], "role": self._roles[class_id]},
        )


def _check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(
            f"expected a BGR uint8 image of shape (H, W, 3), got dtype {image.dtype} shape {image.shape}"
        )


def _check_model_io(session: ort.InferenceSession, entry: ModelEntry, batch_size: int) -> int:
    """Check the ONNX input/output shapes against the manifest; return the usable batch size."""
    shape = session.get_inputs()[0].shape
    width, height = entry.input_size
    if len(shape) != 4 or [d for d in shape[2:] if isinstance(d, int)] not in ([], [height, width]):
        raise ModelError(
            f"model {entry.name!r}: ONNX input shape {shape} does not match manifest field "
            f"input_size {entry.input_size} (expected (batch, 3, {height}, {width}))"
        )
    out_shape = session.get_outputs()[0].shape
    channels = out_shape[2] if entry.format == "yolox" else out_shape[1]
    expected = len(entry.classes) + (5 if entry.format == "yolox" else 4)
    if len(out_shape) != 3 or (isinstance(channels, int) and channels != expected):
        raise ModelError(
            f"model {entry.name!r}: ONNX output shape {out_shape} does not fit format {entry.format!r} "
            f"with {len(entry.classes)} manifest classes (expected {expected} values per box)"
        )
    return shape[0] if isinstance(shape[0], int) else batch_size
