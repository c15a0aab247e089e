"""The ultralytics side of the loop: train, validate and export, with every network fetch switched off.

ultralytics (and torch) are imported inside the functions only, so `import streetwatch.training`
stays light. Before the first import `configure_offline` makes ultralytics work on a machine with
no internet: no hub or analytics (YOLO_OFFLINE), no pip auto-install (YOLO_AUTOINSTALL), the plot
font is matplotlib's bundled DejaVu Sans instead of an Arial.ttf download, and the AMP self-check
(which downloads a model on GPUs) is skipped. Weights come from a path or a model YAML, never a
hub name.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_configured = False


def configure_offline(config_dir: str | Path | None = None) -> None:
    """Switch ultralytics' downloads off; call before ultralytics is imported (idempotent)."""
    global _configured
    if _configured:
        return
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    if config_dir is not None:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    import matplotlib
    import ultralytics.data.utils as data_utils
    import ultralytics.utils.checks as checks
    import ultralytics.utils.plotting as plotting
    from ultralytics.utils import SETTINGS

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"

    def local_font(font_name: str = "Arial.ttf") -> Path:
        return font  # a bundled font: never download Arial.ttf

    checks.check_font = local_font
    data_utils.check_font = local_font  # imported by name there
    plotting.check_font = local_font  # and there: `--plots` draws labels with it
    # no analytics, no experiment-tracker callbacks (they would log in to remote services)
    from streetwatch.training.torch_env import ensure_torchvision

    ensure_torchvision()
    SETTINGS.update({"sync": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False,
                     "raytune": False, "wandb": False})
    _configured = True


def resolve_base(model: str) -> str:
    """A model YAML name (built from scratch) or a weights file that must exist: never a hub download."""
    if model.endswith((".yaml", ".yml")):
        return model
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(
            f"--model: weights file {model} not found (give a path to a .pt file, or a model YAML such as "
            "yolov8n.yaml to train from scratch; hub names are not downloaded)"
        )
    return str(path)


@dataclass(frozen=True)
class TrainOptions:
    data: Path
    model: str = "yolov8n.yaml"
    project: Path = Path("runs")
    name: str = "train"
    epochs: int = 50
    imgsz: int = 640
    batch: int = 16
    device: str | None = None  # None: first GPU if present, else CPU
    workers: int = 2
    resume: bool = False
    amp: bool = False
    plots: bool = False
    seed: int = 0
    patience: int = 50


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "0" if torch.cuda.is_available() else "cpu"


def train(options: TrainOptions) -> Path:
    """Train (or resume) and return the run folder; best.pt / last.pt are in <run>/weights/."""
    configure_offline()
    from ultralytics import YOLO

    run_dir = options.project.resolve() / options.name
    if options.amp:
        _trust_amp()
    if options.resume:
        last = run_dir / "weights" / "last.pt"
        if not last.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint {last} (run without --resume first)")
        data = check_resumable(run_dir)
        logger.info("run %s: resuming from %s", run_dir, last)
        YOLO(str(last)).train(resume=True, data=data, plots=options.plots)
        return run_dir
    model = YOLO(resolve_base(options.model))
    device = pick_device(options.device)
    logger.info("run %s: training %s on %s (device %s)", run_dir, options.model, options.data, device)
    model.train(
        data=str(options.data.resolve()),
        epochs=options.epochs,
        imgsz=options.imgsz,
        batch=options.batch,
        device=device,
        workers=options.workers,
        project=str(options.project.resolve()),
        name=options.name,
        exist_ok=True,
        amp=options.amp,
        plots=options.plots,
        seed=options.seed,
        patience=options.patience,
        verbose=False,
    )
    return run_dir


def check_resumable(run_dir: Path) -> str:
    """The run's dataset, if the run stopped before its last epoch (results.csv has a row per epoch)."""
    import yaml

    args = yaml.safe_load((run_dir / "args.yaml").read_text(encoding="utf-8"))
    results = run_dir / "results.csv"
    done = max(0, len(results.read_text(encoding="utf-8").splitlines()) - 1) if results.is_file() else 0
    if done >= int(args["epochs"]):
        raise FileNotFoundError(
            f"--resume: run {run_dir} already finished its {args['epochs']} epochs; start a new run "
            f"(--name) or fine-tune from {run_dir / 'weights' / 'best.pt'} with --model"
        )
    return str(args["data"])


def _trust_amp() -> None:
    """Skip ultralytics' AMP self-check: it downloads a model to compare with (no internet here)."""
    import ultralytics.engine.trainer as trainer

    def amp_ok(model: object) -> bool:
        return True

    trainer.check_amp = amp_ok  # type: ignore[assignment]


@dataclass(frozen=True)
class ClassAP:
    name: str
    map50: float
    map50_95: float


@dataclass(frozen=True)
class ValResult:
    """mAP over all classes and per class, as ultralytics val reports them on the val split."""

    map50: float
    map50_95: float
    per_class: tuple[ClassAP, ...]


def validate(weights: str | Path, *, data: Path, imgsz: int, batch: int = 8, device: str | None = None) -> ValResult:
    """ultralytics val of a .pt or .onnx model on the dataset's val split."""
    configure_offline()
    from ultralytics import YOLO

    task = "detect" if str(weights).endswith(".onnx") else None
    model = YOLO(str(weights), task=task)
    metrics = model.val(
        data=str(data), imgsz=imgsz, batch=batch, device=pick_device(device), plots=False, verbose=False,
        workers=0,
    )
    names = metrics.names
    per_class = tuple(
        ClassAP(name=str(names[int(c)]), map50=float(metrics.box.ap50[i]), map50_95=float(metrics.box.ap[i]))
        for i, c in enumerate(metrics.box.ap_class_index)
    )
    return ValResult(map50=float(metrics.box.map50), map50_95=float(metrics.box.map), per_class=per_class)


def export_onnx(weights: str | Path, *, imgsz: int, dynamic: bool = False, opset: int | None = None) -> Path:
    """ultralytics ONNX export (no NMS in graph: the edge decodes and runs NMS itself)."""
    configure_offline()
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    model = YOLO(str(weights))
    # Its export log is advice for other targets ("no one-to-one head": expected, the edge decodes the
    # raw head itself; OpenVINO tips): expected, so not printed as warnings. Errors still show.
    level = LOGGER.level
    LOGGER.setLevel(logging.ERROR)
    try:
        out = model.export(format="onnx", imgsz=imgsz, dynamic=dynamic, simplify=False, opset=opset, nms=False,
                           device="cpu")
    finally:
        LOGGER.setLevel(level)
    logger.info("exported %s -> %s (ONNX, imgsz %d%s)", weights, out, imgsz, ", dynamic batch" if dynamic else "")
    return without_export_date(Path(out))


def without_export_date(path: Path) -> Path:
    """Drop the `date` ultralytics writes into the ONNX metadata, the one thing that differs between
    two exports of the same weights: the same best.pt then gives the same file and sha256."""
    import onnx

    model = onnx.load(str(path))
    props = [(p.key, p.value) for p in model.metadata_props if p.key != "date"]
    if len(props) != len(model.metadata_props):
        del model.metadata_props[:]
        for key, value in props:
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(path))
    return path


def class_names(weights: str | Path) -> list[str]:
    """The class names stored in a trained checkpoint, in output order."""
    configure_offline()
    from ultralytics import YOLO

    names = YOLO(str(weights)).names
    return [str(names[i]) for i in sorted(names)]
