"""The whole retraining loop on a tiny dataset from the real assets, through the real scripts:
harvest (central database) -> train (ultralytics, imgsz 128, 1 epoch) -> evaluate -> export ONNX
(+ INT8) into a manifest -> the edge Detector opens the exported model by manifest name and runs
on a real frame. Asserts artefacts and shapes, not accuracy. torch is only ever imported by the
script subprocesses (the test process stays free of it, like the edge and central).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import yaml

from streetwatch.edge.config import ModelConfig
from streetwatch.edge.detector import Detector
from streetwatch.edge.manifest import file_sha256, load_manifest

REPO = Path(__file__).resolve().parents[2]
IMGSZ = 128


def run_script(name: str, *args: str | Path, cwd: Path) -> str:
    env = {**os.environ, "YOLO_CONFIG_DIR": str(cwd / "yolo-config"), "YOLO_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)  # train, evaluate and two exports on CPU; slow when the CI machine is shared
def test_harvest_train_evaluate_export_deploy(seeded_central, tmp_path: Path, model_dir: Path, street_dir: Path):
    central = seeded_central
    dataset = tmp_path / "dataset"
    out = run_script("harvest_dataset.py", "--database-url", central.url, "--evidence-dir", central.evidence_dir,
                     "-o", dataset, "--val-camera", "cam-c", "--no-progress", "--pseudo-model", "none", cwd=tmp_path)
    assert "6 cases" in out and "skipped 1: alert without a clean frame" in out
    data = yaml.safe_load((dataset / "data.yaml").read_text())
    assert data["names"] == {0: "vehicle", 1: "person", 2: "stall", 3: "goods"}
    train_labels = sorted((dataset / "labels" / "train").glob("*.txt"))
    val_labels = sorted((dataset / "labels" / "val").glob("*.txt"))
    assert len(train_labels) == 4 and len(val_labels) == 2  # cam-a, cam-b train; cam-c val
    dismissed = {f"case{cid}_" for cid, d in central.decisions.items() if d == "false_detection"}
    skipped = [cid for cid, d in central.decisions.items() if d == "allowed_time_window"]
    assert not list(dataset.glob(f"labels/*/case{skipped[0]}_*"))  # real objects: never a negative
    for label in train_labels + val_labels:
        lines = label.read_text().splitlines()
        is_negative = any(label.name.startswith(prefix) for prefix in dismissed)
        assert (lines == []) == is_negative, label.name  # no pseudo-label model: a false detection labels nothing
        for line in lines:
            cls, *xywh = line.split()
            assert int(cls) in (0, 1) and all(0 <= float(v) <= 1 for v in xywh)

    runs = tmp_path / "runs"
    run_script("train.py", "--data", dataset / "data.yaml", "--model", "yolov8n.yaml", "--epochs", "1",
               "--imgsz", str(IMGSZ), "--batch", "4", "--workers", "0", "--project", runs, "--name", "smoke",
               cwd=tmp_path)
    best = runs / "smoke" / "weights" / "best.pt"
    assert best.is_file() and (runs / "smoke" / "weights" / "last.pt").is_file()

    manifest = tmp_path / "manifest.yaml"
    shutil.copyfile(REPO / "streetwatch" / "models" / "manifest.yaml", manifest)
    shutil.copyfile(model_dir / "yolox_nano.onnx", tmp_path / "yolox_nano.onnx")
    out = run_script("evaluate.py", "--data", dataset / "data.yaml", "--weights", best, "--imgsz", str(IMGSZ),
                     "--deployed", "yolox_nano", "--manifest", manifest, "--model-dir", tmp_path,
                     "--database-url", central.url, "--evidence-dir", central.evidence_dir, cwd=tmp_path)
    assert "mAP50-95" in out and "\nall " in out
    assert "same val frames" in out
    table = out.split("operational (")[1]
    deployed_row = next(line for line in table.splitlines() if line.startswith("deployed (yolox_nano)"))
    candidate_row = next(line for line in table.splitlines() if line.startswith("candidate (best.pt)"))
    # val camera cam-c: one confirmed case; the dismissed one has no box of a trained class and is left out
    assert "left out, no box of a trained class to match" in out
    for row in (deployed_row, candidate_row):
        assert row.count("0/0 (none)") == 1 and "/1 (" in row
    # the deployed model made these alerts, so on the clean frame it finds its own box again: not missed
    assert deployed_row.endswith("0/1 (0%)")

    models = tmp_path / "models"
    out = run_script("export_onnx.py", "--weights", best, "--imgsz", str(IMGSZ), "--name", "street_smoke",
                     "--classes", dataset / "classes.yaml", "--manifest", manifest, "--model-dir", models,
                     "--dynamic", "--int8", "--force-int8", "--data", dataset / "data.yaml",
                     "--calib-images", dataset / "images" / "train", cwd=tmp_path)
    assert "graph ok" in out and "INT8:" in out and "mAP50 " in out
    loaded = load_manifest(manifest)
    assert [m.name for m in loaded.models] == ["yolox_nano", "street_smoke", "street_smoke-int8"]  # rollback kept
    entry = loaded.entry("street_smoke")
    assert entry.format == "ultralytics" and entry.input_size == (IMGSZ, IMGSZ)
    assert entry.sha256 == file_sha256(models / entry.file) and entry.file.startswith("street_smoke-")
    assert entry.roles == {"vehicle": "vehicle", "person": "person", "stall": "vending_prop", "goods": "goods"}

    frame = cv2.imread(str(street_dir / "kerb_parked_cars_street.jpg"))
    assert frame is not None
    for name in ("street_smoke", "street_smoke-int8"):
        detector = Detector.from_config(ModelConfig(name=name, manifest=manifest, model_dir=models,
                                                    providers=["CPUExecutionProvider"]))
        assert detector.max_batch == 4  # dynamic batch: the configured batch size
        raw = detector.infer_raw(detector.preprocess([frame, frame]).tensor)
        assert raw.shape == (2, 4 + 4, (IMGSZ // 8) ** 2 + (IMGSZ // 16) ** 2 + (IMGSZ // 32) ** 2)
        found = detector.detect(frame)
        assert found.xyxy.shape[1] == 4 and set(found.data["role"]) <= {"vehicle", "person", "vending_prop", "goods"}
        assert detector.model_ref.name == name
    assert "torch" not in sys.modules
