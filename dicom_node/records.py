"""Database operations on received data: instances, series state, association release.

Why: keeps the C-STORE handler and the tracker free of SQL details, and puts the
"late instance re-opens a completed series as a new version" rule in one place.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from dicom_node.db import Database, Instance, Series, utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceivedInstance:
    """Header facts of one stored instance, as the handler extracted them."""

    sop_instance_uid: str
    series_uid: str
    study_uid: str
    sop_class: str
    path: str
    calling_ae: str
    called_ae: str
    assoc_key: str
    modality: str = ""
    description: str = ""
    body_part: str = ""


def record_instance(db: Database, item: ReceivedInstance) -> Series:
    """Insert/refresh the Instance row and upsert its Series (re-opening a finished one)."""
    for attempt in range(3):
        try:
            return _record_once(db, item)
        except IntegrityError:  # concurrent first insert of the same series/instance
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _record_once(db: Database, item: ReceivedInstance) -> Series:
    now = utcnow()
    with db.session() as s:
        series = s.scalar(select(Series).where(Series.series_uid == item.series_uid))
        if series is None:
            series = Series(
                series_uid=item.series_uid, study_uid=item.study_uid, modality=item.modality,
                description=item.description, calling_ae=item.calling_ae,
                called_ae=item.called_ae, body_part=item.body_part, instance_count=0,
                state="receiving", version=1, association_released=False,
            )
            s.add(series)
            s.flush()
        elif series.state != "receiving":
            logger.info("late instance %s re-opens series %s (version %d -> %d)",
                        item.sop_instance_uid, item.series_uid, series.version,
                        series.version + 1)
            series.version += 1
            series.state = "receiving"
            series.rule = None
        series.last_received_at = now
        series.assoc_key = item.assoc_key
        series.association_released = False
        series.calling_ae = item.calling_ae or series.calling_ae
        series.called_ae = item.called_ae or series.called_ae
        series.modality = series.modality or item.modality
        series.description = series.description or item.description
        series.body_part = series.body_part or item.body_part

        inst = s.scalar(select(Instance).where(
            Instance.sop_instance_uid == item.sop_instance_uid))
        if inst is None:
            s.add(Instance(
                sop_instance_uid=item.sop_instance_uid, series_uid=item.series_uid,
                study_uid=item.study_uid, sop_class=item.sop_class, path=item.path,
                calling_ae=item.calling_ae, series_version=series.version, received_at=now,
            ))
            series.instance_count += 1
        else:  # re-sent instance: same file path, refresh bookkeeping
            if inst.series_uid != item.series_uid:
                logger.warning("instance %s moved from series %s to %s", item.sop_instance_uid,
                               inst.series_uid, item.series_uid)
                inst.series_uid = item.series_uid
                inst.series_version = series.version
                series.instance_count += 1
            # a re-sent instance keeps the version it first arrived in (it belongs to that set)
            inst.path, inst.received_at = item.path, now
        return series


def mark_released(db: Database, assoc_key: str) -> int:
    """Mark the series last fed by this association as released; returns how many."""
    with db.session() as s:
        result = s.execute(
            update(Series)
            .where(Series.assoc_key == assoc_key, Series.state == "receiving")
            .values(association_released=True)
        )
        return result.rowcount or 0


def release_orphans(db: Database) -> int:
    """At start-up, associations from a previous run are gone: release their series."""
    with db.session() as s:
        result = s.execute(
            update(Series).where(Series.state == "receiving", Series.association_released.is_(False))
            .values(association_released=True)
        )
        return result.rowcount or 0


def series_files(db: Database, series_uid: str, version: int | None = None) -> list[str]:
    """Paths of the stored instances of a series, in insertion order.

    With `version`, only instances that belong to that version or an earlier one: a job for
    version 1 that runs after a late instance opened version 2 still sees exactly its own
    set, so results are never a mix of two versions.
    """
    query = select(Instance.path).where(Instance.series_uid == series_uid)
    if version is not None:
        query = query.where(Instance.series_version <= version)
    with db.session() as s:
        return list(s.scalars(query.order_by(Instance.id)))


@dataclass(frozen=True)
class PendingSeries:
    """A receiving series whose association ended: a completion candidate."""

    series_uid: str
    version: int
    instance_count: int
    last_received_at: dt.datetime


def released_series(db: Database) -> list[PendingSeries]:
    """Receiving series whose sending association was released or aborted."""
    with db.session() as s:
        rows = s.execute(select(Series.series_uid, Series.version, Series.instance_count,
                                Series.last_received_at).where(
            Series.state == "receiving", Series.association_released.is_(True)))
        return [PendingSeries(*row) for row in rows]


def idle_released_series(db: Database, idle_s: float, now: dt.datetime | None = None) -> list[str]:
    """UIDs of receiving series whose association ended and that were idle for `idle_s`."""
    cutoff = (now or utcnow()) - dt.timedelta(seconds=idle_s)
    with db.session() as s:
        return list(s.scalars(
            select(Series.series_uid).where(
                Series.state == "receiving",
                Series.association_released.is_(True),
                Series.last_received_at <= cutoff,
            )
        ))
