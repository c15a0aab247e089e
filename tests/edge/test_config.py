"""The edge YAML: the shipped example loads, and each kind of mistake names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streetwatch.edge.config import ConfigError, load_edge_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "edge.example.yaml"


def test_example_config_loads_with_every_section() -> None:
    config = load_edge_config(EXAMPLE)
    camera = config.cameras[0]
    assert config.edge_id == "box-01"
    assert camera.calibration is not None and len(camera.calibration.points) >= 4
    assert {z.id for z in camera.zones} == {"z-parking-1", "z-market-1", "z-sidewalk-1"}
    assert camera.zones[0].dwell_for("illegal_parking") == 120
    assert camera.zones[1].allowed_windows == ["18:00-22:00"]


def _write(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    raw = yaml.safe_load(EXAMPLE.read_text())
    mutate(raw)
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("mutate", "field", "phrase"),
    [
        (lambda c: c["cameras"][0].update(sampel_fps=2), "cameras.0.sampel_fps", "Extra inputs"),
        (lambda c: c["cameras"][0].update(sample_fps=0), "cameras.0.sample_fps", "greater than 0"),
        (lambda c: c["cameras"][0].update(id="cam/1"), "cameras.0.id", "pattern"),
        (lambda c: c["cameras"][0]["zones"][0].update(violations=["littering"]), "violations.0", "illegal_parking"),
        (lambda c: c["cameras"][0]["zones"][1].update(allowed_windows=["6pm-10pm"]), "allowed_windows", "HH:MM"),
        (lambda c: c["cameras"][0]["zones"][0].update(polygon_px=[[0, 0], [1, 1]]), "zones.0", "at least 3"),
        (lambda c: c["cameras"][0]["calibration"].update(points=[[[1, 2], [31.0, 120.0]]]), "calibration.points", "4"),
        (lambda c: c["broker"].update(url="http://x"), "broker.url", "mqtt://"),
        (lambda c: c["cameras"].append(dict(c["cameras"][0])), "<top level>", "appears twice"),
        (lambda c: c["cameras"][0].pop("calibration"), "<top level>", "no calibration"),
        (lambda c: c.pop("cameras"), "cameras", "Field required"),
        (lambda c: c["rules"]["foreground"].update(warmup_s=-1), "rules.foreground.warmup_s", "greater than or equal"),
        (lambda c: c["rules"]["foreground"].update(fast_tau_s=500, slow_tau_s=400), "rules.foreground",
         "fast_tau_s (500.0) must be below slow_tau_s (400.0)"),
        (lambda c: c["rules"]["foreground"].update(textur=False), "rules.foreground.textur", "Extra inputs"),
        (lambda c: c["rules"].update(presence_share=1.5), "rules.presence_share", "less than or equal to 1"),
        (lambda c: c["cameras"][0].update(rules={"foreground": {"texture_threshold": 0}}),
         "cameras.0.rules.foreground.texture_threshold", "greater than 0"),
        (lambda c: c["cameras"][0].update(rules={"static_min_area_px": 4}), "cameras.0.rules.static_min_area_px",
         "greater than or equal to 16"),
    ],
)
def test_config_errors_name_file_and_field(tmp_path: Path, mutate, field: str, phrase: str) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_edge_config(path)
    message = str(err.value)
    assert str(path) in message
    assert field in message
    assert phrase in message


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_edge_config(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_edge_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("edge_id: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_edge_config(broken)


def test_a_camera_sets_its_own_background_model(tmp_path: Path) -> None:
    """rules.foreground per camera, over the box-wide one, reaches the camera's model."""
    from streetwatch.edge.alerting import AlertContext
    from streetwatch.edge.alerts import ModelRef
    from streetwatch.edge.pipeline import CameraAnalyzer

    def mutate(c: dict) -> None:  # type: ignore[type-arg]
        c["rules"]["foreground"].update(fast_tau_s=15)
        c["cameras"][0]["rules"] = {"static_min_area_px": 2700, "foreground": {"warmup_s": 120, "texture": False}}

    config = load_edge_config(_write(tmp_path, mutate))
    camera = config.cameras[0]
    analyzer = CameraAnalyzer(camera, AlertContext(edge_id="box-01", model=ModelRef(name="m", sha256="0" * 64),
                                                   config=config))
    assert analyzer.foreground is not None
    params = analyzer.foreground.params
    assert (params.warmup_s, params.fast_tau_s, params.texture, params.min_area_px) == (120, 15, False, 2700)
