"""Zones: ground-point membership (pixels, and ground metres for moving cameras), allowed windows in the
camera's time zone, bad input named."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from streetwatch.edge.config import CameraConfig, ZoneConfig
from streetwatch.edge.moving_rules import ground_zones, rules_plane
from streetwatch.edge.zones import CameraZones, Zone, ground_points, in_window, is_allowed, parse_window

SQUARE = [(100.0, 100.0), (300.0, 100.0), (300.0, 300.0), (100.0, 300.0)]


def _zone(windows: list[str] | None = None, **kw: object) -> ZoneConfig:
    values: dict[str, object] = {"id": "z-1", "violations": ["street_vending"], "polygon_px": SQUARE}
    values.update(kw)
    return ZoneConfig.model_validate({**values, "allowed_windows": windows or []})


def _camera(*zones: ZoneConfig, timezone: str = "Asia/Shanghai") -> CameraConfig:
    return CameraConfig(id="cam-1", url="rtsp://127.0.0.1/x", timezone=timezone, zones=list(zones))


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("18:00-22:00", (1080, 1320)),
        ("22:00-02:00", (1320, 120)),
        ("00:00-24:00", (0, 1440)),
        ("07:30-07:45", (450, 465)),
    ],
)
def test_parse_window(window: str, expected: tuple[int, int]) -> None:
    assert parse_window(window) == expected


@pytest.mark.parametrize(
    "window", ["18:00-18:00", "24:00-02:00", "1800-2200", "18:60-19:00", "18:00", "ab:cd-ef:gh"]
)
def test_parse_window_rejects(window: str) -> None:
    with pytest.raises(ValueError, match="window"):
        parse_window(window)


@pytest.mark.parametrize(
    ("minute", "window", "expected"),
    [
        (19 * 60, (1080, 1320), True),
        (18 * 60, (1080, 1320), True),  # start is inside
        (22 * 60, (1080, 1320), False),  # end is outside
        (23 * 60, (1320, 120), True),  # crossing midnight: before midnight
        (60, (1320, 120), True),  # crossing midnight: after midnight
        (120, (1320, 120), False),
        (12 * 60, (1320, 120), False),
        (0, (0, 1440), True),
        (1439.5, (0, 1440), True),
    ],
)
def test_in_window(minute: float, window: tuple[int, int], expected: bool) -> None:
    assert in_window(minute, window) is expected


# Asia/Shanghai is UTC+8 all year: 11:00Z is 19:00 local.
@pytest.mark.parametrize(
    ("windows", "utc", "tz", "expected"),
    [
        (["18:00-22:00"], datetime(2026, 6, 1, 11, 0, tzinfo=UTC), "Asia/Shanghai", True),
        (["18:00-22:00"], datetime(2026, 6, 1, 15, 0, tzinfo=UTC), "Asia/Shanghai", False),
        (["18:00-22:00"], datetime(2026, 6, 1, 19, 0, tzinfo=UTC), "UTC", True),
        (["22:00-02:00"], datetime(2026, 6, 1, 17, 30, tzinfo=UTC), "Asia/Shanghai", True),  # 01:30 local
        (["22:00-02:00"], datetime(2026, 6, 1, 18, 0, tzinfo=UTC), "Asia/Shanghai", False),  # 02:00 local
        (["22:00-02:00"], datetime(2026, 6, 1, 13, 59, tzinfo=UTC), "Asia/Shanghai", False),  # 21:59 local
        (["07:00-09:00", "18:00-22:00"], datetime(2026, 6, 1, 0, 30, tzinfo=UTC), "Asia/Shanghai", True),
        ([], datetime(2026, 6, 1, 11, 0, tzinfo=UTC), "Asia/Shanghai", False),
        # Europe/Berlin observes DST: 20:30Z is 22:30 in summer (outside) and 21:30 in winter (inside).
        (["18:00-22:00"], datetime(2026, 7, 1, 20, 30, tzinfo=UTC), "Europe/Berlin", False),
        (["18:00-22:00"], datetime(2026, 1, 15, 20, 30, tzinfo=UTC), "Europe/Berlin", True),
    ],
)
def test_is_allowed(windows: list[str], utc: datetime, tz: str, expected: bool) -> None:
    assert is_allowed(_zone(windows), utc, tz) is expected


def test_is_allowed_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="captured_at"):
        is_allowed(_zone(["18:00-22:00"]), datetime(2026, 6, 1, 19, 0), "UTC")


@pytest.mark.parametrize(
    ("box", "inside"),
    [
        ((150, 150, 250, 250), True),
        ((150, 50, 250, 299), True),  # top sticks out; stands inside
        ((150, 150, 250, 350), False),  # centre inside, but it stands below the zone
        ((50, 200, 140, 280), False),  # left of the zone
        ((250, 200, 350, 300), True),  # ground point (300, 300) on the corner counts as inside
        ((280, 200, 400, 250), False),  # ground point x = 340 is right of the zone
    ],
)
def test_zone_contains_ground_point(box: tuple[float, float, float, float], inside: bool) -> None:
    zones = CameraZones(_camera(_zone()))
    assert zones.zones[0].contains(ground_points(np.array([box]))).tolist() == [inside]


def test_membership_is_vectorised_and_filtered_by_violation() -> None:
    parking = _zone(id="z-park", violations=["illegal_parking"])
    far = [(500.0, 500.0), (600.0, 500.0), (600.0, 600.0)]
    vending = _zone(id="z-market", violations=["street_vending", "stacked_goods"], polygon_px=far)
    zones = CameraZones(_camera(parking, vending))
    points = np.array([[200.0, 200.0], [590.0, 510.0], [0.0, 0.0]])
    assert {k: v.tolist() for k, v in zones.membership("illegal_parking", points).items()} == {
        "z-park": [True, False, False]
    }
    assert [z.id for z in zones.for_violation("stacked_goods")] == ["z-market"]


def test_geo_zone_takes_its_pixel_polygon_from_the_caller() -> None:
    geo = ZoneConfig(
        id="z-geo", violations=["illegal_parking"], polygon_geo=[(31.0, 121.0), (31.0, 121.1), (31.1, 121.0)]
    )
    with pytest.raises(ValueError, match=r"z-geo.*polygons_px"):
        CameraZones(_camera(geo))
    zones = CameraZones(_camera(geo), polygons_px={"z-geo": SQUARE})
    assert zones.zones[0].contains(np.array([[200.0, 200.0]])).tolist() == [True]


@pytest.mark.parametrize(
    ("zone", "polygons", "timezone", "phrase"),
    [
        (_zone(), {"z-typo": SQUARE}, "UTC", "z-typo"),
        (_zone(polygon_px=[(0, 0), (10, 10), (10, 0), (0, 10)]), None, "UTC", "self-intersecting"),
        (_zone(polygon_px=[(0, 0), (5, 5), (10, 10)]), None, "UTC", "no area"),
        (_zone(["18:00-18:00"]), None, "UTC", r"zone 'z-1' allowed_windows.*empty"),
        (_zone(), None, "Mars/Olympus", "timezone"),
    ],
)
def test_bad_zone_input_is_named(
    zone: ZoneConfig, polygons: dict[str, list[tuple[float, float]]] | None, timezone: str, phrase: str
) -> None:
    with pytest.raises(ValueError, match=phrase):
        CameraZones(_camera(zone, timezone=timezone), polygons_px=polygons)


def test_minute_of_day_uses_camera_timezone() -> None:
    zones = CameraZones(_camera(_zone(), timezone="Asia/Shanghai"))
    assert zones.minute_of_day(datetime(2026, 6, 1, 11, 15, tzinfo=UTC)) == 19 * 60 + 15


def test_moving_camera_geo_zone_without_pixels_is_skipped_not_fatal() -> None:
    geo = ZoneConfig(
        id="z-geo", violations=["illegal_parking"], polygon_geo=[(31.0, 121.0), (31.0, 121.1), (31.1, 121.0)]
    )
    px = _zone(id="z-px")
    camera = CameraConfig(id="dash-1", kind="vehicle", url="rtsp://127.0.0.1/x", zones=[geo, px])
    assert [z.id for z in CameraZones(camera).zones] == ["z-px"]


# One zone type for both kinds of camera: a moving camera's zones are the same `Zone`, in ground metres.
KERB_GEO = [(31.30040, 120.58510), (31.30040, 120.58520), (31.30030, 120.58520), (31.30030, 120.58510)]
BOWTIE_GEO = [(31.30040, 120.58510), (31.30030, 120.58520), (31.30040, 120.58520), (31.30030, 120.58510)]


def _patrol_camera(*zones: ZoneConfig) -> CameraConfig:
    return CameraConfig(id="patrol-1", kind="vehicle", url="rtsp://127.0.0.1/x", zones=list(zones))


def test_a_moving_cameras_zone_is_the_same_zone_type_in_ground_metres() -> None:
    kerb = ZoneConfig(id="z-kerb", violations=["illegal_parking"], polygon_geo=KERB_GEO,
                      allowed_windows=["18:00-22:00"])
    camera = _patrol_camera(kerb)
    plane = rules_plane(camera)
    assert plane is not None
    (ground,) = ground_zones(camera, plane)
    pixels = CameraZones(_camera(_zone(id="z-px"))).zones[0]
    assert type(ground) is type(pixels) is Zone
    # The zone is about 9.5 m (east) x 11.1 m (north) around the plane's origin, its centroid.
    assert ground.contains(np.array([[0.0, 0.0], [4.0, 5.0], [6.0, 0.0], [0.0, -6.0]])).tolist() == [
        True, True, False, False]
    assert ground.covers(0.0, 0.0) and not ground.covers(0.0, 6.0)
    assert ground.allowed_at(19 * 60) and not ground.allowed_at(17 * 60)
    assert ground.dwell_for("illegal_parking") == 120


def test_a_bad_ground_zone_is_named_with_the_polygon_the_operator_wrote() -> None:
    bowtie = ZoneConfig(id="z-bowtie", violations=["illegal_parking"], polygon_geo=BOWTIE_GEO)
    camera = _patrol_camera(bowtie)
    plane = rules_plane(camera)
    assert plane is not None
    with pytest.raises(ValueError, match=r"camera 'patrol-1' zone 'z-bowtie': polygon_geo is self-intersecting"
                                         r".*31\.3004, 120\.5851"):
        ground_zones(camera, plane)
