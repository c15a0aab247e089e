"""Moving-camera configuration: camera_model and telemetry, and the verify_moving_camera cross-checks.

Each bad file must fail at load naming the file, the camera/field and what to do.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from streetwatch.edge.config import ConfigError, load_edge_config

ZONE_GEO = {"id": "kerb", "violations": ["illegal_parking"],
            "polygon_geo": [[31.3, 120.58], [31.3, 120.5801], [31.3001, 120.5801]]}
VEHICLE = {"id": "patrol-1", "kind": "vehicle", "url": "rtsp://cam/1",
           "camera_model": {"hfov_deg": 70, "mount_height_m": 1.4, "yaw_deg": 90, "pitch_deg": -8},
           "telemetry": {"source": "nmea_tcp", "host": "10.0.0.5", "port": 10110, "max_gap_s": 1.5},
           "zones": [ZONE_GEO]}
DRONE = {"id": "drone-1", "kind": "drone", "url": "flight.mp4",
         "camera_model": {"matrix": [[1000, 0, 960], [0, 1000, 540], [0, 0, 1]], "matrix_image_size": [1920, 1080]},
         "telemetry": {"source": "srt", "clock_tz": "Asia/Shanghai", "clock_offset_s": -0.5},
         "zones": [ZONE_GEO]}


def write(tmp_path: Path, camera: dict) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump({"edge_id": "box-1", "cameras": [camera]}))
    return path


def test_vehicle_and_drone_examples_load(tmp_path: Path) -> None:
    vehicle = load_edge_config(write(tmp_path, VEHICLE)).cameras[0]
    assert vehicle.camera_model is not None and vehicle.camera_model.mount_height_m == 1.4
    assert vehicle.telemetry is not None and vehicle.telemetry.port == 10110
    drone = load_edge_config(write(tmp_path, DRONE)).cameras[0]
    assert drone.telemetry is not None and drone.telemetry.clock_offset_s == -0.5


def test_drone_gimbal_pitch_and_a_serial_receiver_load(tmp_path: Path) -> None:
    drone = load_edge_config(write(tmp_path, _with(DRONE, "camera_model.gimbal_pitch_deg", -90))).cameras[0]
    assert drone.camera_model is not None and drone.camera_model.gimbal_pitch_deg == -90
    serial = {"source": "nmea_serial", "path": "/dev/ttyUSB0", "baud": 9600}
    vehicle = load_edge_config(write(tmp_path, _with(VEHICLE, "telemetry", serial))).cameras[0]
    assert vehicle.telemetry is not None and vehicle.telemetry.baud == 9600


def _with(base: dict, path: str, value: object) -> dict:
    out = copy.deepcopy(base)
    node = out
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return out


_DELETE = object()


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        (_with(VEHICLE, "telemetry", _DELETE), "a moving camera needs telemetry"),
        (_with(VEHICLE, "camera_model", _DELETE), "a moving camera needs camera_model"),
        (_with(VEHICLE, "camera_model.mount_height_m", _DELETE), "mount_height_m is required"),
        (_with(VEHICLE, "telemetry", {"source": "srt", "clock_tz": "UTC"}), "srt is a drone format"),
        (_with(VEHICLE, "zones", [{"id": "z", "violations": ["illegal_parking"],
                                   "polygon_px": [[0, 0], [10, 0], [10, 10]]}]), "must be polygon_geo"),
        (_with(VEHICLE, "calibration", {"points": [[[0, 0], [31.3, 120.5]]] * 4}), "calibration.points are for fixed"),
        (_with(_with(VEHICLE, "kind", "fixed"), "zones", []), "camera_model is for vehicle/drone cameras"),
        (_with(VEHICLE, "camera_model.matrix", [[1, 0, 0], [0, 1, 0], [0, 0, 1]]), "exactly one of hfov_deg or matrix"),
        (_with(VEHICLE, "camera_model.hfov_deg", 200), "camera_model.hfov_deg"),
        (_with(VEHICLE, "telemetry.port", _DELETE), "needs port"),
        (_with(VEHICLE, "telemetry.sorce", "gpx"), "telemetry.sorce"),
        (_with(VEHICLE, "telemetry.max_gap_s", 0), "telemetry.max_gap_s"),
        (_with(VEHICLE, "telemetry", {"source": "gpx", "host": "x"}), "takes no host/port"),
        (_with(VEHICLE, "telemetry", {"source": "gpx", "clock_tz": "UTC"}), "clock_tz applies to srt only"),
        (_with(DRONE, "telemetry.clock_tz", _DELETE), "clock_tz is required for srt"),
        (_with(DRONE, "camera_model.mount_height_m", 1.0), "mount_height_m is for vehicles"),
        (_with(DRONE, "camera_model.matrix_image_size", _DELETE), "needs matrix_image_size"),
        (_with(DRONE, "telemetry", {"source": "klv"}), "KLV gives altitude above sea level"),
        (_with(DRONE, "telemetry", {"source": "gpx"}), "has no height above ground"),
        (_with(VEHICLE, "camera_model.gimbal_pitch_deg", -10), "gimbal_pitch_deg is for drones"),
        (_with(DRONE, "camera_model.gimbal_pitch_deg", -120), "camera_model.gimbal_pitch_deg"),
        (_with(VEHICLE, "telemetry", {"source": "nmea_serial"}), "nmea_serial needs path"),
        (_with(VEHICLE, "telemetry", {"source": "nmea_serial", "path": "/dev/ttyUSB0", "baud": 300}), "telemetry.baud"),
        (_with(VEHICLE, "telemetry.baud", 9600), "baud applies to nmea_serial only"),
    ],
)
def test_bad_moving_camera_configs_name_camera_and_field(tmp_path: Path, camera: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_edge_config(write(tmp_path, camera))
    message = str(info.value)
    assert str(tmp_path / "edge.yaml") in message
    assert expected in message
