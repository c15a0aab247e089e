"""A Chinese street for the review-desk tests: merchants with Chinese names and addresses, reviewers,
and a backlog of cases made through the real ingest path with real street-photo evidence (plus a
case from an uncalibrated camera, with no position, and one outside every zone).

Geometry (WGS84, around Ganjiang Road, Suzhou): three shop fronts in a row on 干将路 and one on 人民路.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from factories import make_alert
from review_seed import PASSWORD, password_hash
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.ingest import ingest_alert
from streetwatch.central.models import Merchant, User

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Suzhou
DEG_PER_M = 1 / 111_320
LAT = 31.30000
SHOPS = (
    ("SZ-001", "老王面馆", "干将路12号", "干将路", 120.58500),
    ("SZ-002", "鲜果坊", "干将路14号", "干将路", 120.58520),
    ("SZ-003", "福来五金", "干将路16号", "干将路", 120.58540),
    ("SZ-004", "碧螺茶庄", "人民路3号", "人民路", 120.59000),
)
USERS = (("wang", "reviewer"), ("li", "reviewer"), ("zhang", "supervisor"))


def zone(lon: float, lat: float = LAT, half_m: float = 7.0) -> str:
    d = half_m * DEG_PER_M
    ring = [(lon - d, lat - d), (lon + d, lat - d), (lon + d, lat + d), (lon - d, lat + d), (lon - d, lat - d)]
    return "POLYGON((" + ", ".join(f"{x} {y}" for x, y in ring) + "))"


@dataclass
class Desk:
    cases: dict[str, int]  # name -> case id
    backlog: list[int]  # the filler cases, queue order not implied


def seed_people(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as session:
        for mid, name, address, road, lon in SHOPS:
            session.add(
                Merchant(id=mid, name=name, address=address, road=road, zone_wkt=zone(lon), contact="0512-6000")
            )
        session.add_all(User(username=u, password_hash=password_hash(), role=role) for u, role in USERS)


def ingest_case(
    factory: sessionmaker[Session],
    settings: CentralSettings,
    *,
    jpeg: bytes,
    lon: float | None,
    at: datetime,
    key: str,
    violation: str = "illegal_parking",
    alerts: int = 2,
    lat: float = LAT,
    confidence: float = 0.8,
    camera_id: str = "cam-1",
) -> int:
    """`alerts` alerts of one episode through the real ingest (no position when `lon` is None)."""
    case_id = None
    for i in range(alerts):
        alert = make_alert(
            episode_id=f"ep-{key}",
            violation=violation,
            camera_id=camera_id,
            observed_at=at + timedelta(minutes=i),
            started_at=at - timedelta(seconds=150),
            dwell_s=150.0 + 60 * i,
            confidence=confidence,
            location={"lat": lat, "lon": lon, "accuracy_m": 3.0} if lon is not None else None,
            objects=[{"cls": "car", "score": confidence, "bbox": [100.0 + 10 * i, 120.0, 260.0, 220.0]}],
            evidence={"jpeg_b64": base64.b64encode(jpeg).decode(), "width": 480, "height": 320},
        )
        with session_scope(factory, write_lock=True) as session:
            result = ingest_alert(session, alert, topic=None, settings=settings)
        assert result.case_id is not None, result
        case_id = result.case_id
    assert case_id is not None
    return case_id


def seed_desk(
    factory: sessionmaker[Session], settings: CentralSettings, jpegs: list[bytes], *, backlog: int = 22
) -> Desk:
    """Merchants, users and cases: named ones for the tests, and a backlog that fills two pages."""
    seed_people(factory)
    first, second = jpegs[0], jpegs[-1]
    named = {
        "noodle": ingest_case(factory, settings, jpeg=first, lon=120.58500, at=T0, key="noodle", alerts=3),
        # 4 m east of the noodle shop's case, same violation and shop: a merge candidate
        "noodle-twin": ingest_case(
            factory,
            settings,
            jpeg=second,
            lon=120.58500 + 5 * DEG_PER_M,
            at=T0 + timedelta(hours=5),
            key="twin",
            camera_id="cam-2",
        ),
        "fruit": ingest_case(
            factory, settings, jpeg=second, lon=120.58520, at=T0, key="fruit", violation="street_vending"
        ),
        "tea": ingest_case(factory, settings, jpeg=first, lon=120.59000, at=T0, key="tea", violation="stacked_goods"),
        # an uncalibrated camera: no position, no merchant, one weak alert
        "nowhere": ingest_case(
            factory, settings, jpeg=first, lon=None, at=T0, key="nowhere", alerts=1, confidence=0.35, camera_id="cam-9"
        ),
        # 30 m beyond the last shop on 干将路: unattributed, the nearest merchant is suggested
        "beyond": ingest_case(
            factory,
            settings,
            jpeg=second,
            lon=120.58540 + 30 * DEG_PER_M,
            at=T0,
            key="beyond",
            violation="stacked_goods",
        ),
    }
    rows = []
    for i in range(backlog):
        shop = SHOPS[i % 3]
        rows.append(
            ingest_case(
                factory,
                settings,
                jpeg=first if i % 2 else second,
                lon=shop[4],
                lat=LAT + (i + 1) * 200 * DEG_PER_M,
                at=T0 - timedelta(days=1 + i % 9),
                key=f"b{i}",
                violation="street_vending",
                alerts=1 + i % 3,
            )
        )
    return Desk(named, rows)


__all__ = ["PASSWORD", "Desk", "seed_desk", "seed_people", "ingest_case", "T0", "LAT", "DEG_PER_M", "zone"]
