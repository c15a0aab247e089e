"""`edge replay` / `edge run` with real videos: the clip lines up with its telemetry, and every video or
telemetry problem is one line naming the file, where and what, exit 2, no traceback.

The Tokyo walk (assets/video/tokyo_street_walk_pov.mp4) carries a real MP4 creation time
(2018-12-22T12:04:20Z); the fixed street camera (cvtrafficcam_street_parking.mp4) carries none.
The GPX tracks are written here, as a phone would have recorded the walk.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import pytest
import yaml

from streetwatch.edge import cli
from streetwatch.footage import load_image, still_scene, write_h264_clip

CREATED = datetime(2018, 12, 22, 12, 4, 20, tzinfo=UTC)  # tokyo_street_walk_pov.mp4's creation_time


def walk_gpx(start: datetime, seconds: int = 60) -> str:
    points = "".join(
        f'<trkpt lat="{35.6900 + i * 1.3e-5:.7f}" lon="139.7000000">'
        f"<time>{(start + timedelta(seconds=i)):%Y-%m-%dT%H:%M:%SZ}</time></trkpt>" for i in range(seconds)
    )
    return ('<?xml version="1.0" encoding="UTF-8"?><gpx version="1.1" creator="phone" '
            f'xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>{points}</trkseg></trk></gpx>')


def vehicle_config(folder: Path, telemetry: Path) -> Path:
    config = {
        "edge_id": "patrol-box", "outbox": str(folder / "outbox.sqlite"),
        "cameras": [{"id": "walk-1", "kind": "vehicle", "url": "unused.mp4", "sample_fps": 1,
                     "camera_model": {"hfov_deg": 70, "mount_height_m": 1.6},
                     "telemetry": {"source": "gpx", "path": str(telemetry)}}],
    }
    path = folder / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def replay(video: Path, config: Path, out: Path, *extra: str) -> int:
    return cli.main(["replay", str(video), "--config", str(config), "--out", str(out), "--no-progress", *extra])


@pytest.fixture()
def models(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))


@pytest.fixture()
def tokyo(assets_dir: Path) -> Path:
    return assets_dir / "video" / "tokyo_street_walk_pov.mp4"


def test_the_videos_creation_time_lines_the_walk_up_with_its_gpx(
    tmp_path: Path, tokyo: Path, models: None, caplog: pytest.LogCaptureFixture
) -> None:
    gpx = tmp_path / "walk.gpx"
    gpx.write_text(walk_gpx(CREATED - timedelta(seconds=20)))
    with caplog.at_level(logging.INFO):
        assert replay(tokyo, vehicle_config(tmp_path, gpx), tmp_path / "a.jsonl") == 0
    assert any(f"starts at {CREATED.isoformat()} (from the video's creation time" in r.getMessage()
               for r in caplog.records)
    assert not any("not geo-matched" in r.getMessage() for r in caplog.records)  # every frame found its pose


def test_a_gpx_from_another_day_is_one_line_saying_why_and_what_to_pass(
    tmp_path: Path, tokyo: Path, models: None, capsys: pytest.CaptureFixture[str]
) -> None:
    gpx = tmp_path / "walk.gpx"
    other_day = CREATED + timedelta(days=3, hours=2)
    gpx.write_text(walk_gpx(other_day))
    code = replay(tokyo, vehicle_config(tmp_path, gpx), tmp_path / "b.jsonl")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "creation time" in err and "tokyo_street_walk_pov.mp4" in err and "walk.gpx" in err
    assert f"--start-time {other_day:%Y-%m-%dT%H:%M:%SZ}" in err

    assert replay(tokyo, vehicle_config(tmp_path, gpx), tmp_path / "b.jsonl", "--start-time",
                  other_day.isoformat()) == 0  # what the line said to pass works


def test_a_video_without_creation_time_asks_for_start_time(
    tmp_path: Path, assets_dir: Path, models: None, capsys: pytest.CaptureFixture[str]
) -> None:
    gpx = tmp_path / "drive.gpx"
    gpx.write_text(walk_gpx(CREATED))
    video = assets_dir / "video" / "cvtrafficcam_street_parking.mp4"
    assert replay(video, vehicle_config(tmp_path, gpx), tmp_path / "c.jsonl") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no creation time" in err and "pass --start-time" in err


def test_a_broken_gpx_names_the_file_line_and_column(
    tmp_path: Path, tokyo: Path, models: None, capsys: pytest.CaptureFixture[str]
) -> None:
    gpx = tmp_path / "walk.gpx"
    gpx.write_text(walk_gpx(CREATED)[:-40])  # a download cut short
    assert replay(tokyo, vehicle_config(tmp_path, gpx), tmp_path / "d.jsonl") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{gpx}: line 1, column " in err and "not well-formed XML" in err


def test_a_file_that_is_not_a_video_is_one_line(tmp_path: Path, models: None,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    gpx = tmp_path / "walk.gpx"
    gpx.write_text(walk_gpx(CREATED))
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 8)  # an MP4 header and garbage
    assert replay(fake, vehicle_config(tmp_path, gpx), tmp_path / "e.jsonl") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{fake}: not a readable video" in err


@pytest.mark.parametrize("size", [(320, 240), (96, 64)])
def test_a_video_smaller_than_the_model_input_replays(
    tmp_path: Path, street_dir: Path, models: None, size: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """A 320x240 thermal camera (and a tiny 96x64 one): real H.264 of a real street, through the worker's path."""
    image = cv2.resize(load_image(street_dir / "kerb_parked_cars_street.jpg"), size, interpolation=cv2.INTER_AREA)
    video = write_h264_clip(tmp_path / "thermal.mp4", still_scene(image, seconds=5, fps=2, seed=1), fps=2)
    width, height = size
    kerb = [[0, height // 2], [width - 1, height // 2], [width - 1, height - 1], [0, height - 1]]
    config = {"edge_id": "box-1", "outbox": str(tmp_path / "outbox.sqlite"), "cameras": [{
        "id": "thermal-1", "url": "unused.mp4", "sample_fps": 2,
        "zones": [{"id": "kerb", "violations": ["illegal_parking"], "dwell_s": 2,
                   "polygon_px": kerb}],
    }]}
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    assert replay(video, path, tmp_path / "f.jsonl", "--start-time", "2026-01-01T08:00:00Z") == 0
    assert "alert(s) written" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("<gpx><trk><trkseg><trkpt lat='31.3' lon='120.5'>", "line 1, column ", id="truncated-xml"),
        pytest.param("<gpx><trk><trkseg><trkpt lat='31.3' lon='120.5'/></trkseg></trk></gpx>",
                     "camera 'walk-1': no poses: 1 no_time", id="no-times"),
    ],
)
def test_edge_run_with_a_broken_telemetry_file_is_one_line(
    tmp_path: Path, models: None, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    gpx = tmp_path / "patrol.gpx"
    gpx.write_text(content)
    config = yaml.safe_load(vehicle_config(tmp_path, gpx).read_text())
    config["cameras"][0]["url"] = "rtsp://127.0.0.1:1/none"
    config["broker"] = {"url": "mqtt://127.0.0.1:1"}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"edge run: {gpx}: ") and expected in err
