"""Moving-camera sightings: confirm a violation from two patrol passes, never from one (a pure rule).

A patrol vehicle or drone cannot watch a parked car for minutes, so its edge sends one `sighting`
alert per object and pass (edge/moving_rules.py). The case engine's sighting policy
(case_engine.SightingPolicy) applies this rule:

- a sighting that joins an existing case (its episode's, or an open case of the violation near it
  in place and time: the same rule as every alert, cases.choose_case) is folded into that case;
- else it is paired with the *pending* sightings (stored alerts without a case) of the same
  violation from other passes (other episode ids), within max_gap_s, at the same spot: within
  max(sighting_min_radius_m, either accuracy) metres, capped at radius_m[violation]. If one of
  them lies at least `sighting_interval_s` (default 5 minutes) before or after it, the spot was
  occupied on two separate passes: a case opens with all of them as its alerts (`sighting_partners`).
  Otherwise the sighting stays pending: a single pass confirms nothing.

Race freedom: the ingest transaction has already taken the alert's case locks (grid cells of side
2 x radius_m[violation] around the alert, cases.lock_keys; BEGIN IMMEDIATE on SQLite). Because the
pairing radius is capped at radius_m, any two sightings that may pair share a lock cell, so two
workers never both decide the same spot: the second sees the first one's row (pending or in a case).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from streetwatch.central.cases import distance_m
from streetwatch.edge.alerts import Alert as WireAlert


@dataclass(frozen=True)
class PendingSighting:
    """A sighting as the pairing rule sees it."""

    alert_id: str
    episode_id: str
    observed_at: datetime
    lat: float
    lon: float
    accuracy_m: float


def sighting_partners(
    new: PendingSighting,
    pending: Iterable[PendingSighting],
    *,
    interval: timedelta,
    max_gap: timedelta,
    min_radius_m: float,
    max_radius_m: float,
) -> list[str]:
    """Alert ids of the pending sightings that confirm `new` with it, oldest first; [] if none does.

    Candidates: other passes (episode ids), within max_gap, at the same spot (within
    min(max(min_radius_m, both accuracies), max_radius_m)). They confirm only if one of them is at
    least `interval` away in time from `new`: the spot was occupied on two separate passes.
    """
    near = [
        p
        for p in pending
        if p.episode_id != new.episode_id
        and abs(p.observed_at - new.observed_at) <= max_gap
        and distance_m(new.lat, new.lon, p.lat, p.lon)
        <= min(max(min_radius_m, new.accuracy_m, p.accuracy_m), max_radius_m)
    ]
    if not any(abs(p.observed_at - new.observed_at) >= interval for p in near):
        return []
    return [p.alert_id for p in sorted(near, key=lambda p: (p.observed_at, p.alert_id))]


def pending_sighting_of(alert: WireAlert) -> PendingSighting | None:
    loc = alert.location
    if loc is None:
        return None
    return PendingSighting(alert.alert_id, alert.episode_id, alert.observed_at, loc.lat, loc.lon, loc.accuracy_m)


__all__ = ["PendingSighting", "pending_sighting_of", "sighting_partners"]
