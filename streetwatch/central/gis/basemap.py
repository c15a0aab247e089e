"""The vector base map: roads, kerbs and buildings a city (or the demo) imports once, drawn under
the map's overlays where no tile server is reachable (offline boxes, the demo, the tests).

In: a GeoJSON FeatureCollection (lon/lat, as RFC 7946 says) of LineStrings and Polygons (Multi-
too), or an OpenStreetMap extract (.osm.pbf, read with pyosmium). Each feature keeps a `kind`
(road, kerb, building, water, other), a `name` and for roads their `highway` class. Errors name the
file, the feature and the field. Out: one compact GeoJSON file at `map.basemap_path`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import shapely
from shapely.geometry import mapping, shape

KINDS = ("road", "kerb", "building", "water", "other")
GEOMETRY_TYPES = ("LineString", "MultiLineString", "Polygon", "MultiPolygon")
MAX_FEATURES = 500_000
PRECISION = 7  # decimals of a degree: ~1 cm
# The OpenStreetMap ways worth drawing under street cases (footways, trails, steps: clutter)
OSM_ROADS = frozenset(
    {"motorway", "trunk", "primary", "secondary", "tertiary", "unclassified", "residential", "living_street",
     "service", "pedestrian", "primary_link", "secondary_link", "tertiary_link"}
)


class BasemapError(ValueError):
    """A base map file that cannot be imported; the message names the file, feature and field."""


@dataclass(frozen=True)
class BasemapSummary:
    roads: int
    buildings: int
    other: int
    bounds: tuple[float, float, float, float]  # lon_min, lat_min, lon_max, lat_max


def _kind(properties: Mapping[str, object]) -> str:
    kind = properties.get("kind")
    if isinstance(kind, str) and kind in KINDS:
        return kind
    if properties.get("barrier") == "kerb" or properties.get("kerb"):
        return "kerb"
    if properties.get("highway"):
        return "road"
    if properties.get("building"):
        return "building"
    if properties.get("natural") == "water" or properties.get("waterway"):
        return "water"
    return "other"


def _feature(geometry: shapely.Geometry, properties: Mapping[str, object]) -> dict[str, object]:
    kept: dict[str, object] = {"kind": _kind(properties)}
    for key in ("name", "highway"):
        value = properties.get(key)
        if isinstance(value, str) and value:
            kept[key] = value[:200]
    geometry = shapely.set_precision(geometry, 10**-PRECISION)
    if isinstance(geometry, shapely.Polygon | shapely.MultiPolygon):
        geometry = shapely.orient_polygons(geometry)  # RFC 7946: exterior rings counter-clockwise
    return {"type": "Feature", "properties": kept, "geometry": mapping(geometry)}


def _check_lonlat(geometry: shapely.Geometry, where: str) -> None:
    min_x, min_y, max_x, max_y = geometry.bounds
    if not (-180 <= min_x <= max_x <= 180 and -90 <= min_y <= max_y <= 90):
        raise BasemapError(f"{where}: coordinates out of lon/lat range (bounds {geometry.bounds}); expected lon, lat")


def read_geojson_features(path: Path) -> Iterator[dict[str, object]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BasemapError(f"{path}: cannot read GeoJSON: {exc}") from None
    features = doc.get("features") if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" else None
    if not isinstance(features, list):
        raise BasemapError(f"{path}: expected a GeoJSON FeatureCollection with a 'features' list")
    if len(features) > MAX_FEATURES:
        raise BasemapError(f"{path}: {len(features)} features; at most {MAX_FEATURES} (cut the extract to the city)")
    for index, feature in enumerate(features):
        where = f"{path}: feature {index}"
        if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
            raise BasemapError(f"{where}: field 'geometry': expected a GeoJSON Feature with a geometry")
        kind = feature["geometry"].get("type")
        if kind not in GEOMETRY_TYPES:
            raise BasemapError(f"{where}: field 'geometry': expected one of {', '.join(GEOMETRY_TYPES)}, got {kind!r}")
        try:
            geometry = shape(feature["geometry"])
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, shapely.errors.ShapelyError) as exc:
            raise BasemapError(f"{where}: field 'geometry': not a valid GeoJSON geometry ({exc})") from None
        _check_lonlat(geometry, f"{where}: field 'geometry'")
        properties = feature.get("properties")
        yield _feature(geometry, properties if isinstance(properties, dict) else {})


def read_osm_features(path: Path) -> Iterator[dict[str, object]]:
    """Roads (the drivable and pedestrian streets) and buildings of an .osm.pbf/.osm extract."""
    import osmium  # the OpenStreetMap reader is needed only for this input

    try:
        processor = (
            osmium.FileProcessor(str(path))
            .with_locations()
            .with_filter(osmium.filter.KeyFilter("highway", "building", "barrier"))
        )
        for obj in processor:
            if not isinstance(obj, osmium.osm.Way) or len(obj.nodes) < 2:
                continue
            tags = {tag.k: tag.v for tag in obj.tags}
            if "highway" in tags and tags["highway"] not in OSM_ROADS:
                continue
            coords = [(n.lon, n.lat) for n in obj.nodes if n.location.valid()]
            if len(coords) < 2:  # an extract cut at its edge leaves ways without their nodes
                continue
            closed = len(coords) >= 4 and coords[0] == coords[-1]
            if "building" in tags and closed:
                geometry: shapely.Geometry = shapely.Polygon(coords)
            elif "highway" in tags or tags.get("barrier") == "kerb":
                geometry = shapely.LineString(coords)
            else:
                continue
            if geometry.is_valid and not geometry.is_empty:
                yield _feature(geometry, tags)
    except RuntimeError as exc:  # pyosmium reports unreadable files so
        raise BasemapError(f"{path}: cannot read the OpenStreetMap file: {exc}") from None


def read_basemap(path: Path) -> list[dict[str, object]]:
    name = path.name.lower()
    if not path.is_file():
        raise BasemapError(f"{path}: no such file")
    if name.endswith((".osm.pbf", ".osm")):
        return list(read_osm_features(path))
    if name.endswith((".geojson", ".json")):
        return list(read_geojson_features(path))
    raise BasemapError(f"{path}: unknown base map file type; use .geojson or .osm.pbf")


def summarise(features: Iterable[dict[str, object]]) -> BasemapSummary:
    counts = {"road": 0, "building": 0, "other": 0}
    bounds = [math.inf, math.inf, -math.inf, -math.inf]
    for f in features:
        kind = f["properties"]["kind"]  # type: ignore[index]
        counts[kind if kind in counts else "other"] += 1
        b = shape(f["geometry"]).bounds
        bounds = [min(bounds[0], b[0]), min(bounds[1], b[1]), max(bounds[2], b[2]), max(bounds[3], b[3])]
    return BasemapSummary(counts["road"], counts["building"], counts["other"], tuple(bounds))  # type: ignore[arg-type]


def import_basemap(source: Path, target: Path, *, attribution: str = "") -> BasemapSummary:
    """Read `source`, write the base map to `target` (replacing the one before), say what it holds."""
    features = read_basemap(source)
    if not features:
        raise BasemapError(f"{source}: no roads, kerbs or buildings in it")
    target.parent.mkdir(parents=True, exist_ok=True)
    doc = {"type": "FeatureCollection", "attribution": attribution, "features": features}
    partial = target.with_suffix(".part")
    partial.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    partial.replace(target)
    return summarise(features)


def load_basemap(path: Path) -> dict[str, object] | None:
    """The imported base map, or None when none was imported."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return doc if isinstance(doc, dict) else None
