"""Merchant import from GeoJSON and CSV+WKT: errors name file, row/feature and field; re-import updates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.db import session_scope
from streetwatch.central.merchants import MerchantImportError, import_merchants, read_merchants
from streetwatch.central.models import Merchant

REPO = Path(__file__).resolve().parents[2]
ZONE = [
    [120.5853, 31.30004],
    [120.5854, 31.30004],
    [120.5854, 31.3001],
    [120.5853, 31.3001],
    [120.5853, 31.30004],
]
ZONE_WKT = (
    "POLYGON ((120.5853 31.30004, 120.5854 31.30004, 120.5854 31.3001, 120.5853 31.3001, 120.5853 31.30004))"
)
CSV_HEADER = "id,name,address,licence,contact,road,wkt\n"


def feature(**overrides: object) -> dict[str, object]:
    properties = {
        "id": "m-1",
        "name": "Jade Tea",
        "address": "2 Ganjiang Rd",
        "licence": "L-1",
        "contact": "+86 1",
        "road": "Ganjiang Rd",
    }
    geometry: object = {"type": "Polygon", "coordinates": [ZONE]}
    for key, value in overrides.items():
        if key == "geometry":
            geometry = value
        else:
            properties[key] = value  # type: ignore[assignment]
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def geojson(path: Path, features: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return path


def test_example_merchants_load() -> None:
    records = read_merchants(REPO / "configs" / "merchants.example.geojson")
    assert len(records) == 8
    assert all(shapely.from_wkt(r.zone_wkt).is_valid for r in records)


def test_geojson_and_csv_give_the_same_merchant(tmp_path: Path) -> None:
    from_json = read_merchants(geojson(tmp_path / "m.geojson", [feature()]))
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(CSV_HEADER + f'm-1,Jade Tea,2 Ganjiang Rd,L-1,+86 1,Ganjiang Rd,"{ZONE_WKT}"\n')
    from_csv = read_merchants(csv_path)
    assert from_json == from_csv
    assert shapely.from_wkt(from_json[0].zone_wkt).equals(shapely.Polygon(ZONE))


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([feature(), feature(id="m-2", name="")], "feature 1: field 'name'"),
        ([feature(id="bad id/")], "feature 0: field 'id'"),
        ([feature(grade="purple")], "feature 0: field 'grade'"),
        (
            [feature(geometry={"type": "Point", "coordinates": [120.5, 31.3]})],
            "feature 0 (merchant m-1): field 'geometry': expected a Polygon",
        ),
        (
            [
                feature(
                    geometry={
                        "type": "Polygon",
                        "coordinates": [[[31.3, 120.5], [31.3, 120.6], [31.4, 120.6], [31.3, 120.5]]],
                    }
                )
            ],
            "out of lon/lat range",
        ),
        (
            [
                feature(
                    geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
                )
            ],
            "not valid (Self-intersection",
        ),
        ([feature(geometry=None)], "feature 0 (merchant m-1): field 'geometry'"),
        (  # shapely's own error type for an unknown geometry type (found by the fuzz test)
            [feature(geometry={"type": "", "coordinates": [[[120.5, 31.3], [120.6, 31.3], [120.5, 31.4]]]})],
            "field 'geometry': not a valid GeoJSON geometry (Unknown geometry type: '')",
        ),
        ([feature(), feature()], "record 1: field 'id': 'm-1' repeats record 0"),
    ],
    ids=[
        "empty-name",
        "bad-id",
        "bad-grade",
        "point",
        "lat-lon-swapped",
        "bow-tie",
        "no-geometry",
        "unknown-geometry-type",
        "duplicate-id",
    ],
)
def test_geojson_errors_name_feature_and_field(
    tmp_path: Path, features: list[dict[str, object]], message: str
) -> None:
    path = geojson(tmp_path / "m.geojson", features)
    with pytest.raises(MerchantImportError) as info:
        read_merchants(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f'm-1,Jade,a,l,c,r,"{ZONE_WKT}"\nm-2,,a,l,c,r,"{ZONE_WKT}"\n', "line 3: field 'name'"),
        ('m-1,Jade,a,l,c,r,"POLYGON ((1 2, 3"\n', "line 2 (merchant m-1): field 'wkt': not valid WKT"),
        ("m-1,Jade,a,l,c,r,\n", "line 2 (merchant m-1): field 'wkt'"),
        ('m-1,Jade,a,l,c,r,"POINT (120.5 31.3)"\n', "field 'wkt': expected a Polygon or MultiPolygon zone, got Point"),
    ],
    ids=["empty-name", "broken-wkt", "missing-wkt", "point-wkt"],
)
def test_csv_errors_name_line_and_field(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(CSV_HEADER + body, encoding="utf-8")
    with pytest.raises(MerchantImportError) as info:
        read_merchants(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_csv_without_wkt_column_and_unknown_type(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("id,name\nm-1,Jade\n", encoding="utf-8")
    with pytest.raises(MerchantImportError, match="header: expected a 'wkt' column"):
        read_merchants(path)
    with pytest.raises(MerchantImportError, match="unknown merchant file type '.xlsx'"):
        read_merchants(tmp_path / "m.xlsx")


def test_reimport_updates_by_id_and_keeps_grade(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    path = geojson(tmp_path / "m.geojson", [feature(), feature(id="m-2", name="Noodles")])
    with session_scope(session_factory) as session:
        first = import_merchants(session, path)
        session.get(Merchant, "m-1").grade = "red"  # type: ignore[union-attr]  # graded by the workflow
    moved = [[x + 0.001, y] for x, y in ZONE]
    geojson(
        path,
        [
            feature(name="Jade Tea House", geometry={"type": "Polygon", "coordinates": [moved]}),
            feature(id="m-3", name="Bakery"),
        ],
    )
    with session_scope(session_factory) as session:
        second = import_merchants(session, path)
    assert (first.created, first.updated, second.created, second.updated) == (2, 0, 1, 1)
    with session_scope(session_factory) as session:
        merchants = {m.id: m for m in session.scalars(select(Merchant))}
    assert set(merchants) == {"m-1", "m-2", "m-3"}
    assert merchants["m-1"].name == "Jade Tea House" and merchants["m-1"].grade == "red"
    assert shapely.from_wkt(merchants["m-1"].zone_wkt).equals(shapely.Polygon(moved))
    assert merchants["m-1"].updated_at >= merchants["m-1"].created_at


def test_failed_import_writes_nothing(tmp_path: Path, session_factory: sessionmaker[Session]) -> None:
    path = geojson(tmp_path / "m.geojson", [feature(), feature(id="m-2", area_id="no-such-area")])
    with (
        pytest.raises(
            MerchantImportError, match="record 1 \\(merchant m-2\\): field 'area_id': unknown area"
        ),
        session_scope(session_factory) as session,
    ):
        import_merchants(session, path)
    with session_scope(session_factory) as session:
        assert session.scalars(select(Merchant)).all() == []


SUZHOU_BBOX = (120.4, 31.2, 120.8, 31.45)  # lon_min, lat_min, lon_max, lat_max
SECOND_PART = [
    [120.5860, 31.30004], [120.5861, 31.30004], [120.5861, 31.3001], [120.5860, 31.3001], [120.5860, 31.30004]
]


def test_a_multipolygon_zone_as_qgis_writes_it_imports_and_attributes_cases_in_either_part(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    """A shop with two frontages (a corner shop): QGIS saves the layer as MultiPolygon."""
    from streetwatch.central.attribution import load_merchant_index

    multi = {"type": "MultiPolygon", "coordinates": [[ZONE], [SECOND_PART]]}
    path = geojson(tmp_path / "corner.geojson", [feature(geometry=multi)])
    with session_scope(session_factory) as session:
        summary = import_merchants(session, path, bbox=SUZHOU_BBOX)
    assert summary.created == 1
    with session_factory() as session:
        merchant = session.get(Merchant, "m-1")
        assert merchant is not None
        zone = shapely.from_wkt(merchant.zone_wkt)
        assert zone.geom_type == "MultiPolygon" and len(zone.geoms) == 2
        index = load_merchant_index(session, max_distance_m=5.0)
    # a point inside the second frontage is this merchant's
    hit = index.attribute(31.30007, 120.58605)
    assert (hit.merchant_id, hit.method) == ("m-1", "inside_zone")


def test_lat_lon_swapped_zone_is_refused_naming_the_feature_and_file(tmp_path: Path) -> None:
    swapped = [[lat, lon] for lon, lat in ZONE]  # (31.3, 120.58): both values are valid lon/lat
    path = geojson(tmp_path / "swapped.geojson", [feature(), feature(id="m-2", geometry={
        "type": "Polygon", "coordinates": [swapped]})])
    with pytest.raises(MerchantImportError) as refused:
        read_merchants(path, bbox=SUZHOU_BBOX)
    message = str(refused.value)
    where = f"{path}: feature 1 (merchant m-2): field 'geometry'"
    assert message.startswith(f"{where}: coordinates are in (lat, lon) order")
    assert "swap each pair" in message


def test_a_zone_outside_the_city_is_refused(tmp_path: Path) -> None:
    far = [[lon + 3, lat] for lon, lat in ZONE]
    path = geojson(tmp_path / "far.geojson", [feature(geometry={"type": "Polygon", "coordinates": [far]})])
    with pytest.raises(MerchantImportError, match=r"feature 0 \(merchant m-1\).*outside the city's box"):
        read_merchants(path, bbox=SUZHOU_BBOX)
