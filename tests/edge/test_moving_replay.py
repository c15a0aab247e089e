"""Drone replay with a DJI-style .SRT sidecar: street vending found by dwell on projected ground positions.

There is no drone footage among the shared assets. The Hanoi lane market photo
(assets/street/market_hanoi_goods_on_ground.jpg) stands in for what a drone hovering 12 m above the
lane sees with its gimbal pitched 35 degrees down: the photo is held for 80 s as real H.264 with
sensor noise, and the test writes the SRT sidecar the drone would record next to the video
(bracketed dialect, one block per second, wall clock in Asia/Shanghai, a few centimetres of hover
jitter, earth-referenced gimbal). `edge replay` finds the sidecar by the video's name. The vending
zone is the lane's ground area: the image region of the fixed-camera vending test, projected with
the same camera model. As in that test, this city's configuration counts the vendors' goods
bicycles as carts (manifest copy: bicycle -> vending_prop).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

from streetwatch.edge import cli
from streetwatch.edge.geo import Intrinsics, MountOffsets, Uncertainty, drone_camera_pose, project_to_ground
from streetwatch.edge.telemetry import Gimbal, Pose
from streetwatch.footage import load_image, still_scene, write_h264_clip

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)  # 17:00 local
LAT, LON, ALT, PITCH, HFOV = 31.3004, 120.5851, 12.0, -35.0, 70.0
LANE_PX = [(180, 200), (640, 200), (640, 480), (180, 480)]


def srt_text(seconds: int) -> str:
    """One bracketed DJI block per second; local (UTC+8) wall clock; hover jitter of a few cm."""
    rng = np.random.default_rng(5)
    blocks = []
    for i in range(seconds):
        local = START + timedelta(hours=8, seconds=i)
        jitter = rng.normal(0, 2e-7, 2)  # ~2 cm
        blocks.append(
            f"{i + 1}\n00:{i // 60:02d}:{i % 60:02d},000 --> 00:{(i + 1) // 60:02d}:{(i + 1) % 60:02d},000\n"
            f"<font size=\"28\">FrameCnt: {i + 1}, DiffTime: 1000ms\n{local:%Y-%m-%d %H:%M:%S}.000\n"
            f"[iso: 100] [shutter: 1/500.0] [fnum: 2.8] [ev: 0] [focal_len: 24.00] "
            f"[latitude: {LAT + jitter[0]:.7f}] [longitude: {LON + jitter[1]:.7f}] "
            f"[rel_alt: {ALT:.3f} abs_alt: {ALT + 20:.3f}] [gb_yaw: 0.0 gb_pitch: {PITCH} gb_roll: 0.0]</font>\n"
        )
    return "\n".join(blocks)


def lane_zone(width: int, height: int) -> list[list[float]]:
    pose = Pose(t=START, lat=LAT, lon=LON, alt_m=None, heading_deg=None, pitch_deg=None, roll_deg=None,
                speed_mps=None, source="test", rel_alt_m=ALT, gimbal=Gimbal(0.0, PITCH, 0.0, "earth"))
    cam = drone_camera_pose(pose, offsets=MountOffsets(), uncertainty=Uncertainty())
    ground = project_to_ground(cam, Intrinsics.from_hfov(HFOV, width, height), np.array(LANE_PX, dtype=float))
    assert ground.valid.all()
    return [[float(a), float(b)] for a, b in zip(ground.lat, ground.lon, strict=True)]


@pytest.fixture(scope="module")
def market_flight(street_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("drone")
    image = load_image(street_dir / "market_hanoi_goods_on_ground.jpg")
    video = write_h264_clip(folder / "DJI_0042.mp4", still_scene(image, seconds=80, fps=1, seed=3), fps=1)
    (folder / "DJI_0042.SRT").write_text(srt_text(82))
    return video


def write_config(folder: Path, *, bicycle_is_cart: bool) -> Path:
    model: dict[str, object] = {"name": "yolox_nano"}
    if bicycle_is_cart:
        manifest = yaml.safe_load((REPO / "streetwatch" / "models" / "manifest.yaml").read_text())
        manifest["models"][0]["roles"]["bicycle"] = "vending_prop"
        (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest))
        model["manifest"] = str(folder / "manifest.yaml")
    config = {
        "edge_id": "drone-box", "model": model, "outbox": str(folder / "outbox.sqlite"),
        "cameras": [{
            "id": "drone-1", "kind": "drone", "url": "unused.mp4", "sample_fps": 1, "timezone": "Asia/Shanghai",
            "camera_model": {"hfov_deg": HFOV},
            "telemetry": {"source": "srt", "clock_tz": "Asia/Shanghai"},
            "zones": [{"id": "lane", "violations": ["street_vending", "illegal_parking"],
                       "polygon_geo": lane_zone(640, 480), "dwell_s": 60}],
        }],
    }
    path = folder / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def replay(video: Path, config: Path, out: Path) -> list[dict]:
    assert cli.main(["replay", str(video), "--config", str(config), "--out", str(out),
                     "--start-time", START.isoformat(), "--no-progress"]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_hovering_drone_finds_street_vending_by_dwell_on_the_ground(
    tmp_path: Path, market_flight: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
    alerts = replay(market_flight, write_config(tmp_path, bicycle_is_cart=True), tmp_path / "a.jsonl")
    assert [(a["violation"], a["state"], a["source_kind"]) for a in alerts] == [("street_vending", "active", "drone")]
    alert = alerts[0]
    assert alert["dwell_s"] >= 60
    assert {"person", "bicycle"} <= {o["cls"] for o in alert["objects"]}
    assert 31.3004 < alert["location"]["lat"] < 31.3006  # north of the drone, in the lane it looks at


def test_without_carts_people_in_the_lane_are_not_vending(
    tmp_path: Path, market_flight: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
    assert replay(market_flight, write_config(tmp_path, bicycle_is_cart=False), tmp_path / "b.jsonl") == []


def test_missing_sidecar_is_a_clear_error(tmp_path: Path, market_flight: Path, capsys: pytest.CaptureFixture[str],
                                          model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
    lonely = tmp_path / "DJI_0099.mp4"
    lonely.write_bytes(market_flight.read_bytes())
    code = cli.main(["replay", str(lonely), "--config", str(write_config(tmp_path, bicycle_is_cart=False)),
                     "--out", str(tmp_path / "c.jsonl"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "camera 'drone-1'" in err and "DJI_0099.SRT" in err


def test_the_srt_wall_clock_lines_the_replay_up_without_start_time(
    tmp_path: Path, market_flight: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No --start-time: block k of the sidecar starts k s into the video at its wall-clock time."""
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
    out = tmp_path / "aligned.jsonl"
    with caplog.at_level("INFO", logger="streetwatch.edge.replay"):
        code = cli.main(["replay", str(market_flight), "--config", str(write_config(tmp_path, bicycle_is_cart=True)),
                         "--out", str(out), "--no-progress"])
    assert code == 0
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(a["violation"], a["state"]) for a in alerts] == [("street_vending", "active")]
    assert alerts[0]["observed_at"].startswith("2026-11-21T09:")  # the flight's own time, not today
    assert any(f"starts at {START.isoformat()}" in r.getMessage() and "own clock" in r.getMessage()
               for r in caplog.records)


def test_an_empty_sidecar_is_one_line_naming_it(tmp_path: Path, market_flight: Path,
                                                 capsys: pytest.CaptureFixture[str], model_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREETWATCH_MODEL_DIR", str(model_dir))
    video = tmp_path / "DJI_0100.mp4"
    video.write_bytes(market_flight.read_bytes())
    (tmp_path / "DJI_0100.SRT").write_bytes(b"")
    code = cli.main(["replay", str(video), "--config", str(write_config(tmp_path, bicycle_is_cart=False)),
                     "--out", str(tmp_path / "d.jsonl"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{tmp_path / 'DJI_0100.SRT'}: camera 'drone-1': no poses: the file is empty" in err
