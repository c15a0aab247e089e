"""Opening the deployed and the candidate model as edge `Detector`s (onnxruntime, CPU)."""

from __future__ import annotations

from pathlib import Path

from streetwatch.edge.config import ModelConfig
from streetwatch.edge.detector import Detector, create_session
from streetwatch.training.classmap import ClassMap
from streetwatch.training.manifest_update import make_entry

CPU = ["CPUExecutionProvider"]


def deployed_detector(name: str, *, manifest: Path | None, model_dir: Path | None, score: float = 0.3) -> Detector:
    """The manifest model `name` (sha256-checked), every class kept (evaluation maps them itself)."""
    config = ModelConfig(name=name, manifest=manifest, model_dir=model_dir, providers=CPU, score_threshold=score)
    return Detector.from_config(config, keep_unmapped=True)


def onnx_detector(onnx_path: str | Path, *, name: str, class_map: ClassMap, imgsz: int, score: float = 0.3,
                  threads: int = 0) -> Detector:
    """An exported ultralytics ONNX not (yet) in the manifest, opened like the edge would open it."""
    entry = make_entry(onnx_path, name=name, class_map=class_map, input_size=(imgsz, imgsz))
    config = ModelConfig(name=name, providers=CPU, score_threshold=score, threads=threads)
    session = create_session(str(onnx_path), providers=CPU, threads=threads)
    return Detector(session, entry, config=config, keep_unmapped=True)
