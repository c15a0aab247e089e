"""When a replayed video starts: --start-time, the telemetry's own clock, the video's creation time,
or one line saying why not and what to pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streetwatch.edge.sources import creation_time
from streetwatch.edge.telemetry import ParseStats, Pose, TelemetryFile
from streetwatch.edge.telemetry.clock import VideoTimes, replay_start

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def pose(t: datetime) -> Pose:
    return Pose(t=t, lat=31.3, lon=120.58, alt_m=None, heading_deg=None, pitch_deg=None, roll_deg=None,
                speed_mps=None, source="test")


def track(seconds: int = 60, *, offsets: list[float | None] | None = None, fmt: str = "gpx") -> TelemetryFile:
    poses = tuple(pose(T0 + timedelta(seconds=s)) for s in range(seconds))
    timed = offsets is not None
    return TelemetryFile(Path(f"/data/patrol.{fmt}"), fmt, fmt, poses, ParseStats("t"),  # type: ignore[arg-type]
                         tuple(offsets or ()), timed)


def start(*, created: datetime | None = None, telemetry: TelemetryFile | None | str = "default",
          given: datetime | None = None) -> tuple[datetime | None, str | None]:
    chosen = track() if telemetry == "default" else telemetry
    clock = replay_start(VideoTimes("DJI_0001.MP4", created, 30.0), telemetry=chosen,  # type: ignore[arg-type]
                         given=given, max_gap_s=2.0)
    return clock.start, clock.problem


def test_srt_or_klv_clock_places_the_video_by_the_median_of_its_blocks() -> None:
    """Block k starts k s into the video at T0 + 5 + k; one block with a bad clock does not move it."""
    telemetry = track(offsets=[s - 5.0 for s in range(60)], fmt="srt")
    odd = list(telemetry.offsets_s)
    odd[10] = 900.0
    telemetry = TelemetryFile(telemetry.path, "srt", "srt", telemetry.poses, telemetry.stats, tuple(odd), True)
    assert start(telemetry=telemetry, created=T0 - timedelta(days=3)) == (T0 + timedelta(seconds=5), None)


def test_creation_time_inside_the_telemetry_span_is_used() -> None:
    assert start(created=T0 + timedelta(seconds=10)) == (T0 + timedelta(seconds=10), None)


@pytest.mark.parametrize(("created", "words"), [
    (T0 + timedelta(days=2), "2.0 days after patrol.gpx"),
    (T0 - timedelta(hours=3), "3.0 h before patrol.gpx"),  # the 30 s video ends 2 h 59 min 30 s before
])
def test_creation_time_outside_the_span_is_one_line_saying_why_and_what_to_pass(created: datetime,
                                                                                 words: str) -> None:
    when, problem = start(created=created)
    assert when is None and problem is not None and "\n" not in problem
    assert "creation time" in problem and words in problem
    assert "DJI_0001.MP4" in problem and "--start-time 2026-03-01T09:00:00Z" in problem


def test_no_creation_time_and_no_own_clock_asks_for_start_time() -> None:
    when, problem = start()
    assert when is None and problem is not None
    assert "no creation time" in problem and "--start-time" in problem
    assert "2026-03-01T09:00:00Z .. 2026-03-01T09:00:59Z" in problem


def test_given_start_time_is_used_and_warned_about_when_nothing_could_match() -> None:
    assert start(given=T0) == (T0, None)
    far = T0 + timedelta(days=365)
    clock = replay_start(VideoTimes("DJI_0001.MP4", None, 30.0), telemetry=track(), given=far, max_gap_s=2.0)
    assert (clock.start, clock.problem) == (far, None)
    assert clock.warning is not None and clock.warning.startswith("--start-time puts DJI_0001.MP4")


def test_without_telemetry_there_is_nothing_to_line_up() -> None:
    """A fixed camera's replay keeps its default (now) even if the video has a creation time."""
    assert start(telemetry=None, created=T0) == (None, None)
    assert start(telemetry=None, given=T0) == (T0, None)


@pytest.mark.parametrize(("metadata", "expected"), [
    ({"creation_time": "2018-12-22T12:04:20.000000Z"}, datetime(2018, 12, 22, 12, 4, 20, tzinfo=UTC)),
    ({"com.apple.quicktime.creationdate": "2024-05-01T10:00:00+0800"}, datetime(2024, 5, 1, 2, tzinfo=UTC)),
    ({"creation_time": "1970-01-01T00:00:00.000000Z"}, None),  # a camera that never set its clock
    ({"creation_time": "1904-01-01T00:00:00Z"}, None),  # the QuickTime epoch: zero
    ({"creation_time": "garbage"}, None),
    ({"encoder": "Lavf55.33.100"}, None),
])
def test_creation_time_from_container_metadata(metadata: dict[str, str], expected: datetime | None) -> None:
    assert creation_time(metadata) == expected
