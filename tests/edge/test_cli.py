"""The `edge` command line as an operator meets it: calibrate output, clear errors, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streetwatch.edge import cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "edge.example.yaml"


def test_calibrate_prints_reprojection_error_in_metres(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = yaml.safe_load(EXAMPLE.read_text())
    points = config["cameras"][0]["calibration"]["points"]
    # A fifth point 0.00009 degrees (~10 m) off where the other four put it: the report must show it.
    points.append([[960, 870], [31.30009, 120.58570]])
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(config))

    assert cli.main(["calibrate", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cam-001" in out and "5 calibration points" in out
    rmse = float(out.split("RMSE ")[1].split(" m")[0])
    assert 1.0 < rmse < 20.0


def test_config_error_exits_2_naming_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("edge_id: box-01\ncameras:\n  - id: cam-1\n    url: x.mp4\n    sample_fps: -1\n")
    assert cli.main(["calibrate", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "cameras.0.sample_fps" in err


def test_replay_refuses_missing_video_and_unknown_camera(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["replay", "missing.mp4", "--config", str(EXAMPLE)]) == 2
    assert "missing.mp4: no such video file" in capsys.readouterr().err
    assert cli.main(["replay", "missing.mp4", "--config", str(EXAMPLE), "--camera", "cam-9"]) == 2
    assert "--camera 'cam-9' is not in the config" in capsys.readouterr().err

