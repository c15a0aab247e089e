"""Central settings: the example file loads, typos fail naming file and field, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from streetwatch.central.config import ConfigError, load_settings
from streetwatch.central.evidence_store import EvidenceError, EvidenceStore, decode_jpeg_b64

REPO = Path(__file__).resolve().parents[2]


def test_example_file_loads_with_documented_defaults() -> None:
    settings = load_settings(REPO / "configs" / "central.example.yaml", environ={})
    assert settings.broker.subscription == "$share/central/streetwatch/v1/alerts/#"
    assert settings.cases.radius_m == {"illegal_parking": 15, "street_vending": 25, "stacked_goods": 15}
    assert settings.attribution.max_distance_m == 10
    assert settings == load_settings(None, environ={})  # the example shows the defaults


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("brokr: {}\n", "brokr: Extra inputs are not permitted"),
        ("broker: {url: 'http://x'}\n", "broker.url: Value error, expected mqtt://host:port"),
        (
            "cases: {radius_m: {illegal_parking: -1}}\n",
            "cases.radius_m: Value error, illegal_parking: expected a number > 0",
        ),
        ("cases: {radius_m: {jaywalking: 5}}\n", "cases.radius_m.jaywalking"),
        ("attribution: {max_distance_m: 5000}\n", "attribution.max_distance_m"),
        ("- a list\n", "expected a mapping at the top level"),
        ("broker: [\n", "not valid YAML"),
    ],
    ids=["typo", "url", "negative-radius", "unknown-violation", "too-far", "not-mapping", "bad-yaml"],
)
def test_bad_settings_name_file_and_field(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(path) in str(info.value) and message in str(info.value)


def test_partial_tables_keep_defaults_and_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(
        "cases: {radius_m: {street_vending: 40}}\nbroker: {client_id: central-7}\n", encoding="utf-8"
    )
    env = {
        "STREETWATCH_CENTRAL_CONFIG": str(path),
        "STREETWATCH_MQTT_URL": "mqtts://broker.city:8883",
        "STREETWATCH_EVIDENCE_DIR": str(tmp_path / "ev"),
    }
    settings = load_settings(None, environ=env)
    assert settings.cases.radius_m == {"illegal_parking": 15, "street_vending": 40, "stacked_goods": 15}
    assert (settings.broker.url, settings.broker.client_id) == ("mqtts://broker.city:8883", "central-7")
    assert settings.evidence_dir == tmp_path / "ev"


@pytest.mark.parametrize(
    ("sha", "ok"),
    [("a" * 64, True), ("A" * 64, False), ("a" * 63, False), ("../" + "a" * 61, False)],
)
def test_evidence_paths_accept_only_sha256(tmp_path: Path, sha: str, ok: bool) -> None:
    store = EvidenceStore(tmp_path)
    if ok:
        assert store.path_for(sha) == tmp_path / sha[:2] / f"{sha}.jpg"
    else:
        with pytest.raises(EvidenceError, match="sha256: expected 64 lowercase hex"):
            store.path_for(sha)


def test_decode_rejects_non_jpeg() -> None:
    with pytest.raises(EvidenceError, match="expected a JPEG"):
        decode_jpeg_b64("iVBORw0KGgo=")  # a PNG signature
