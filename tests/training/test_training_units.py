"""The retraining loop's own logic, without torch: labels, split by camera, class map, harvest from a
real central database, dataset merge, operational matching, INT8 calibration input, manifest update."""

from __future__ import annotations

import hashlib
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

from streetwatch.central.evidence_store import EvidenceStore
from streetwatch.edge.config import ModelConfig
from streetwatch.edge.detector import Detector
from streetwatch.edge.manifest import file_sha256, load_manifest, resolve_model
from streetwatch.training.classmap import DEFAULT_CLASS_MAP, ClassMapError, load_class_map
from streetwatch.training.dataset import (
    Box,
    DatasetError,
    DatasetWriter,
    assign_splits,
    content_hash,
    read_cameras,
    split_by_images,
    yolo_line,
)
from streetwatch.training.harvest import DatabaseSource, HarvestOptions, harvest, read_only_engine
from streetwatch.training.labels import complete_labels, iou, subject_index
from streetwatch.training.manifest_update import add_entry, install_model_file, make_entry, versioned_file_name
from streetwatch.training.merge import labels_folder, merge_coco, merge_yolo
from streetwatch.training.operational import matches_alert
from streetwatch.training.quantize import DetectorCalibrationReader, int8_gate

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


def sidecars(root: Path) -> dict[int, tuple[str, dict]]:  # type: ignore[type-arg]
    """case id -> (split, sidecar) of a harvested dataset."""
    out = {}
    for meta in root.glob("meta/*/*.json"):
        record = json.loads(meta.read_text())
        out[record["case_id"]] = (meta.parent.name, record)
    return out


def test_harvest_takes_clean_frames_only_and_labels_them_completely(seeded_central, yolox, tmp_path):
    central = seeded_central
    writer = DatasetWriter(tmp_path / "ds", DEFAULT_CLASS_MAP)
    report = harvest(DatabaseSource(central.url, central.evidence_dir), writer,
                     options=HarvestOptions(val_cameras=("cam-c",), progress=False, pseudo_score=0.5), pseudo=yolox)
    writer.finish({"source": "test"})
    root = tmp_path / "ds"
    # 4 confirmed + 2 false detections; the allowed_time_window case shows real objects; the old edge's
    # case has only its annotated evidence: both left out and counted
    used = [cid for cid, d in central.decisions.items() if d in ("confirm", "false_detection")]
    assert sorted(c["case_id"] for c in report.cases) == sorted(c for c in used if c != central.old_edge_case)
    assert report.skipped == {
        "alert without a clean frame (the evidence JPEG has boxes drawn on it: refused)": 1,
        "case with no clean frame at all": 1,
        "case dismissed:allowed_time_window: shows real objects, neither a label nor a negative": 1,
    }
    meta = sidecars(root)
    source = DatabaseSource(central.url, central.evidence_dir)
    by_id = {c.case_id: c for c in source.cases()}
    for case_id, (split, record) in meta.items():
        image = (root / "images" / split / f"{Path(record['origin']).name}").with_suffix(".jpg")
        jpeg = next((root / "images" / split).glob(f"case{case_id}_*.jpg")).read_bytes()
        (alert,) = by_id[case_id].alerts
        assert jpeg == source.clean_frame(by_id[case_id], alert) != source.evidence(by_id[case_id], alert)
        assert record["clean_sha256"] == hashlib.sha256(jpeg).hexdigest() == alert.clean
        boxes = record["boxes"]
        pseudo = [b for b in boxes if b["source"] == "pseudo"]
        assert all(b["score"] >= 0.5 for b in pseudo) and image.suffix == ".jpg"
        if central.decisions[case_id] == "confirm":
            assert len([b for b in boxes if b["source"] == "confirmed"]) == len(
                [o for o in alert.objects if DEFAULT_CLASS_MAP.index_of(o[0]) is not None])
            assert record["negative_regions"] == []
        else:  # a false detection: its boxes are negative regions, nothing labelled on them
            assert [b["source"] for b in boxes] == ["pseudo"] * len(boxes)
            assert len(record["negative_regions"]) == len(alert.objects)
            for region in record["negative_regions"]:
                assert all(iou(tuple(region), np.array([b["xyxy"]], np.float32))[0] < 0.5 for b in boxes)
        label_lines = next((root / "labels" / split).glob(f"case{case_id}_*.txt")).read_text().splitlines()
        assert len(label_lines) == len(boxes)
    assert sum(len(r["negative_regions"]) for _, r in meta.values()) >= 1
    # the busiest confirmed frame gets pseudo-labels beside its reviewed boxes: no object left as background
    assert sum(b["source"] == "pseudo" for _, r in meta.values() for b in r["boxes"]) >= 3
    record = json.loads((root / "dataset.json").read_text())
    assert record["source"] == "test" and record["classes"] == DEFAULT_CLASS_MAP.names
    assert record["counts"]["val"]["cameras"] == ["cam-c"] and record["counts"]["train"]["negative_regions"] >= 1
    for split in ("train", "val"):
        recount: dict[str, dict[str, int]] = {}
        for where, r in meta.values():
            for b in r["boxes"] if where == split else []:
                recount.setdefault(b["class"], {}).setdefault(b["source"], 0)
                recount[b["class"]][b["source"]] += 1
        assert record["counts"][split]["per_class"] == recount
    assert record["counts"]["train"]["per_class"]["vehicle"]["confirmed"] >= 2
    assert record["content_sha256"] == content_hash(root)


def test_a_missing_clean_frame_is_skipped_not_replaced_by_the_evidence(seeded_central, tmp_path):
    central = seeded_central
    evidence = shutil.copytree(central.evidence_dir, tmp_path / "evidence")
    source = DatabaseSource(central.url, evidence)
    case = next(c for c in source.cases() if c.case_id == central.case_ids["parked_cars_park_bench.jpg"])
    assert case.alerts[0].clean is not None
    EvidenceStore(evidence).path_for(case.alerts[0].clean).unlink()  # announced, bytes never arrived
    writer = DatasetWriter(tmp_path / "ds", DEFAULT_CLASS_MAP)
    report = harvest(source, writer, options=HarvestOptions(val_cameras=("cam-c",), progress=False))
    assert case.case_id not in [c["case_id"] for c in report.cases]
    assert report.skipped["alert without a clean frame (the evidence JPEG has boxes drawn on it: refused)"] == 2
    assert not list((tmp_path / "ds").glob(f"images/*/case{case.case_id}_*"))


def test_harvesting_into_a_used_folder_refuses_and_overwrite_empties_it(seeded_central, tmp_path):
    central = seeded_central
    root = tmp_path / "ds"
    options = HarvestOptions(val_cameras=("cam-c",), progress=False)
    writer = DatasetWriter(root, DEFAULT_CLASS_MAP)
    harvest(DatabaseSource(central.url, central.evidence_dir), writer, options=options)
    writer.finish()
    stale = root / "images" / "val" / "stale_from_an_earlier_harvest.jpg"
    stale.write_bytes(b"old")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(DatasetError, match=r"ds: not empty .* --overwrite to empty it first"):
        DatasetWriter(root, DEFAULT_CLASS_MAP)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # refused: nothing touched
    writer = DatasetWriter(root, DEFAULT_CLASS_MAP, overwrite=True)
    harvest(DatabaseSource(central.url, central.evidence_dir), writer, options=options)
    writer.finish()
    assert not stale.exists()
    images = {p.name for p in root.glob("images/*/*.jpg")}
    assert len(images) == writer.summary.images["train"] + writer.summary.images["val"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.txt").write_text("mine")
    with pytest.raises(DatasetError, match="empties only a dataset folder"):
        DatasetWriter(other, DEFAULT_CLASS_MAP, overwrite=True)
    assert (other / "thesis.txt").read_text() == "mine"


@pytest.mark.parametrize("seed", range(30))
def test_the_split_never_puts_a_camera_in_both_and_warns_when_lopsided(seed):
    rng = np.random.default_rng(seed)
    cameras = {f"cam-{i}": int(rng.integers(1, 40)) for i in range(int(rng.integers(2, 12)))}
    plan = split_by_images(cameras, val_fraction=0.2)
    assert set(plan.splits) == set(cameras) and set(plan.splits.values()) == {"train", "val"}
    val = sum(n for c, n in cameras.items() if plan.splits[c] == "val") / sum(cameras.values())
    assert (0.1 <= val <= 0.4) or plan.warnings, (cameras, plan)


def test_two_cameras_five_to_one_puts_the_small_one_in_val_and_a_minimum_refuses():
    plan = split_by_images({"cam-a": 5, "cam-b": 1}, val_fraction=0.2)
    assert plan.splits == {"cam-a": "train", "cam-b": "val"} and plan.warnings == ()
    lopsided = split_by_images({"cam-a": 5, "cam-b": 1}, val_fraction=0.2, val_cameras=["cam-a"])
    assert lopsided.warnings and "val holds 5 of 6 images (83%, asked 20%)" in lopsided.warnings[0]
    with pytest.raises(DatasetError, match=r"\['val'\] would hold \[0\] image\(s\), fewer than --min-per-split 1"):
        split_by_images({"cam-a": 5}, val_fraction=0.2, min_per_split=1)


def test_the_harvested_dataset_keeps_each_camera_in_one_split(seeded_central, tmp_path):
    writer = DatasetWriter(tmp_path / "ds", DEFAULT_CLASS_MAP)
    harvest(DatabaseSource(seeded_central.url, seeded_central.evidence_dir), writer,
            options=HarvestOptions(progress=False, val_fraction=0.3))
    writer.finish()
    cameras = read_cameras(tmp_path / "ds")
    assert cameras["train"] and cameras["val"] and not set(cameras["train"]) & set(cameras["val"])
    for split, record in sidecars(tmp_path / "ds").values():
        assert record["camera_id"] in cameras[split]


@pytest.mark.parametrize(
    ("violation", "detector_class", "expected"),
    [
        ("illegal_parking", "car", "vehicle"),
        ("illegal_parking", "static_region", "goods"),  # the class map's own mapping
        ("stacked_goods", "static_region", "goods"),
        ("street_vending", "umbrella", "stall"),
        ("street_vending", "bicycle", "stall"),  # a cart: no COCO class means stall
        ("street_vending", "person", "person"),  # the vendor stays a person
        ("stacked_goods", "car", "vehicle"),
        ("illegal_parking", "dog", None),
    ],
)
def test_subjects_become_the_classes_the_loop_grows(violation, detector_class, expected):
    index = subject_index(violation, detector_class, DEFAULT_CLASS_MAP)
    assert (DEFAULT_CLASS_MAP.names[index] if index is not None else None) == expected


def test_complete_labels_keep_reviewed_boxes_add_pseudo_and_drop_them_on_negatives():
    objects = [("car", (0.0, 0.0, 10.0, 10.0))]
    detections = [(0, (0.5, 0.0, 10.5, 10.0), 0.9), (0, (50.0, 50.0, 60.0, 60.0), 0.8), (1, (20, 20, 30, 40), 0.7)]
    confirmed = complete_labels(positive=True, violation="illegal_parking", objects=objects,
                                detections=detections, class_map=DEFAULT_CLASS_MAP)
    assert [(b.class_index, b.source) for b in confirmed.boxes] == [(0, "confirmed"), (0, "pseudo"), (1, "pseudo")]
    assert confirmed.pseudo_dropped == 1 and confirmed.negative_regions == ()  # the duplicate of the reviewed box
    dismissed = complete_labels(positive=False, violation="illegal_parking", objects=objects,
                                detections=detections, class_map=DEFAULT_CLASS_MAP)
    assert dismissed.negative_regions == ((0.0, 0.0, 10.0, 10.0),)  # the false car: background
    assert [(b.xyxy, b.source) for b in dismissed.boxes] == [((50.0, 50.0, 60.0, 60.0), "pseudo"),
                                                              ((20, 20, 30, 40), "pseudo")]  # the rest stays


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
    with pytest.raises(ValueError, match=r"\['street_v1'\] already in the manifest"):
        add_entry(manifest, entry)
    assert manifest.read_text() == text_after  # unchanged on error
    add_entry(manifest, entry, replace=True)
    assert [m.name for m in load_manifest(manifest).models] == ["yolox_nano", "street_v1"]


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_the_manifest_keeps_its_mode_and_is_replaced_atomically(tmp_path, model_dir, mode):
    manifest = tmp_path / "manifest.yaml"
    shutil.copyfile(REPO / "streetwatch" / "models" / "manifest.yaml", manifest)
    manifest.chmod(mode)
    inode = manifest.stat().st_ino
    onnx_file = tmp_path / "street_v1.onnx"
    shutil.copyfile(model_dir / "yolox_nano.onnx", onnx_file)
    add_entry(manifest, make_entry(onnx_file, name="street_v1", class_map=DEFAULT_CLASS_MAP, input_size=(416, 416)))
    assert manifest.stat().st_mode & 0o777 == mode  # an edge running as another user still reads it
    assert manifest.stat().st_ino != inode  # a new file renamed over the old one, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.yaml", "street_v1.onnx"]  # no temp left


def test_install_never_overwrites_a_file_the_manifest_names(tmp_path, model_dir):
    manifest = load_manifest(REPO / "streetwatch" / "models" / "manifest.yaml")
    export = tmp_path / "export.onnx"
    shutil.copyfile(model_dir / "yolox_nano.onnx", export)
    folder = tmp_path / "models"
    first = install_model_file(export, folder, name="street_v1", manifest=manifest)
    assert first.name == versioned_file_name("street_v1", file_sha256(export))
    assert install_model_file(export, folder, name="street_v1", manifest=manifest) == first  # same bytes: kept
    export.write_bytes(export.read_bytes() + b"\0")
    second = install_model_file(export, folder, name="street_v1", manifest=manifest)
    assert second != first and first.read_bytes() == (model_dir / "yolox_nano.onnx").read_bytes()


def test_training_modules_do_not_import_torch():
    code = (
        "import sys, streetwatch.training.harvest, streetwatch.training.dataset, streetwatch.training.merge, "
        "streetwatch.training.operational, streetwatch.training.quantize, streetwatch.training.manifest_update, "
        "streetwatch.training.models, streetwatch.training.ultra, streetwatch.training.torch_env;"
        "bad = sorted(m for m in ('torch', 'ultralytics', 'torchvision') if m in sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("kept", "reference", "force", "added", "why"),
    [
        (19, 20, False, True, "keeps 95% of FP32's detections (>= 95%)"),
        (18, 20, False, False, "keeps 90% of FP32's detections, below --int8-min-kept 95%"),
        (0, 0, False, False, "FP32 found nothing on the calibration images, so agreement is undefined"),
        (0, 0, True, True, "--force-int8"),
    ],
)
def test_the_int8_gate_has_a_defined_result_when_fp32_finds_nothing(kept, reference, force, added, why):
    result, reason = int8_gate(kept, reference, min_kept=0.95, force=force)
    assert result is added and reason.startswith(why)
