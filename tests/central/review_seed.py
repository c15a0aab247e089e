"""A small, realistic city for the review-queue tests: areas, merchants, users, cases with alerts.

Geometry (WGS84, lon/lat; around People's Square, Shanghai):
- `city` covers everything; `north` (lat 31.230..31.240) and `south` (31.220..31.230) are districts;
  `north-st1` is a street inside north (lon 121.470..121.474).
- Merchants: `m-tea` and `m-noodle` in north (m-tea inside north-st1), `m-fruit` in south.
- Users: `admin` (admin), `city` (city area), `north`, `south`, `street` (north-st1 street).
Cases are made through the real ingest path when `ingest` is given, else as rows here.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from factories import make_alert
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import ingest_alert
from streetwatch.central.models import Alert, Area, Case, Merchant, User
from streetwatch.central.passwords import hash_password

PASSWORD = "correct horse battery staple"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def box(min_lon: float, min_lat: float, max_lon: float, max_lat: float) -> str:
    return (
        f"POLYGON(({min_lon} {min_lat}, {max_lon} {min_lat}, {max_lon} {max_lat}, "
        f"{min_lon} {max_lat}, {min_lon} {min_lat}))"
    )


AREAS = (
    ("city", "Shanghai", "city", None, box(121.40, 31.18, 121.55, 31.28)),
    ("north", "North district", "district", "city", box(121.460, 31.230, 121.490, 31.240)),
    ("south", "South district", "district", "city", box(121.460, 31.220, 121.490, 31.230)),
    ("north-st1", "Tea street", "street", "north", box(121.470, 31.2345, 121.474, 31.2360)),
)
MERCHANTS = (
    ("m-tea", "Lotus Tea House", "12 Tea Street", "north", box(121.4720, 31.23500, 121.47230, 31.23520)),
    (
        "m-noodle",
        "Golden Noodle Bar",
        "14 Tea Street",
        "north",
        box(121.47235, 31.23500, 121.47265, 31.23520),
    ),
    ("m-fruit", "Fresh Fruit Corner", "3 South Road", "south", box(121.4750, 31.22500, 121.47530, 31.22520)),
)
USERS = (
    ("admin", "admin", None),
    ("city", "reviewer", "city"),
    ("north", "reviewer", "north"),
    ("south", "reviewer", "south"),
    ("street", "reviewer", "north-st1"),
)


@lru_cache(maxsize=1)
def password_hash() -> str:
    """One Argon2 hash for every seeded user (hashing is slow on purpose; do it once per run)."""
    return hash_password(PASSWORD)


def seed_city(factory: sessionmaker[Session]) -> dict[str, int]:
    """Areas, merchants and users; returns {username: user_id}."""
    hashed = password_hash()
    with session_scope(factory) as session:
        for area_id, name, level, parent, wkt in AREAS:
            session.add(Area(id=area_id, name=name, level=level, parent_id=parent, polygon_wkt=wkt))
            session.flush()
        for mid, name, address, area_id, wkt in MERCHANTS:
            session.add(Merchant(id=mid, name=name, address=address, road="Tea Street", zone_wkt=wkt, area_id=area_id))
        users = [User(username=u, password_hash=hashed, role=role, area_id=area) for u, role, area in USERS]
        session.add_all(users)
        session.flush()
        return {u.username: u.id for u in users}


@lru_cache(maxsize=8)
def street_jpeg(street_dir: Path, name: str = "kerb_parked_cars_street.jpg", *, width: int = 480) -> bytes:
    """A real street photo, downsized like the edge does before publishing (bounded evidence)."""
    import cv2  # the edge extra is installed in dev; only tests that seed evidence need it

    image = cv2.imread(str(street_dir / name))
    if image is None:
        raise FileNotFoundError(street_dir / name)
    scale = width / image.shape[1]
    small = cv2.resize(image, (width, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return io.BytesIO(buf.tobytes()).getvalue()


def add_case(
    session: Session,
    *,
    lat: float,
    lon: float,
    violation: str = "illegal_parking",
    area_id: str | None = None,
    merchant_id: str | None = None,
    method: str = "none",
    distance_m: float | None = None,
    priority: int = 30,
    first_seen: datetime = T0,
    alerts: int = 2,
    evidence_sha256: str | None = None,
    status: str = "new",
    camera_id: str = "cam-1",
) -> Case:
    """A case row with `alerts` alert rows behind it (for tests that do not go through ingest)."""
    case = Case(
        violation=violation,
        status=status,
        lat=lat,
        lon=lon,
        location_count=alerts,
        camera_id=camera_id,
        zone_id="z-1",
        first_seen=first_seen,
        last_seen=first_seen + timedelta(minutes=alerts),
        alert_count=alerts,
        episode_count=1,
        merchant_id=merchant_id,
        attribution_method=method,
        attribution_distance_m=distance_m,
        priority=priority,
        evidence_sha256=evidence_sha256,
        area_id=area_id,
    )
    session.add(case)
    session.flush()
    for i in range(alerts):
        observed = first_seen + timedelta(minutes=i)
        session.add(
            Alert(
                alert_id=f"al-{case.id}-{i}",
                episode_id=f"ep-{case.id}",
                case_id=case.id,
                edge_id="box-01",
                camera_id=camera_id,
                source_kind="fixed",
                violation=violation,
                state="active",
                started_at=first_seen - timedelta(seconds=150),
                observed_at=observed,
                lat=lat,
                lon=lon,
                accuracy_m=3.0,
                confidence=0.8,
                zone_id="z-1",
                track_id="7",
                evidence_sha256=evidence_sha256,
                payload={"dwell_s": 150.0 + 60 * i},
                model_name="yolox_nano",
                model_sha256="0" * 64,
            )
        )
    session.flush()
    return case


def ingest_sighting(
    factory: sessionmaker[Session],
    settings: CentralSettings,
    *,
    lat: float,
    lon: float,
    jpeg: bytes,
    violation: str = "illegal_parking",
    camera_id: str = "cam-1",
    observed: datetime = T0,
    sightings: int = 2,
) -> int:
    """Feed `sightings` real-looking alerts of one episode through the real ingest path; the case id."""
    episode = f"ep-{camera_id}-{lat:.5f}-{lon:.5f}"
    case_id = None
    for i in range(sightings):
        at = observed + timedelta(minutes=i)
        alert = make_alert(
            episode_id=episode,
            violation=violation,
            camera_id=camera_id,
            observed_at=at,
            started_at=observed - timedelta(seconds=150),
            dwell_s=150.0 + 60 * i,
            location={"lat": lat, "lon": lon, "accuracy_m": 3.0},
            evidence={"jpeg_b64": base64.b64encode(jpeg).decode(), "width": 480, "height": 320},
        )
        with session_scope(factory, write_lock=True) as session:
            result = ingest_alert(session, alert, topic=None, settings=settings)
        assert result.case_id is not None, result
        case_id = result.case_id
    assert case_id is not None
    return case_id


def seed_cases(factory: sessionmaker[Session], settings: CentralSettings, jpegs: Sequence[bytes]) -> dict[str, int]:
    """Named cases across the areas, through ingest (plus one polygon-only row); {name: case_id}."""
    first, second = jpegs[0], jpegs[-1]
    made = {
        # inside Lotus Tea House's zone, on Tea street (north district)
        "tea": ingest_sighting(factory, settings, lat=31.23510, lon=121.47215, jpeg=first, sightings=3),
        # 2 m east of Golden Noodle Bar's zone, on Tea street: attributed as nearest
        "noodle": ingest_sighting(
            factory,
            settings,
            lat=31.23510,
            lon=121.472671,
            jpeg=second,
            violation="street_vending",
            camera_id="cam-2",
        ),
        # south district, inside Fresh Fruit Corner's zone
        "fruit": ingest_sighting(
            factory,
            settings,
            lat=31.22510,
            lon=121.47515,
            jpeg=second,
            violation="stacked_goods",
            camera_id="cam-3",
        ),
    }
    with session_scope(factory) as session:
        # in north's polygon but with no area id: visible to north by the polygon test only
        made["north-poly"] = add_case(
            session, lat=31.2380, lon=121.4850, area_id=None, priority=20, first_seen=T0 + timedelta(hours=1)
        ).id
    return made
