"""Series tracker: decides when a series is complete and turns it into a job (or not).

Why: completion needs the sending association to have ended, and then either
- the headers' count hint (ImagesInAcquisition, NumberOfSlices x NumberOfTemporalPositions,
  NumberOfFrames of an enhanced object) is reached: complete at once, no idle wait; or
- no hint: no instance for `series.timeout_s`; or
- a hint that is not reached: wait up to `series.max_wait_s`, then complete with what arrived.
Routing happens once per series version, away from the association threads.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy import select

from dicom_node.config import Config
from dicom_node.db import Database, Job, Series, utcnow
from dicom_node.records import PendingSeries, released_series, series_files
from dicom_node.rules import SeriesFacts, route
from dicom_node.series_info import count_frames, expected_frames, facts_from_header, read_header

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """Frames received vs. expected for one series version (`expected` None: no hint)."""

    version: int
    instances: int
    frames: int
    expected: int | None
    source: str


def series_progress(db: Database, item: PendingSeries) -> Progress:
    """Read the hint from the first stored header; count frames (multi-frame aware)."""
    paths = series_files(db, item.series_uid)
    first = read_header(paths[0]) if paths else None
    expected, source = expected_frames(first)
    return Progress(item.version, item.instance_count, count_frames(paths, first), expected,
                    source)


def series_facts(db: Database, series: Series) -> SeriesFacts:
    """Facts for routing: the series row plus a stored header and the association's address."""
    paths = series_files(db, series.series_uid, series.version)
    first = read_header(paths[0]) if paths else None
    return facts_from_header(
        first, slice_count=count_frames(paths, first), calling_ae=series.calling_ae,
        called_ae=series.called_ae, source_address=series.source_address, modality=series.modality,
        description=series.description, body_part=series.body_part)


def complete_series(config: Config, db: Database, series_uid: str) -> int | None:
    """Mark one series complete and route it; returns the new job id, or None (unmatched)."""
    with db.session() as s:  # read first: facts need their own queries (one writer at a time)
        snapshot = s.scalar(select(Series).where(Series.series_uid == series_uid))
    if snapshot is None or snapshot.state != "receiving":
        return None
    decision = route(config, series_facts(db, snapshot))
    with db.session() as s:
        series = s.scalar(select(Series).where(Series.series_uid == series_uid))
        if series is None or (series.state, series.version, series.instance_count,
                              series.association_released) != (
                "receiving", snapshot.version, snapshot.instance_count, True):
            return None  # changed meanwhile (new instance, another tracker): next pass decides
        if decision is None:
            series.state = "unmatched"
            logger.info("series %s v%d (%s, %d instances, from %s) matches no rule; kept",
                        series_uid, series.version, series.modality, series.instance_count,
                        series.calling_ae)
            return None
        series.state = "queued"
        series.rule = decision.rule
        job = Job(series_uid=series_uid, series_version=series.version, rule=decision.rule,
                  recipe=decision.recipe, destinations=list(decision.destinations),
                  state="queued", timings={}, outputs=[])
        s.add(job)
        s.flush()
        logger.info("series %s v%d complete (%d instances): rule %s -> job %d (recipe %s, to %s)",
                    series_uid, series.version, series.instance_count, decision.rule, job.id,
                    decision.recipe, ", ".join(decision.destinations) or "nowhere")
        return job.id


class CompletionPolicy:
    """Decides per scan which released series are complete; caches hints per series version."""

    def __init__(self, config: Config, db: Database) -> None:
        self.config, self.db = config, db
        self._cache: dict[str, Progress] = {}

    def _progress(self, item: PendingSeries) -> Progress:
        cached = self._cache.get(item.series_uid)
        if cached is None or (cached.version, cached.instances) != (item.version,
                                                                     item.instance_count):
            cached = series_progress(self.db, item)
            self._cache[item.series_uid] = cached
        return cached

    def is_complete(self, item: PendingSeries, idle_s: float) -> bool:
        settings = self.config.series
        if not settings.use_count_hints:
            return idle_s >= settings.timeout_s
        p = self._progress(item)
        if p.expected is None:
            return idle_s >= settings.timeout_s
        if p.frames >= p.expected:
            logger.info("series %s: %d of %d frames (%s) arrived: complete", item.series_uid,
                        p.frames, p.expected, p.source)
            return True
        if idle_s >= settings.max_wait_s:
            logger.warning("series %s: only %d of %d frames (%s) after %.0f s idle; "
                           "completing with what arrived", item.series_uid, p.frames,
                           p.expected, p.source, idle_s)
            return True
        return False

    def due(self) -> list[str]:
        now = utcnow()
        pending = released_series(self.db)
        live = {p.series_uid for p in pending}
        for uid in list(self._cache):
            if uid not in live:
                del self._cache[uid]
        return [p.series_uid for p in pending
                if self.is_complete(p, (now - p.last_received_at).total_seconds())]


def scan_once(config: Config, db: Database, policy: CompletionPolicy | None = None) -> list[int]:
    """One tracker pass; returns ids of jobs created."""
    policy = policy or CompletionPolicy(config, db)
    created = []
    for uid in policy.due():
        job_id = complete_series(config, db, uid)
        if job_id is not None:
            created.append(job_id)
    return created


class SeriesTracker(threading.Thread):
    """Background thread calling `scan_once` every `interval_s` until `stop()`."""

    def __init__(self, config: Config, db: Database, interval_s: float = 0.5) -> None:
        super().__init__(name="vpet-tracker", daemon=True)
        self.config, self.db, self.interval_s = config, db, interval_s
        self.policy = CompletionPolicy(config, db)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                scan_once(self.config, self.db, self.policy)
            except Exception:
                logger.exception("series tracker pass failed")
            self._stop_event.wait(self.interval_s)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
