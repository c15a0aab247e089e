"""The vector base map: imported from GeoJSON or an OpenStreetMap extract (written here with
pyosmium's own writer), kinds kept, polygons wound by RFC 7946, errors naming file, feature and
field; `central import-basemap` writes it where the map reads it."""

from __future__ import annotations

import json
from pathlib import Path

import osmium
import pytest
from shapely.geometry import shape

from streetwatch.central.cli import main as central_main
from streetwatch.central.gis.basemap import BasemapError, import_basemap, load_basemap, read_basemap

CLOCKWISE_BUILDING = [[24.950, 60.170], [24.950, 60.1702], [24.9503, 60.1702], [24.9503, 60.170], [24.950, 60.170]]


def _collection(path: Path, features: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return path


def _feature(geometry: dict[str, object], **properties: object) -> dict[str, object]:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def test_geojson_roads_and_buildings_keep_their_kind_and_buildings_wind_counter_clockwise(tmp_path: Path) -> None:
    source = _collection(tmp_path / "city.geojson", [
        _feature({"type": "LineString", "coordinates": [[24.95, 60.17], [24.951, 60.171]]},
                 highway="residential", name="Kirkkokatu", surface="asphalt"),
        _feature({"type": "Polygon", "coordinates": [CLOCKWISE_BUILDING]}, building="yes"),
        _feature({"type": "MultiLineString", "coordinates": [[[24.95, 60.17], [24.95, 60.1701]]]}, kind="kerb"),
    ])
    summary = import_basemap(source, tmp_path / "var" / "basemap.geojson", attribution="city survey")
    assert (summary.roads, summary.buildings, summary.other) == (1, 1, 1)
    doc = load_basemap(tmp_path / "var" / "basemap.geojson")
    assert doc is not None and doc["attribution"] == "city survey"
    road, building, kerb = doc["features"]
    assert road["properties"] == {"kind": "road", "name": "Kirkkokatu", "highway": "residential"}
    assert building["properties"]["kind"] == "building" and kerb["properties"]["kind"] == "kerb"
    assert shape(building["geometry"]).exterior.is_ccw


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        (_feature({"type": "Point", "coordinates": [24.95, 60.17]}), "feature 0: field 'geometry': expected one of"),
        (_feature({"type": "LineString", "coordinates": [[60.17, 124.95], [60.18, 124.96]]}),
         "feature 0: field 'geometry': coordinates out of lon/lat range"),
        ({"type": "Feature", "properties": {}}, "feature 0: field 'geometry': expected a GeoJSON Feature"),
    ],
)
def test_bad_features_are_named(tmp_path: Path, feature: dict[str, object], message: str) -> None:
    source = _collection(tmp_path / "bad.geojson", [feature])
    with pytest.raises(BasemapError, match=message) as refused:
        read_basemap(source)
    assert str(refused.value).startswith(str(source))


def test_an_openstreetmap_extract_gives_its_streets_and_buildings_not_its_footways(tmp_path: Path) -> None:
    pbf = tmp_path / "tiny.osm.pbf"
    writer = osmium.SimpleWriter(str(pbf))
    nodes = {1: (24.9500, 60.1700), 2: (24.9510, 60.1700), 3: (24.9510, 60.1705), 4: (24.9500, 60.1705),
             5: (24.9520, 60.1710), 6: (24.9530, 60.1710)}
    for ident, (lon, lat) in nodes.items():
        writer.add_node(osmium.osm.mutable.Node(id=ident, location=(lon, lat)))
    writer.add_way(osmium.osm.mutable.Way(id=10, nodes=[1, 2], tags={"highway": "tertiary", "name": "Unioninkatu"}))
    writer.add_way(osmium.osm.mutable.Way(id=11, nodes=[1, 2, 3, 4, 1], tags={"building": "church"}))
    writer.add_way(osmium.osm.mutable.Way(id=12, nodes=[5, 6], tags={"highway": "footway"}))
    writer.add_way(osmium.osm.mutable.Way(id=13, nodes=[5, 99], tags={"highway": "service"}))  # node cut off
    writer.close()
    features = read_basemap(pbf)
    assert [(f["properties"]["kind"], f["properties"].get("name")) for f in features] == [  # type: ignore[index]
        ("road", "Unioninkatu"), ("building", None)]
    assert list(shape(features[0]["geometry"]).coords) == [(24.95, 60.17), (24.951, 60.17)]
    assert shape(features[1]["geometry"]).exterior.is_ccw  # RFC 7946 winding, whatever OSM's order


def test_import_basemap_command_writes_where_the_map_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _collection(tmp_path / "streets.geojson", [
        _feature({"type": "LineString", "coordinates": [[24.95, 60.17], [24.951, 60.171]]}, highway="primary")])
    target = tmp_path / "maps" / "base.geojson"
    config = tmp_path / "central.yaml"
    config.write_text(f"map:\n  basemap_path: {target}\n  basemap_attribution: OSM\n")
    assert central_main(["--config", str(config), "import-basemap", str(source)]) == 0
    assert "1 roads, 0 buildings" in capsys.readouterr().out
    assert load_basemap(target)["attribution"] == "OSM"  # type: ignore[index]
    assert central_main(["--config", str(config), "import-basemap", str(tmp_path / "missing.geojson")]) == 1
    assert "missing.geojson: no such file" in capsys.readouterr().err
