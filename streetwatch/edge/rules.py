"""Violation rules of one camera: zones, dwell, score confirmation, time windows and episodes.

Each frame the rules turn tracks (and static foreground regions) into *findings*: evidence that a
violation is present in a zone now, and whether it has lasted long enough to report. An episode
starts on the first qualifying finding (one `start`), repeats as a `reminder` at most every
`reminder_interval_s` while its evidence is present, and `end`s once the evidence has been absent
for `end_after_s` (so a few missed detections do not end it). Inside an allowed time window no
episode starts and no reminder is sent; a running episode still ends normally. Times are stream
times, never the wall clock, so a replay runs as fast as the CPU allows. Every event's
observed_t is the frame's t (for `end`: the frame that decided it, end_after_s after the last
sighting); started_t is when the dwell began (the track's still_since, a region's first sighting).

Rules (docs/design.md, "Violations"): illegal_parking = a vehicle still inside the zone for the
dwell; street_vending = a person still inside the zone for the dwell with a vending prop in the
zone or next to them (one episode per zone); stacked_goods = a `goods` track, or a static
foreground region no person/vehicle/goods track explains, inside the zone for the dwell. Every
track used as evidence must have a median score over its history >= min_median_score, so one
high-scoring frame never raises an alert.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import supervision as sv

from streetwatch.edge.alerts import Violation, new_id
from streetwatch.edge.config import CameraConfig, RulesConfig
from streetwatch.edge.tracking import TRACKED_ROLES, Box, TrackState
from streetwatch.edge.types import EvidenceObject, Role, ViolationEvent
from streetwatch.edge.zones import CameraZones, Polygon, Zone, ground_points

logger = logging.getLogger(__name__)

# A static region carries no detector score; its alerts carry this fixed confidence.
STATIC_REGION_CONFIDENCE = 0.5
STATIC_REGION_CLASS = "static_region"
EXPLAIN_IOU = 0.3  # a track box with this IoU explains a static region (e.g. a parked car)...
EXPLAIN_COVER = 0.6  # ...as does one covering this fraction of the region's area
EXPLAIN_STILL_S = 10.0  # ...if that track has stayed this long (a passer-by explains nothing)
STATIC_MATCH_IOU = 0.5  # the same static region across frames
EPISODE_MATCH_IOU = 0.5  # a new track id at an active episode's place continues that episode
PROP_REACH = 0.5  # a prop within this many person heights of a person in the zone counts

EpisodeKey = tuple[str, ...]
EpisodeEventKind = Literal["start", "reminder", "end"]
Region = tuple[float, float, float, float]


@dataclass(frozen=True)
class Finding:
    """Evidence of one violation in one zone on one frame. `qualifies`: dwell and score are met."""

    violation: Violation
    zone_id: str
    key: EpisodeKey
    subject: int | str
    box: Box
    anchor: tuple[float, float]
    objects: tuple[EvidenceObject, ...]
    confidence: float
    dwell_start: float
    qualifies: bool


@dataclass
class _Episode:
    episode_id: str
    finding: Finding  # the latest evidence
    subject: int | str  # the track id of the first alert, kept for the whole episode
    started_t: float
    last_present_t: float
    last_alert_t: float
    frame_no: int


@dataclass
class _StaticRegion:
    rid: str
    box: np.ndarray
    first_seen_t: float
    last_seen_t: float


# The track roles each rule reads: a camera tracks only what its zones' rules need (goods also
# reads persons and vehicles, which explain a static region away).
ROLES_READ: dict[Violation, tuple[Role, ...]] = {
    "illegal_parking": ("vehicle",),
    "street_vending": ("person", "vending_prop"),
    "stacked_goods": ("goods", "person", "vehicle"),
}


def roles_read(violations: Iterable[Violation]) -> tuple[Role, ...]:
    """The roles the rules for these violations read, in a stable order."""
    wanted = {role for violation in violations for role in ROLES_READ[violation]}
    return tuple(role for role in TRACKED_ROLES if role in wanted)


class ViolationEngine:
    """Rules of one camera. Call `update` once per sampled frame, after the tracker."""

    def __init__(
        self, camera: CameraConfig, rules: RulesConfig, *, polygons_px: Mapping[str, Polygon] | None = None
    ) -> None:
        self.camera_id = camera.id
        self.rules = rules
        self.zones = CameraZones(camera, polygons_px)
        self._episodes: dict[EpisodeKey, _Episode] = {}
        self._statics = StaticRegionTracker(camera.id, rules)
        self._frame_no = 0
        self._last_t: float | None = None

    @property
    def active_episodes(self) -> int:
        return len({id(episode) for episode in self._episodes.values()})

    def update(
        self,
        *,
        t: float,
        captured_at: datetime,
        tracks: Sequence[TrackState],
        static_regions: Sequence[Region],
    ) -> list[ViolationEvent]:
        """One frame: tracks from CameraTracker.update, static regions (xyxy px) from the background model."""
        events = self._restart_if_time_went_back(t)
        self._frame_no += 1
        self._last_t = t
        minute = self.zones.minute_of_day(captured_at)
        allowed = {zone.id: zone.allowed_at(minute) for zone in self.zones.zones}
        seen = [track for track in tracks if track.last_seen_t >= t]  # missed on this frame: no evidence
        regions = self._statics.update(t=t, regions=static_regions, explainers=tracks)
        findings = [
            *parking_findings(self.zones, seen, t=t, rules=self.rules),
            *vending_findings(self.zones, seen, t=t, rules=self.rules),
            *goods_findings(self.zones, seen, regions=regions, t=t, rules=self.rules),
        ]
        for finding in findings:
            event = self._apply(finding, t=t, allowed=allowed[finding.zone_id])
            if event is not None:
                events.append(event)
        events.extend(self._end_absent(t))
        return events

    def _apply(self, finding: Finding, *, t: float, allowed: bool) -> ViolationEvent | None:
        episode = self._episodes.get(finding.key) or self._match_by_place(finding)
        if episode is not None:
            if episode.frame_no == self._frame_no:
                return None  # already refreshed by another finding this frame
            episode.finding, episode.last_present_t, episode.frame_no = finding, t, self._frame_no
            if allowed or t - episode.last_alert_t < self.rules.reminder_interval_s:
                return None
            episode.last_alert_t = t
            return self._event(episode, "reminder", t=t)
        if not finding.qualifies:
            return None
        return self._start(finding, t=t, allowed=allowed)

    def _start(self, finding: Finding, *, t: float, allowed: bool) -> ViolationEvent | None:
        if allowed:
            logger.debug(
                "camera %s zone %s: %s by track %s inside an allowed window; no episode",
                self.camera_id,
                finding.zone_id,
                finding.violation,
                finding.subject,
            )
            return None
        episode = _Episode(
            episode_id=new_id("ep"),
            finding=finding,
            subject=finding.subject,
            started_t=finding.dwell_start,
            last_present_t=t,
            last_alert_t=t,
            frame_no=self._frame_no,
        )
        self._episodes[finding.key] = episode
        logger.info(
            "camera %s zone %s: %s episode %s started by track %s after %.0f s",
            self.camera_id,
            finding.zone_id,
            finding.violation,
            episode.episode_id,
            finding.subject,
            t - finding.dwell_start,
        )
        return self._event(episode, "start", t=t)

    def _match_by_place(self, finding: Finding) -> _Episode | None:
        """An active episode of the same violation and zone at the same place: the same stay seen
        through another track (a new id after an occlusion, a second box on the same car). The
        finding's key becomes another name of that episode, so it never starts one of its own."""
        for episode in self._episodes.values():
            old = episode.finding
            if (
                old.violation == finding.violation
                and old.zone_id == finding.zone_id
                and _iou(old.box, finding.box) >= EPISODE_MATCH_IOU
            ):
                self._episodes[finding.key] = episode
                logger.debug(
                    "camera %s: episode %s continues with track %s",
                    self.camera_id,
                    episode.episode_id,
                    finding.subject,
                )
                return episode
        return None

    def _end_absent(self, t: float) -> list[ViolationEvent]:
        ended = [
            key
            for key, episode in self._episodes.items()
            if t - episode.last_present_t >= self.rules.end_after_s
        ]
        events = []
        for key in ended:
            episode = self._episodes.pop(key)
            if any(other is episode for other in self._episodes.values()):
                continue  # another name of it is still to go: it ends once
            logger.info(
                "camera %s zone %s: %s episode %s ended (absent %.0f s)",
                self.camera_id,
                episode.finding.zone_id,
                episode.finding.violation,
                episode.episode_id,
                t - episode.last_present_t,
            )
            events.append(self._event(episode, "end", t=t))
        return events

    def _restart_if_time_went_back(self, t: float) -> list[ViolationEvent]:
        """A stream restarted from 0 (reconnect, new file): end every episode and forget regions."""
        if self._last_t is None or t >= self._last_t:
            return []
        logger.warning(
            "camera %s: stream time went back from %.3f to %.3f s; ending %d episode(s)",
            self.camera_id,
            self._last_t,
            t,
            len(self._episodes),
        )
        unique = {id(episode): episode for episode in self._episodes.values()}
        events = [self._event(episode, "end", t=t) for episode in unique.values()]
        self._episodes.clear()
        self._statics = StaticRegionTracker(self.camera_id, self.rules)
        return events

    def _event(self, episode: _Episode, kind: EpisodeEventKind, *, t: float) -> ViolationEvent:
        finding = episode.finding
        return ViolationEvent(
            kind=kind,
            violation=finding.violation,
            zone_id=finding.zone_id,
            episode_id=episode.episode_id,
            track_id=episode.subject,
            started_t=episode.started_t,
            observed_t=t,
            confidence=finding.confidence,
            anchor=finding.anchor,
            objects=finding.objects,
        )


def parking_findings(
    zones: CameraZones, seen: Sequence[TrackState], *, t: float, rules: RulesConfig
) -> list[Finding]:
    """A vehicle inside a no-parking zone; it qualifies once still for the dwell with a confirmed score."""
    vehicles = [track for track in seen if track.role == "vehicle"]
    if not vehicles:
        return []
    points = ground_points(np.array([v.box for v in vehicles]))
    findings = []
    for zone in zones.for_violation("illegal_parking"):
        for vehicle in (v for v, inside in zip(vehicles, zone.contains(points), strict=True) if inside):
            findings.append(
                _track_finding(zone, "illegal_parking", track=vehicle, t=t, min_score=rules.min_median_score,
                               presence_share=rules.presence_share)
            )
    return findings


def _track_finding(
    zone: Zone, violation: Violation, *, track: TrackState, t: float, min_score: float, presence_share: float
) -> Finding:
    """One track as the evidence; it qualifies once still for the dwell with a confirmed score,
    seen (the same object: tracking.py) in presence_share of the frames since it stopped."""
    dwell = zone.dwell_for(violation)
    return Finding(
        violation=violation,
        zone_id=zone.id,
        key=(violation, zone.id, str(track.stable_id)),
        subject=track.stable_id,
        box=track.box,
        anchor=track.ground_point,
        objects=(_evidence(track),),
        confidence=track.median_score,
        dwell_start=track.still_since_t,
        qualifies=t - track.still_since_t >= dwell and track.median_score >= min_score
        and track.presence >= presence_share,
    )


def vending_findings(
    zones: CameraZones, seen: Sequence[TrackState], *, t: float, rules: RulesConfig
) -> list[Finding]:
    """Per zone: persons still inside it with a vending prop inside or next to them (one episode per zone)."""
    persons = [tr for tr in seen if tr.role == "person" and tr.median_score >= rules.min_median_score]
    props = [tr for tr in seen if tr.role == "vending_prop" and tr.median_score >= rules.min_median_score]
    if not persons or not props:
        return []
    person_points = ground_points(np.array([p.box for p in persons]))
    prop_boxes = np.array([p.box for p in props])
    prop_points = ground_points(prop_boxes)
    findings = []
    for zone in zones.for_violation("street_vending"):
        inside = [
            p for p, ok in zip(persons, zone.contains(person_points), strict=True) if ok and p.still_for_s > 0
        ]
        if not inside:
            continue
        kept = [prop for prop, ok in zip(props, zone.contains(prop_points), strict=True) if ok]
        kept += [prop for prop, ok in zip(props, _near_any(prop_boxes, np.array([p.box for p in inside])),
                                          strict=True) if ok and prop not in kept]
        if not kept:
            continue
        by_props = _near_any(np.array([p.box for p in inside]), np.array([q.box for q in kept]))
        # those by a prop; if none is, the props stand in the zone and everyone staying there is with them
        vendors = [p for p, ok in zip(inside, by_props, strict=True) if ok] or inside
        if vendors:
            others = [p for p in persons if p not in vendors]
            findings.append(_vending_finding(zone, vendors, props=kept, others=others, t=t, rules=rules))
    return findings


def _vending_finding(
    zone: Zone, vendors: list[TrackState], *, props: list[TrackState], others: list[TrackState], t: float,
    rules: RulesConfig,
) -> Finding:
    """The vendors (people staying in the zone within reach of the props) and the props are the
    subject; anyone else in view is context. People with no prop by them are never vending."""
    main = min(vendors, key=lambda p: p.still_since_t)  # the one who has stayed longest
    objects = [_evidence(track) for track in (*vendors, *props)]
    objects += [_evidence(track, emphasis="context") for track in others]
    return Finding(
        violation="street_vending",
        zone_id=zone.id,
        key=("street_vending", zone.id),
        subject=main.stable_id,
        box=main.box,
        anchor=main.ground_point,
        objects=tuple(objects),
        confidence=main.median_score,
        dwell_start=main.still_since_t,
        qualifies=t - main.still_since_t >= zone.dwell_for("street_vending") and main.presence >= rules.presence_share,
    )


def _near_any(boxes: np.ndarray, persons: np.ndarray) -> np.ndarray:
    """(N,) bool: box i overlaps some person box grown by PROP_REACH person heights on each side."""
    reach = PROP_REACH * (persons[:, 3] - persons[:, 1])
    grown = persons + np.stack((-reach, -reach, reach, reach), axis=1)
    overlap_x = (boxes[:, None, 0] <= grown[None, :, 2]) & (boxes[:, None, 2] >= grown[None, :, 0])
    overlap_y = (boxes[:, None, 1] <= grown[None, :, 3]) & (boxes[:, None, 3] >= grown[None, :, 1])
    return np.asarray((overlap_x & overlap_y).any(axis=1), dtype=bool)


def goods_findings(
    zones: CameraZones,
    seen: Sequence[TrackState],
    *,
    regions: Sequence[_StaticRegion],
    t: float,
    rules: RulesConfig,
) -> list[Finding]:
    """`goods` tracks and unexplained static regions inside a goods zone; they qualify after the dwell."""
    goods = [track for track in seen if track.role == "goods"]
    if not goods and not regions:
        return []
    goods_points = ground_points(np.array([g.box for g in goods]).reshape(-1, 4))
    region_points = ground_points(np.array([r.box for r in regions]).reshape(-1, 4))
    findings = []
    for zone in zones.for_violation("stacked_goods"):
        for track, inside in zip(goods, zone.contains(goods_points), strict=True):
            if inside:
                findings.append(
                    _track_finding(zone, "stacked_goods", track=track, t=t, min_score=rules.min_median_score,
                                   presence_share=rules.presence_share)
                )
        for region, inside in zip(regions, zone.contains(region_points), strict=True):
            if inside:
                findings.append(_region_finding(zone, region, t=t))
    return findings


def _region_finding(zone: Zone, region: _StaticRegion, *, t: float) -> Finding:
    box: Box = (float(region.box[0]), float(region.box[1]), float(region.box[2]), float(region.box[3]))
    return Finding(
        violation="stacked_goods",
        zone_id=zone.id,
        key=("stacked_goods", zone.id, region.rid),
        subject=region.rid,
        box=box,
        anchor=((box[0] + box[2]) / 2.0, box[3]),
        objects=(EvidenceObject(cls=STATIC_REGION_CLASS, score=STATIC_REGION_CONFIDENCE, bbox=box),),
        confidence=STATIC_REGION_CONFIDENCE,
        dwell_start=region.first_seen_t,
        qualifies=t - region.first_seen_t >= zone.dwell_for("stacked_goods"),
    )


class StaticRegionTracker:
    """Gives static foreground regions stable ids by position and drops those a track explains.

    A region a confirmed (median score >= min_median_score) person, vehicle or goods track overlaps
    (IoU >= EXPLAIN_IOU, or the track covers EXPLAIN_COVER of it) is that object, not goods on the
    pavement: its entry is forgotten, so its presence must start again once it is unexplained. A
    weak track the rules would not trust as evidence does not veto a region either. Tracks the
    tracker still reports while briefly missed count as explainers, so a parked car's missed frame
    does not turn it into goods.
    """

    def __init__(self, camera_id: str, rules: RulesConfig) -> None:
        self.camera_id = camera_id
        self.min_area = float(rules.static_min_area_px)
        self.min_score = rules.min_median_score
        self.forget_after_s = rules.end_after_s
        self._regions: list[_StaticRegion] = []
        self._next = 1

    def update(
        self, *, t: float, regions: Sequence[Region], explainers: Sequence[TrackState]
    ) -> list[_StaticRegion]:
        """Unexplained regions seen on this frame, each with its stable id and first-seen time."""
        boxes = np.array(regions, dtype=np.float64).reshape(-1, 4)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        boxes = boxes[areas >= self.min_area]
        # A passer-by walking in front of the goods is not what they are: only a track that stays
        # (still for EXPLAIN_STILL_S) explains a region away.
        staying = [tr for tr in explainers if tr.median_score >= self.min_score and tr.still_for_s >= EXPLAIN_STILL_S]
        explained = _explained(boxes, staying)
        matches = self._match(boxes)
        seen: list[_StaticRegion] = []
        for i, box in enumerate(boxes):
            entry = matches.get(i)
            if explained[i]:
                if entry is not None:
                    self._regions.remove(entry)
                continue
            if entry is None:
                entry = _StaticRegion(rid=f"static-{self._next}", box=box, first_seen_t=t, last_seen_t=t)
                self._next += 1
                self._regions.append(entry)
            entry.box, entry.last_seen_t = box, t
            seen.append(entry)
        self._regions = [r for r in self._regions if t - r.last_seen_t <= self.forget_after_s]
        return seen

    def _match(self, boxes: np.ndarray) -> dict[int, _StaticRegion]:
        if not len(boxes) or not self._regions:
            return {}
        iou = sv.box_iou_batch(boxes, np.array([r.box for r in self._regions]))
        matches: dict[int, _StaticRegion] = {}
        taken: set[int] = set()
        for flat in np.argsort(-iou, axis=None):
            i, j = divmod(int(flat), iou.shape[1])
            if iou[i, j] < STATIC_MATCH_IOU:
                break
            if i not in matches and j not in taken:
                matches[i] = self._regions[j]
                taken.add(j)
        return matches


def _explained(boxes: np.ndarray, tracks: Sequence[TrackState]) -> np.ndarray:
    """(N,) bool: which region boxes a person/vehicle/goods track explains."""
    known = np.array([tr.box for tr in tracks if tr.role in ("person", "vehicle", "goods")]).reshape(-1, 4)
    if not len(boxes) or not len(known):
        return np.zeros(len(boxes), dtype=bool)
    iou = sv.box_iou_batch(boxes, known)
    lo = np.maximum(boxes[:, None, :2], known[None, :, :2])
    hi = np.minimum(boxes[:, None, 2:], known[None, :, 2:])
    ix, iy = np.clip(hi - lo, 0, None).transpose(2, 0, 1)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    cover = ix * iy / area[:, None]
    return np.asarray(((iou >= EXPLAIN_IOU) | (cover >= EXPLAIN_COVER)).any(axis=1), dtype=bool)


def _iou(a: Box, b: Box) -> float:
    return float(sv.box_iou_batch(np.array([a]), np.array([b]))[0, 0])


def _evidence(track: TrackState, *, emphasis: Literal["subject", "context"] = "subject") -> EvidenceObject:
    return EvidenceObject(cls=track.class_name, score=track.score, bbox=track.box, emphasis=emphasis)
