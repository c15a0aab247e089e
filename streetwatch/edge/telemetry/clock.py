"""When was a replayed video's first frame? From --start-time, the telemetry's own clock, or the video.

A replay stamps frame i with start + its stream time, and frames only find poses if that start is
right. In order of trust:

1. `--start-time` given: used as it is (a start that puts the whole video outside the telemetry
   is still used, with a `warning`: the operator asked for it, and nothing will be geo-matched).
2. Telemetry that places the video itself: a DJI SRT with a wall clock (block k starts s_k seconds
   into the video at wall time t_k) or KLV muxed into the video (a packet's PTS and its precision
   time stamp). start = median(t_k - s_k), so one odd block does not move it.
3. The video's creation time (container metadata, e.g. MP4 `creation_time`), checked against the
   telemetry's time span.

When none of these works, `problem` is the one line for the operator: why, and what to pass.
Pure functions; the caller reads the video's metadata (edge/sources.py) and the telemetry.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from streetwatch.edge.telemetry.files import TelemetryFile
from streetwatch.edge.telemetry.summary import iso


@dataclass(frozen=True)
class ClipClock:
    """The replay's start (None: no telemetry to match, the caller may use now) and how it was found."""

    start: datetime | None
    how: str
    problem: str | None = None
    warning: str | None = None


@dataclass(frozen=True)
class VideoTimes:
    """What the video says about its own time: its file name, creation time (UTC) and length."""

    name: str
    created: datetime | None
    duration_s: float | None


def replay_start(video: VideoTimes, *, telemetry: TelemetryFile | None, given: datetime | None,
                 max_gap_s: float) -> ClipClock:
    """Decide the replay's start (see the module docstring). Without telemetry (a fixed camera, a
    live source) there is nothing to line up: `given` or None (the caller's default)."""
    if telemetry is None:
        return ClipClock(given, "--start-time" if given else "no telemetry to line up with")
    if given is not None:
        missed = _checked(ClipClock(given, "--start-time"), video, telemetry=telemetry, max_gap_s=max_gap_s,
                          fix="pass a --start-time inside the telemetry's span")
        return ClipClock(given, "--start-time", warning=missed.problem)
    if telemetry.self_timed:
        return ClipClock(_own_start(telemetry), f"{telemetry.path.name}'s own clock ({telemetry.dialect})")
    if video.created is not None:
        return _checked(ClipClock(video.created, "the video's creation time (container metadata)"), video,
                        telemetry=telemetry, max_gap_s=max_gap_s,
                        fix="pass --start-time with the UTC time of the video's first frame")
    return ClipClock(None, "", f"{video.name} has no creation time in its metadata and {telemetry.path.name} has "
                               f"no clock that places the video; pass --start-time with the UTC time of the first "
                               f"frame{_span(telemetry)}")


def _own_start(telemetry: TelemetryFile) -> datetime:
    anchors = [pose.t.timestamp() - offset
               for pose, offset in zip(telemetry.poses, telemetry.offsets_s, strict=True) if offset is not None]
    return datetime.fromtimestamp(statistics.median(anchors), tz=UTC)


def _span(telemetry: TelemetryFile) -> str:
    if not telemetry.poses:
        return ""
    times = [p.t for p in telemetry.poses]
    return f" (the telemetry covers {iso(min(times))} .. {iso(max(times))})"


def _checked(clock: ClipClock, video: VideoTimes, *, telemetry: TelemetryFile, max_gap_s: float,
             fix: str) -> ClipClock:
    """The clock, or a problem if the video would lie wholly outside the telemetry."""
    if clock.start is None or not telemetry.poses:
        return clock
    times = [p.t for p in telemetry.poses]
    first, last = min(times), max(times)
    end = clock.start + timedelta(seconds=video.duration_s or 0.0)
    slack = timedelta(seconds=max_gap_s)
    if end >= first - slack and clock.start <= last + slack:
        return clock
    side = "after" if clock.start > last else "before"
    gap = (clock.start - last) if side == "after" else (first - end)
    return ClipClock(None, clock.how, (
        f"{clock.how} puts {video.name} ({iso(clock.start)} .. {iso(end)}) {_duration(gap)} {side} "
        f"{telemetry.path.name} ({iso(first)} .. {iso(last)}); {fix}, e.g. --start-time {iso(first)}"))


def _duration(delta: timedelta) -> str:
    seconds = abs(delta.total_seconds())
    if seconds >= 86_400:
        return f"{seconds / 86_400:,.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"
