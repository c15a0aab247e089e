"""The live worker with two detection loops: each camera is analysed by one loop, each loop has its own
onnxruntime session sharing the cores, every camera's alert reaches the outbox once, and an error
in one loop stops the worker and is raised.

Two cameras replay the same real kerb-street clip (the green car parked at the right kerb, held still
with sensor noise, 1 fps); no broker runs, so the alerts stay in the outbox, where they are read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import pytest
from clips import still_scene, write_h264_clip
from support import free_port

from streetwatch.edge.config import EdgeConfig
from streetwatch.edge.outbox import Outbox
from streetwatch.edge.worker import EdgeWorker

GREEN_CAR_ZONE = [[620, 340], [740, 340], [740, 385], [620, 385]]


@pytest.fixture(scope="module")
def kerb_clip(street_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    image = cv2.imread(str(street_dir / "kerb_parked_cars_street.jpg"))
    frames = still_scene(image, seconds=40, fps=1, noise_sigma=2.0, seed=5)
    return write_h264_clip(tmp_path_factory.mktemp("loops") / "kerb.mp4", frames, fps=1)


def two_camera_config(tmp_path: Path, clip: Path, model_dir: Path) -> EdgeConfig:
    camera = {
        "kind": "fixed",
        "url": str(clip),
        "sample_fps": 1,
        "zones": [{"id": "z-kerb", "violations": ["illegal_parking"], "polygon_px": GREEN_CAR_ZONE, "dwell_s": 10}],
    }
    return EdgeConfig.model_validate(
        {
            "edge_id": "box-loops",
            # Nothing listens here: alerts stay in the outbox for the test to read.
            "broker": {"url": f"mqtt://127.0.0.1:{free_port()}"},
            "model": {"name": "yolox_nano", "model_dir": str(model_dir), "detection_loops": 2},
            "outbox": str(tmp_path / "outbox.sqlite"),
            "metrics_port": 0,
            "rules": {"reminder_interval_s": 900, "end_after_s": 60},
            "cameras": [{"id": "cam-a", **camera}, {"id": "cam-b", **camera}],
        }
    )


def test_two_loops_split_the_cameras_and_every_alert_arrives_once(
    tmp_path: Path, kerb_clip: Path, model_dir: Path
) -> None:
    worker = EdgeWorker(two_camera_config(tmp_path, kerb_clip, model_dir))
    assert [[s.camera_id for s in loop.sources] for loop in worker.loops] == [["cam-a"], ["cam-b"]]
    assert worker.loops[0].detector is not worker.loops[1].detector
    cores = len(os.sched_getaffinity(0))
    for loop in worker.loops:  # the cores are shared, not each session taking them all
        threads = loop.detector._session.get_session_options().intra_op_num_threads
        assert threads == max(1, cores // 2)
    worker.start()
    try:
        worker.run(drain_timeout_s=0)
    finally:
        worker.stop()
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        alerts = [json.loads(item.payload) for item in outbox.pending(limit=1000)]
    found = sorted((a["camera_id"], a["violation"], a["state"]) for a in alerts)
    assert found == [("cam-a", "illegal_parking", "active"), ("cam-b", "illegal_parking", "active")]


def test_an_error_in_one_loop_stops_the_worker_and_is_raised(
    tmp_path: Path, kerb_clip: Path, model_dir: Path
) -> None:
    worker = EdgeWorker(two_camera_config(tmp_path, kerb_clip, model_dir))

    def broken(_pictures: object) -> None:
        raise RuntimeError("inference failed on the second session")

    worker.loops[1].detector.detect_batch = broken  # type: ignore[method-assign, assignment]
    worker.start()
    try:
        with pytest.raises(RuntimeError, match="second session"):
            worker.run(drain_timeout_s=0)
    finally:
        worker.stop()
    assert worker.loops[0].sources[0].frames_sampled < 40  # the healthy loop stopped too, early


def test_automatic_loops_one_per_core_on_cpu_at_most_one_per_camera_and_one_with_a_gpu(
    tmp_path: Path, kerb_clip: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streetwatch.edge import worker as worker_module

    config = two_camera_config(tmp_path, kerb_clip, model_dir)
    auto = config.model_copy(update={"model": config.model.model_copy(update={"detection_loops": 0})})
    one_camera = auto.model_copy(update={"cameras": auto.cameras[:1]})
    cores = len(os.sched_getaffinity(0))
    assert worker_module.detection_loops_for(auto) == min(cores, 2)
    assert worker_module.detection_loops_for(one_camera) == 1
    assert worker_module.detection_loops_for(config) == 2  # set explicitly
    monkeypatch.setattr(
        worker_module.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert worker_module.detection_loops_for(auto) == 1  # one session feeds the GPU
