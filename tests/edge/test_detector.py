"""The edge detector on the real YOLOX-Nano model and real street photos, plus the Ultralytics
decoder on synthetic outputs (no Ultralytics export exists here; a tiny ONNX graph stands in).

Reference boxes and scores are the ones documented in /work/shared/assets/street/SOURCES.md,
produced there by an independent implementation of the same YOLOX recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import supervision as sv
from onnx import TensorProto, helper, numpy_helper

import streetwatch.edge.manifest as manifest_module
from streetwatch.edge.config import ModelConfig
from streetwatch.edge.detector import (
    Detector,
    Letterbox,
    UltralyticsFormat,
    YoloxFormat,
    create_session,
    letterbox_into,
    select_providers,
)
from streetwatch.edge.manifest import ModelEntry, ModelError, load_manifest, resolve_model

# (x1, y1, x2, y2), score: street/SOURCES.md, YOLOX-Nano @0.3
KERB_CARS = [
    ((586, 322, 713, 367), 0.73),
    ((259, 321, 318, 363), 0.71),
    ((358, 314, 404, 349), 0.53),
    ((306, 314, 358, 356), 0.52),
    ((552, 316, 613, 356), 0.39),
]
MARKET_PERSONS = [
    ((224, 128, 286, 308), 0.86),
    ((340, 196, 430, 296), 0.81),  # the squatting vendor
    ((433, 87, 516, 387), 0.78),
    ((280, 132, 338, 297), 0.78),
    ((195, 152, 227, 246), 0.73),
    ((0, 24, 172, 480), 0.72),
    ((473, 0, 638, 474), 0.64),
    ((559, 31, 640, 480), 0.58),
    ((110, 110, 170, 288), 0.55),
]
VEHICLES = {"car", "truck", "bus", "motorcycle"}


def read(street_dir: Path, name: str) -> np.ndarray:
    image = cv2.imread(str(street_dir / name))
    assert image is not None, f"cannot read {street_dir / name}"
    return image


@pytest.fixture(scope="module")
def detector(model_dir: Path) -> Detector:
    return Detector.from_config(ModelConfig(model_dir=model_dir, threads=2))


def only(detections: sv.Detections, field: str, value: str) -> sv.Detections:
    """The detections whose data[field] == value (typed: supervision's __getitem__ returns a union)."""
    subset = detections[np.asarray(detections.data[field]) == value]
    assert isinstance(subset, sv.Detections)
    return subset


def scores(detections: sv.Detections) -> np.ndarray:
    assert detections.confidence is not None
    return detections.confidence


def matched(detections: sv.Detections, reference: list, cls: str, *, iou: float = 0.8) -> int:
    """How many reference boxes have a detection of class `cls` with IoU >= iou."""
    boxes = detections.xyxy[detections.data["class_name"] == cls]
    if len(boxes) == 0:
        return 0
    ious = sv.box_iou_batch(np.array([box for box, _ in reference], dtype=float), boxes)
    return int((ious.max(axis=1) >= iou).sum())


def reference_mismatches(detections: sv.Detections, reference: list, cls: str) -> list[str]:
    """Reference entries not reproduced: same class, IoU >= 0.9 and score within 0.02."""
    ours = only(detections, "class_name", cls)
    problems = (
        [f"{len(ours)} {cls} detections, reference has {len(reference)}"]
        if len(ours) != len(reference)
        else []
    )
    for box, score in reference:
        ious = sv.box_iou_batch(np.array([box], dtype=float), ours.xyxy)[0] if len(ours) else np.zeros(1)
        best = int(ious.argmax())
        if ious[best] < 0.9 or abs(float(scores(ours)[best]) - score) > 0.02:
            problems.append(f"{cls} {box} {score} not reproduced")
    return problems


# --- real model, real photos -------------------------------------------------------------------


def test_parked_cars_at_the_kerb_are_found(detector: Detector, street_dir: Path) -> None:
    image = read(street_dir, "kerb_parked_cars_street.jpg")
    detections = detector.detect(image)
    cars = only(detections, "class_name", "car")
    assert len(cars) >= 4
    assert matched(detections, KERB_CARS, "car") >= 4
    assert set(cars.data["role"]) == {"vehicle"}
    assert detections.xyxy.dtype == np.float32
    height, width = image.shape[:2]
    assert (detections.xyxy >= 0).all() and (detections.xyxy[:, [0, 2]] <= width).all()
    assert (detections.xyxy[:, [1, 3]] <= height).all()


def test_market_people_including_the_squatting_vendor(detector: Detector, street_dir: Path) -> None:
    detections = detector.detect(read(street_dir, "market_hanoi_goods_on_ground.jpg"))
    persons = only(detections, "role", "person")
    assert len(persons) >= 6
    assert matched(detections, MARKET_PERSONS[1:2], "person") == 1


def test_aerial_road_gives_no_vehicle(detector: Detector, street_dir: Path) -> None:
    detections = detector.detect(read(street_dir, "aerial_winding_road_cars.jpg"))
    assert "vehicle" not in set(detections.data["role"])


@pytest.mark.parametrize(
    ("image_name", "reference", "cls"),
    [
        ("kerb_parked_cars_street.jpg", KERB_CARS, "car"),
        ("market_hanoi_goods_on_ground.jpg", MARKET_PERSONS, "person"),
    ],
)
def test_reproduces_documented_yolox_output(
    detector: Detector, street_dir: Path, image_name: str, reference: list, cls: str
) -> None:
    assert reference_mismatches(detector.detect(read(street_dir, image_name)), reference, cls) == []


def _rgb(tensor: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(tensor[:, ::-1])


def _unit_range(tensor: np.ndarray) -> np.ndarray:
    return tensor / np.float32(255)


def _centred(tensor: np.ndarray) -> np.ndarray:
    canvas = np.ascontiguousarray(tensor[0].transpose(1, 2, 0)).astype(np.uint8)
    content = canvas[: int(np.flatnonzero(np.any(canvas != 114, axis=(1, 2))).max()) + 1]
    shifted = np.full_like(canvas, 114)
    top = (canvas.shape[0] - content.shape[0]) // 2
    shifted[top : top + content.shape[0]] = content
    return shifted.transpose(2, 0, 1)[None].astype(np.float32)


@pytest.mark.parametrize("corrupt", [_rgb, _unit_range, _centred], ids=["rgb", "div255", "centred_paste"])
def test_wrong_preprocessing_is_caught_by_the_reference_check(
    detector: Detector, street_dir: Path, corrupt: Callable[[np.ndarray], np.ndarray]
) -> None:
    """The reference check above fails if pre-processing regresses to a plausible wrong recipe."""
    image = read(street_dir, "kerb_parked_cars_street.jpg")
    prepared = detector.preprocess([image])
    good = detector.postprocess(detector.infer_raw(prepared.tensor), prepared.letterboxes)[0]
    assert reference_mismatches(good, KERB_CARS, "car") == []
    bad_tensor = corrupt(prepared.tensor.copy())
    bad = detector.postprocess(detector.infer_raw(bad_tensor), prepared.letterboxes)[0]
    assert reference_mismatches(bad, KERB_CARS, "car") != []


def test_unmapped_classes_dropped_by_default_and_kept_on_request(model_dir: Path, street_dir: Path) -> None:
    image = read(street_dir, "market_hanoi_goods_on_ground.jpg")
    config = ModelConfig(model_dir=model_dir, threads=2)
    default = Detector.from_config(config).detect(image)
    everything = Detector.from_config(config, keep_unmapped=True).detect(image)
    assert "ignore" not in set(default.data["role"])
    bicycles = only(everything, "class_name", "bicycle")
    assert len(bicycles) >= 1 and set(bicycles.data["role"]) == {"ignore"}
    assert len(everything) - len(only(everything, "role", "ignore")) == len(default)


def assert_same_detections(a: sv.Detections, b: sv.Detections) -> None:
    assert list(a.data["class_name"]) == list(b.data["class_name"])
    assert list(a.data["role"]) == list(b.data["role"])
    np.testing.assert_array_equal(a.class_id, b.class_id)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.05)
    np.testing.assert_allclose(scores(a), scores(b), atol=1e-4)


BATCH_IMAGES = [
    "kerb_parked_cars_street.jpg",
    "market_hanoi_goods_on_ground.jpg",
    "kerb_pickup_truck_scooter.jpg",
]


def test_batch_equals_single_calls_fixed_batch_model(detector: Detector, street_dir: Path) -> None:
    images = [read(street_dir, name) for name in BATCH_IMAGES]
    assert detector.max_batch == 1  # the shipped export has a fixed batch of 1: frames run one by one
    batch = detector.detect_batch(images)
    assert len(batch) == 3 and len(batch[0]) >= 4
    for image, result in zip(images, batch, strict=True):
        assert_same_detections(result, detector.detect(image))


def dynamic_batch_yolox(path: Path) -> bytes:
    """The real YOLOX-Nano graph with its batch dimension made dynamic (as a batch export would be)."""
    model = onnx.load(str(path))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.int64 and array.tolist() == [1, 85, -1]:  # the head's Reshape targets
            init.CopyFrom(numpy_helper.from_array(np.array([0, 85, -1], dtype=np.int64), init.name))
    return model.SerializeToString()


def test_batch_equals_single_calls_dynamic_batch_model(model_dir: Path, street_dir: Path) -> None:
    resolved = resolve_model("yolox_nano", model_dir=model_dir)
    config = ModelConfig(model_dir=model_dir, batch_size=4, threads=2)
    session = create_session(dynamic_batch_yolox(resolved.path), providers=config.providers, threads=2)
    batched = Detector(session, resolved.entry, config=config)
    assert batched.max_batch == 4
    images = [read(street_dir, name) for name in BATCH_IMAGES]
    assert batched.preprocess(images).tensor.shape == (3, 3, 416, 416)  # stacked into one run
    results = batched.detect_batch(images)
    assert matched(results[0], KERB_CARS, "car") >= 4
    for image, result in zip(images, results, strict=True):
        assert_same_detections(result, batched.detect(image))


def test_model_ref_and_input_size(detector: Detector) -> None:
    assert detector.model_ref.name == "yolox_nano"
    assert detector.model_ref.sha256 == load_manifest().entry("yolox_nano").sha256
    assert detector.input_size == (416, 416)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32)])
def test_bad_image_is_rejected_with_shape_and_dtype(detector: Detector, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"expected a BGR uint8 image of shape \(H, W, 3\)"):
        detector.detect(bad)


def test_missing_model_fails_at_construction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREETWATCH_MODEL_DIR", raising=False)
    monkeypatch.setattr(manifest_module, "REPO_MODELS_DIR", tmp_path)  # models/ may hold a fetched copy
    with pytest.raises(ModelError, match=str(tmp_path / "yolox_nano.onnx")):
        Detector.from_config(ModelConfig(model_dir=tmp_path))


def test_manifest_input_size_must_match_the_onnx_file(model_dir: Path) -> None:
    resolved = resolve_model("yolox_nano", model_dir=model_dir)
    wrong = resolved.entry.model_copy(update={"input_size": (640, 640)})
    session = create_session(str(resolved.path), providers=["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="input_size"):
        Detector(session, wrong)


def test_manifest_classes_must_match_the_onnx_output(model_dir: Path) -> None:
    resolved = resolve_model("yolox_nano", model_dir=model_dir)
    wrong = resolved.entry.model_copy(update={"classes": resolved.entry.classes[:79]})
    session = create_session(str(resolved.path), providers=["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="79 manifest classes"):
        Detector(session, wrong)


# --- providers ---------------------------------------------------------------------------------

CPU, CUDA, TRT, OV = (
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "OpenVINOExecutionProvider",
)


@pytest.mark.parametrize(
    ("requested", "available", "expected"),
    [
        ([CUDA, CPU], [CPU], [CPU]),
        ([CUDA], [CPU], [CPU]),
        ([], [CPU], [CPU]),
        ([TRT, CUDA, CPU], [TRT, CUDA, CPU], [TRT, CUDA, CPU]),
        ([CUDA, TRT], [TRT, CUDA, CPU], [CUDA, TRT, CPU]),
        ([OV, CPU], [OV, CPU], [OV, CPU]),
        ([CPU, CPU], [CPU], [CPU]),
    ],
)
def test_select_providers(requested: list[str], available: list[str], expected: list[str]) -> None:
    assert select_providers(requested, available) == expected


@pytest.mark.parametrize("requested", [[CUDA, CPU], [CUDA], [TRT, OV]])
def test_real_session_drops_unavailable_providers(model_dir: Path, requested: list[str]) -> None:
    assert CUDA not in ort.get_available_providers()  # this machine has no GPU
    detector = Detector.from_config(ModelConfig(model_dir=model_dir, providers=requested, threads=1))
    assert detector.providers == [CPU]


# --- letterbox ---------------------------------------------------------------------------------

SIZES = [(1920, 1080), (1080, 1920), (958, 568), (416, 416), (100, 50), (3000, 200), (7, 9)]


def place(image: np.ndarray, centred: bool, *, size: int = 416, out: np.ndarray | None = None,
          padded: bool = False) -> tuple[np.ndarray, Letterbox]:
    """Letterbox into a (3, size, size) tensor of the format (YOLOX top-left, Ultralytics centred);
    return the tensor read back as a BGR uint8 canvas, and the letterbox."""
    fmt = UltralyticsFormat() if centred else YoloxFormat((size, size))
    out = np.zeros((3, size, size), np.float32) if out is None else out
    box = letterbox_into(image, out, fmt, padded=padded)
    canvas = (out[::-1] * 255).round() if centred else out
    return canvas.transpose(1, 2, 0).astype(np.uint8), box


@pytest.mark.parametrize("centred", [False, True], ids=["top_left", "centred"])
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_letterbox_places_the_image_where_it_says(width: int, height: int, centred: bool) -> None:
    image = np.full((height, width, 3), (7, 200, 30), dtype=np.uint8)
    canvas, box = place(image, centred)
    rows = np.flatnonzero((canvas == (7, 200, 30)).all(axis=2).any(axis=1))
    cols = np.flatnonzero((canvas == (7, 200, 30)).all(axis=2).any(axis=0))
    assert (rows[0], cols[0]) == (box.pad_y, box.pad_x)
    assert rows[-1] + 1 == pytest.approx(box.pad_y + height * box.scale, abs=1)
    assert cols[-1] + 1 == pytest.approx(box.pad_x + width * box.scale, abs=1)
    assert (canvas[: rows[0]] == 114).all() and (canvas[rows[-1] + 1 :] == 114).all()
    if centred:
        assert abs(box.pad_y - (415 - rows[-1])) <= 1 and abs(box.pad_x - (415 - cols[-1])) <= 1
    else:
        assert box.pad_x == box.pad_y == 0


@pytest.mark.parametrize("centred", [False, True], ids=["top_left", "centred"])
def test_a_second_frame_of_the_same_size_keeps_the_pad_and_replaces_the_image(centred: bool) -> None:
    out = np.zeros((3, 416, 416), np.float32)
    place(np.full((1080, 1920, 3), 50, np.uint8), centred, out=out)
    canvas, box = place(np.full((1080, 1920, 3), 90, np.uint8), centred, out=out, padded=True)
    inside = canvas[box.pad_y : box.pad_y + 234, box.pad_x : box.pad_x + 416]
    assert (inside == 90).all()
    assert (canvas == 114).sum() == 416 * 416 * 3 - inside.size


@pytest.mark.parametrize("centred", [False, True], ids=["top_left", "centred"])
@pytest.mark.parametrize(("width", "height"), SIZES[:5])
def test_box_drawn_in_image_maps_back_from_the_canvas(width: int, height: int, centred: bool) -> None:
    """A white box drawn in the original is found in the canvas and mapped back to where it was."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = width // 4, height // 3, width * 3 // 4, height * 5 // 6
    image[y1:y2, x1:x2] = 255
    canvas, box = place(image, centred)
    white = np.all(canvas > 200, axis=2)
    ys, xs = np.flatnonzero(white.any(axis=1)), np.flatnonzero(white.any(axis=0))
    found = np.array([[xs[0], ys[0], xs[-1] + 1, ys[-1] + 1]], dtype=np.float32)
    back = box.to_original(found)[0]
    np.testing.assert_allclose(back, [x1, y1, x2, y2], atol=1.5 / box.scale + 1)


@pytest.mark.parametrize("centred", [False, True])
def test_to_original_inverts_to_input_and_clips(centred: bool) -> None:
    _, box = place(np.zeros((720, 1280, 3), np.uint8), centred, size=640)
    inside = np.array([[0, 0, 1280, 720], [100.5, 200.25, 300, 400]], dtype=np.float32)
    np.testing.assert_allclose(box.to_original(box.to_input(inside)), inside, atol=1e-3)
    outside = np.array([[-50, -20, 1400, 800]], dtype=np.float32)
    np.testing.assert_allclose(box.to_original(box.to_input(outside)), [[0, 0, 1280, 720]])


# --- input tensors -----------------------------------------------------------------------------


def test_yolox_tensor_is_bgr_0_255_without_normalisation() -> None:
    image = np.full((416, 416, 3), (10, 20, 30), dtype=np.uint8)
    out = np.empty((3, 416, 416), dtype=np.float32)
    YoloxFormat((416, 416)).write_pixels(image, out)
    np.testing.assert_array_equal(out[:, 5, 7], [10, 20, 30])


def test_ultralytics_tensor_is_rgb_0_1() -> None:
    image = np.full((640, 640, 3), (10, 20, 255), dtype=np.uint8)
    out = np.empty((3, 640, 640), dtype=np.float32)
    UltralyticsFormat().write_pixels(image, out)
    np.testing.assert_allclose(out[:, 5, 7], [1.0, 20 / 255, 10 / 255], rtol=1e-6)


# --- Ultralytics decoder on a synthetic output -------------------------------------------------

U_CLASSES = ["person", "bicycle", "car", "umbrella"]
U_ENTRY = ModelEntry(
    name="yolo_synthetic",
    file="yolo_synthetic.onnx",
    sha256="0" * 64,
    format="ultralytics",
    input_size=(640, 640),
    classes=U_CLASSES,
    roles={"person": "person", "car": "vehicle", "umbrella": "vending_prop"},
    license="test",
    source="file:///nowhere",
)
# A 1280x720 frame letterboxed centred into 640x640: scale 0.5, 640x360 content, 140 px bars top/bottom.
U_LETTERBOX = Letterbox(scale=0.5, pad_x=0, pad_y=140, width=1280, height=720)
# (class, score, original-pixel box, expected output box or None if it must not survive)
U_BOXES = [
    ("car", 0.90, (100, 200, 300, 300), (100, 200, 300, 300)),
    ("car", 0.80, (104, 204, 304, 302), None),  # same car, lower score: NMS removes it
    ("person", 0.70, (110, 210, 300, 300), (110, 210, 300, 300)),  # overlaps the car: other class stays
    ("umbrella", 0.60, (1000, 50, 1200, 400), (1000, 50, 1200, 400)),
    ("bicycle", 0.95, (500, 500, 600, 600), None),  # no role: dropped by default
    ("car", 0.50, (1200, 600, 1350, 760), (1200, 600, 1280, 720)),  # runs off the frame: clipped
    ("car", 0.20, (700, 100, 800, 200), None),  # below the 0.3 threshold
]


def synthetic_ultralytics_output(anchors: int = 200) -> np.ndarray:
    """(1, 4 + nc, anchors): background anchors with low scores plus the U_BOXES rows."""
    rng = np.random.default_rng(7)
    out = np.zeros((1, 4 + len(U_CLASSES), anchors), dtype=np.float32)
    out[0, 0:2] = rng.uniform(0, 640, (2, anchors))
    out[0, 2:4] = rng.uniform(5, 100, (2, anchors))
    out[0, 4:] = rng.uniform(0, 0.1, (len(U_CLASSES), anchors))
    positions = rng.choice(anchors, len(U_BOXES), replace=False)
    for column, (cls, score, box, _) in zip(positions, U_BOXES, strict=True):
        x1, y1, x2, y2 = U_LETTERBOX.to_input(np.array([box]))[0]
        out[0, 0:4, column] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        out[0, 4 + U_CLASSES.index(cls), column] = score
    return out


def constant_output_model(output: np.ndarray, *, input_hw: tuple[int, int]) -> bytes:
    """An ONNX graph with an `images` input that returns `output` (stands in for a real export)."""
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *input_hw])
    result = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))
    const = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(output, "c"))
    # output0 = c + 0 * mean(images): keeps the input in the graph, like a real model
    mean = helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0)
    zero = helper.make_node("Mul", ["m", "z"], ["mz"])
    add = helper.make_node("Add", ["c", "mz"], ["output0"])
    graph = helper.make_graph(
        [const, mean, zero, add],
        "synthetic",
        [images],
        [result],
        initializer=[numpy_helper.from_array(np.array(0, dtype=np.float32), "z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("keep_unmapped", [False, True])
def test_ultralytics_model_end_to_end_on_synthetic_output(keep_unmapped: bool) -> None:
    session = create_session(
        constant_output_model(synthetic_ultralytics_output(), input_hw=(640, 640)),
        providers=["CPUExecutionProvider"],
    )
    detector = Detector(session, U_ENTRY, keep_unmapped=keep_unmapped)
    detections = detector.detect(np.zeros((720, 1280, 3), dtype=np.uint8))
    expected = [(cls, score, out) for cls, score, _, out in U_BOXES if out is not None]
    if keep_unmapped:
        expected.append(("bicycle", 0.95, (500, 500, 600, 600)))
    expected.sort(key=lambda row: -row[1])
    order = np.argsort(-scores(detections))
    assert [str(c) for c in detections.data["class_name"][order]] == [cls for cls, _, _ in expected]
    np.testing.assert_allclose(scores(detections)[order], [s for _, s, _ in expected], atol=1e-6)
    np.testing.assert_allclose(detections.xyxy[order], [b for _, _, b in expected], atol=1e-3)
    roles = {"car": "vehicle", "person": "person", "umbrella": "vending_prop", "bicycle": "ignore"}
    assert [str(r) for r in detections.data["role"][order]] == [roles[c] for c, _, _ in expected]


def test_ultralytics_decode_without_detections_gives_empty_arrays() -> None:
    output = synthetic_ultralytics_output()[0]
    output[4:] = 0.05  # nothing above threshold
    session = create_session(constant_output_model(output[None], input_hw=(640, 640)), providers=[CPU])
    detections = Detector(session, U_ENTRY).detect(np.zeros((720, 1280, 3), dtype=np.uint8))
    assert len(detections) == 0
    assert detections.xyxy.shape == (0, 4) and np.asarray(detections.data["role"]).shape == (0,)


@pytest.mark.parametrize("size", [(320, 240), (321, 241), (208, 156), (64, 48), (16, 16)])
def test_a_video_smaller_than_the_model_input_is_detected_not_refused(
    detector: Detector, street_dir: Path, size: tuple[int, int]
) -> None:
    """A 320x240 thermal or old analogue camera: the decoded picture is smaller than the 416 input.

    The view is rendered at the picture's own size and the letterbox enlarges it; boxes come back
    in the small picture's pixels. At 320x240 the kerb's parked cars are still found.
    """
    import av

    from streetwatch.edge.picture import AvPicture

    small = cv2.resize(read(street_dir, "kerb_parked_cars_street.jpg"), size, interpolation=cv2.INTER_AREA)
    frame = av.VideoFrame.from_ndarray(small, format="bgr24").reformat(format="yuv420p")  # as the decoder gives it
    detections = detector.detect(AvPicture(frame))
    assert np.all(detections.xyxy >= 0) and np.all(detections.xyxy[:, [0, 2]] <= size[0])
    assert np.all(detections.xyxy[:, [1, 3]] <= size[1])
    if size == (320, 240):
        assert set(detections.data["class_name"]) & VEHICLES
    assert len(detector.detect_batch([AvPicture(frame), small])) == 2  # mixed with arrays in one batch
