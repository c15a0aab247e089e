"""What an operator needs to know about a telemetry file before a patrol, as text or JSON lines.

`summary_lines` is the `edge telemetry FILE` report: poses, time span, fix quality, attitude and
heights present, whether the edge can project frames onto the ground with it (and what it would
have to assume), and every skipped item by reason with the first example of each. `pose_record`
is one pose as a JSON-ready dict (`--jsonl`). Pure functions over a TelemetryFile.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from streetwatch.edge.telemetry.files import TelemetryFile
from streetwatch.edge.telemetry.pose import Pose

MIN_AIRBORNE_M = 0.5  # geo refuses to project from lower (edge/geo.py)
NOTE_KINDS = ("proprietary", "ais", "comment", "unused", "unknown_sentence", "unknown_tag", "waypoint", "route_point")


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def pose_record(pose: Pose) -> dict[str, object]:
    """One pose for `--jsonl`: every field, None as null, the time as ISO 8601 UTC."""
    record = dataclasses.asdict(pose)
    record["t"] = iso(pose.t)
    record["assumed"] = list(pose.assumed)
    return record


def summary_lines(result: TelemetryFile, *, clock: str | None = None) -> list[str]:
    """The report, one `label  value` line each (see the module docstring)."""
    poses = result.poses
    lines = [f"file          {result.path}", f"format        {result.format}: {result.dialect}",
             f"poses         {len(poses)}"]
    if poses:
        first, last = min(poses, key=lambda p: p.t), max(poses, key=lambda p: p.t)
        span = (last.t - first.t).total_seconds()
        lines.append(f"time span     {iso(first.t)} .. {iso(last.t)} ({span:,.1f} s)" + (f", {clock}" if clock else ""))
        lines.append(f"first         {first.lat:.6f}, {first.lon:.6f}")
        lines += [f"fix quality   {_fix_quality(poses)}", f"heights       {_heights(poses)}",
                  f"attitude      {_attitude(poses)}"]
    projectable, why = assess(result)
    lines.append(f"projectable   {'yes' if projectable else 'no'}: {why}")
    lines += _skipped(result)
    return lines


def assess(result: TelemetryFile) -> tuple[bool, str]:
    """Can the edge project frames with these poses, and on what (see edge/geo.py)?"""
    poses = result.poses
    if not poses:
        return False, "no poses"
    n = len(poses)
    oriented = sum(1 for p in poses if _oriented(p))
    assumed = sum(1 for p in poses if p.assumed)
    suffix = f"; {assumed} poses rest on assumptions ({_assumptions(poses)})" if assumed else ""
    if result.format in ("nmea", "gpx"):
        if not oriented:
            return False, "no heading in any pose (vehicle standing still?); a vehicle camera needs its course"
        return True, (f"as a vehicle camera: {oriented} of {n} poses have a heading (course over ground, "
                      f"or HDT/THS); the mounting height comes from camera_model{suffix}")
    airborne = sum(1 for p in poses if _oriented(p) and p.rel_alt_m is not None and p.rel_alt_m > MIN_AIRBORNE_M)
    if airborne:
        return True, f"{airborne} of {n} poses have a camera attitude and a height above take-off{suffix}"
    if oriented and any(p.alt_m is not None for p in poses):
        return True, (f"{oriented} of {n} poses have a camera attitude; the height comes from the altitude "
                      f"minus camera_model.ground_alt_m (no height above take-off in the file){suffix}")
    if oriented:
        return False, f"{oriented} poses have an attitude but none a height above {MIN_AIRBORNE_M} m (on the ground?)"
    return False, ("no camera attitude (gimbal or heading) in any pose; set camera_model.gimbal_pitch_deg and the "
                   "edge takes the heading from the flight path (check with --gimbal-pitch, e.g. -90)")


def _oriented(pose: Pose) -> bool:
    return (pose.gimbal is not None and pose.gimbal.reference == "earth") or pose.heading_deg is not None


def _assumptions(poses: Sequence[Pose]) -> str:
    counts = Counter(note for p in poses for note in p.assumed)
    return ", ".join(f"{note}: {count}" for note, count in counts.most_common())


def _fix_quality(poses: Sequence[Pose]) -> str:
    counts = Counter(p.fix for p in poses if p.fix)
    if not counts:
        return "not stated by this format"
    return ", ".join(f"{fix} {count}" for fix, count in counts.most_common())


def _range(values: Sequence[float]) -> str:
    return f"{min(values):.1f} .. {max(values):.1f} m"


def _heights(poses: Sequence[Pose]) -> str:
    rel = [p.rel_alt_m for p in poses if p.rel_alt_m is not None]
    alt = [p.alt_m for p in poses if p.alt_m is not None]
    parts = [f"above take-off {_range(rel)} ({len(rel)})" if rel else "above take-off: none",
             f"altitude {_range(alt)} ({len(alt)})" if alt else "altitude: none"]
    return "; ".join(parts)


def _attitude(poses: Sequence[Pose]) -> str:
    gimbal = sum(1 for p in poses if p.gimbal is not None)
    heading = sum(1 for p in poses if p.heading_deg is not None)
    flight = sum(1 for p in poses if p.pitch_deg is not None and p.roll_deg is not None)
    focal = [p.focal_length_mm for p in poses if p.focal_length_mm is not None]
    lens = f"; focal length {min(focal):g} .. {max(focal):g} mm" if focal else ""
    return f"gimbal {gimbal}, heading {heading}, pitch/roll {flight} of {len(poses)} poses{lens}"


def _skipped(result: TelemetryFile) -> list[str]:
    stats = result.stats
    counts = stats.skipped()
    failures = {k: v for k, v in counts.items() if k not in NOTE_KINDS and k != "gap"}
    notes = {k: v for k, v in counts.items() if k in NOTE_KINDS}
    lines = [f"skipped       {sum(failures.values())}" + ("" if failures else " (nothing refused)")]
    lines += [f"  {kind:<16}{count:>7}  first: {stats.examples.get(kind, '')}" for kind, count in failures.items()]
    if notes:
        lines.append(f"not used      {sum(notes.values())} (by design)")
        lines += [f"  {kind:<16}{count:>7}  first: {stats.examples.get(kind, '')}" for kind, count in notes.items()]
    if counts.get("gap"):
        lines.append(f"gaps          {counts['gap']} over {stats.gap_s:g} s  first: {stats.examples.get('gap', '')}")
    return lines


# the kinds that explain "no poses" best, in that order; then whatever was counted most
REASONS = ("no_time", "no_fix", "implausible", "invalid", "checksum", "truncated", "malformed", "invalid_field")


def no_poses_line(result: TelemetryFile, *, clip_start: datetime | None = None) -> str:
    """Why a telemetry file gave no pose, in one line naming it, with what to do where there is something to do."""
    return f"{result.path}: {no_poses_reason(result, clip_start=clip_start)}"


def no_poses_reason(result: TelemetryFile, *, clip_start: datetime | None = None) -> str:
    counts = {k: v for k, v in result.stats.skipped().items() if k != "gap"}
    if not counts:
        empty = result.path.is_file() and result.path.stat().st_size == 0
        return "no poses: " + ("the file is empty" if empty else f"no {result.format} records in it")
    kind = next((k for k in REASONS if k in counts), next(iter(counts)))
    hint = ""
    if kind == "no_time" and result.format == "srt" and clip_start is None:
        hint = "; this SRT has no wall clock: the UTC time of the video's first frame is needed (--start-time)"
    return f"no poses: {counts[kind]} {kind} (first: {result.stats.examples.get(kind, '?')}){hint}"
