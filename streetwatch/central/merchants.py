"""Merchant import: GeoJSON FeatureCollections and CSV files with a WKT zone column.

GeoJSON: each feature's `properties` carry `id`, `name`, `address`, `licence`, `contact`, `road`
(optionally `grade`, `area_id`); its `Polygon` or `MultiPolygon` geometry (QGIS writes the latter
for shapefile layers) is the storefront responsibility zone in lon/lat order, as GeoJSON requires.
CSV: a header row with the same columns plus `wkt` (a lon/lat POLYGON or MULTIPOLYGON). Given the
city's bounding box (`map.city_bbox`), a zone outside it is refused, and named as (lat, lon)-swapped
when swapping its coordinates would put it inside. Errors name the file, the feature index or CSV
line, and the field. The whole file is checked before anything is written; re-importing updates
merchants by id.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import shapely
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from shapely import MultiPolygon, Polygon
from shapely.geometry import shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from streetwatch.central.models import Area, Merchant
from streetwatch.edge.alerts import ID_PATTERN

log = logging.getLogger(__name__)

CSV_GEOMETRY_COLUMNS = ("wkt", "zone_wkt")
BBox = tuple[float, float, float, float]  # lon_min, lat_min, lon_max, lat_max


class MerchantImportError(ValueError):
    """A merchant file that cannot be imported; the message names file, row/feature and field."""


class MerchantFields(BaseModel):
    """The descriptive fields of one merchant as they appear in a file (extra keys are ignored)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    address: str = Field(default="", max_length=300)
    licence: str = Field(default="", max_length=100)
    contact: str = Field(default="", max_length=200)
    road: str = Field(default="", max_length=200)
    grade: str | None = Field(default=None, pattern=r"^(red|yellow|green)$")
    area_id: str | None = Field(default=None, max_length=64)

    @field_validator("id", "name", "address", "licence", "contact", "road", mode="before")
    @classmethod
    def _numbers_as_text(cls, value: object) -> object:
        # Spreadsheets and GeoJSON writers turn "0012" into 12; keep ids and licences as text.
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("grade", "area_id", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value


@dataclass(frozen=True)
class MerchantRecord:
    """One validated merchant ready to store: fields plus its zone as lon/lat WKT."""

    fields: MerchantFields
    zone_wkt: str


@dataclass(frozen=True)
class ImportSummary:
    created: int
    updated: int

    @property
    def total(self) -> int:
        return self.created + self.updated


def _fields_error(exc: ValidationError, where: str) -> MerchantImportError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "<root>"
    return MerchantImportError(f"{where}: field {field!r}: {err['msg']} (got {err.get('input')!r})")


def check_zone(polygon: object, where: str, *, bbox: BBox | None = None) -> Polygon | MultiPolygon:
    """A usable lon/lat zone: a valid, non-empty Polygon or MultiPolygon within WGS84 bounds (and
    within the city's box when one is given)."""
    if not isinstance(polygon, Polygon | MultiPolygon):
        kind = getattr(polygon, "geom_type", type(polygon).__name__)
        raise MerchantImportError(f"{where}: expected a Polygon or MultiPolygon zone, got {kind}")
    if polygon.is_empty:
        raise MerchantImportError(f"{where}: the zone polygon is empty")
    if bbox is not None:  # first: its message says what is wrong (swapped or elsewhere)
        verify_in_city(polygon, where, bbox)
    min_x, min_y, max_x, max_y = polygon.bounds
    if not (-180 <= min_x <= max_x <= 180 and -90 <= min_y <= max_y <= 90):
        raise MerchantImportError(
            f"{where}: coordinates out of lon/lat range (bounds {polygon.bounds}); expected lon, lat order"
        )
    if not polygon.is_valid:
        reason = shapely.is_valid_reason(polygon)
        raise MerchantImportError(f"{where}: the zone polygon is not valid ({reason})")
    if polygon.area == 0:
        raise MerchantImportError(f"{where}: the zone polygon has no area")
    return polygon


def _inside(bounds: tuple[float, float, float, float], bbox: BBox) -> bool:
    return bbox[0] <= bounds[0] and bounds[2] <= bbox[2] and bbox[1] <= bounds[1] and bounds[3] <= bbox[3]


def verify_in_city(zone: Polygon | MultiPolygon, where: str, bbox: BBox) -> None:
    """Refuse a zone outside the city's box, and say so plainly when it is (lat, lon)-swapped."""
    bounds = zone.bounds
    if _inside(bounds, bbox):
        return
    swapped = (bounds[1], bounds[0], bounds[3], bounds[2])
    first = [round(v, 6) for v in shapely.get_coordinates(zone)[0].tolist()]
    if _inside(swapped, bbox):
        raise MerchantImportError(
            f"{where}: coordinates are in (lat, lon) order (first position {first}); GeoJSON and WKT "
            f"take (lon, lat): swap each pair (the swapped zone lies in the city's box {list(bbox)})"
        )
    raise MerchantImportError(
        f"{where}: the zone (first position {first}) lies outside the city's box {list(bbox)} "
        "(map.city_bbox: lon_min, lat_min, lon_max, lat_max)"
    )


def read_geojson(path: Path, *, bbox: BBox | None = None) -> list[MerchantRecord]:
    """Merchants from a GeoJSON FeatureCollection; errors name the feature index and field."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MerchantImportError(f"{path}: cannot read GeoJSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise MerchantImportError(f"{path}: expected a GeoJSON FeatureCollection at the top level")
    features = doc.get("features")
    if not isinstance(features, list):
        raise MerchantImportError(f"{path}: field 'features': expected a list")
    return [_geojson_record(feature, f"{path}: feature {i}", bbox) for i, feature in enumerate(features)]


def _geojson_record(feature: object, where: str, bbox: BBox | None) -> MerchantRecord:
    if not isinstance(feature, dict):
        raise MerchantImportError(f"{where}: expected a GeoJSON Feature object")
    properties = feature.get("properties")
    if not isinstance(properties, dict):
        raise MerchantImportError(f"{where}: field 'properties': expected an object with id, name, ...")
    try:
        fields = MerchantFields.model_validate(properties)
    except ValidationError as exc:
        raise _fields_error(exc, where) from None
    where = f"{where} (merchant {fields.id})"
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict):
        raise MerchantImportError(f"{where}: field 'geometry': expected a Polygon or MultiPolygon geometry")
    try:
        polygon = shape(geometry)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, shapely.errors.ShapelyError) as exc:
        raise MerchantImportError(
            f"{where}: field 'geometry': not a valid GeoJSON geometry ({exc})"
        ) from None
    return MerchantRecord(fields, check_zone(polygon, f"{where}: field 'geometry'", bbox=bbox).wkt)


def read_csv(path: Path, *, bbox: BBox | None = None) -> list[MerchantRecord]:
    """Merchants from CSV with a header row and a `wkt` column; errors name the line and field."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            geometry_column = next((c for c in CSV_GEOMETRY_COLUMNS if c in columns), None)
            if geometry_column is None:
                raise MerchantImportError(
                    f"{path}: header: expected a 'wkt' column with the zone polygon, got columns {columns}"
                )
            return [_csv_record(row, geometry_column, f"{path}: line {reader.line_num}", bbox) for row in reader]
    except OSError as exc:
        raise MerchantImportError(f"{path}: cannot read CSV: {exc}") from None


def _csv_record(row: dict[str, str], geometry_column: str, where: str, bbox: BBox | None) -> MerchantRecord:
    try:
        fields = MerchantFields.model_validate({k: v for k, v in row.items() if k is not None})
    except ValidationError as exc:
        raise _fields_error(exc, where) from None
    where = f"{where} (merchant {fields.id}): field {geometry_column!r}"
    try:
        polygon = shapely.from_wkt(row.get(geometry_column) or "")
    except shapely.errors.GEOSException as exc:
        raise MerchantImportError(f"{where}: not valid WKT ({exc})") from None
    if polygon is None:
        raise MerchantImportError(f"{where}: empty; expected a POLYGON in lon lat order")
    return MerchantRecord(fields, check_zone(polygon, where, bbox=bbox).wkt)


def read_merchants(path: Path, *, bbox: BBox | None = None) -> list[MerchantRecord]:
    """Read a merchant file by its extension (.geojson/.json or .csv); ids must be unique in it."""
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        records = read_geojson(path, bbox=bbox)
    elif suffix == ".csv":
        records = read_csv(path, bbox=bbox)
    else:
        raise MerchantImportError(f"{path}: unknown merchant file type {suffix!r}; use .geojson or .csv")
    _check_unique(records, path)
    return records


def _check_unique(records: Sequence[MerchantRecord], path: Path) -> None:
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        merchant_id = record.fields.id
        if merchant_id in seen:
            raise MerchantImportError(
                f"{path}: record {index}: field 'id': {merchant_id!r} repeats record {seen[merchant_id]}"
            )
        seen[merchant_id] = index


def store_merchants(
    session: Session, records: Iterable[MerchantRecord], *, source: str = ""
) -> ImportSummary:
    """Insert new merchants and update existing ones by id (grade kept unless the file sets it)."""
    records = list(records)
    ids = [r.fields.id for r in records]
    existing = {m.id: m for m in session.scalars(select(Merchant).where(Merchant.id.in_(ids)))} if ids else {}
    _check_areas(session, records, source)
    created = 0
    for record in records:
        merchant = existing.get(record.fields.id)
        if merchant is None:
            merchant = Merchant(id=record.fields.id, grade=record.fields.grade or "green")
            session.add(merchant)
            created += 1
        _copy_fields(merchant, record)
    session.flush()
    summary = ImportSummary(created=created, updated=len(records) - created)
    log.info(
        "merchants imported from %s: %d created, %d updated",
        source or "records",
        summary.created,
        summary.updated,
    )
    return summary


def _copy_fields(merchant: Merchant, record: MerchantRecord) -> None:
    f = record.fields
    merchant.name, merchant.address, merchant.licence = f.name, f.address, f.licence
    merchant.contact, merchant.road, merchant.zone_wkt = f.contact, f.road, record.zone_wkt
    if f.grade is not None:
        merchant.grade = f.grade
    if f.area_id is not None:
        merchant.area_id = f.area_id


def _check_areas(session: Session, records: Sequence[MerchantRecord], source: str) -> None:
    wanted = {r.fields.area_id for r in records if r.fields.area_id}
    if not wanted:
        return
    known = set(session.scalars(select(Area.id).where(Area.id.in_(wanted))))
    for index, record in enumerate(records):
        if record.fields.area_id and record.fields.area_id not in known:
            raise MerchantImportError(
                f"{source}: record {index} (merchant {record.fields.id}): field 'area_id': "
                f"unknown area {record.fields.area_id!r}; create the area first"
            )


def import_merchants(session: Session, path: Path, *, bbox: BBox | None = None) -> ImportSummary:
    """Read and store a merchant file in the caller's transaction (nothing is stored on error)."""
    return store_merchants(session, read_merchants(path, bbox=bbox), source=str(path))
