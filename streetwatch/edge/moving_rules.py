"""Rules of moving cameras (patrol vehicles, drones), on projected ground positions.

A moving camera's pixels move with it, so its zones are geographic (`polygon_geo`) and its rules
work on where detections stand on the ground (east/north metres in one tangent plane, from
edge/geo.py section 3), not where they appear in the image:

- Objects: each frame's detections are joined to the nearest object of the same role seen within
  `pass_gap_s` whose ground position is within max(match_radius_m, either accuracy) (greedy,
  nearest first, one detection per object per frame). An object unseen for `pass_gap_s` is gone:
  seeing the same spot again later is a new object, i.e. a new *pass*.
- Still: an object is still while each new position lies within max(still_tolerance_m, its
  accuracy) of where it stopped; its position is the accuracy-weighted mean since it stopped.
- Sightings (`illegal_parking` from any moving camera; `stacked_goods` from a vehicle): a patrol
  pass cannot watch for minutes, so a vehicle (goods) object that has been still on `min_frames`
  frames of the pass, with a median score >= min_median_score, inside a zone forbidding it,
  outside the zone's allowed windows, gives one `sighting` per (object, zone): one per pass, not
  one per frame. Central confirms the violation from sightings on separate passes.
- Dwell (`street_vending` from any moving camera; `stacked_goods` from a drone, which can hover):
  the fixed-camera logic on ground positions. Goods: a goods object still in the zone for the
  zone's dwell. Vending: persons still in the zone with a vending prop in the zone or within
  `prop_reach_m` of them, for the dwell (one episode per zone). Episodes start, remind every
  `reminder_interval_s` and end after `end_after_s` without evidence, as on fixed cameras.

Everything here is pure: no I/O, times are stream seconds plus the frame's UTC capture time.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from streetwatch.edge.alerts import Violation, new_id
from streetwatch.edge.config import CameraConfig, RulesConfig
from streetwatch.edge.geo import TangentPlane
from streetwatch.edge.types import EventKind, EvidenceObject, Role, ViolationEvent
from streetwatch.edge.zones import Zone, local_minute, make_zone, resolve_timezone

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class GroundObservation:
    """One detection on one frame, projected: east/north metres in the rules' plane, accuracy 1-sigma."""

    role: Role
    class_name: str
    score: float
    box: Box
    east: float
    north: float
    accuracy_m: float


@dataclass
class GroundObject:
    """One object during one pass. Position: accuracy-weighted mean since it stopped."""

    oid: str
    role: Role
    class_name: str
    first_t: float
    last_t: float
    still_since_t: float
    anchor: tuple[float, float]
    east: float
    north: float
    accuracy_m: float
    box: Box
    score: float
    scores: list[float] = field(default_factory=list)
    still_frames: int = 1
    weight: float = 0.0
    sighted: set[str] = field(default_factory=set)

    @property
    def median_score(self) -> float:
        return statistics.median(self.scores) if self.scores else 0.0

    def evidence(self) -> EvidenceObject:
        return EvidenceObject(cls=self.class_name, score=self.score, bbox=self.box)


def rules_plane(camera: CameraConfig) -> TangentPlane | None:
    """The tangent plane a moving camera's rules work in: its zones' centroid (None without zones)."""
    vertices = [pt for zone in camera.zones if zone.polygon_geo for pt in zone.polygon_geo]
    if not vertices:
        return None
    arr = np.asarray(vertices, dtype=np.float64)
    return TangentPlane(float(arr[:, 0].mean()), float(arr[:, 1].mean()))


def ground_zones(camera: CameraConfig, plane: TangentPlane) -> tuple[Zone, ...]:
    """The camera's polygon_geo zones in `plane` metres (x = east, y = north); refuses bad polygons by name."""
    zones = []
    for zone in camera.zones:
        if zone.polygon_geo is None:
            continue
        latlon = np.asarray(zone.polygon_geo, dtype=np.float64)
        east, north = plane.to_enu(latlon[:, 0], latlon[:, 1])
        zones.append(make_zone(camera.id, zone, np.column_stack([east, north])))
    return tuple(zones)


def associate(
    objects: Sequence[GroundObject], observations: Sequence[GroundObservation], *, t: float, pass_gap_s: float,
    match_radius_m: float,
) -> dict[int, GroundObject]:
    """observation index -> the object it continues (greedy nearest first; same role; gated)."""
    live = [o for o in objects if t - o.last_t <= pass_gap_s and o.last_t < t]
    pairs = []
    for i, obs in enumerate(observations):
        for j, obj in enumerate(live):
            if obj.role != obs.role:
                continue
            distance = float(np.hypot(obs.east - obj.east, obs.north - obj.north))
            if distance <= max(match_radius_m, obs.accuracy_m, obj.accuracy_m):
                pairs.append((distance, i, j))
    matched: dict[int, GroundObject] = {}
    taken: set[int] = set()
    for _distance, i, j in sorted(pairs):
        if i not in matched and j not in taken:
            matched[i] = live[j]
            taken.add(j)
    return matched


def observe(obj: GroundObject, obs: GroundObservation, *, t: float, still_tolerance_m: float) -> None:
    """Fold one observation into its object: still (weighted mean) or moved (restart from here)."""
    moved = float(np.hypot(obs.east - obj.anchor[0], obs.north - obj.anchor[1]))
    weight = 1.0 / max(obs.accuracy_m, 0.1) ** 2
    if moved <= max(still_tolerance_m, obs.accuracy_m):
        total = obj.weight + weight
        obj.east = (obj.east * obj.weight + obs.east * weight) / total
        obj.north = (obj.north * obj.weight + obs.north * weight) / total
        obj.accuracy_m = min(obj.accuracy_m, obs.accuracy_m)
        obj.weight = total
        obj.still_frames += 1
    else:
        obj.anchor, obj.east, obj.north = (obs.east, obs.north), obs.east, obs.north
        obj.accuracy_m, obj.weight, obj.still_since_t, obj.still_frames = obs.accuracy_m, weight, t, 1
    obj.last_t, obj.box, obj.score = t, obs.box, obs.score
    obj.scores.append(obs.score)


@dataclass
class _Episode:
    episode_id: str
    subject: int | str
    started_t: float
    last_present_t: float
    last_alert_t: float
    latest: ViolationEvent


class GroundRules:
    """Rules of one moving camera. Call `update` once per sampled frame that has a pose."""

    def __init__(self, camera: CameraConfig, rules: RulesConfig, *, plane: TangentPlane) -> None:
        self.camera_id = camera.id
        self.kind = camera.kind
        self.rules = rules
        self.moving = rules.moving
        self.plane = plane
        self.zones = ground_zones(camera, plane)
        self.tz = resolve_timezone(camera.timezone, camera_id=camera.id)
        self.objects: list[GroundObject] = []
        self._episodes: dict[tuple[str, ...], _Episode] = {}
        self._next = 1

    def update(
        self, *, t: float, captured_at: datetime, observations: Sequence[GroundObservation]
    ) -> list[ViolationEvent]:
        """One frame's projected detections -> sightings and episode events."""
        self._track(t, observations)
        minute = local_minute(captured_at, self.tz)
        allowed = {zone.id: zone.allowed_at(minute) for zone in self.zones}
        seen = [o for o in self.objects if o.last_t == t]
        events = self._sightings(seen, t=t, allowed=allowed)
        findings = [*self._goods_dwell(seen, t=t), *self._vending_dwell(seen, t=t)]
        events.extend(self._apply_findings(findings, t=t, allowed=allowed))
        events.extend(self._end_absent(t))
        return events

    def _track(self, t: float, observations: Sequence[GroundObservation]) -> None:
        self.objects = [o for o in self.objects if t - o.last_t <= self.moving.pass_gap_s]
        matched = associate(self.objects, observations, t=t, pass_gap_s=self.moving.pass_gap_s,
                            match_radius_m=self.moving.match_radius_m)
        for i, obs in enumerate(observations):
            obj = matched.get(i)
            if obj is not None:
                observe(obj, obs, t=t, still_tolerance_m=self.moving.still_tolerance_m)
                continue
            oid = f"g{self._next}"
            self._next += 1
            self.objects.append(GroundObject(
                oid=oid, role=obs.role, class_name=obs.class_name, first_t=t, last_t=t, still_since_t=t,
                anchor=(obs.east, obs.north), east=obs.east, north=obs.north, accuracy_m=obs.accuracy_m,
                box=obs.box, score=obs.score, scores=[obs.score], weight=1.0 / max(obs.accuracy_m, 0.1) ** 2,
            ))

    def _zones_for(self, violation: Violation) -> tuple[Zone, ...]:
        return tuple(z for z in self.zones if violation in z.config.violations)

    def _sightings(self, seen: Sequence[GroundObject], *, t: float, allowed: dict[str, bool]) -> list[ViolationEvent]:
        wanted: dict[Role, Violation] = {"vehicle": "illegal_parking"}
        if self.kind == "vehicle":
            wanted["goods"] = "stacked_goods"
        events = []
        for obj in seen:
            violation = wanted.get(obj.role)
            if violation is None or obj.still_frames < self.moving.min_frames:
                continue
            if obj.median_score < self.rules.min_median_score:
                continue
            for zone in self._zones_for(violation):
                if zone.id in obj.sighted or allowed[zone.id] or not zone.covers(obj.east, obj.north):
                    continue
                obj.sighted.add(zone.id)
                events.append(self._event("sighting", violation, zone.id, obj, episode_id=new_id("ps"),
                                          started_t=obj.still_since_t, t=t, objects=(obj.evidence(),)))
                log.info("camera %s zone %s: %s sighting of object %s (%.1f, %.1f) m +- %.1f m",
                         self.camera_id, zone.id, violation, obj.oid, obj.east, obj.north, obj.accuracy_m)
        return events

    def _event(self, kind: EventKind, violation: Violation, zone_id: str, obj: GroundObject, *,
               episode_id: str, started_t: float, t: float, objects: tuple[EvidenceObject, ...]) -> ViolationEvent:
        return ViolationEvent(kind=kind, violation=violation, zone_id=zone_id, episode_id=episode_id, track_id=obj.oid,
                              started_t=started_t, observed_t=t, confidence=obj.median_score,
                              anchor=(obj.east, obj.north), accuracy_m=obj.accuracy_m, objects=objects)

    def _goods_dwell(self, seen: Sequence[GroundObject], *, t: float) -> list[tuple[bool, ViolationEvent]]:
        if self.kind != "drone":
            return []
        findings = []
        for obj in (o for o in seen if o.role == "goods" and o.median_score >= self.rules.min_median_score):
            for zone in self._zones_for("stacked_goods"):
                if zone.covers(obj.east, obj.north):
                    qualifies = t - obj.still_since_t >= zone.config.dwell_for("stacked_goods")
                    findings.append((qualifies, self._event("start", "stacked_goods", zone.id, obj, episode_id="",
                                                            started_t=obj.still_since_t, t=t,
                                                            objects=(obj.evidence(),))))
        return findings

    def _vending_dwell(self, seen: Sequence[GroundObject], *, t: float) -> list[tuple[bool, ViolationEvent]]:
        confirmed = [o for o in seen if o.median_score >= self.rules.min_median_score]
        persons = [o for o in confirmed if o.role == "person"]
        props = [o for o in confirmed if o.role == "vending_prop"]
        findings = []
        for zone in self._zones_for("street_vending") if persons and props else ():
            inside = [p for p in persons if zone.covers(p.east, p.north)]
            near = [q for q in props if zone.covers(q.east, q.north) or any(
                np.hypot(q.east - p.east, q.north - p.north) <= self.moving.prop_reach_m for p in inside)]
            if not inside or not near:
                continue
            main = min(inside, key=lambda p: p.still_since_t)
            qualifies = t - main.still_since_t >= zone.config.dwell_for("street_vending")
            event = self._event("start", "street_vending", zone.id, main, episode_id="", started_t=main.still_since_t,
                                t=t, objects=tuple(o.evidence() for o in (*inside, *near)))
            findings.append((qualifies, event))
        return findings

    def _apply_findings(
        self, findings: Sequence[tuple[bool, ViolationEvent]], *, t: float, allowed: dict[str, bool]
    ) -> list[ViolationEvent]:
        events = []
        for qualifies, finding in findings:
            key = (finding.violation, finding.zone_id) + (() if finding.violation == "street_vending"
                                                          else (str(finding.track_id),))
            episode = self._episodes.get(key)
            if episode is not None:
                episode.last_present_t, episode.latest = t, finding
                if not allowed[finding.zone_id] and t - episode.last_alert_t >= self.rules.reminder_interval_s:
                    episode.last_alert_t = t
                    events.append(self._episode_event(episode, "reminder", t))
            elif qualifies and not allowed[finding.zone_id]:
                episode = _Episode(new_id("ep"), finding.track_id, finding.started_t, t, t, finding)
                self._episodes[key] = episode
                log.info("camera %s zone %s: %s episode %s started by ground object %s after %.0f s",
                         self.camera_id, finding.zone_id, finding.violation, episode.episode_id, finding.track_id,
                         t - finding.started_t)
                events.append(self._episode_event(episode, "start", t))
        return events

    def _end_absent(self, t: float) -> list[ViolationEvent]:
        events = []
        for key in [k for k, e in self._episodes.items() if t - e.last_present_t >= self.rules.end_after_s]:
            episode = self._episodes.pop(key)
            log.info("camera %s: episode %s ended (absent %.0f s)", self.camera_id, episode.episode_id,
                     t - episode.last_present_t)
            events.append(self._episode_event(episode, "end", t))
        return events

    def _episode_event(self, episode: _Episode, kind: EventKind, t: float) -> ViolationEvent:
        latest = episode.latest
        return ViolationEvent(kind=kind, violation=latest.violation, zone_id=latest.zone_id,
                              episode_id=episode.episode_id, track_id=episode.subject, started_t=episode.started_t,
                              observed_t=t, confidence=latest.confidence, anchor=latest.anchor,
                              accuracy_m=latest.accuracy_m, objects=latest.objects)
