"""The case engine: one transaction's unit of work over cases, episodes and alert rows.

A `CaseEngine` is made per ingest transaction (`CaseEngine.begin`) for the alerts it will decide,
and owns everything that transaction knows:
- the case locks: every key its alerts need, taken at once in one sorted order (cases.lock_keys,
  case_store.take_case_locks), before any row is read, so two workers' batches cannot deadlock;
- the rows read once up front: the alerts already stored (duplicates), the alerts' episodes, their
  cases and, when an `ended` alert is among them, those cases' open episodes; every episode and case
  the transaction creates or looks up later is added, so a missing episode is a new one;
- the id allocator for the cases it opens (`CaseIds`: one statement for all of them);
- the cases whose attribution waits for the end (a case's merchant depends only on its final place,
  so it is attributed once, after the last alert moved it);
- the alert rows to insert in bulk at the end, after their cases.

Each alert goes through one of two policies of the engine, by its state:
- `EpisodePolicy` (fixed cameras: an episode of first alert, reminders and `ended`): the episode's
  case, else the nearest open case in reach (cases.choose_case), else a new case;
- `SightingPolicy` (moving cameras: one `sighting` per object and pass): the same case search, but
  no case opens on one pass; a later pass confirms the spot with the pending sightings
  (sightings.sighting_partners) and they become the new case's alerts.
The decisions are pure functions (cases.py, sightings.py); the SQL is in case_store.py.

`finish()` attributes the waiting cases, flushes the cases and episodes, then inserts the alert rows.
The caller commits (db.session_scope(write_lock=True) opens the transaction).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from streetwatch.central.alert_rows import alert_values
from streetwatch.central.attribution import MerchantIndex, load_merchant_index
from streetwatch.central.case_store import (
    alerts_by_id,
    allocate_case_ids,
    cases_by_id,
    episodes_by_id,
    has_open_episode,
    insert_alert_rows,
    open_cases_near,
    open_episodes_of,
    pending_alerts,
    pending_sightings_near,
    recount_case,
    resolve_merged,
    take_case_locks,
)
from streetwatch.central.cases import Candidate, alert_lock_keys, choose_case, priority_of, running_mean, sighting_of
from streetwatch.central.config import CentralSettings
from streetwatch.central.models import Alert, Case, Episode
from streetwatch.central.sightings import pending_sighting_of, sighting_partners
from streetwatch.edge.alerts import Alert as WireAlert

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arrival:
    """An alert as it reaches the engine: not a duplicate, its evidence stored (`evidence_sha256`),
    and whether its payload may hold a NUL (False skips the scrub of the stored payload)."""

    alert: WireAlert
    evidence_sha256: str | None = None
    may_hold_nul: bool = True


@dataclass(frozen=True)
class CaseDecision:
    """Where an alert went: its case (None: a sighting pending another pass) and whether it is new."""

    case_id: int | None
    created: bool


@dataclass(frozen=True)
class QueuedAlert:
    """An alert row waiting for the bulk insert (its case cannot change within the transaction)."""

    case_id: int


class CasePolicy(Protocol):
    def decide(self, work: CaseEngine, arrival: Arrival) -> CaseDecision: ...


@dataclass
class CaseIds:
    """Ids for the cases a transaction opens, `expected` at a time with one statement (instead of
    an INSERT per case for its id; case_store.allocate_case_ids)."""

    expected: int = 1
    _spare: list[int] = field(default_factory=list, init=False)
    _last: int = field(default=0, init=False)  # the last id handed out (SQLite counts on from it)

    def next(self, session: Session) -> int:
        if not self._spare:
            self._spare = allocate_case_ids(session, max(1, self.expected), after=self._last)
            self._last = self._spare[-1]
        return self._spare.pop(0)


class CaseEngine:
    """One transaction's cases: see the module docstring. Make it with `begin`, end it with `finish`."""

    def __init__(self, session: Session, *, settings: CentralSettings, index: MerchantIndex | None) -> None:
        self.session = session
        self.settings = settings
        self._index = index
        self._alerts: dict[str, Alert | QueuedAlert] = {}
        self._episodes: dict[str, Episode | None] = {}  # looked up or created; None: not stored
        self._cases: dict[int, Case] = {}  # held strongly (the session's identity map is weak)
        self._open_episodes: dict[int, list[Episode]] = {}  # stored open episodes, for the cases read
        self.locks: frozenset[str] = frozenset()  # the case lock keys this transaction holds
        self.case_ids = CaseIds()
        self._unattributed: dict[int, Case] = {}
        self._rows: list[dict[str, object]] = []

    @classmethod
    def begin(
        cls, session: Session, alerts: Sequence[WireAlert], *, settings: CentralSettings,
        index: MerchantIndex | None = None,
    ) -> CaseEngine:
        """The engine for a transaction that will decide `alerts`: their spots and episodes locked,
        then their rows read. `index` is the attribution index (loaded at `finish` when None)."""
        work = cls(session, settings=settings, index=index)
        work.locks = frozenset(key for a in alerts for key in alert_lock_keys(a, settings=settings.cases))
        take_case_locks(session, work.locks)
        work._read(alerts)  # only after the locks: no other worker changes these rows now
        return work

    def _read(self, alerts: Sequence[WireAlert]) -> None:
        """One query each: the alerts already stored (duplicates), their episodes and those cases."""
        session = self.session
        self._alerts = dict(alerts_by_id(session, {a.alert_id for a in alerts}))
        episode_ids = {a.episode_id for a in alerts}
        stored = episodes_by_id(session, episode_ids)
        self._episodes = {episode_id: stored.get(episode_id) for episode_id in episode_ids}
        self._cases = cases_by_id(session, {e.case_id for e in stored.values()})
        if any(a.state == "ended" for a in alerts):  # then an `ended` needs no query for its case's activity
            self._open_episodes = open_episodes_of(session, self._cases)
        # At most one new case per episode not stored yet: their ids come with one statement.
        self.case_ids = CaseIds(expected=len(episode_ids) - len(stored))

    # -- what the transaction knows

    def known_alert(self, alert_id: str) -> Alert | QueuedAlert | None:
        """The alert stored or added in this transaction under `alert_id` (a duplicate), else None."""
        return self._alerts.get(alert_id)

    def decide(self, arrival: Arrival) -> CaseDecision:
        """Fold a new alert into its case by its policy (moving cameras' sightings, or episodes)."""
        policy = SIGHTINGS if arrival.alert.state == "sighting" else EPISODES
        return policy.decide(self, arrival)

    def episode(self, episode_id: str) -> Episode | None:
        """The episode, stored or created in this transaction; None if it is new."""
        if episode_id not in self._episodes:
            self._episodes[episode_id] = self.session.get(Episode, episode_id)
        return self._episodes[episode_id]

    def case(self, case_id: int) -> Case:
        """The case `case_id` stands for now (following merges); a held one without a lookup."""
        held = self._cases.get(case_id)
        if held is None or held.merged_into_id is not None:
            held = resolve_merged(self.session, case_id)
            self._cases[held.id] = held
        return held

    def case_of(self, alert: WireAlert) -> Case | None:
        """The case the alert joins: its episode's, else the nearest open one in reach; None: none."""
        episode = self.episode(alert.episode_id)
        if episode is not None:
            return self.case(episode.case_id)
        return self._nearby_case(alert)

    def _nearby_case(self, alert: WireAlert) -> Case | None:
        sighting, cases = sighting_of(alert), self.settings.cases
        found = open_cases_near(self.session, sighting, cases)
        chosen = choose_case(
            sighting,
            [Candidate(c.id, c.lat, c.lon, c.first_seen, c.last_seen, c.camera_id, c.zone_id) for c in found.values()],
            radius_m=cases.radius_m[alert.violation],
            max_gap=timedelta(seconds=cases.max_gap_s[alert.violation]),
        )
        return found[chosen] if chosen is not None else None

    def confirming_sightings(self, alert: WireAlert) -> list[str]:
        """Alert ids of the pending sightings that confirm this one on other passes ([] if none)."""
        new = pending_sighting_of(alert)
        if new is None:
            return []
        cases = self.settings.cases
        return sighting_partners(
            new,
            pending_sightings_near(self.session, new, violation=alert.violation, settings=cases),
            interval=timedelta(seconds=cases.sighting_interval_s),
            max_gap=timedelta(seconds=cases.max_gap_s[alert.violation]),
            min_radius_m=cases.sighting_min_radius_m,
            max_radius_m=cases.radius_m[alert.violation],
        )

    # -- changes

    def open_case(self, alert: WireAlert) -> Case:
        """A new, empty case at the alert's place and time (`fold` fills its counters); written at
        the next flush with the rest of the transaction."""
        case = new_case(alert, case_id=self.case_ids.next(self.session))
        self.session.add(case)
        self._cases[case.id] = case
        self._open_episodes[case.id] = []  # every episode it will have is created here
        return case

    def start_episode(self, case: Case, seen: _Seen, *, ended_at: datetime | None) -> Episode:
        """A new episode of the case, from the first alert seen of it (`ended_at`: already over)."""
        episode = Episode(id=seen.episode_id, case_id=case.id, edge_id=seen.edge_id, camera_id=seen.camera_id,
                          first_seen=seen.observed_at, last_seen=seen.observed_at, ended_at=ended_at)
        self.session.add(episode)
        self._episodes[episode.id] = episode
        case.episode_count += 1
        return episode

    def fold(self, case: Case, alert: WireAlert, episode: Episode, *, evidence_sha256: str | None) -> None:
        """Fold one alert into its case and episode: counts, span, location, activity, evidence, priority."""
        episode.first_seen = min(episode.first_seen, alert.observed_at)
        episode.last_seen = max(episode.last_seen, alert.observed_at)
        if alert.state == "ended":
            episode.ended_at = max(episode.ended_at or alert.observed_at, alert.observed_at)
        case.alert_count += 1
        # The case shows the latest evidence (or the first it ever got).
        if evidence_sha256 is not None and (alert.observed_at >= case.last_seen or case.evidence_sha256 is None):
            case.evidence_sha256 = evidence_sha256
        case.first_seen = min(case.first_seen, alert.observed_at)
        case.last_seen = max(case.last_seen, alert.observed_at)
        if alert.location is not None:
            case.lat, case.lon, case.location_count = running_mean(
                case.lat, case.lon, case.location_count, new_lat=alert.location.lat, new_lon=alert.location.lon
            )
        # Active while any episode is open; this alert's own open episode answers without a query.
        case.active = episode.ended_at is None or self._has_open_episode(case)
        self._rescore(case, violation=alert.violation)

    def _has_open_episode(self, case: Case) -> bool:
        stored_open = self._open_episodes.get(case.id)
        if stored_open is None:  # a case this transaction did not read up front
            return has_open_episode(self.session, case.id)
        # Current values: the objects carry every change of this transaction, flushed or not.
        mine = (e for e in self._episodes.values() if e is not None)
        return any(e.case_id == case.id and e.ended_at is None for e in (*stored_open, *mine))

    def _rescore(self, case: Case, *, violation: str) -> None:
        """The case's queue priority now; its attribution at `finish`, at its final place."""
        case.priority = priority_of(
            weight=self.settings.cases.priority_weight[violation],  # type: ignore[index]
            alert_count=case.alert_count,
            first_seen=case.first_seen,
            last_seen=case.last_seen,
        )
        self._unattributed[case.id] = case

    def adopt(self, case: Case, alert_ids: Sequence[str]) -> None:
        """Give pending sightings to the case a later pass confirmed, then recount it from its alerts
        (their passes become episodes of it that are already over)."""
        for row in pending_alerts(self.session, alert_ids):
            row.case_id = case.id
            if self.episode(row.episode_id) is None:
                self.start_episode(case, row, ended_at=row.observed_at)
        recount_case(self.session, case)
        self._rescore(case, violation=case.violation)
        log.info("case %d: %s confirmed by %d sightings on separate passes", case.id, case.violation, case.alert_count)

    def queue_row(self, arrival: Arrival, *, case_id: int) -> None:
        """The alert's row, inserted in bulk at `finish` (for alerts whose case is final)."""
        alert = arrival.alert
        values = alert_values(
            alert, case_id=case_id, evidence_sha256=arrival.evidence_sha256, scrub_payload=arrival.may_hold_nul
        )
        self._rows.append(values)
        self._alerts[alert.alert_id] = QueuedAlert(case_id)

    def add_row(self, arrival: Arrival, *, case_id: int | None) -> Alert:
        """The alert's row as an ORM object (a sighting's: a later pass may give it a case)."""
        alert = arrival.alert
        row = Alert(**alert_values(alert, case_id=case_id, evidence_sha256=arrival.evidence_sha256,
                                   scrub_payload=arrival.may_hold_nul))
        # Its case first: with no relationship() between the tables the unit of work orders a flush's
        # INSERTs by class name (alerts before cases), not by foreign key.
        self.session.flush()
        self.session.add(row)
        self._alerts[alert.alert_id] = row
        return row

    # -- the end

    def finish(self) -> None:
        """Attribute the cases at their final place, write the cases and episodes, then the alert rows."""
        if self._unattributed:
            index = self._index
            if index is None:
                max_distance_m = self.settings.attribution.max_distance_m
                index = self._index = load_merchant_index(self.session, max_distance_m=max_distance_m)
            for case in self._unattributed.values():
                attribute_case(case, index)
            self._unattributed.clear()
        self.session.flush()
        self.write_alert_rows()

    def write_alert_rows(self) -> None:
        """Insert the queued alert rows (their cases are flushed)."""
        insert_alert_rows(self.session, self._rows)
        self._rows = []


class _Seen(Protocol):
    """What starts an episode: a wire alert or a stored alert row."""

    @property
    def episode_id(self) -> str: ...
    @property
    def edge_id(self) -> str: ...
    @property
    def camera_id(self) -> str: ...
    @property
    def observed_at(self) -> datetime: ...


class EpisodePolicy:
    """Fixed cameras: the episode's case, else the nearest open case in reach, else a new case."""

    def decide(self, work: CaseEngine, arrival: Arrival) -> CaseDecision:
        alert = arrival.alert
        case = work.case_of(alert)
        created = case is None
        if case is None:
            case = work.open_case(alert)
        episode = work.episode(alert.episode_id)
        if episode is None:
            episode = work.start_episode(case, alert, ended_at=None)
        work.fold(case, alert, episode, evidence_sha256=arrival.evidence_sha256)
        work.queue_row(arrival, case_id=case.id)
        return CaseDecision(case.id, created)


class SightingPolicy:
    """Moving cameras: join a case in reach, else open one that another pass confirms, else wait."""

    def decide(self, work: CaseEngine, arrival: Arrival) -> CaseDecision:
        alert = arrival.alert
        case = work.case_of(alert)
        if case is not None:
            self._fold_pass(work, case, arrival)
            work.add_row(arrival, case_id=case.id)
            return CaseDecision(case.id, created=False)
        partners = work.confirming_sightings(alert)
        if not partners:
            if alert.location is None:
                log.warning("alert %s (camera %s): a sighting without location cannot be confirmed; kept pending",
                            alert.alert_id, alert.camera_id)
            else:
                log.info("alert %s (camera %s): %s sighting pending until another pass confirms it",
                         alert.alert_id, alert.camera_id, alert.violation)
            work.add_row(arrival, case_id=None)
            return CaseDecision(None, created=False)
        case = work.open_case(alert)
        self._fold_pass(work, case, arrival)
        work.add_row(arrival, case_id=case.id)
        work.adopt(case, partners)
        return CaseDecision(case.id, created=True)

    @staticmethod
    def _fold_pass(work: CaseEngine, case: Case, arrival: Arrival) -> None:
        """Fold the sighting in, its pass recorded as an episode that is already over (a pass is
        seen once; nothing will send its `ended`), so the case does not look active for ever."""
        alert = arrival.alert
        episode = work.episode(alert.episode_id)
        if episode is None:
            episode = work.start_episode(case, alert, ended_at=alert.observed_at)
        work.fold(case, alert, episode, evidence_sha256=arrival.evidence_sha256)


def new_case(alert: WireAlert, *, case_id: int) -> Case:
    """An empty case at the alert's place and time (counters are filled by `CaseEngine.fold`)."""
    return Case(
        id=case_id,
        violation=alert.violation,
        status="new",
        lat=None,
        lon=None,
        location_count=0,
        camera_id=alert.camera_id,
        zone_id=alert.zone_id,
        first_seen=alert.observed_at,
        last_seen=alert.observed_at,
        alert_count=0,
        episode_count=0,
        attribution_method="none",
        priority=0,
        active=True,
    )


def attribute_case(case: Case, index: MerchantIndex) -> None:
    """(Re)attribute a located case, unless a reviewer attributed it by hand."""
    if case.attribution_method == "manual" or case.lat is None or case.lon is None:
        return
    result = index.attribute(case.lat, case.lon)
    case.merchant_id = result.merchant_id
    case.attribution_method = result.method
    case.attribution_distance_m = result.distance_m
    case.area_id = index.area_of(case.lat, case.lon, merchant_id=result.merchant_id)


EPISODES: CasePolicy = EpisodePolicy()
SIGHTINGS: CasePolicy = SightingPolicy()


__all__ = [
    "Arrival",
    "CaseDecision",
    "CaseEngine",
    "CasePolicy",
    "EpisodePolicy",
    "QueuedAlert",
    "SightingPolicy",
    "attribute_case",
    "new_case",
]
