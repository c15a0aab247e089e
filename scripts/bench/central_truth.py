"""Ground truth for scripts/bench_central.py: a synthetic city, its merchants, violations and alerts.

Layout (local metres around a centre, converted to WGS84 lon/lat):
- a grid of straight east-west street segments, 500 m long, 800 m apart east-west and 600 m apart
  north-south (10,000 merchants -> 100 segments, about 8 km x 6 km: a city district's size);
- each segment has a 14 m road with shops on both sides; every shop's responsibility zone is the
  pavement in front of it: 8 m along the street (2 m gap to the next), 5 m deep from the kerb.

Violations: each is placed inside one merchant's zone (1 m from its edges), or for a share of them
2-5 m beyond the kerb edge, in the road (so `nearest` attribution is exercised; the intended zone
is then the nearest one by construction). Two violations of the same kind are never within
60 m and 6 hours of each other: the case engine (radius <= 25 m, gap 2 h) would rightly merge those,
so the ground truth keeps them apart and every violation is one expected case.

Sightings: 1-3 cameras (on one or two edge boxes) each report one episode (first alert, reminders a
minute apart, an `ended` alert), about ten alerts per violation in all, each with independent GPS
noise (sigma 2 m per axis). Evidence: real street photos cropped, downsized and re-encoded to about
20 KB; each alert's JPEG carries its alert id in a JPEG comment segment, so no two alerts share a file
(content addressing stores each once), while a redelivery carries the very same bytes.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import random
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench.publisher import Outgoing
from streetwatch.edge.alerts import VIOLATIONS, alert_topic

LAT0, LON0 = 31.20, 121.45
METRES_PER_DEG_LAT = 111_320.0
METRES_PER_DEG_LON = METRES_PER_DEG_LAT * math.cos(math.radians(LAT0))
SHOPS_PER_SIDE = 50
PITCH_M, SHOP_W_M, ZONE_DEPTH_M, ROAD_HALF_M = 10.0, 8.0, 5.0, 7.0
SEGMENT_DX_M, SEGMENT_DY_M = 800.0, 600.0
GPS_SIGMA_M = 2.0
SEPARATION_M, SEPARATION_S = 60.0, 6 * 3600.0
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
MODEL_SHA = "5" * 64


def to_lonlat(x: float, y: float) -> tuple[float, float]:
    return LON0 + x / METRES_PER_DEG_LON, LAT0 + y / METRES_PER_DEG_LAT


@dataclass(frozen=True)
class MerchantTruth:
    id: str
    segment: int
    side: int  # +1 north of the road, -1 south
    x0: float  # west edge of the zone, local metres
    y_kerb: float  # the zone's edge along the kerb
    y_back: float  # the zone's edge along the shop front

    def wkt(self) -> str:
        corners = [
            (self.x0, self.y_kerb),
            (self.x0 + SHOP_W_M, self.y_kerb),
            (self.x0 + SHOP_W_M, self.y_back),
            (self.x0, self.y_back),
            (self.x0, self.y_kerb),
        ]
        return (
            "POLYGON((" + ", ".join(f"{lon:.8f} {lat:.8f}" for lon, lat in map(lambda c: to_lonlat(*c), corners)) + "))"
        )


def make_merchants(count: int) -> list[MerchantTruth]:
    """`count` storefront zones along a square-ish grid of street segments."""
    per_segment = 2 * SHOPS_PER_SIDE
    segments = math.ceil(count / per_segment)
    cols = math.ceil(math.sqrt(segments))
    merchants: list[MerchantTruth] = []
    for n in range(count):
        seg, rest = divmod(n, per_segment)
        side = 1 if rest < SHOPS_PER_SIDE else -1
        pos = rest % SHOPS_PER_SIDE
        row, col = divmod(seg, cols)
        x_start = (col - cols / 2) * SEGMENT_DX_M
        y_road = (row - cols / 2) * SEGMENT_DY_M
        x0 = x_start + pos * PITCH_M + (PITCH_M - SHOP_W_M) / 2
        y_kerb = y_road + side * ROAD_HALF_M
        merchants.append(MerchantTruth(f"m{n:05d}", seg, side, x0, y_kerb, y_kerb + side * ZONE_DEPTH_M))
    return merchants


@dataclass(frozen=True)
class ViolationTruth:
    index: int
    violation: str
    merchant_id: str
    expected_method: str  # inside_zone | nearest
    x: float
    y: float
    start: datetime


@dataclass(frozen=True)
class AlertSpec:
    """One unique alert (published once, or twice when redelivered)."""

    alert_id: str
    episode_id: str
    violation_index: int
    edge_id: str
    camera_id: str
    violation: str
    state: str
    started_at: datetime
    observed_at: datetime
    lat: float
    lon: float
    evidence_index: int


def _place(rng: random.Random, merchant: MerchantTruth, *, near: bool) -> tuple[float, float]:
    x = rng.uniform(merchant.x0 + 1.5, merchant.x0 + SHOP_W_M - 1.5)
    if near:  # beyond the kerb edge, in the road: outside every zone, nearest to this one
        return x, merchant.y_kerb - merchant.side * rng.uniform(2.0, 5.0)
    return x, merchant.y_kerb + merchant.side * rng.uniform(1.0, ZONE_DEPTH_M - 1.0)


def make_violations(
    merchants: list[MerchantTruth],
    count: int,
    *,
    rng: random.Random,
    near_share: float = 0.1,
    days: float | None = None,
) -> list[ViolationTruth]:
    """`count` violations, same-kind ones kept >= 60 m or >= 6 h apart (see module docstring)."""
    span_s = (days if days is not None else max(2.0, count / 700)) * 86_400
    grid: dict[tuple[str, int, int], list[tuple[float, float, float]]] = {}
    out: list[ViolationTruth] = []
    while len(out) < count:
        merchant = rng.choice(merchants)
        kind = rng.choice(VIOLATIONS)
        near = rng.random() < near_share
        x, y = _place(rng, merchant, near=near)
        t = rng.uniform(0, span_s)
        cx, cy = int(x // SEPARATION_M), int(y // SEPARATION_M)
        clash = any(
            math.hypot(x - ox, y - oy) < SEPARATION_M and abs(t - ot) < SEPARATION_S
            for dx in (-1, 0, 1)
            for dy in (-1, 0, 1)
            for ox, oy, ot in grid.get((kind, cx + dx, cy + dy), [])
        )
        if clash:
            continue
        grid.setdefault((kind, cx, cy), []).append((x, y, t))
        out.append(
            ViolationTruth(
                len(out), kind, merchant.id, "nearest" if near else "inside_zone", x, y, T0 + timedelta(seconds=t)
            )
        )
    return out


def make_alerts(
    violations: list[ViolationTruth], *, rng: random.Random, prefix: str, per_violation: int = 10, pool: int = 1
) -> list[AlertSpec]:
    """About `per_violation` alerts per violation from 1-3 cameras, each camera one episode."""
    alerts: list[AlertSpec] = []
    for v in violations:
        n = max(1, per_violation + rng.randint(-2, 2))
        cameras = rng.choices((1, 2, 3), weights=(0.5, 0.35, 0.15))[0]
        cameras = min(cameras, n)
        seg = int(v.merchant_id[1:]) // (2 * SHOPS_PER_SIDE)
        for cam in range(cameras):
            count = n // cameras + (1 if cam < n % cameras else 0)
            edge = f"{prefix}-e{seg:03d}" + ("" if cam == 0 else f"-{cam}")
            camera = f"{prefix}-c{seg:03d}-{cam}-{int(v.x // 100) % 10}"
            episode = f"{prefix}-ep{v.index:05d}-{cam}"
            started = v.start + timedelta(seconds=rng.uniform(0, 90))
            for k in range(count):
                observed = started + timedelta(seconds=60 * k + rng.uniform(0, 5))
                x = v.x + rng.gauss(0, GPS_SIGMA_M)
                y = v.y + rng.gauss(0, GPS_SIGMA_M)
                lon, lat = to_lonlat(x, y)
                state = "ended" if k == count - 1 and count > 1 else "active"
                alerts.append(
                    AlertSpec(
                        f"{prefix}-a{len(alerts):07d}",
                        episode,
                        v.index,
                        edge,
                        camera,
                        v.violation,
                        state,
                        started,
                        observed,
                        lat,
                        lon,
                        rng.randrange(pool),
                    )
                )
    alerts.sort(key=lambda a: a.observed_at)
    return alerts


def delivery_order(alerts: list[AlertSpec], *, rng: random.Random, duplicate_share: float = 0.1) -> list[int]:
    """Indices into `alerts` in publish order: each once, plus redeliveries a little later."""
    order = list(range(len(alerts)))
    dupes = rng.sample(range(len(alerts)), round(duplicate_share * len(alerts)))
    inserts = sorted(((min(len(order), i + rng.randint(1, 2000)), i) for i in dupes), reverse=True)
    for position, index in inserts:
        order.insert(position, index)
    return order


# ---------------------------------------------------------------- evidence and wire payloads


def evidence_pool(street_dir: Path, *, count: int, rng: random.Random, target_bytes: int = 20_000) -> list[bytes]:
    """`count` distinct real JPEGs of about `target_bytes`: random crops of the street photos."""
    import cv2

    photos = [img for img in (cv2.imread(str(p)) for p in sorted(street_dir.glob("*.jpg"))) if img is not None]
    if not photos:
        raise FileNotFoundError(f"no street photos (*.jpg) in {street_dir}")
    out: list[bytes] = []
    quality = 75
    while len(out) < count:
        photo = rng.choice(photos)
        h, w = photo.shape[:2]
        cw, ch = int(w * rng.uniform(0.5, 0.9)), int(h * rng.uniform(0.5, 0.9))
        x, y = rng.randrange(w - cw + 1), rng.randrange(h - ch + 1)
        crop = cv2.resize(photo[y : y + ch, x : x + cw], (480, round(480 * ch / cw)), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        data = buf.tobytes()
        # Steer the quality so the pool's sizes straddle the target.
        quality = max(20, quality - 3) if len(data) > target_bytes * 1.1 else min(95, quality + 2)
        if abs(len(data) - target_bytes) <= target_bytes * 0.25:
            out.append(data)
    return out


def tagged_jpeg(base: bytes, alert_id: str) -> bytes:
    """The JPEG with a COM segment naming the alert right after SOI: still valid, distinct bytes."""
    comment = alert_id.encode()
    return base[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + base[2:]


def payload_for(spec: AlertSpec, jpeg: bytes) -> bytes:
    """The alert on the wire, as an edge box would send it."""
    tagged = tagged_jpeg(jpeg, spec.alert_id)
    doc = {
        "schema": "streetwatch.alert/1",
        "alert_id": spec.alert_id,
        "episode_id": spec.episode_id,
        "state": spec.state,
        "edge_id": spec.edge_id,
        "camera_id": spec.camera_id,
        "violation": spec.violation,
        "started_at": spec.started_at.isoformat(),
        "observed_at": spec.observed_at.isoformat(),
        "dwell_s": (spec.observed_at - spec.started_at).total_seconds() + 120,
        "confidence": 0.8,
        "location": {"lat": spec.lat, "lon": spec.lon, "accuracy_m": 3.0},
        "zone_id": "kerb",
        "track_id": spec.violation_index,
        "objects": [{"cls": "car", "score": 0.8, "bbox": [40.0, 60.0, 300.0, 240.0]}],
        "evidence": {"jpeg_b64": base64.b64encode(tagged).decode(), "width": 480, "height": 270},
        "model": {"name": "yolox-bench", "sha256": MODEL_SHA},
    }
    return json.dumps(doc).encode()


def topic_for(spec: AlertSpec) -> str:
    return alert_topic(spec.edge_id, spec.camera_id)


@dataclass
class Dataset:
    """One generated world: merchants, violations, unique alerts and the publish order."""

    merchants: list[MerchantTruth]
    violations: list[ViolationTruth]
    alerts: list[AlertSpec]
    order: list[int]
    prefix: str

    def messages(self) -> Iterator[AlertSpec]:
        for index in self.order:
            yield self.alerts[index]


def make_dataset(
    merchants: list[MerchantTruth],
    *,
    violations: int,
    seed: int,
    prefix: str,
    pool: int,
    time_offset: timedelta = timedelta(0),
) -> Dataset:
    rng = random.Random(seed)
    truth = make_violations(merchants, violations, rng=rng)
    if time_offset:
        truth = [
            ViolationTruth(v.index, v.violation, v.merchant_id, v.expected_method, v.x, v.y, v.start + time_offset)
            for v in truth
        ]
    alerts = make_alerts(truth, rng=rng, prefix=prefix, pool=pool)
    return Dataset(merchants, truth, alerts, delivery_order(alerts, rng=rng), prefix)


def outgoing(dataset: Dataset, pool: Sequence[bytes]) -> tuple[list[Outgoing], list[str]]:
    """The dataset's messages in publish order for the publisher, and its unique alert ids in the
    order of their first publication (each message's `unique` indexes that list)."""
    first_published: dict[str, int] = {}
    messages = []
    for spec in dataset.messages():
        unique = first_published.setdefault(spec.alert_id, len(first_published))
        build = functools.partial(payload_for, spec, pool[spec.evidence_index])
        messages.append(Outgoing(topic_for(spec), unique, build))
    return messages, list(first_published)


def pair_counts(labels_true: list[int], labels_pred: list[int]) -> tuple[int, int, int]:
    """(pairs together in both, pairs together in prediction, pairs together in truth)."""

    def pairs(counts: np.ndarray) -> int:
        return int((counts * (counts - 1) // 2).sum())

    t = np.asarray(labels_true, dtype=np.int64)
    p = np.asarray(labels_pred, dtype=np.int64)
    _, joint = np.unique(np.stack([t, p]), axis=1, return_counts=True)
    _, pred = np.unique(p, return_counts=True)
    _, true = np.unique(t, return_counts=True)
    return pairs(joint), pairs(pred), pairs(true)
