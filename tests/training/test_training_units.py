"""The retraining loop's own logic, without torch: labels, split by camera, class map, harvest from a
real central database, dataset merge, operational matching, INT8 calibration input, manifest update."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from streetwatch.edge.config import ModelConfig
from streetwatch.edge.detector import Detector
from streetwatch.edge.manifest import load_manifest, resolve_model
from streetwatch.training.classmap import DEFAULT_CLASS_MAP, ClassMapError, load_class_map
from streetwatch.training.dataset import Box, DatasetWriter, assign_splits, read_cameras, yolo_line
from streetwatch.training.harvest import DatabaseSource, HarvestError, HarvestOptions, harvest, read_only_engine
from streetwatch.training.manifest_update import add_entry, make_entry
from streetwatch.training.merge import labels_folder, merge_coco, merge_yolo
from streetwatch.training.operational import matches_alert
from streetwatch.training.quantize import DetectorCalibrationReader

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("xyxy", "size", "expected"),
    [
        ((0, 0, 100, 50), (200, 100), "0 0.250000 0.250000 0.500000 0.500000"),
        ((150, 50, 250, 150), (200, 100), "0 0.875000 0.750000 0.250000 0.500000"),  # clipped to the image
        ((100, 50, 0, 0), (200, 100), "0 0.250000 0.250000 0.500000 0.500000"),  # corners swapped
        ((10, 10, 10.5, 40), (200, 100), None),  # under a pixel wide
        ((-50, -50, -10, -10), (200, 100), None),  # outside
    ],
)
def test_yolo_line(xyxy, size, expected):
    assert yolo_line(Box(0, xyxy), width=size[0], height=size[1]) == expected


def test_split_by_camera_is_stable_and_never_splits_a_camera():
    cameras = [f"cam-{i}" for i in range(40)]
    splits = assign_splits(cameras * 3, val_fraction=0.25)
    assert set(splits) == set(cameras)  # one split per camera, whatever its number of images
    assert 4 <= sum(s == "val" for s in splits.values()) <= 18
    assert assign_splits(reversed(cameras), val_fraction=0.25) == splits  # order does not matter
    assert assign_splits(cameras[:10], val_fraction=0.25) == {c: splits[c] for c in cameras[:10]}  # stable


@pytest.mark.parametrize("cameras", [["a", "b"], ["x", "y", "z"]])
def test_split_gives_each_side_a_camera(cameras):
    for fraction in (0.01, 0.99):
        assert set(assign_splits(cameras, val_fraction=fraction).values()) == {"train", "val"}


def test_explicit_val_cameras_win():
    assert assign_splits(["a", "b", "c"], val_fraction=0.9, val_cameras=["b"]) == {
        "a": "train", "b": "val", "c": "train"}


@pytest.mark.parametrize(
    ("detector_class", "expected"),
    [("car", 0), ("truck", 0), ("vehicle", 0), ("person", 1), ("umbrella", 2), ("static_region", 3), ("dog", None)],
)
def test_default_class_map(detector_class, expected):
    assert DEFAULT_CLASS_MAP.index_of(detector_class) == expected


def test_class_map_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "classes.yaml"
    bad.write_text("classes:\n  - {name: vehicle, role: car}\n")
    with pytest.raises(ClassMapError, match=r"classes.yaml: invalid class map: classes\.0\.role"):
        load_class_map(bad)
    bad.write_text(
        "classes:\n  - {name: a, role: vehicle, sources: [car]}\n  - {name: b, role: vehicle, sources: [car]}\n"
    )
    with pytest.raises(ClassMapError, match=r"\['car'\] appear more than once"):
        load_class_map(bad)


def test_harvest_from_central_database(seeded_central, tmp_path):
    central = seeded_central
    writer = DatasetWriter(tmp_path / "ds", DEFAULT_CLASS_MAP)
    used = harvest(DatabaseSource(central.url, central.evidence_dir), writer,
                   options=HarvestOptions(val_cameras=("cam-c",), progress=False))
    writer.finish()
    assert used == 6  # 4 confirmed + 2 false detections; the allowed_time_window dismissal is left out
    assert writer.summary.images == {"train": 4, "val": 2}
    assert writer.summary.negatives == {"train": 1, "val": 1}
    assert read_cameras(tmp_path / "ds") == {"train": ["cam-a", "cam-b"], "val": ["cam-c"]}
    for case_id, decision in central.decisions.items():
        labels = list((tmp_path / "ds" / "labels").glob(f"*/case{case_id}_*.txt"))
        images = list((tmp_path / "ds" / "images").glob(f"*/case{case_id}_*.jpg"))
        if decision == "allowed_time_window":
            assert labels == [] and images == []
            continue
        assert len(labels) == 1 and len(images) == 1
        lines = labels[0].read_text().splitlines()
        assert (lines == []) == (decision == "false_detection")
        image = cv2.imread(str(images[0]))
        assert image is not None and image.shape[1] <= 480  # the evidence JPEG itself


def test_harvest_labels_are_the_alert_boxes(seeded_central, tmp_path):
    central = seeded_central
    source = DatabaseSource(central.url, central.evidence_dir)
    case = next(c for c in source.cases() if c.case_id == central.case_ids["kerb_parked_cars_street.jpg"])
    (alert,) = case.alerts
    writer = DatasetWriter(tmp_path / "ds", DEFAULT_CLASS_MAP)
    harvest(source, writer, options=HarvestOptions(val_cameras=("cam-c",), progress=False))
    label = next((tmp_path / "ds" / "labels" / "train").glob(f"case{case.case_id}_*.txt"))
    got = sorted(tuple(float(v) for v in line.split()) for line in label.read_text().splitlines())
    expected = sorted(
        (0.0, (x1 + x2) / 2 / alert.width, (y1 + y2) / 2 / alert.height, (x2 - x1) / alert.width,
         (y2 - y1) / alert.height)
        for cls, (x1, y1, x2, y2) in alert.objects
        if cls == "car"
    )
    assert len(got) == len(expected) >= 3
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_missing_evidence_names_case_and_file(seeded_central, tmp_path):
    central = seeded_central
    evidence = shutil.copytree(central.evidence_dir, tmp_path / "evidence")
    victim = next(evidence.rglob("*.jpg"))
    victim.unlink()
    with pytest.raises(HarvestError, match=rf"case \d+ alert al-\d: evidence file .*{victim.name}"):
        harvest(DatabaseSource(central.url, evidence), DatasetWriter(tmp_path / "ds", DEFAULT_CLASS_MAP),
                options=HarvestOptions(progress=False))


def test_harvest_database_connection_is_read_only(seeded_central):
    engine = read_only_engine(seeded_central.url)
    try:
        with engine.connect() as conn, pytest.raises(DBAPIError, match="read-only|readonly"):
            conn.execute(text("UPDATE cases SET status = 'new'"))
    finally:
        engine.dispose()


def test_merge_yolo_and_coco_remap_classes_by_name(tmp_path, street_dir):
    photo = street_dir / "parked_cars_park_bench.jpg"
    src = tmp_path / "src"
    (src / "images" / "val").mkdir(parents=True)
    (src / "labels" / "val").mkdir(parents=True)
    shutil.copy(photo, src / "images" / "val" / "p.jpg")
    (src / "labels" / "val" / "p.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.1 0.1\n")  # bench, car
    (src / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "images/val", "names": ["bench", "car"]}))
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({
        "images": [{"id": 7, "file_name": photo.name, "width": 640, "height": 427}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 20, 100, 50]},
                        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1}],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }))
    writer = DatasetWriter(tmp_path / "ds", DEFAULT_CLASS_MAP)
    assert merge_yolo(src / "data.yaml", writer) == 1
    assert merge_coco(coco, street_dir, writer) == 1
    val_label = next((tmp_path / "ds" / "labels" / "val").glob("*.txt")).read_text()
    assert val_label == "0 0.100000 0.100000 0.100000 0.100000\n"  # car -> vehicle (0); bench dropped
    train_label = next((tmp_path / "ds" / "labels" / "train").glob("*.txt")).read_text().split()
    assert train_label[0] == "0" and float(train_label[1]) == pytest.approx(60 / 640)  # crowd box dropped


@pytest.mark.parametrize(
    ("images", "labels"),
    [("/d/images/train", "/d/labels/train"), ("/images/x/images/val", "/images/x/labels/val"), ("/d/img", "/d/img")],
)
def test_labels_folder(images, labels):
    assert labels_folder(Path(images)) == Path(labels)


@pytest.mark.parametrize(
    ("detected", "expected"),
    [
        ([(0, (0, 0, 10, 10))], True),
        ([(1, (0, 0, 10, 10))], False),  # same place, other class
        ([(0, (5, 0, 15, 10))], False),  # IoU 1/3
        ([(0, (1, 0, 11, 10)), (1, (50, 50, 60, 60))], True),  # IoU 0.82
        ([], False),
    ],
)
def test_matches_alert(detected, expected):
    assert matches_alert(detected, [(0, (0, 0, 10, 10))], iou=0.5) is expected


def test_calibration_reader_feeds_the_detectors_own_tensors(model_dir, street_dir):
    detector = Detector.from_config(ModelConfig(name="yolox_nano", model_dir=model_dir))
    images = [np.asarray(cv2.imread(str(p))) for p in sorted(street_dir.glob("*.jpg"))[:3]]
    reader = DetectorCalibrationReader(detector, images, "images")
    first = [reader.get_next() for _ in range(4)]
    assert first[3] is None
    reader.rewind()
    again = reader.get_next()
    assert again is not None and first[0] is not None
    np.testing.assert_array_equal(again["images"], first[0]["images"])
    expected = detector.preprocess([images[1]]).tensor
    assert first[1] is not None
    np.testing.assert_array_equal(first[1]["images"], expected)  # BGR 0..255, top-left letterbox for YOLOX


def test_add_entry_keeps_previous_models_and_refuses_duplicates(tmp_path, model_dir):
    manifest = tmp_path / "manifest.yaml"
    shutil.copyfile(REPO / "streetwatch" / "models" / "manifest.yaml", manifest)
    onnx_file = tmp_path / "street_v1.onnx"
    shutil.copyfile(model_dir / "yolox_nano.onnx", onnx_file)  # any file: the entry records its sha256
    entry = make_entry(onnx_file, name="street_v1", class_map=DEFAULT_CLASS_MAP, input_size=(416, 416))
    add_entry(manifest, entry)
    text_after = manifest.read_text()
    shipped = REPO / "streetwatch" / "models" / "manifest.yaml"
    assert text_after.startswith(shipped.read_text().splitlines()[0])  # comments kept
    assert [m.name for m in load_manifest(manifest).models] == ["yolox_nano", "street_v1"]
    resolved = resolve_model("street_v1", manifest_path=manifest, model_dir=tmp_path)  # sha256 checked
    assert resolved.entry.roles["stall"] == "vending_prop" and resolved.entry.format == "ultralytics"
    with pytest.raises(ValueError, match="'street_v1' is already in the manifest"):
        add_entry(manifest, entry)
    assert manifest.read_text() == text_after  # unchanged on error
    add_entry(manifest, entry, replace=True)
    assert [m.name for m in load_manifest(manifest).models] == ["yolox_nano", "street_v1"]


def test_training_modules_do_not_import_torch():
    code = (
        "import sys, streetwatch.training.harvest, streetwatch.training.dataset, streetwatch.training.merge, "
        "streetwatch.training.operational, streetwatch.training.quantize, streetwatch.training.manifest_update, "
        "streetwatch.training.models, streetwatch.training.ultra, streetwatch.training.torch_env;"
        "bad = sorted(m for m in ('torch', 'ultralytics', 'torchvision') if m in sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
