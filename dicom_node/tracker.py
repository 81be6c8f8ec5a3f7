"""Series tracker: decides when a series is complete and turns it into a job (or not).

Why: completion needs both signals (the sending association ended AND no instance for
`series.timeout_s`), and routing must happen once per series version, away from the
association threads.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select

from dicom_node.config import Config
from dicom_node.db import Database, Job, Series
from dicom_node.records import idle_released_series
from dicom_node.rules import SeriesFacts, route

logger = logging.getLogger(__name__)


def complete_series(config: Config, db: Database, series_uid: str) -> int | None:
    """Mark one series complete and route it; returns the new job id, or None (unmatched)."""
    with db.session() as s:
        series = s.scalar(select(Series).where(Series.series_uid == series_uid))
        if series is None or series.state != "receiving":
            return None
        facts = SeriesFacts(modality=series.modality, series_description=series.description,
                            calling_ae=series.calling_ae, called_ae=series.called_ae,
                            body_part=series.body_part)
        decision = route(config, facts)
        if decision is None:
            series.state = "unmatched"
            logger.info("series %s (%s, %d instances, from %s) matches no rule; kept",
                        series_uid, series.modality, series.instance_count, series.calling_ae)
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


def scan_once(config: Config, db: Database) -> list[int]:
    """One tracker pass; returns ids of jobs created."""
    created = []
    for uid in idle_released_series(db, config.series.timeout_s):
        job_id = complete_series(config, db, uid)
        if job_id is not None:
            created.append(job_id)
    return created


class SeriesTracker(threading.Thread):
    """Background thread calling `scan_once` every `interval_s` until `stop()`."""

    def __init__(self, config: Config, db: Database, interval_s: float = 0.5) -> None:
        super().__init__(name="vpet-tracker", daemon=True)
        self.config, self.db, self.interval_s = config, db, interval_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                scan_once(self.config, self.db)
            except Exception:
                logger.exception("series tracker pass failed")
            self._stop_event.wait(self.interval_s)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
