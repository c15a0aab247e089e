"""The `edge` command line as an operator meets it: calibrate and telemetry output, clear errors, exit codes."""

from __future__ import annotations

import json
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



# --- edge telemetry FILE ----------------------------------------------------------------------------------

def nmea_line(body: str) -> str:
    checksum = 0
    for ch in body:
        checksum ^= ord(ch)
    return f"${body}*{checksum:02X}"


DRIVE = [nmea_line(f"GNRMC,0800{s:02d}.00,A,3118.{s:03d},N,12035.000,E,10.0,2.0,010126,,,A") for s in range(5)]


def test_telemetry_summary_tells_an_operator_what_the_file_holds(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "van-7.log"
    path.write_text("\r\n".join([DRIVE[0], nmea_line("PMTK011,MTKGPS"), "garbage", *DRIVE[1:]]) + "\r\n")
    assert cli.main(["telemetry", str(path)]) == 0
    out = capsys.readouterr().out
    fields = dict(line.split(None, 1) for line in out.splitlines() if line and not line.startswith(" "))
    assert fields["format"] == "nmea: NMEA 0183" and fields["poses"] == "5"
    assert fields["time"].startswith("span     2026-01-01T08:00:00Z .. 2026-01-01T08:00:04Z (4.0 s)")
    assert fields["fix"] == "quality   gps 5"
    assert fields["projectable"].startswith("yes: as a vehicle camera: 5 of 5 poses have a heading")
    assert fields["skipped"] == "1"
    assert "malformed" in out and "line 3: not a checksummed NMEA sentence: 'garbage'" in out
    assert "proprietary" in out and "line 2: $PMTK011" in out


def test_telemetry_jsonl_prints_every_pose_as_one_json_line(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "van-7.nmea"
    path.write_text("\n".join(DRIVE) + "\n")
    assert cli.main(["telemetry", "--jsonl", str(path)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["t"] for r in records] == [f"2026-01-01T08:00:0{s}Z" for s in range(5)]
    assert records[1]["lat"] == pytest.approx(31.3 + 0.001 / 60) and records[1]["heading_deg"] == pytest.approx(2.0)
    assert records[0]["gimbal"] is None and records[0]["pitch_deg"] is None and records[0]["assumed"] == []


def test_telemetry_srt_with_clock_zone_and_gimbal_pitch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = [f"{i + 1}\n00:00:{i:02d},000 --> 00:00:{i + 1:02d},000\n<font size=\"36\">FrameCnt : {i + 1}, "
              f"DiffTime : 1000ms\n2020-04-02 15:19:{i:02d},000,000\n[focal_len : 240] [latitude : 31.3] "
              f"[longtitude : {120.5 + i * 1e-4:.4f}] [altitude: 80.0] </font>\n" for i in range(5)]
    path = tmp_path / "DJI_0007.SRT"
    path.write_text("\n".join(blocks))
    assert cli.main(["telemetry", str(path), "--clock-tz", "Asia/Shanghai"]) == 0
    out = capsys.readouterr().out
    assert "bracketed-longtitude (Mavic 2 Pro/Zoom" in out
    assert "2020-04-02T07:19:00Z" in out and "drone clock read as Asia/Shanghai" in out
    assert "projectable   no: no camera attitude" in out and "--gimbal-pitch" in out
    assert cli.main(["telemetry", str(path), "--gimbal-pitch", "-90"]) == 0
    out = capsys.readouterr().out
    assert "projectable   yes" in out and "heading from the flight path: 5" in out


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        (None, "auto", "no such file"),
        (b"hello, this is a shopping list\n", "auto", "not NMEA, GPX, DJI SRT or KLV by its content or its name"),
        (b"$GPRMC,080000.00,A,3118.000,N,12035.000,E,10,2,010126,,,A*00\n", "gpx", "line 1, column 1: not well-formed"),
        (b"", "auto", None),
    ],
)
def test_telemetry_problems_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 content: bytes | None, fmt: str, message: str | None) -> None:
    path = tmp_path / "mystery.dat"
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["telemetry", str(path), "--format", fmt]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err
    assert message is None or message in err


def test_telemetry_needs_no_config_and_refuses_an_unknown_zone(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "van.nmea"
    path.write_text("\n".join(DRIVE))
    assert cli.main(["telemetry", str(path), "--clock-tz", "Mars/Olympus"]) == 2
    assert "unknown IANA time zone 'Mars/Olympus'" in capsys.readouterr().err
    assert cli.main(["telemetry", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_version_and_config_schema(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == "edge (streetwatch) 0.1.0"
    assert cli.main(["config-schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "EdgeConfig" and schema["additionalProperties"] is False
    camera = schema["$defs"]["CameraConfig"]["properties"]
    assert {"rules", "score_threshold", "url"} <= set(camera)
    assert "description" in camera["score_threshold"]  # editors show the field's help


@pytest.mark.parametrize("missing", ["model", "outbox folder"])
def test_edge_run_without_its_model_or_outbox_folder_is_one_line(
    missing: str, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump({"edge_id": "box-01", "outbox": str(tmp_path / "no" / "outbox.sqlite"),
                                    "model": {"model_dir": str(tmp_path if missing == "model" else model_dir)},
                                    "cameras": [{"id": "cam-1", "url": "a.mp4"}]}))
    monkeypatch.delenv("STREETWATCH_MODEL_DIR", raising=False)
    monkeypatch.setattr("streetwatch.edge.manifest.REPO_MODELS_DIR", tmp_path / "none")
    assert cli.main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    expected = {"model": "edge run: model 'yolox_nano': file yolox_nano.onnx not found",
                "outbox folder": f"edge run: outbox {tmp_path / 'no' / 'outbox.sqlite'}: folder"}[missing]
    assert err.startswith(expected) and "Traceback" not in err, err
