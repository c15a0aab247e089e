"""Per-camera overrides: a camera's `rules` (only the fields it gives, over the box-wide rules) and
its `score_threshold` (over model.score_threshold), in the config and in what the real detector
and rules then do on real footage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import yaml

from streetwatch.edge.cli import main
from streetwatch.edge.config import ConfigError, EdgeConfig, load_edge_config
from streetwatch.edge.detector import above_threshold

STREET_CLIP = "video/cvtrafficcam_street_parking.mp4"  # about 8 cars parked for the whole 75 s
ZONE = {"id": "z-street", "violations": ["illegal_parking"], "dwell_s": 20,
        "polygon_px": [[0, 0], [640, 0], [640, 360], [0, 360]]}


def config(**camera: object) -> EdgeConfig:
    return EdgeConfig.model_validate({
        "edge_id": "box-01", "model": {"score_threshold": 0.3},
        "rules": {"end_after_s": 45, "reminder_interval_s": 600, "moving": {"pass_gap_s": 40}},
        "cameras": [{"id": "cam-1", "url": "a.mp4", **camera}, {"id": "cam-2", "url": "b.mp4"}],
    })


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        ({}, {"end_after_s": 45, "reminder_interval_s": 600, "min_median_score": 0.35, "pass_gap_s": 40}),
        ({"rules": {"end_after_s": 120}}, {"end_after_s": 120, "reminder_interval_s": 600, "pass_gap_s": 40}),
        ({"rules": {"moving": {"min_frames": 5}}}, {"end_after_s": 45, "pass_gap_s": 40, "min_frames": 5}),
        ({"rules": {"min_median_score": 0.6}}, {"min_median_score": 0.6, "end_after_s": 45}),
    ],
)
def test_a_camera_rules_override_changes_only_its_fields(camera: dict[str, object], expected: dict[str, float]) -> None:
    box = config(**camera)
    rules = box.rules_for(box.cameras[0])
    values = {**rules.model_dump(), **rules.moving.model_dump()}
    assert {key: values[key] for key in expected} == expected
    assert box.rules_for(box.cameras[1]) == box.rules  # the other camera keeps the box's rules


@pytest.mark.parametrize(
    ("camera", "field", "phrase"),
    [
        ({"rules": {"end_after_s": 0}}, "cameras.0.rules.end_after_s", "greater than or equal to 1"),
        ({"rules": {"end_afer_s": 10}}, "cameras.0.rules.end_afer_s", "Extra inputs"),
        ({"score_threshold": 0}, "cameras.0.score_threshold", "greater than or equal to 0.01"),
        ({"score_threshold": 1.5}, "cameras.0.score_threshold", "less than or equal to 1"),
    ],
)
def test_a_bad_override_names_the_camera_field(tmp_path: Path, camera: dict[str, object], field: str,
                                               phrase: str) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump({"edge_id": "box-01", "cameras": [{"id": "cam-1", "url": "a.mp4", **camera}]}))
    with pytest.raises(ConfigError) as err:
        load_edge_config(path)
    assert field in str(err.value) and phrase in str(err.value)


def test_thresholds_per_camera_and_the_session_takes_the_lowest() -> None:
    box = config(score_threshold=0.6)
    assert [box.score_threshold_for(c) for c in box.cameras] == [0.6, 0.3]
    assert box.model_for(box.cameras).score_threshold == 0.3
    assert box.model_for(box.cameras[:1]).score_threshold == 0.6


def test_above_threshold_keeps_the_detections_a_camera_wants() -> None:
    detections = sv.Detections(xyxy=np.array([[0, 0, 9, 9], [1, 1, 8, 8], [2, 2, 7, 7]], float),
                               confidence=np.array([0.31, 0.59, 0.9]), class_id=np.array([2, 2, 2]))
    assert above_threshold(detections, 0.3) is detections
    assert above_threshold(detections, 0.6).confidence.tolist() == [0.9]
    assert len(above_threshold(sv.Detections.empty(), 0.6)) == 0


def replay(tmp_path: Path, assets_dir: Path, name: str, camera: dict[str, object]) -> list[dict[str, object]]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "edge_id": "box-01", "outbox": str(tmp_path / "o.sqlite"),
        "cameras": [{"id": "cam-street", "url": "unused.mp4", "sample_fps": 1, "zones": [ZONE], **camera}],
    }))
    out = tmp_path / f"{name}.jsonl"
    assert main(["replay", str(assets_dir / STREET_CLIP), "--config", str(path), "--out", str(out),
                 "--no-progress"]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.slow
def test_overrides_change_what_the_real_detector_and_rules_report(
    tmp_path: Path, assets_dir: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
    plain = replay(tmp_path, assets_dir, "plain", {})
    assert plain, "the parked cars alert with the box-wide settings"
    strict_score = replay(tmp_path, assets_dir, "strict-score", {"score_threshold": 0.97})
    strict_rules = replay(tmp_path, assets_dir, "strict-rules", {"rules": {"min_median_score": 0.97}})
    assert strict_score == [] and strict_rules == []
    reminders = replay(tmp_path, assets_dir, "reminders", {"rules": {"reminder_interval_s": 10}})
    assert len(reminders) > len(plain)  # reminders every 10 s of stream instead of every 15 min
