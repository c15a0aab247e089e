"""Merchant attribution: inside / nearest / none with distances, and index refresh after an import."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
import shapely
from factories import make_alert
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.attribution import Attribution, MerchantIndex, MerchantIndexCache, ZoneRecord
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import ingest_alert
from streetwatch.central.merchants import import_merchants
from streetwatch.central.models import Area, Case

LAT0, LON0 = 31.30000, 120.58560
M_LAT = 1 / 111_320
M_LON = 1 / (111_320 * math.cos(math.radians(LAT0)))


def rect(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    """A lon/lat rectangle given in metres east (x) and north (y) of the origin."""
    return shapely.box(LON0 + x0 * M_LON, LAT0 + y0 * M_LAT, LON0 + x1 * M_LON, LAT0 + y1 * M_LAT)


ZONES = [
    ZoneRecord("shop-a", rect(0, 0, 10, 5)),
    ZoneRecord("shop-b", rect(12, 0, 22, 5)),
    ZoneRecord("big", rect(30, 0, 60, 20)),
    ZoneRecord("kiosk", rect(40, 5, 44, 9)),  # inside "big": the smaller, more specific zone wins
]


@pytest.fixture(scope="module")
def index() -> MerchantIndex:
    return MerchantIndex(ZONES, max_distance_m=10.0)


@pytest.mark.parametrize(
    ("east_m", "north_m", "expected"),
    [
        (5, 2.5, Attribution("shop-a", "inside_zone", 0.0)),
        (10, 2.5, Attribution("shop-a", "inside_zone", 0.0)),  # on the edge counts as inside
        (17, 2.5, Attribution("shop-b", "inside_zone", 0.0)),
        (42, 7, Attribution("kiosk", "inside_zone", 0.0)),
        (35, 15, Attribution("big", "inside_zone", 0.0)),
        (5, -3, Attribution("shop-a", "nearest", 3.0)),  # 3 m in front of the shop, on the road
        (11.5, 2.5, Attribution("shop-b", "nearest", 0.5)),  # between two shops: the closer one
        (5, -9.9, Attribution("shop-a", "nearest", 9.9)),  # just inside the limit
        (5, -10.5, Attribution(None, "none", None)),
        (-30, -30, Attribution(None, "none", None)),
    ],
    ids=[
        "inside",
        "on-edge",
        "inside-b",
        "nested-smallest",
        "inside-big",
        "in-front",
        "between",
        "near-limit",
        "beyond-limit",
        "far",
    ],
)
def test_attribute(index: MerchantIndex, east_m: float, north_m: float, expected: Attribution) -> None:
    got = index.attribute(LAT0 + north_m * M_LAT, LON0 + east_m * M_LON)
    assert (got.merchant_id, got.method) == (expected.merchant_id, expected.method)
    if expected.distance_m is None:
        assert got.distance_m is None
    else:
        assert got.distance_m == pytest.approx(expected.distance_m, abs=0.05)


def test_empty_index_attributes_nothing() -> None:
    assert MerchantIndex([], max_distance_m=10).attribute(LAT0, LON0) == Attribution(None, "none", None)


def test_area_is_the_most_specific_polygon() -> None:
    areas = [ZoneRecord("city", rect(-1000, -1000, 1000, 1000)), ZoneRecord("street-1", rect(-5, -5, 25, 10))]
    idx = MerchantIndex(ZONES, max_distance_m=10, areas=areas, merchant_areas={"big": "district-9"})
    assert idx.area_of(LAT0 + 2 * M_LAT, LON0 + 5 * M_LON) == "street-1"
    assert idx.area_of(LAT0 + 500 * M_LAT, LON0) == "city"
    no_areas = MerchantIndex(ZONES, max_distance_m=10, merchant_areas={"big": "district-9"})
    assert no_areas.area_of(LAT0, LON0, merchant_id="big") == "district-9"


def feature(merchant_id: str, polygon: shapely.Polygon) -> str:
    geometry = shapely.geometry.mapping(polygon)
    coords = [[list(p) for p in ring] for ring in geometry["coordinates"]]
    return (
        f'{{"type": "Feature", "properties": {{"id": "{merchant_id}", "name": "{merchant_id}"}}, '
        f'"geometry": {{"type": "Polygon", "coordinates": {coords}}}}}'
    )


def write_geojson(path: Path, zones: list[tuple[str, shapely.Polygon]]) -> Path:
    features = ",".join(feature(mid, poly) for mid, poly in zones)
    path.write_text(f'{{"type": "FeatureCollection", "features": [{features}]}}', encoding="utf-8")
    return path


def test_ingest_attributes_cases_and_the_cache_follows_a_reimport(
    tmp_path: Path, session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    with session_scope(session_factory) as session:
        session.add(
            Area(
                id="street-1", name="Ganjiang Rd", level="street", polygon_wkt=rect(-100, -100, 100, 100).wkt
            )
        )
        import_merchants(session, write_geojson(tmp_path / "m.geojson", [("shop-a", rect(0, 0, 10, 5))]))
    clock = [0.0]
    cache = MerchantIndexCache(max_distance_m=10.0, check_interval_s=5.0, clock=lambda: clock[0])
    observed = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)

    def ingest_at(east_m: float, north_m: float) -> int:
        alert = make_alert(
            location={"lat": LAT0 + north_m * M_LAT, "lon": LON0 + east_m * M_LON, "accuracy_m": 1.0},
            observed_at=observed,
        )
        with session_scope(session_factory, write_lock=True) as session:
            result = ingest_alert(
                session, alert, topic=None, settings=central_settings, index=cache.get(session)
            )
        assert result.case_id is not None
        return result.case_id

    first = ingest_at(5, -3)
    # The zone moves (re-import by id) and a second shop appears right where the next alert lands.
    with session_scope(session_factory) as session:
        import_merchants(
            session,
            write_geojson(
                tmp_path / "m.geojson",
                [
                    ("shop-a", rect(0, -5, 10, 5)),
                    ("shop-z", rect(200, 0, 210, 5)),
                ],
            ),
        )
    stale = ingest_at(205, 2)  # within the check interval: the old index is still used
    with session_scope(session_factory) as session:
        stale_case = session.get(Case, stale)
        assert stale_case is not None and stale_case.attribution_method == "none"
    clock[0] = 10.0
    fresh = ingest_at(205, 3)  # interval passed, fingerprint changed: rebuilt once
    with session_scope(session_factory) as session:
        cases = {c.id: c for c in session.scalars(select(Case))}
    assert (cases[first].merchant_id, cases[first].attribution_method) == ("shop-a", "nearest")
    assert cases[first].attribution_distance_m == pytest.approx(3.0, abs=0.05)
    assert cases[first].area_id == "street-1"
    assert fresh == stale  # the same spot: the case is re-attributed as its mean moves
    assert (cases[fresh].merchant_id, cases[fresh].attribution_method) == ("shop-z", "inside_zone")
    assert cases[fresh].area_id is None  # outside the street polygon, no merchant area


def test_manual_attribution_is_kept(
    tmp_path: Path, session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    with session_scope(session_factory) as session:
        import_merchants(session, write_geojson(tmp_path / "m.geojson", [("shop-a", rect(0, 0, 10, 5))]))
    idx = MerchantIndex([ZoneRecord("shop-a", rect(0, 0, 10, 5))], max_distance_m=10)
    alert = make_alert(location={"lat": LAT0 + 2 * M_LAT, "lon": LON0 + 5 * M_LON, "accuracy_m": 1.0})
    with session_scope(session_factory, write_lock=True) as session:
        case_id = ingest_alert(session, alert, topic=None, settings=central_settings, index=idx).case_id
    with session_scope(session_factory) as session:
        case = session.get(Case, case_id)
        assert case is not None and case.merchant_id == "shop-a"
        case.merchant_id, case.attribution_method = None, "manual"
    again = make_alert(
        location={"lat": LAT0 + 2 * M_LAT, "lon": LON0 + 5 * M_LON, "accuracy_m": 1.0},
        episode_id=alert.episode_id,
    )
    with session_scope(session_factory, write_lock=True) as session:
        ingest_alert(session, again, topic=None, settings=central_settings, index=idx)
    with session_scope(session_factory) as session:
        case = session.get(Case, case_id)
        assert case is not None and (case.merchant_id, case.attribution_method) == (None, "manual")
