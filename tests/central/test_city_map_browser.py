"""The city map (/map) in a real browser (Debian Chromium, headless, Playwright), as a district
reviewer in zh-CN uses it: it pans and zooms, search finds a merchant by its Chinese name and a case
by its number, clicking a case opens it, the layers and filters switch, the base map is the
imported vector street map, on a phone too. No request leaves the machine: with a tile server
configured, the tiles come from a local one on this machine, and GCJ-02 tiles get GCJ-02 overlays.
Screenshots go to $STREETWATCH_TEST_ARTEFACTS (default: pytest's tmp folder)."""

from __future__ import annotations

import json
import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
import shapely
from playwright.sync_api import Browser, Page, expect
from review_seed import PASSWORD, T0, add_case, seed_city
from sqlalchemy.orm import Session, sessionmaker
from support import free_port
from workflow_support import serve_app

from streetwatch.central.app import build_app
from streetwatch.central.config import CentralSettings, MapSettings, WebSettings
from streetwatch.central.db import session_scope
from streetwatch.central.gis.basemap import import_basemap
from streetwatch.central.gis.gcj02 import wgs84_to_gcj02
from streetwatch.central.models import EdgeBox, Merchant
from streetwatch.central.workflow.clock import ManualClock

NOW = T0 + timedelta(days=1)
LOTUS_WKT = "POLYGON ((121.4727 31.2350, 121.4730 31.2350, 121.4730 31.2352, 121.4727 31.2352, 121.4727 31.2350))"
CAMERA_VIEW = [[121.4719, 31.2349], [121.4726, 31.2349], [121.4726, 31.2353], [121.4719, 31.2353], [121.4719, 31.2349]]
BASEMAP = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "properties": {"highway": "tertiary", "name": "Tea Street"},
         "geometry": {"type": "LineString", "coordinates": [[121.4712, 31.23525], [121.4738, 31.23525]]}},
        {"type": "Feature", "properties": {"highway": "residential", "name": "Well Lane"},
         "geometry": {"type": "LineString", "coordinates": [[121.4725, 31.2340], [121.4725, 31.2365]]}},
        {"type": "Feature", "properties": {"building": "yes"},
         "geometry": {"type": "Polygon", "coordinates": [[[121.4720, 31.2354], [121.4724, 31.2354],
                                                          [121.4724, 31.2357], [121.4720, 31.2357],
                                                          [121.4720, 31.2354]]]}},
    ],
}
PHONE = {"width": 390, "height": 844}


@dataclass
class MapServer:
    url: str
    cases: dict[str, int]


def _seed(factory: sessionmaker[Session]) -> dict[str, int]:
    """Seed city; a Chinese-named merchant with an old case; 24 open cases at the tea house (a
    cluster), one of them stacked goods; south's case; a fixed camera's calibrated view."""
    seed_city(factory)
    cases: dict[str, int] = {}
    with session_scope(factory) as session:
        session.add(Merchant(id="m-lotus", name="莲心茶社", address="茶街 20 号", road="Tea Street",
                             zone_wkt=LOTUS_WKT, area_id="north", grade="yellow"))
        session.flush()
        for i in range(24):
            case = add_case(session, lat=31.23505 + 0.000005 * i, lon=121.47205 + 0.000008 * i, merchant_id="m-tea",
                            area_id="north", first_seen=NOW - timedelta(hours=2, minutes=i),
                            violation="stacked_goods" if i == 0 else "illegal_parking")
            cases.setdefault("goods" if i == 0 else "tea", case.id)
        cases["lotus"] = add_case(session, lat=31.23510, lon=121.47285, merchant_id="m-lotus", area_id="north",
                                  violation="street_vending", status="confirmed",
                                  first_seen=NOW - timedelta(days=5)).id
        cases["fruit"] = add_case(session, lat=31.22510, lon=121.47515, merchant_id="m-fruit", area_id="south").id
        session.add(EdgeBox(edge_id="box-01", state="online", state_since=NOW.astimezone(UTC),
                            last_status_at=NOW, status={"cameras": [{"id": "cam-north", "kind": "fixed",
                                                                     "view": CAMERA_VIEW}]}))
    return cases


def _app(factory: sessionmaker[Session], settings: CentralSettings, map_settings: MapSettings):  # type: ignore[no-untyped-def]
    web = WebSettings(mode="development", secret_key="m" * 40, cookie_secure=False)  # type: ignore[arg-type]
    return build_app(settings.model_copy(update={"web": web, "map": map_settings}), factory, clock=ManualClock(NOW))


@pytest.fixture()
def basemap(tmp_path: Path) -> Path:
    source = tmp_path / "streets.geojson"
    source.write_text(json.dumps(BASEMAP))
    target = tmp_path / "var" / "basemap.geojson"
    import_basemap(source, target, attribution="测试街道图")
    return target


@pytest.fixture()
def city_map(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, basemap: Path
) -> Iterator[MapServer]:
    cases = _seed(session_factory)
    app = _app(session_factory, central_settings, MapSettings(basemap_path=basemap, basemap_attribution="测试街道图"))
    with serve_app(app) as url:
        yield MapServer(url, cases)


def log_in(page: Page, base: str, user: str = "north") -> None:
    page.goto(f"{base}/login")
    page.get_by_label("用户名").fill(user)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(f"{base}/")


def open_map(page: Page, base: str) -> None:
    page.goto(f"{base}/map")
    expect(page.locator("#city-map[data-ready='1']")).to_be_attached()
    expect(page.locator("path.zone").first).to_be_visible()


def watch(page: Page, base: str) -> tuple[list[str], list[str]]:
    """(script errors and CSP violations, requests to any other host than the app's)."""
    problems: list[str] = []
    outside: list[str] = []
    host = urlparse(base).hostname
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("request", lambda r: outside.append(r.url) if urlparse(r.url).hostname not in (host, None) else None)
    return problems, outside


def scale_m(page: Page) -> float:
    """What the scale bar says, in metres (it shrinks when the map zooms in)."""
    text = page.locator(".leaflet-control-scale-line").inner_text()
    number, unit = re.fullmatch(r"([\d.]+)\s*(k?m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * (1000 if unit == "km" else 1)


def zone_box(page: Page, merchant: str) -> dict[str, float]:
    return page.locator(f'path.zone[data-merchant="{merchant}"]').bounding_box()  # type: ignore[return-value]


def test_pan_zoom_search_click_through_and_layers_in_zh_cn(
    city_map: MapServer, browser: Browser, artefacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")
    page = context.new_page()
    problems, outside = watch(page, city_map.url)
    log_in(page, city_map.url)
    # the street map answers after the overlays (as a large one does): the map is ready only once both are drawn
    page.route("**/map/basemap.geojson", lambda route: (page.wait_for_timeout(600), route.continue_()))
    open_map(page, city_map.url)
    # the imported street map is drawn under the overlays; the district sees its own merchants only
    assert page.locator("path.base-road").count() == 2 and page.locator("path.base-building").count() == 1
    paths = page.locator("path.zone")
    zones = {paths.nth(i).get_attribute("data-merchant") for i in range(paths.count())}
    assert zones == {"m-tea", "m-noodle", "m-lotus"}
    assert page.locator('path.zone[data-merchant="m-lotus"]').get_attribute("data-grade") == "yellow"
    expect(page.locator('path.camera-view[data-camera="cam-north"]')).to_have_count(1)
    expect(page.locator('path.road[data-road="Tea Street"]')).to_have_count(1)  # graded along the real street
    expect(page.locator(".leaflet-control-attribution")).to_contain_text("测试街道图")
    # 23 parking cases a few metres apart: one cluster, not 23 dots on top of each other
    expect(page.locator(".marker-cluster").first).to_be_visible()
    page.screenshot(path=str(artefacts / "city_map_1366.png"), full_page=True)

    # pan: dragging the map moves the zones with the pointer
    before = zone_box(page, "m-lotus")
    box = page.locator("#city-map").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.8
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 120, y - 60, steps=8)
    page.wait_for_timeout(300)  # the pointer rests before it lets go: no inertia carries the map further
    page.mouse.up()
    after = zone_box(page, "m-lotus")
    assert (after["x"], after["y"]) == pytest.approx((before["x"] - 120, before["y"] - 60), abs=3)
    # zoom: the zoom-in button halves the scale bar's metres per length
    metres, text = scale_m(page), page.locator(".leaflet-control-scale-line").inner_text()
    page.get_by_title("放大").click()
    page.wait_for_function("t => document.querySelector('.leaflet-control-scale-line').textContent !== t", arg=text)
    assert scale_m(page) < metres

    # search by the merchant's Chinese name: the map goes there and opens its popup
    page.get_by_test_id("map-search").fill("莲心")
    results = page.get_by_test_id("search-results")
    expect(results.locator("li")).to_have_count(1)
    expect(results).to_contain_text("莲心茶社")
    results.locator("li").first.click()
    popup = page.locator('.leaflet-popup .popup[data-merchant="m-lotus"]')
    expect(popup).to_contain_text("茶街 20 号")
    cases_link = popup.get_by_role("link", name="该商户的案件")
    expect(cases_link).to_have_attribute("href", "/?merchant=m-lotus&status=confirmed")

    # search by case number, then a click on the case's marker opens its popup and the case
    goods = city_map.cases["goods"]
    page.get_by_test_id("map-search").fill(f"#{goods}")
    page.get_by_test_id("map-search").press("Enter")
    expect(page.locator(f'.leaflet-popup .popup[data-case="{goods}"]')).to_contain_text(f"#{goods} 乱堆物料")
    page.locator(f'.leaflet-popup:has(.popup[data-case="{goods}"]) .leaflet-popup-close-button').click()
    page.locator(f'path.case[data-case="{goods}"]').click()
    link = page.locator(f'.leaflet-popup .popup[data-case="{goods}"]').get_by_test_id("popup-case-link")
    expect(link).to_have_text(f"打开案件 #{goods}")
    link.click()
    expect(page).to_have_url(f"{city_map.url}/cases/{goods}")

    # layers and filters
    open_map(page, city_map.url)
    in_view = page.get_by_test_id("in-view-list")
    expect(in_view.locator(f'a[data-case="{goods}"]')).to_have_count(1)
    page.get_by_label("商户责任区（按等级）").uncheck()
    expect(page.locator("path.zone")).to_have_count(0)
    page.get_by_label("商户责任区（按等级）").check()
    expect(page.locator("path.zone")).to_have_count(3)
    page.get_by_label("摄像机").uncheck()
    expect(page.locator("path.camera-view")).to_have_count(0)
    page.get_by_label("已确认案件热力图").check()  # the lotus case was confirmed five days ago
    expect(page.locator("canvas.leaflet-heatmap-layer")).to_have_count(1)
    page.get_by_label("乱堆物料").uncheck()
    expect(in_view.locator(f'a[data-case="{goods}"]')).to_have_count(0)
    # 23 parking cases and the lotus stall (confirmed: still open)
    expect(page.get_by_test_id("in-view-count")).to_have_text("视图内 24 件未结案件")
    # the time filter: the parking cases are two hours old, the lotus case five days
    page.get_by_test_id("map-time").select_option("1")
    expect(page.get_by_test_id("in-view-count")).to_have_text("视图内 23 件未结案件")
    expect(in_view.locator(f'a[data-case="{city_map.cases["lotus"]}"]')).to_have_count(0)
    # the south district's case is nowhere, not even in the search
    page.get_by_test_id("map-search").fill(f"#{city_map.cases['fruit']}")
    expect(page.get_by_test_id("search-results")).to_contain_text("未找到")
    page.screenshot(path=str(artefacts / "city_map_layers_1366.png"), full_page=True)
    assert problems == [] and outside == []
    context.close()


def test_time_filter_drops_cases_older_than_the_window(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, basemap: Path, browser: Browser
) -> None:
    cases = _seed(session_factory)
    with session_scope(session_factory) as session:
        old = add_case(session, lat=31.23511, lon=121.47290, merchant_id="m-lotus", area_id="north",
                       first_seen=NOW - timedelta(days=3)).id
    app = _app(session_factory, central_settings, MapSettings(basemap_path=basemap))
    with serve_app(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        log_in(page, url)
        open_map(page, url)
        in_view = page.get_by_test_id("in-view-list")
        expect(in_view.locator(f'a[data-case="{old}"]')).to_have_count(1)
        page.get_by_test_id("map-time").select_option("1")
        expect(in_view.locator(f'a[data-case="{old}"]')).to_have_count(0)
        expect(in_view.locator(f'a[data-case="{cases["tea"]}"]')).to_have_count(1)
        page.get_by_test_id("map-time").select_option("7")
        expect(in_view.locator(f'a[data-case="{old}"]')).to_have_count(1)
        page.close()


def test_on_a_phone_the_map_fills_the_width_and_search_and_cases_work(
    city_map: MapServer, browser: Browser, artefacts: Path
) -> None:
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True)
    page = context.new_page()
    problems, outside = watch(page, city_map.url)
    log_in(page, city_map.url)
    open_map(page, city_map.url)
    width = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1]  # no sideways scroll
    box = page.locator("#city-map").bounding_box()
    assert box is not None and box["width"] >= PHONE["width"] - 40 and box["height"] >= 300
    assert page.get_by_test_id("map-search").bounding_box()["height"] >= 44  # type: ignore[index]
    page.get_by_test_id("map-search").fill("莲心")
    page.get_by_test_id("search-results").locator("li").first.tap()
    expect(page.locator('.leaflet-popup .popup[data-merchant="m-lotus"]')).to_be_visible()
    page.get_by_label("商户责任区（按等级）").uncheck()
    expect(page.locator("path.zone")).to_have_count(0)
    page.screenshot(path=str(artefacts / "city_map_390.png"), full_page=True)
    lotus = city_map.cases["lotus"]
    page.get_by_label("已确认", exact=True).check()
    page.get_by_test_id("in-view-list").locator(f'a[data-case="{lotus}"]').tap()
    expect(page).to_have_url(f"{city_map.url}/cases/{lotus}")
    assert problems == [] and outside == []
    context.close()


PNG_TILE = (
    b"\x89PNG\r\n\x1a\n"
    + (13).to_bytes(4, "big") + b"IHDR" + (1).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    + zlib.crc32(b"IHDR" + (1).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00").to_bytes(4, "big")
)


def _png() -> bytes:
    """A 1x1 grey PNG, built by hand (the tile server's content does not matter, its use does)."""
    raw = zlib.compress(b"\x00\xc8\xc8\xc8")
    idat = len(raw).to_bytes(4, "big") + b"IDAT" + raw + zlib.crc32(b"IDAT" + raw).to_bytes(4, "big")
    end = (0).to_bytes(4, "big") + b"IEND" + zlib.crc32(b"IEND").to_bytes(4, "big")
    return PNG_TILE + idat + end


@pytest.fixture()
def tile_server() -> Iterator[tuple[str, list[str]]]:
    """A tile server on this machine (like a city's own): counts what it serves."""
    served: list[str] = []
    png = _png()

    class Tiles(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.2", free_port()), Tiles)
    thread = threading.Thread(target=server.serve_forever, name="tiles", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def test_gcj02_tiles_from_the_citys_tile_server_get_converted_overlays(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, basemap: Path,
    tile_server: tuple[str, list[str]], browser: Browser,
) -> None:
    origin, served = tile_server
    _seed(session_factory)
    tiles = MapSettings(tile_url=f"{origin}/{{z}}/{{x}}/{{y}}.png", tile_attribution="本市瓦片", tile_datum="gcj02",
                        basemap_path=basemap)
    with serve_app(_app(session_factory, central_settings, tiles)) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        problems: list[str] = []
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        log_in(page, url)
        open_map(page, url)
        expect(page.locator("img.leaflet-tile-loaded").first).to_be_attached()
        assert served and all(re.fullmatch(r"/\d+/\d+/\d+\.png", p) for p in served)
        expect(page.locator(".leaflet-control-attribution")).to_contain_text("本市瓦片")
        layers = page.request.get(f"{url}/map/layers.json").json()
        page.close()
    assert problems == []  # the CSP lets the tile server's images in
    lotus = next(f for f in layers["zones"]["features"] if f["id"] == "m-lotus")
    drawn = shapely.geometry.shape(lotus["geometry"]).centroid
    stored = shapely.from_wkt(LOTUS_WKT).centroid
    expected = wgs84_to_gcj02(stored.x, stored.y)
    assert (drawn.x, drawn.y) == pytest.approx(expected, abs=1e-7)
    assert abs(drawn.x - stored.x) > 0.003  # the offset (~450 m here) really was applied
