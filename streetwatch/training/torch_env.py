"""Make torchvision importable when its compiled ops cannot load next to the installed torch.

The torchvision wheels on PyPI for Linux are built against CUDA torch; next to the CPU-only torch
(`torch==2.13.0+cpu`) their `_C` extension fails to load (`libc10_cuda.so` missing), and then
`import torchvision` itself dies on `torchvision::nms does not exist`. ultralytics needs only NMS
from torchvision. When (and only when) the extension does not load, this registers the two op
schemas torchvision's import expects and a CPU `torchvision::nms` kernel backed by ultralytics' own
`TorchNMS.nms` (documented to match torchvision's result). With a matching torchvision (the PyTorch
CPU index, or a CUDA torch) nothing here runs.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

_library: object | None = None  # keeps the torch.library.Library alive


def torchvision_ops_load() -> bool:
    """Whether torchvision's compiled `_C` extension loads with the installed torch."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision: nothing to repair (ultralytics will say it is missing)
    folder = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(folder.glob("_C*.so")) + sorted(folder.glob("_C*.pyd"))
    if not candidates:
        return False
    try:
        torch.ops.load_library(str(candidates[0]))
    except OSError as exc:
        # Expected with the CPU torch next to PyPI's torchvision: the shim below is the designed path.
        logger.info("torchvision's compiled ops do not load with this torch (%s); using the CPU NMS shim", exc)
        return False
    return True


def ensure_torchvision() -> None:
    """Import torchvision, with the NMS shim if its compiled ops do not load (idempotent)."""
    global _library
    if _library is None and not torchvision_ops_load():
        import torch
        from ultralytics.utils.nms import TorchNMS

        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

        def nms_cpu(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
            return TorchNMS.nms(dets, scores, iou_threshold)

        library.impl("nms", nms_cpu, "CPU")
        _library = library
        import torchvision.ops.boxes as boxes

        def ops_present() -> None:
            return None

        boxes._assert_has_ops = ops_present  # the nms op now exists (CPU)
    import torchvision  # noqa: F401
